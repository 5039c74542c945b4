"""Error bodies `{code, message, details?}` in the negotiated format.

Transport-neutral errors (`XscoreError`) get their status from the one table in
`xscore.api.errors.HTTP_STATUS`. The few errors only HTTP has (no such route, wrong method,
unacceptable Accept, unsupported Content-Type) are `ProtocolError`s with their own status.
"""

from __future__ import annotations

import math
from typing import Any

from starlette.responses import Response

from xscore.api.errors import HTTP_STATUS, XscoreError
from xscore.gateway.media import Negotiated
from xscore.gateway.responses import EncodedResponse

# Statuses at which a client should come back later; they always carry Retry-After.
RETRY_STATUSES = frozenset({429, 503})


class ProtocolError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def not_found_route(path: str) -> ProtocolError:
    return ProtocolError(404, "NOT_FOUND", f"no route {path}")


def method_not_allowed(method: str, path: str, allow: str) -> ProtocolError:
    return ProtocolError(405, "METHOD_NOT_ALLOWED", f"{method} is not allowed on {path}; allowed: {allow}",
                         {"Allow": allow} if allow else None)


def not_acceptable(accept: str) -> ProtocolError:
    return ProtocolError(406, "NOT_ACCEPTABLE", f"cannot answer in any type of Accept: {accept!r}; "
                         "this route answers application/msgpack or application/json")


def unsupported_media_type(content_type: str | None) -> ProtocolError:
    return ProtocolError(415, "UNSUPPORTED_MEDIA_TYPE", f"Content-Type {content_type!r} is not supported; "
                         "send application/msgpack or application/json")


def error_response(error: XscoreError | ProtocolError, negotiated: Negotiated) -> Response:
    if isinstance(error, ProtocolError):
        status, code, details, headers = error.status, error.code, None, dict(error.headers)
    else:
        status, code, details, headers = HTTP_STATUS.get(error.code, 500), error.code.value, error.details, {}
    body: dict[str, Any] = {"code": code, "message": error.message}
    if details:
        body["details"] = details
    if status in RETRY_STATUSES:
        retry_after = getattr(error, "retry_after_s", None)
        headers["Retry-After"] = str(max(1, math.ceil(retry_after or 1)))
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="xscore"'
    return EncodedResponse(body, negotiated, status, headers)
