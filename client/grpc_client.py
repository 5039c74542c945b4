"""Python clients for `xscore.v1.Scorer`, sync and async, over the generated stubs.

Both retry RESOURCE_EXHAUSTED (queue full) and UNAVAILABLE (draining, not ready) by the shared
`RetryPolicy`, and balance round-robin over one or several servers (`client/targets.py`). Requests are built and
channels sized through `xscore.api.wire`, the module the server uses too; nothing here depends on
the service itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from typing import TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from xscore.api import wire
from xscore.api.errors import ERROR_CODE_METADATA
from xscore.api.schema import Item, LengthPolicy, PairsRequest, ScoreRequest, check_lengths
from xscore.api.tls import TlsFiles
from xscore.client.retry import RetryPolicy
from xscore.client.targets import channel_target
from xscore.v1 import score_pb2, score_pb2_grpc

RETRYABLE = frozenset({grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE})

ItemLike = str | tuple[str, str] | Item | score_pb2.Item  # text, (id, text), or either item type
_Response = TypeVar("_Response")


def retry_after(error: grpc.RpcError) -> float | None:
    """The server's retry-after hint in seconds, if the error carries one."""
    trailing = getattr(error, "trailing_metadata", None)
    hint = wire.retry_after(trailing() if callable(trailing) else None)
    return None if hint is None else max(0.0, hint)


def _from_the_scorer(error: grpc.RpcError) -> bool:
    """The servicer marks its errors with the precise code; gRPC's own errors carry none."""
    trailing = getattr(error, "trailing_metadata", None)
    return ERROR_CODE_METADATA in wire.text_metadata(trailing() if callable(trailing) else None)


def _bearer(token: str) -> tuple[tuple[str, str]]:
    """The server's `--auth-token`, as gRPC metadata."""
    return (("authorization", f"Bearer {token}"),)


def _retryable(error: grpc.RpcError, retry: int, policy: RetryPolicy, deadline: float | None) -> float | None:
    """The delay before retrying `error`, or None when it must be raised."""
    code = error.code() if callable(getattr(error, "code", None)) else None
    if code not in RETRYABLE:
        return None
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED and not _from_the_scorer(error):
        return None  # gRPC's own: a message over the size limit, which a retry cannot make smaller
    return policy.next_delay(retry, retry_after(error), deadline)


def score_request(query: str, items: Sequence[ItemLike], *, model: str = "default", top_k: int = 0,
                  raw_scores: bool = False, truncate: bool | None = None,
                  return_text: bool = False, instruction: str | None = None,
                  lengths: LengthPolicy = LengthPolicy()) -> score_pb2.ScoreRequest:
    """A Score message; `truncate=None` leaves the field unset so that the server's default applies,
    as do the unset fields of `lengths` (token caps, long-document mode)."""
    request = wire.encode_score_request(ScoreRequest(
        model=model, query=query, items=[_item(item) for item in items], top_k=top_k or None,
        raw_scores=raw_scores, truncate=True if truncate is None else truncate, return_text=return_text,
        instruction=instruction, lengths=check_lengths(lengths)))
    if truncate is None:
        request.ClearField("truncate")
    return request


def pairs_request(queries: Sequence[str], documents: Sequence[str], *, model: str = "default",
                  raw_scores: bool = False, truncate: bool | None = None,
                  instruction: str | None = None, lengths: LengthPolicy = LengthPolicy()) -> score_pb2.ScorePairsRequest:
    """A ScorePairs message; `truncate=None` and unset `lengths` fields as in `score_request`."""
    request = wire.encode_pairs_request(PairsRequest(
        model=model, queries=queries, documents=documents, raw_scores=raw_scores,
        truncate=True if truncate is None else truncate, instruction=instruction, lengths=check_lengths(lengths)))
    if truncate is None:
        request.ClearField("truncate")
    return request


def _item(item: ItemLike) -> Item:
    if isinstance(item, Item):
        return item
    if isinstance(item, score_pb2.Item):
        return Item(item.text, item.id or None)
    if isinstance(item, str):
        return Item(item)
    item_id, text = item
    return Item(text, item_id or None)


class ScorerClient:
    """Blocking client. `timeout` (seconds) bounds each call including its retries."""

    def __init__(self, target: str | Sequence[str], *, timeout: float | None = 30.0,
                 retry: RetryPolicy | None = None, metadata: Sequence[tuple[str, str]] = (),
                 channel: grpc.Channel | None = None, token: str | None = None,
                 tls: TlsFiles | None = None) -> None:
        """`target`: `host:port`, a `dns:///` name, or several `host:port`s (a sequence or a
        comma-separated string); calls go round-robin over every address."""
        if channel is None:
            uri, options = channel_target(target)
            channel = grpc.secure_channel(uri, tls.channel_credentials(), options=options) if tls \
                else grpc.insecure_channel(uri, options=options)
        self._channel = channel
        self._stub = score_pb2_grpc.ScorerStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.metadata = (*metadata, *(_bearer(token) if token else ()))

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

    def __init__(self, target: str | Sequence[str], *, timeout: float | None = 30.0,
                 retry: RetryPolicy | None = None, metadata: Sequence[tuple[str, str]] = (),
                 channel: grpc.aio.Channel | None = None, token: str | None = None,
                 tls: TlsFiles | None = None) -> None:
        if channel is None:
            uri, options = channel_target(target)
            channel = grpc.aio.secure_channel(uri, tls.channel_credentials(), options=options) if tls \
                else grpc.aio.insecure_channel(uri, options=options)
        self._channel = channel
        self._stub = score_pb2_grpc.ScorerStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.metadata = (*metadata, *(_bearer(token) if token else ()))

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
