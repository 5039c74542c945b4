"""Reading a request body under a size limit.

The limit is enforced while the stream is read, so an oversized body is refused after at most
`limit` bytes, before anything is decoded; a Content-Length over the limit is refused unread.
"""

from __future__ import annotations

from starlette.requests import Request

from xscore.api.errors import ErrorCode, XscoreError


def _over(limit: int) -> XscoreError:
    return XscoreError(ErrorCode.TOO_LARGE, f"request body is over the limit of {limit} bytes",
                       details={"limit": limit})


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _over(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _over(limit)
        chunks.append(chunk)
    return b"".join(chunks)
