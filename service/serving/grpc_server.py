"""The gRPC transport: `xscore.v1.Scorer` over the Scorer façade, with health and reflection.

A thin mapping: protobuf messages to the scorer's request types and back, and XscoreError to
gRPC status and trailing metadata, all through `xscore.api.wire`. No model logic.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from xscore.api import wire
from xscore.api.errors import REQUEST_ID_METADATA, ErrorCode, XscoreError, invalid
from xscore.api.tls import TlsFiles
from xscore.service.serving.grpc_auth import BearerTokenInterceptor
from xscore.service.serving.scorer import Scorer
from xscore.v1 import score_pb2, score_pb2_grpc

log = logging.getLogger(__name__)

# Requests of one ScoreStream scored or unread at once (a caller that never reads cannot pile up work).
STREAM_IN_FLIGHT = 64

SERVICE_NAME = score_pb2.DESCRIPTOR.services_by_name["Scorer"].full_name


class Undecodable:
    """A request whose bytes are no valid message (a string field holding invalid UTF-8, say). The
    method answers it INVALID_ARGUMENT; left to grpc, a failed parse is an UNKNOWN status."""

    __slots__ = ("type_name", "reason")

    def __init__(self, type_name: str, reason: str) -> None:
        self.type_name = type_name
        self.reason = reason

    def error(self) -> XscoreError:
        return invalid(f"the request is not a valid {self.type_name} ({self.reason}); string fields must be "
                       "valid UTF-8", field="request")


def _lenient(message_type):
    def deserialize(data: bytes):
        try:
            return message_type.FromString(data)
        except DecodeError as exc:
            return Undecodable(message_type.DESCRIPTOR.full_name, str(exc) or "cannot parse it")
    return deserialize


def _decoded(request):
    if isinstance(request, Undecodable):
        raise request.error()
    return request


class ScorerServicer(score_pb2_grpc.ScorerServicer):
    def __init__(self, scorer: Scorer) -> None:
        self._scorer = scorer

    async def Score(self, request: score_pb2.ScoreRequest, context: grpc.aio.ServicerContext) -> score_pb2.ScoreResponse:
        return await _guarded(context, "Score", self._score(request, context))

    async def ScorePairs(self, request: score_pb2.ScorePairsRequest,
                         context: grpc.aio.ServicerContext) -> score_pb2.ScorePairsResponse:
        return await _guarded(context, "ScorePairs", self._score_pairs(request, context))

    def handlers(self) -> grpc.GenericRpcHandler:
        """The service's method table, parsing requests leniently (see `Undecodable`)."""
        unary, stream = grpc.unary_unary_rpc_method_handler, grpc.stream_stream_rpc_method_handler
        methods = {
            "Score": unary(self.Score, _lenient(score_pb2.ScoreRequest), score_pb2.ScoreResponse.SerializeToString),
            "ScorePairs": unary(self.ScorePairs, _lenient(score_pb2.ScorePairsRequest),
                                score_pb2.ScorePairsResponse.SerializeToString),
            "ScoreStream": stream(self.ScoreStream, _lenient(score_pb2.ScoreStreamRequest),
                                  score_pb2.ScoreStreamResponse.SerializeToString),
            "ListModels": unary(self.ListModels, _lenient(score_pb2.ListModelsRequest),
                                score_pb2.ListModelsResponse.SerializeToString),
            "GetModel": unary(self.GetModel, _lenient(score_pb2.GetModelRequest), score_pb2.ModelInfo.SerializeToString),
        }
        declared = {method.name for method in score_pb2.DESCRIPTOR.services_by_name["Scorer"].methods}
        if set(methods) != declared:
            raise RuntimeError(f"the Scorer method table {sorted(methods)} differs from the proto's {sorted(declared)}")
        return grpc.method_handlers_generic_handler(SERVICE_NAME, methods)

    async def ScoreStream(self, requests: AsyncIterator[score_pb2.ScoreStreamRequest],
                          context: grpc.aio.ServicerContext) -> AsyncIterator[score_pb2.ScoreStreamResponse]:
        """Score each request as it arrives; answer each when done, errors per request.

        At most STREAM_IN_FLIGHT requests of one stream are scored or waiting to be read back at
        once: past that the stream stops reading, and gRPC's flow control holds the caller back."""
        answers: asyncio.Queue[score_pb2.ScoreStreamResponse | None] = asyncio.Queue()
        running: set[asyncio.Task] = set()
        slots = asyncio.Semaphore(STREAM_IN_FLIGHT)

        async def answer(message: score_pb2.ScoreStreamRequest | Undecodable) -> None:
            request_id = "" if isinstance(message, Undecodable) else message.request_id  # unreadable: no id
            try:
                response = await self._score(_decoded(message).request, context)
                await answers.put(score_pb2.ScoreStreamResponse(request_id=request_id, response=response))
            except Exception as exc:
                code, text, _ = _status_of(exc, _request_id(context), "ScoreStream")
                error = score_pb2.Status(code=code.value[0], message=text)
                await answers.put(score_pb2.ScoreStreamResponse(request_id=request_id, error=error))

        async def read() -> None:
            async for message in requests:
                await slots.acquire()  # released when its answer has been sent
                task = asyncio.create_task(answer(message))
                running.add(task)
                task.add_done_callback(running.discard)
            await asyncio.gather(*running)
            await answers.put(None)

        reader = asyncio.create_task(read())
        try:
            while (response := await answers.get()) is not None:
                yield response
                slots.release()
            await reader  # surfaces a broken request stream
        finally:
            for task in (reader, *running):
                task.cancel()

    async def ListModels(self, request: score_pb2.ListModelsRequest,
                         context: grpc.aio.ServicerContext) -> score_pb2.ListModelsResponse:
        async def listed() -> score_pb2.ListModelsResponse:
            _decoded(request)
            return score_pb2.ListModelsResponse(models=[wire.encode_model_info(info)
                                                        for info in self._scorer.list_models()])
        return await _guarded(context, "ListModels", listed())

    async def GetModel(self, request: score_pb2.GetModelRequest, context: grpc.aio.ServicerContext) -> score_pb2.ModelInfo:
        async def get() -> score_pb2.ModelInfo:
            return wire.encode_model_info(self._scorer.get_model(_decoded(request).name))
        return await _guarded(context, "GetModel", get())

    async def _score(self, message: score_pb2.ScoreRequest, context: grpc.aio.ServicerContext) -> score_pb2.ScoreResponse:
        request = wire.decode_score_request(_decoded(message), deadline=_deadline(context))
        return wire.encode_score_result(await self._scorer.score(request))

    async def _score_pairs(self, message: score_pb2.ScorePairsRequest,
                           context: grpc.aio.ServicerContext) -> score_pb2.ScorePairsResponse:
        request = wire.decode_pairs_request(_decoded(message), deadline=_deadline(context))
        return wire.encode_pairs_result(await self._scorer.score_pairs(request))


