"""`RemoteScorer`: the scorer interface over gRPC, for a gateway in front of a remote service.

It offers the same async methods as `Scorer` (`score`, `score_pairs`, and `list_models` /
`get_model` as coroutines) on top of `AsyncScorerClient`, so a gateway gets what every client
gets: retries of a full queue or a draining server with backoff and the server's retry-after,
never past the request's deadline, and the same message-size limits as the server. Messages
and errors are converted by `xscore.api.wire`, the module the servicer uses; gRPC errors come
back as the `XscoreError`s the servicer raised (precise code, details, retry-after).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from xscore.api import wire
from xscore.api.errors import ERROR_CODE_METADATA, ErrorCode, XscoreError
from xscore.api.schema import (
    ModelInfo,
    PairsRequest,
    PairsResult,
    ScoreRequest,
    ScoreResult,
    check_lengths,
    check_top_k,
)
from xscore.api.tls import TlsFiles
from xscore.client.grpc_client import AsyncScorerClient
from xscore.client.retry import RetryPolicy

T = TypeVar("T")


def error_from_rpc(error: grpc.RpcError, target: str) -> XscoreError:
    """The servicer's error; a transport failure (no xscore trailer) says which upstream failed."""
    trailers = wire.text_metadata(error.trailing_metadata())
    converted = wire.decode_error(error.code(), error.details(), trailers.items())
    if error.code() is grpc.StatusCode.UNAVAILABLE and ERROR_CODE_METADATA not in trailers:
        return XscoreError(converted.code, f"upstream {target} unavailable: {converted.message}",
                           details=converted.details or None, retry_after_s=converted.retry_after_s or 1.0)
    return converted


def _timeout(deadline: float | None) -> float | None:
    """Seconds left before `deadline` (a time.monotonic() value), as the call's timeout."""
    if deadline is None:
        return None
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise XscoreError(ErrorCode.DEADLINE_EXCEEDED, "the deadline passed before scoring started")
    return remaining


class RemoteScorer:
    def __init__(self, target: str, *, channel: grpc.aio.Channel | None = None,
                 retry: RetryPolicy | None = None, token: str | None = None, tls: TlsFiles | None = None) -> None:
        """`target` is "host:port", several comma-separated, or a `dns:///` name. The client (and
        its channel) is made on first use, because grpc.aio binds a channel to the running loop,
        which the constructor may not run on."""
        self.target = target
        self._channel = channel
        self._retry = retry
        self._token = token
        self._tls = tls
        self._client: AsyncScorerClient | None = None
        self.draining = False  # /readyz answers 503 while it is set (gateway.backend.is_ready)
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def begin_drain(self) -> None:
        """Stop admitting, as a Scorer does: readiness goes false, new calls get UNAVAILABLE, and
        the calls already sent upstream run to the end."""
        self.draining = True

    async def wait_idle(self, timeout: float | None) -> bool:
        """True once no call is in flight, False if `timeout` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def _scorer(self) -> AsyncScorerClient:
        if self._client is None:
            # no timeout of its own: a request's deadline is the only bound, as in-process
            self._client = AsyncScorerClient(self.target, timeout=None, retry=self._retry, channel=self._channel,
                                             token=self._token, tls=self._tls)
        return self._client

    async def _call(self, call: Callable[[AsyncScorerClient], Awaitable[T]]) -> T:
        if self.draining:
            raise XscoreError(ErrorCode.UNAVAILABLE, "the gateway is draining; retry on another replica",
                              retry_after_s=1.0)
        self._in_flight += 1
        self._idle.clear()
        try:
            return await call(self._scorer())
        except grpc.RpcError as error:
            raise error_from_rpc(error, self.target) from None
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    async def score(self, request: ScoreRequest) -> ScoreResult:
        check_top_k(request.top_k)  # a uint32 on the wire cannot carry a negative top_k to be refused there
        check_lengths(request.lengths)
        timeout = _timeout(request.deadline)
        reply = await self._call(lambda client: client.score(
            request.query, request.items, model=request.model, top_k=request.top_k or 0,
            raw_scores=request.raw_scores, truncate=request.truncate, return_text=request.return_text,
            instruction=request.instruction, lengths=request.lengths, timeout=timeout))
        return wire.decode_score_result(reply)

    async def score_pairs(self, request: PairsRequest) -> PairsResult:
        check_lengths(request.lengths)
        timeout = _timeout(request.deadline)
        reply = await self._call(lambda client: client.score_pairs(
            request.queries, request.documents, model=request.model, raw_scores=request.raw_scores,
            truncate=request.truncate, instruction=request.instruction, lengths=request.lengths, timeout=timeout))
        return wire.decode_pairs_result(reply)

    async def list_models(self) -> list[ModelInfo]:
        return [wire.decode_model_info(info) for info in await self._call(lambda client: client.list_models())]

    async def get_model(self, name: str) -> ModelInfo:
        return wire.decode_model_info(await self._call(lambda client: client.get_model(name)))

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
        elif self._channel is not None:
            await self._channel.close()
        self._client = self._channel = None


__all__ = ["RemoteScorer", "error_from_rpc"]
