"""The error table shared by every transport.

One exception type carries a transport-neutral code; the gRPC server and the HTTP gateway
each map the code to their own status through the tables below. Messages say what was wrong
and where (field, index), because they reach the caller verbatim.
"""

from __future__ import annotations

import enum
from typing import Any


class ErrorCode(enum.Enum):
    INVALID_ARGUMENT = "INVALID_ARGUMENT"  # bad shape, wrong type, empty
    UNPROCESSABLE = "UNPROCESSABLE"  # semantically invalid: too long with truncate=false
    TOO_LARGE = "TOO_LARGE"  # over a size or count limit
    NOT_FOUND = "NOT_FOUND"  # unknown model
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"  # queue full
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    CANCELLED = "CANCELLED"
    UNAVAILABLE = "UNAVAILABLE"  # draining, or model not ready
    UNAUTHENTICATED = "UNAUTHENTICATED"
    MODEL_ERROR = "MODEL_ERROR"  # a model that cannot be loaded or exported
    INTERNAL = "INTERNAL"
    # HTTP only: the request line or headers, not the message, are wrong (gRPC never raises these)
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"  # a route exists, not for this method
    NOT_ACCEPTABLE = "NOT_ACCEPTABLE"  # Accept names no format the route answers in
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"  # Content-Type is neither msgpack nor JSON
    HTTP_ERROR = "HTTP_ERROR"  # any other refusal of the HTTP router


class XscoreError(Exception):
    """An error whose message is meant for the user: never wrapped in a traceback."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}
        self.retry_after_s = retry_after_s

    def __repr__(self) -> str:
        return f"XscoreError({self.code.value}, {self.message!r})"


def invalid(message: str, **details: Any) -> XscoreError:
    return XscoreError(ErrorCode.INVALID_ARGUMENT, message, details=details or None)


def model_error(message: str, **details: Any) -> XscoreError:
    return XscoreError(ErrorCode.MODEL_ERROR, message, details=details or None)


# Each transport's status for each code: the one table both transports use.
# gRPC status names are strings so this module does not import grpc.
GRPC_STATUS: dict[ErrorCode, str] = {
    ErrorCode.INVALID_ARGUMENT: "INVALID_ARGUMENT",
    ErrorCode.UNPROCESSABLE: "INVALID_ARGUMENT",
    ErrorCode.TOO_LARGE: "INVALID_ARGUMENT",
    ErrorCode.NOT_FOUND: "NOT_FOUND",
    ErrorCode.RESOURCE_EXHAUSTED: "RESOURCE_EXHAUSTED",
    ErrorCode.DEADLINE_EXCEEDED: "DEADLINE_EXCEEDED",
    ErrorCode.CANCELLED: "CANCELLED",
    ErrorCode.UNAVAILABLE: "UNAVAILABLE",
    ErrorCode.UNAUTHENTICATED: "UNAUTHENTICATED",
    ErrorCode.MODEL_ERROR: "FAILED_PRECONDITION",
    ErrorCode.INTERNAL: "INTERNAL",
    # Listed last and only with statuses above, so reading a status back still finds its plain code.
    ErrorCode.METHOD_NOT_ALLOWED: "INVALID_ARGUMENT",
    ErrorCode.NOT_ACCEPTABLE: "INVALID_ARGUMENT",
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: "INVALID_ARGUMENT",
    ErrorCode.HTTP_ERROR: "INTERNAL",
}

HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_ARGUMENT: 400,
    ErrorCode.UNPROCESSABLE: 422,
    ErrorCode.TOO_LARGE: 413,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.RESOURCE_EXHAUSTED: 429,
    ErrorCode.DEADLINE_EXCEEDED: 504,
    ErrorCode.CANCELLED: 499,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.MODEL_ERROR: 503,
    ErrorCode.INTERNAL: 500,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.NOT_ACCEPTABLE: 406,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.HTTP_ERROR: 500,  # the gateway answers with the router's own status
}

# gRPC trailing metadata that carries what a status code alone loses (413 vs 422 both travel
# as INVALID_ARGUMENT): the precise code, the details, and when to retry.
ERROR_CODE_METADATA = "xscore-error-code"  # an ErrorCode value
ERROR_DETAILS_METADATA = "xscore-error-details"  # the error's details as a JSON object
RETRY_AFTER_METADATA = "retry-after"  # seconds (fractions allowed), as HTTP's Retry-After
REQUEST_ID_METADATA = "x-request-id"
