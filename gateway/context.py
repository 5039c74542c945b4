"""The outermost middleware: request ids, `Vary: Accept`, metrics, and the last-resort 500.

`X-Request-ID` is echoed when the client sent a sane one (else generated) and goes on every
response, errors included, so a client report can be matched to the server log.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette import status
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from xscore.api.errors import ErrorCode, XscoreError
from xscore.gateway.errors import error_response
from xscore.gateway.media import Format, default_for
from xscore.gateway.metrics import GatewayMetrics

logger = logging.getLogger("xscore.gateway")

# Echo only ids that cannot forge log lines or headers.
_SANE_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get("x-request-id", "")
        request_id = given if _SANE_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status_code = status.HTTP_500_INTERNAL_SERVER_ERROR
        response_started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status_code, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status_code = message["status"]
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = request_id
                headers.add_vary_header("Accept")
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            # Endpoints answer their own errors; this is a bug outside them (middleware, routing).
            logger.exception("internal error request_id=%s %s %s", request_id, scope.get("method"),
                             scope.get("path"))
            if not response_started:
                internal = XscoreError(ErrorCode.INTERNAL, f"internal error (request id {request_id})")
                await error_response(internal, default_for(Format.JSON))(scope, receive, send_with_headers)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(template, scope.get("method", ""), status_code, time.perf_counter() - started)