async def _guarded(context: grpc.aio.ServicerContext, method: str, work):
    """Await `work`; map its failure to a status. Unexpected errors are logged and become INTERNAL."""
    try:
        return await work
    except asyncio.CancelledError:
        raise  # the caller went away or its deadline passed: grpc already answered
    except Exception as exc:
        code, message, metadata = _status_of(exc, _request_id(context), method)
    context.set_trailing_metadata(metadata)
    await context.abort(code, message)


def _status_of(exc: Exception, request_id: str, method: str) -> tuple[grpc.StatusCode, str, wire.Metadata]:
    """Status, message and trailing metadata for a failure; unexpected ones are logged, then INTERNAL."""
    if not isinstance(exc, XscoreError):
        log.exception("request %s: %s failed unexpectedly", request_id, method, exc_info=exc)
        exc = XscoreError(ErrorCode.INTERNAL, f"internal error (request id {request_id})")
    return wire.encode_error(exc)


def _request_id(context: grpc.aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_METADATA:
            return str(value)
    return uuid.uuid4().hex[:16]


def _deadline(context: grpc.aio.ServicerContext) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


class GrpcServer:
    """grpc.aio server: Scorer service, standard health (overall and per model), reflection."""

    def __init__(self, scorer: Scorer, host: str = "127.0.0.1", port: int = 50051, *,
                 auth_token: str | None = None, tls: TlsFiles | None = None) -> None:
        """`auth_token`: when set, every method but health and reflection needs
        `authorization: Bearer <token>` metadata. `tls`: serve TLS (mutual when it has a CA)."""
        self._scorer = scorer
        self._auth_token = auth_token
        self._tls = tls
        self._host = host
        self._port = port
        self._server: grpc.aio.Server | None = None
        self.health = health.aio.HealthServicer()
        scorer.on_drain(self.health.enter_graceful_shutdown)

    async def start(self) -> str:
        """Bind, serve, and mark every model SERVING; returns the bound "host:port"."""
        interceptors = [BearerTokenInterceptor(self._auth_token)] if self._auth_token else []
        server = grpc.aio.server(interceptors=interceptors, options=[*wire.CHANNEL_OPTIONS, ("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers((ScorerServicer(self._scorer).handlers(),))
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            server)
        address = f"{self._host}:{self._port}"
        port = server.add_secure_port(address, self._tls.server_credentials()) if self._tls else \
            server.add_insecure_port(address)
        if port == 0:
            raise XscoreError(ErrorCode.UNAVAILABLE, f"cannot bind gRPC to {self._host}:{self._port}")
        await server.start()
        self._server = server
        await self.refresh_health()
        return f"{self._host}:{port}"

    async def refresh_health(self) -> None:
        """Publish readiness: "" (overall), the service name, and each model by name."""
        serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
        for name in self._scorer.model_names:
            await self.health.set(name, serving if self._scorer.model_ready(name) else not_serving)
        overall = serving if self._scorer.ready else not_serving
        await self.health.set("", overall)
        await self.health.set(SERVICE_NAME, overall)

    async def stop(self, grace: float | None = None) -> None:
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
