"""`create_app`: the gateway's route table, middleware and error handling in one place."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from prometheus_client import REGISTRY, CollectorRegistry
from starlette import status
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from xscore.api.errors import ErrorCode, XscoreError
from xscore.api.http import DEADLINE_HEADER, TIMING_HEADERS
from xscore.gateway import docs, ops, rerank, sie, vllm
from xscore.gateway.backend import ScoringBackend
from xscore.gateway.codec import DecodeLimits
from xscore.gateway.context import RequestContextMiddleware
from xscore.gateway.endpoint import Endpoint, GatewayState, Handler
from xscore.gateway.errors import error_response, method_not_allowed, not_found_route
from xscore.gateway.media import Format, default_for, response_format
from xscore.gateway.metrics import gateway_metrics

# Headers a browser page may send and read when CORS is on.
_CORS_REQUEST_HEADERS = ("Accept", "Authorization", "Content-Type", "X-Request-ID", DEADLINE_HEADER)
_CORS_EXPOSED_HEADERS = ("X-Request-ID", *TIMING_HEADERS.values(), "Retry-After")

Respond = Callable[[Request], Awaitable[Response]]


def routes(state: GatewayState) -> list[Route]:
    """Every endpoint, in one table."""

    def native(handler: Handler) -> Respond:  # msgpack unless asked for JSON; 406 otherwise
        return Endpoint(handler, state, prefer=Format.MSGPACK).respond

    def compat(handler: Handler) -> Respond:  # JSON, as the servers they imitate answer
        return Endpoint(handler, state, prefer=Format.JSON, strict_accept=False).respond

    def guarded(handler: Handler) -> Respond:  # JSON unless asked for msgpack; token when auth is on
        return Endpoint(handler, state).respond

    def public(handler: Handler) -> Respond:  # probes and docs: no token
        return Endpoint(handler, state, public=True, strict_accept=False).respond

    return [
        Route("/v1/score/{model:path}", native(sie.score), methods=["POST"], name="score"),
        Route("/score", compat(vllm.score), methods=["POST"], name="vllm_score"),
        Route("/v1/score", compat(vllm.score), methods=["POST"], name="vllm_score_v1"),
        Route("/rerank", compat(rerank.rerank), methods=["POST"], name="rerank"),
        Route("/v1/rerank", compat(rerank.rerank), methods=["POST"], name="rerank_v1"),
        Route("/v1/models", guarded(ops.models), methods=["GET"], name="models"),
        Route("/v1/models/{model:path}", guarded(ops.model), methods=["GET"], name="model"),
        Route("/healthz", public(ops.healthz), methods=["GET"], name="healthz"),
        Route("/readyz", public(ops.readyz), methods=["GET"], name="readyz"),
        Route("/metrics", public(ops.metrics), methods=["GET"], name="metrics"),
        Route("/openapi.json", public(docs.openapi), methods=["GET"], name="openapi"),
        Route("/docs", public(docs.page), methods=["GET"], name="docs"),
        Route("/docs/assets/{name}", public(docs.asset), methods=["GET"], name="docs_asset"),
    ]


async def _routing_error(request: Request, exc: Exception) -> Response:
    """404 (no route) and 405 (wrong method) from the router, in the same error body format."""
    assert isinstance(exc, HTTPException)
    negotiated = response_format(request.headers.get("accept"), Format.JSON) or default_for(Format.JSON)
    if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
        allow = (exc.headers or {}).get("Allow", "")
        error = method_not_allowed(request.method, request.url.path, allow)
        return error_response(error, negotiated, headers={"Allow": allow} if allow else None)
    if exc.status_code == status.HTTP_404_NOT_FOUND:
        return error_response(not_found_route(request.url.path), negotiated)
    # The router raises nothing else today; should it, its status stands.
    error = XscoreError(ErrorCode.HTTP_ERROR, str(exc.detail))
    return error_response(error, negotiated, status_code=exc.status_code)


def create_app(
    scorer: ScoringBackend,
    *,
    cors_origins: Sequence[str] = (),
    limits: DecodeLimits = DecodeLimits(),
    auth_token: str | None = None,
    metrics_registry: CollectorRegistry | None = None,
) -> Starlette:
    """The HTTP gateway over `scorer` (an in-process `Scorer` or a `RemoteScorer`).

    `cors_origins`: origins allowed to call from a browser (empty: CORS off; "*" for any).
    `limits`: body size and decoding limits (item counts and text sizes are the scorer's).
    `auth_token`: when set, every route but the probes, metrics and docs needs
    `Authorization: Bearer <token>`. `metrics_registry`: where the gateway's metrics go and what
    /metrics exposes (default: prometheus_client's global registry)."""
    registry = metrics_registry if metrics_registry is not None else REGISTRY
    state = GatewayState(scorer, limits, registry, auth_token)
    middleware = [Middleware(RequestContextMiddleware, metrics=gateway_metrics(registry))]
    if cors_origins:
        middleware.append(Middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
                                     allow_headers=list(_CORS_REQUEST_HEADERS),
                                     expose_headers=list(_CORS_EXPOSED_HEADERS)))
    return Starlette(routes=routes(state), middleware=middleware,
                     exception_handlers={HTTPException: _routing_error})
