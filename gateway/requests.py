"""What a handler reads from a request besides its path: the decoded body, the deadline, and
whether the caller is still there.

The body's size limit is enforced while the stream is read, so an oversized body is refused
after at most `limit` bytes, before anything is decoded; a Content-Length over the limit is
refused unread.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

from starlette.requests import Request

from xscore.api.errors import ErrorCode, XscoreError, invalid
from xscore.api.http import DEADLINE_HEADER
from xscore.gateway.codec import DecodeLimits, decode
from xscore.gateway.errors import unsupported_media_type
from xscore.gateway.media import Format, body_format

T = TypeVar("T")



async def read_payload(request: Request, limits: DecodeLimits, *, untyped: Format | None = None) -> Any:
    """The body decoded by its Content-Type (415 if unsupported). `untyped` is the format
    assumed when there is no Content-Type at all (the JSON compatibility routes allow that)."""
    content_type = request.headers.get("content-type")
    found = body_format(content_type) if content_type is not None else untyped
    if found is None:
        raise unsupported_media_type(content_type)
    return decode(await _read_body(request, limits.max_body_bytes), found, limits)


def _over(limit: int) -> XscoreError:
    return XscoreError(ErrorCode.TOO_LARGE, f"request body is over the limit of {limit} bytes",
                       details={"limit": limit})


async def _read_body(request: Request, limit: int) -> bytes:
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


def deadline_of(request: Request) -> float | None:
    """A time.monotonic() deadline from X-Timeout-Ms, or None when the header is absent."""
    value = request.headers.get(DEADLINE_HEADER)
    if value is None:
        return None
    try:
        millis = float(value)
    except ValueError:
        millis = math.nan
    if not (math.isfinite(millis) and millis >= 0):
        raise invalid(f"{DEADLINE_HEADER} must be a non-negative number of milliseconds, got {value!r}",
                      field=DEADLINE_HEADER)
    return time.monotonic() + millis / 1000


async def while_connected(request: Request, work: Awaitable[T]) -> T:
    """Await `work` (a scoring call) unless the caller disconnects first: then it is cancelled,
    so its pairs leave the queue instead of being scored for nobody. Call after the body is read:
    the next ASGI message is then the disconnect."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise XscoreError(ErrorCode.CANCELLED, "the client closed the connection before the answer")
    return task.result()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
