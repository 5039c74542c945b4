"""Python clients for `xscore.v1.Scorer`, sync and async, over the generated stubs.

Both retry RESOURCE_EXHAUSTED (queue full) and UNAVAILABLE (draining, not ready) with
exponential backoff, waiting at least the server's `retry-after` hint, and never past the
call's deadline: a retry that could not finish in time is not started.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from xscore.api.errors import RETRY_AFTER_METADATA
from xscore.v1 import score_pb2, score_pb2_grpc

RETRYABLE = frozenset({grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE})

ItemLike = str | tuple[str, str] | score_pb2.Item  # text, (id, text), or the message
_Response = TypeVar("_Response")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 4  # calls in all, the first included
    initial_backoff_s: float = 0.05
    max_backoff_s: float = 2.0
    multiplier: float = 2.0

    def delay(self, error: grpc.RpcError, retry: int) -> float:
        """Seconds before retry number `retry` (0-based): jittered backoff, at least retry-after."""
        backoff = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** retry)
        backoff *= random.uniform(0.5, 1.0)  # de-synchronise clients refused together
        hint = retry_after(error)
        return max(backoff, hint) if hint is not None else backoff


def retry_after(error: grpc.RpcError) -> float | None:
    """The server's retry-after hint in seconds, if the error carries one."""
    trailing = getattr(error, "trailing_metadata", None)
    for key, value in (trailing() if callable(trailing) else None) or ():
        if key == RETRY_AFTER_METADATA:
            try:
                return max(0.0, float(value))
            except ValueError:
                return None
    return None


def _retryable(error: grpc.RpcError, retry: int, policy: RetryPolicy, deadline: float | None) -> float | None:
    """The delay before retrying `error`, or None when it must be raised."""
    code = error.code() if callable(getattr(error, "code", None)) else None
    if code not in RETRYABLE or retry + 1 >= policy.attempts:
        return None
    delay = policy.delay(error, retry)
    if deadline is not None and time.monotonic() + delay >= deadline:
        return None
    return delay


def score_request(query: str, items: Sequence[ItemLike], *, model: str = "default", top_k: int = 0,
                  raw_scores: bool = False, truncate: bool | None = None,
                  return_text: bool = False) -> score_pb2.ScoreRequest:
    request = score_pb2.ScoreRequest(model=model, query=query, items=[_item(item) for item in items], top_k=top_k,
                                     raw_scores=raw_scores, return_text=return_text)
    if truncate is not None:
        request.truncate = truncate
    return request


def pairs_request(queries: Sequence[str], documents: Sequence[str], *, model: str = "default",
                  raw_scores: bool = False, truncate: bool | None = None) -> score_pb2.ScorePairsRequest:
    request = score_pb2.ScorePairsRequest(model=model, queries=queries, documents=documents, raw_scores=raw_scores)
    if truncate is not None:
        request.truncate = truncate
    return request


def _item(item: ItemLike) -> score_pb2.Item:
    if isinstance(item, score_pb2.Item):
        return item
    if isinstance(item, str):
        return score_pb2.Item(text=item)
    item_id, text = item
    return score_pb2.Item(id=item_id, text=text)


class ScorerClient:
    """Blocking client. `timeout` (seconds) bounds each call including its retries."""

    def __init__(self, target: str, *, timeout: float | None = 30.0, retry: RetryPolicy | None = None,
                 metadata: Sequence[tuple[str, str]] = (), channel: grpc.Channel | None = None) -> None:
        self._channel = channel or grpc.insecure_channel(target)
        self._stub = score_pb2_grpc.ScorerStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.metadata = tuple(metadata)

    def score(self, query: str, items: Sequence[ItemLike], *, timeout: float | None = None,
              **options) -> score_pb2.ScoreResponse:
        return self._call(self._stub.Score, score_request(query, items, **options), timeout)

    def score_pairs(self, queries: Sequence[str], documents: Sequence[str], *, timeout: float | None = None,
                    **options) -> score_pb2.ScorePairsResponse:
        return self._call(self._stub.ScorePairs, pairs_request(queries, documents, **options), timeout)

    def list_models(self, *, timeout: float | None = None) -> list[score_pb2.ModelInfo]:
        return list(self._call(self._stub.ListModels, score_pb2.ListModelsRequest(), timeout).models)

    def get_model(self, name: str, *, timeout: float | None = None) -> score_pb2.ModelInfo:
        return self._call(self._stub.GetModel, score_pb2.GetModelRequest(name=name), timeout)

    def health(self, service: str = "", *, timeout: float | None = 5.0) -> int:
        """grpc.health.v1 status of `service` ("" = the whole server, or a model name)."""
        return self._health.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout).status

    def _call(self, method: Callable[..., _Response], request, timeout: float | None) -> _Response:
        timeout = self.timeout if timeout is None else timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        retry = 0
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return method(request, timeout=remaining, metadata=self.metadata)
            except grpc.RpcError as error:
                delay = _retryable(error, retry, self.retry, deadline)
                if delay is None:
                    raise
            time.sleep(delay)
            retry += 1

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> ScorerClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncScorerClient:
    """asyncio client over grpc.aio; the same calls, awaited, plus the bidirectional stream."""

    def __init__(self, target: str, *, timeout: float | None = 30.0, retry: RetryPolicy | None = None,
                 metadata: Sequence[tuple[str, str]] = (), channel: grpc.aio.Channel | None = None) -> None:
        self._channel = channel or grpc.aio.insecure_channel(target)
        self._stub = score_pb2_grpc.ScorerStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.metadata = tuple(metadata)

    async def score(self, query: str, items: Sequence[ItemLike], *, timeout: float | None = None,
                    **options) -> score_pb2.ScoreResponse:
        return await self._call(self._stub.Score, score_request(query, items, **options), timeout)

    async def score_pairs(self, queries: Sequence[str], documents: Sequence[str], *, timeout: float | None = None,
                          **options) -> score_pb2.ScorePairsResponse:
        return await self._call(self._stub.ScorePairs, pairs_request(queries, documents, **options), timeout)

    async def list_models(self, *, timeout: float | None = None) -> list[score_pb2.ModelInfo]:
        return list((await self._call(self._stub.ListModels, score_pb2.ListModelsRequest(), timeout)).models)

    async def get_model(self, name: str, *, timeout: float | None = None) -> score_pb2.ModelInfo:
        return await self._call(self._stub.GetModel, score_pb2.GetModelRequest(name=name), timeout)

    async def health(self, service: str = "", *, timeout: float | None = 5.0) -> int:
        return (await self._health.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)).status

    async def stream(self, requests: AsyncIterable[score_pb2.ScoreStreamRequest], *,
                     timeout: float | None = None) -> AsyncIterator[score_pb2.ScoreStreamResponse]:
        """ScoreStream: answers carry their request_id and may come out of order. Not retried."""
        call = self._stub.ScoreStream(requests, timeout=timeout, metadata=self.metadata)
        async for response in call:
            yield response

    async def _call(self, method, request, timeout: float | None):
        timeout = self.timeout if timeout is None else timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        retry = 0
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return await method(request, timeout=remaining, metadata=self.metadata)
            except grpc.RpcError as error:
                delay = _retryable(error, retry, self.retry, deadline)
                if delay is None:
                    raise
            await asyncio.sleep(delay)
            retry += 1

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncScorerClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
