"""What every route shares: response negotiation, the bearer token, and error bodies.

An `Endpoint` wraps a handler `(request, negotiated, state) -> Response`. Errors raised by the
handler become `{code, message, details?}` in the negotiated format; an unexpected exception is
logged with the request id and answered 500, never leaked as a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from starlette.requests import Request
from starlette.responses import Response

from xscore.api.auth import token_matches
from xscore.api.errors import ErrorCode, XscoreError
from xscore.gateway.backend import ScoringBackend
from xscore.gateway.codec import DecodeLimits
from xscore.gateway.errors import error_response, not_acceptable
from xscore.gateway.media import Format, Negotiated, default_for, response_format

logger = logging.getLogger("xscore.gateway")


@dataclass(frozen=True, slots=True)
class GatewayState:
    backend: ScoringBackend
    limits: DecodeLimits
    registry: CollectorRegistry
    auth_token: str | None = None


Handler = Callable[[Request, Negotiated, GatewayState], Awaitable[Response]]


def request_id(request: Request) -> str:
    return request.scope.get("state", {}).get("request_id", "-")


def check_token(request: Request, token: str | None) -> None:
    if token is None:
        return
    if not token_matches(request.headers.get("authorization", ""), token):
        raise XscoreError(ErrorCode.UNAUTHENTICATED, "missing or wrong bearer token in Authorization")


class Endpoint:
    def __init__(self, handler: Handler, state: GatewayState, *, prefer: Format = Format.JSON,
                 strict_accept: bool = True, public: bool = False) -> None:
        """`prefer`: the format for a missing Accept or `*/*`; `strict_accept`: 406 when Accept
        names nothing we speak (else answer `prefer` anyway, as the JSON-only servers the
        compatibility routes imitate do); `public`: no bearer token needed (probes, docs)."""
        self.handler = handler
        self.state = state
        self.prefer = prefer
        self.strict_accept = strict_accept
        self.public = public

    async def respond(self, request: Request) -> Response:
        """The request-response function a Starlette `Route` calls."""
        accept = request.headers.get("accept")
        negotiated = response_format(accept, self.prefer)
        try:
            if not self.public:
                check_token(request, self.state.auth_token)
            if negotiated is None:
                if self.strict_accept:
                    raise not_acceptable(accept or "")
                negotiated = default_for(self.prefer)
            return await self.handler(request, negotiated, self.state)
        except XscoreError as error:
            return error_response(error, negotiated or default_for(Format.JSON))
        except Exception:
            logger.exception("internal error request_id=%s %s %s", request_id(request), request.method,
                             request.url.path)
            internal = XscoreError(ErrorCode.INTERNAL, f"internal error (request id {request_id(request)})")
            return error_response(internal, negotiated or default_for(Format.JSON))
