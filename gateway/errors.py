"""Error bodies `{code, message, details?}` in the negotiated format.

Every error is an `XscoreError` and takes its status from the one table in
`xscore.api.errors.HTTP_STATUS`, the few that only HTTP has included (no such route, wrong
method, unacceptable Accept, unsupported Content-Type); those are built here, so that each
reads the same wherever it is raised.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator, Mapping
from typing import Any

from starlette import status
from starlette.responses import Response

from xscore.api.errors import HTTP_STATUS, ErrorCode, XscoreError
from xscore.api.http import RETRY_STATUSES
from xscore.gateway.media import Negotiated
from xscore.gateway.responses import EncodedResponse



class FieldNames:
    """The scorer names the fields of its own request; a compatibility route renames them to
    the fields its caller sent (`items[2].text` -> `documents[2]`), in the message and details."""

    def __init__(self, *renames: tuple[str, str]) -> None:
        # patterns like r"items\[(\d+)\]\.text", replacements like r"documents[\1]"
        self._renames = [(re.compile(rf"(?<![\w.]){pattern}(?![\w\[])"), replacement)
                         for pattern, replacement in renames]

    def rename(self, text: str) -> str:
        for pattern, replacement in self._renames:  # the specific (indexed) names come first
            text = pattern.sub(replacement, text)
        return text

    @contextlib.contextmanager
    def apply(self) -> Iterator[None]:
        """Re-raise an XscoreError from the block with this route's field names."""
        try:
            yield
        except XscoreError as error:
            details = dict(error.details)
            if isinstance(details.get("field"), str):
                details["field"] = self.rename(details["field"])
            raise XscoreError(error.code, self.rename(error.message), details=details or None,
                              retry_after_s=error.retry_after_s) from None


def not_found_route(path: str) -> XscoreError:
    return XscoreError(ErrorCode.NOT_FOUND, f"no route {path}")


def method_not_allowed(method: str, path: str, allow: str) -> XscoreError:
    return XscoreError(ErrorCode.METHOD_NOT_ALLOWED, f"{method} is not allowed on {path}; allowed: {allow}")


def not_acceptable(accept: str) -> XscoreError:
    return XscoreError(ErrorCode.NOT_ACCEPTABLE, f"cannot answer in any type of Accept: {accept!r}; "
                       "this route answers application/msgpack or application/json")


def unsupported_media_type(content_type: str | None) -> XscoreError:
    return XscoreError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, f"Content-Type {content_type!r} is not supported; "
                       "send application/msgpack or application/json")


def error_response(error: XscoreError, negotiated: Negotiated, *, status_code: int | None = None,
                   headers: Mapping[str, str] | None = None) -> Response:
    """`status_code` overrides the table's, for a router refusal no code names; `headers` are
    the router's own (405's Allow)."""
    if status_code is None:
        status_code = HTTP_STATUS.get(error.code, status.HTTP_500_INTERNAL_SERVER_ERROR)
    body: dict[str, Any] = {"code": error.code.value, "message": error.message}
    if error.details:
        body["details"] = error.details
    response_headers = dict(headers or {})
    if status_code in RETRY_STATUSES:
        response_headers["Retry-After"] = str(max(1, math.ceil(error.retry_after_s or 1)))
    if status_code == status.HTTP_401_UNAUTHORIZED:
        response_headers["WWW-Authenticate"] = 'Bearer realm="xscore"'
    return EncodedResponse(body, negotiated, status_code, response_headers)
