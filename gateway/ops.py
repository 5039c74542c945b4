"""Operations routes: the model list, liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import dataclasses
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from xscore.api.errors import ErrorCode, XscoreError
from xscore.api.schema import ModelInfo
from xscore.gateway.backend import get_model, is_ready, list_models
from xscore.gateway.endpoint import GatewayState
from xscore.gateway.media import Negotiated
from xscore.gateway.responses import EncodedResponse


def _model(info: ModelInfo) -> dict[str, Any]:
    # `id`/`object`/`owned_by` make the list readable by OpenAI-style clients too
    return {"id": info.name, "object": "model", "owned_by": "xscore", **dataclasses.asdict(info)}


async def models(request: Request, negotiated: Negotiated, state: GatewayState) -> Response:
    return EncodedResponse({"object": "list", "data": [_model(info) for info in await list_models(state.backend)]},
                           negotiated)


async def model(request: Request, negotiated: Negotiated, state: GatewayState) -> Response:
    return EncodedResponse(_model(await get_model(state.backend, request.path_params["model"])), negotiated)


async def healthz(request: Request, negotiated: Negotiated, state: GatewayState) -> Response:
    """Live: the process answers. Says nothing about models (that is /readyz)."""
    return EncodedResponse({"status": "ok"}, negotiated)


async def readyz(request: Request, negotiated: Negotiated, state: GatewayState) -> Response:
    try:
        ready = await is_ready(state.backend)
    except XscoreError as error:  # an upstream that cannot be reached is not ready
        raise XscoreError(ErrorCode.UNAVAILABLE, f"not ready: {error.message}", retry_after_s=1) from None
    if not ready:
        raise XscoreError(ErrorCode.UNAVAILABLE, "not ready: models loading or draining", retry_after_s=1)
    return EncodedResponse({"status": "ready"}, negotiated)


async def metrics(request: Request, negotiated: Negotiated, state: GatewayState) -> Response:
    return Response(generate_latest(state.registry), media_type=CONTENT_TYPE_LATEST)
