"""The bearer token on gRPC: `authorization: Bearer <token>` metadata, as HTTP takes it.

Every method needs it but health checks and reflection, which probes and tooling call without
credentials (as HTTP leaves /healthz, /readyz and /docs open). A missing or wrong token is
UNAUTHENTICATED, with the precise code in the `xscore-error-code` trailer like every error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc

from xscore.api import wire
from xscore.api.auth import token_matches
from xscore.api.errors import ErrorCode, XscoreError

OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.v1alpha.ServerReflection/",
                 "/grpc.reflection.v1.ServerReflection/")


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, token: str) -> None:
        self._token = token

    async def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable],
                                handler_call_details: grpc.HandlerCallDetails):
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(OPEN_SERVICES):
            return handler
        metadata = dict(handler_call_details.invocation_metadata or ())
        if token_matches(str(metadata.get("authorization", "")), self._token):
            return handler
        return _refusal(handler)


async def _refuse(context: grpc.aio.ServicerContext) -> None:
    status, message, trailers = wire.encode_error(
        XscoreError(ErrorCode.UNAUTHENTICATED, "missing or wrong bearer token in the authorization metadata"))
    context.set_trailing_metadata(trailers)
    await context.abort(status, message)


def _refusal(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler of the same kind as `handler` that answers UNAUTHENTICATED."""
    serializers = {"request_deserializer": handler.request_deserializer,
                   "response_serializer": handler.response_serializer}
    if handler.request_streaming and handler.response_streaming:
        async def refuse_stream(requests, context):
            await _refuse(context)
            yield  # never reached: makes this an async generator, as a streaming handler must be

        return grpc.stream_stream_rpc_method_handler(refuse_stream, **serializers)
    if handler.response_streaming:
        async def refuse_to_stream(request, context):
            await _refuse(context)
            yield

        return grpc.unary_stream_rpc_method_handler(refuse_to_stream, **serializers)
    if handler.request_streaming:
        async def refuse_from_stream(requests, context):
            await _refuse(context)

        return grpc.stream_unary_rpc_method_handler(refuse_from_stream, **serializers)

    async def refuse(request, context):
        await _refuse(context)

    return grpc.unary_unary_rpc_method_handler(refuse, **serializers)
