"""The scorer: the one façade both transports call (TEI's `Infer`).

It validates a request, turns it into pairs, has them scored and assembles the response
(ranks, ids, top_k, usage, timing). The gRPC servicer and the HTTP gateway know nothing else
about models; they only map their wire formats and error codes onto these types.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from xscore.api.errors import ErrorCode, XscoreError, invalid
from xscore.service.models.model import ScoringModel
from xscore.service.serving.batcher import Batcher
from xscore.service.serving.metrics import Metrics
from xscore.service.serving.ranking import rank_order

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Limits:
    max_items_per_request: int = 1000
    max_text_chars: int = 100_000  # per query or document


@dataclass(frozen=True, slots=True)
class Item:
    text: str
    id: str | None = None


@dataclass(frozen=True, slots=True)
class ScoreRequest:
    model: str
    query: str
    items: Sequence[Item]
    top_k: int | None = None
    raw_scores: bool = False
    truncate: bool = True
    return_text: bool = False
    deadline: float | None = None  # time.monotonic() after which the caller no longer waits


@dataclass(frozen=True, slots=True)
class PairsRequest:
    model: str
    queries: Sequence[str]
    documents: Sequence[str]
    raw_scores: bool = False
    truncate: bool = True
    deadline: float | None = None


@dataclass(frozen=True, slots=True)
class ScoredItem:
    item_id: str
    index: int
    score: float
    rank: int
    text: str | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    pairs: int
    tokens: int
    truncated: list[int] = field(default_factory=list)  # pair indices that were truncated


@dataclass(frozen=True, slots=True)
class Timing:
    queue_ms: float = 0.0
    tokenize_ms: float = 0.0
    inference_ms: float = 0.0
    total_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class ScoreResult:
    model: str
    scores: list[ScoredItem]  # best first
    usage: Usage
    timing: Timing


@dataclass(frozen=True, slots=True)
class PairsResult:
    model: str
    scores: list[float]  # input order
    usage: Usage
    timing: Timing


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str
    source: str
    variant: str
    engine: str
    device: str
    max_length: int
    max_items_per_request: int
    max_batch_tokens: int
    ready: bool


@dataclass(frozen=True, slots=True)
class _Scored:
    scores: np.ndarray
    usage: Usage
    timing: Timing


class Scorer:
    """Validates, scores and assembles. Model work runs off the event loop.

    With `batchers` (one per model, as `xscore serve` builds them) pairs from concurrent
    requests share engine batches; without, each request is scored on its own in a thread.
    The scorer also owns the service's lifecycle facts every transport needs: `ready`,
    `draining`, `begin_drain()` and `wait_idle()`.
    """

    def __init__(self, models: Mapping[str, ScoringModel], limits: Limits | None = None, *,
                 batchers: Mapping[str, Batcher] | None = None, metrics: Metrics | None = None) -> None:
        self._models = dict(models)
        self.limits = limits or Limits()
        self._batchers = dict(batchers or {})
        first = next(iter(self._batchers.values()), None)
        self.metrics = metrics or (first.metrics if first is not None else Metrics())
        self._draining = False
        self._drain_listeners: list[Callable[[], Awaitable[None] | None]] = []
        self._drain_notices: list[Awaitable[None]] = []
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def draining(self) -> bool:
        return self._draining

    @property
    def ready(self) -> bool:
        """Every model can take requests (readiness probes: gRPC health, /readyz)."""
        return not self._draining and all(self.model_ready(name) for name in self._models)

    def model_ready(self, name: str) -> bool:
        batcher = self._batchers.get(name)
        return not self._draining and name in self._models and (batcher is None or batcher.running)

    @property
    def in_flight(self) -> int:
        """Scoring calls admitted and not yet answered."""
        return self._in_flight

    def on_drain(self, listener: Callable[[], Awaitable[None] | None]) -> None:
        """Call `listener` once when draining begins (transports flip their health to NOT_SERVING).

        A listener may be a coroutine function; `drain()` awaits what it returns.
        """
        self._drain_listeners.append(listener)

    def begin_drain(self) -> None:
        """Stop admitting: new calls get UNAVAILABLE; calls already admitted run to the end."""
        if self._draining:
            return
        self._draining = True
        for listener in self._drain_listeners:
            notice = listener()
            if notice is not None:
                self._drain_notices.append(asyncio.ensure_future(notice))

    async def drain(self, timeout: float | None = None) -> bool:
        """begin_drain(), let the listeners finish, then wait_idle(timeout): False if calls remain."""
        self.begin_drain()
        await asyncio.gather(*self._drain_notices)
        return await self.wait_idle(timeout)

    async def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no call is in flight; False if `timeout` seconds passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def _admitted(self, model: str, call: Awaitable[_T]) -> _T:
        """Run one scoring call under the drain gate, counting it in flight and in the metrics."""
        label = model if model in self._models else "unknown"
        if self._draining:
            call.close()  # type: ignore[attr-defined]  # a coroutine that will never run
            self.metrics.requests.labels(model=label, status=ErrorCode.UNAVAILABLE.value).inc()
            raise XscoreError(ErrorCode.UNAVAILABLE, "the server is draining; retry on another replica",
                              retry_after_s=1.0)
        self._in_flight += 1
        self._idle.clear()
        status = "ok"
        try:
            return await call
        except XscoreError as exc:
            status = exc.code.value
            raise
        except asyncio.CancelledError:
            status = ErrorCode.CANCELLED.value
            raise
        except Exception:
            status = ErrorCode.INTERNAL.value
            raise
        finally:
            self.metrics.requests.labels(model=label, status=status).inc()
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    # -- scoring ---------------------------------------------------------------------------

    @property
    def model_names(self) -> list[str]:
        return list(self._models)

    def list_models(self) -> list[ModelInfo]:
        return [self._info(name) for name in self._models]

    def get_model(self, name: str) -> ModelInfo:
        self._model(name)
        return self._info(name)

    async def score(self, request: ScoreRequest) -> ScoreResult:
        return await self._admitted(request.model, self._score_ranked(request))

    async def score_pairs(self, request: PairsRequest) -> PairsResult:
        return await self._admitted(request.model, self._score_in_order(request))

    async def _score_ranked(self, request: ScoreRequest) -> ScoreResult:
        self._model(request.model)
        self._check_query(request.query)
        if request.top_k is not None and request.top_k < 0:
            raise invalid(f"top_k must be >= 0, got {request.top_k}", field="top_k")
        texts = self._check_items(request.items)
        scored = await self._score(request.model, [request.query] * len(texts), texts,
                                   request.raw_scores, request.truncate, request.deadline)
        order = rank_order(scored.scores)
        if request.top_k:
            order = order[: request.top_k]
        entries = [
            ScoredItem(
                item_id=request.items[index].id or f"item-{index}",
                index=index,
                score=float(scored.scores[index]),
                rank=rank,
                text=request.items[index].text if request.return_text else None,
            )
            for rank, index in enumerate(order)
        ]
        return ScoreResult(request.model, entries, scored.usage, scored.timing)

    async def _score_in_order(self, request: PairsRequest) -> PairsResult:
        self._model(request.model)
        queries, documents = pair_up(request.queries, request.documents)
        # the request's own queries: a 1:N call repeats one query N times, checked once
        for index, query in enumerate(request.queries):
            self._check_query(query, f"queries[{index}]")
        self._check_count(len(documents), "documents")
        for index, text in enumerate(documents):
            self._check_text(text, f"documents[{index}]")
        scored = await self._score(request.model, queries, documents, request.raw_scores,
                                   request.truncate, request.deadline)
        return PairsResult(request.model, [float(s) for s in scored.scores], scored.usage, scored.timing)

    async def _score(self, name: str, queries: Sequence[str], documents: Sequence[str], raw: bool,
                     truncate: bool, deadline: float | None) -> _Scored:
        model = self._models[name]
        started = time.perf_counter()
        if deadline is not None and time.monotonic() >= deadline:
            raise XscoreError(ErrorCode.DEADLINE_EXCEEDED, "the deadline passed before scoring started")
        batcher = self._batchers.get(name)
        if batcher is not None:
            batched = await batcher.score(queries, documents, truncate=truncate, deadline=deadline)
            scores = model.activation.raw(batched.logits) if raw else model.activation.apply(batched.logits)
            timing = Timing(queue_ms=batched.queue_ms, tokenize_ms=batched.tokenize_ms,
                            inference_ms=batched.inference_ms, total_ms=(time.perf_counter() - started) * 1000)
            usage = Usage(pairs=len(documents), tokens=batched.tokens, truncated=batched.truncated)
            return _Scored(scores, usage, timing)
        result = await asyncio.to_thread(model.score_pairs, queries, documents, raw=raw, truncate=truncate)
        total_ms = (time.perf_counter() - started) * 1000
        usage = Usage(pairs=len(documents), tokens=result.tokens, truncated=result.truncated)
        return _Scored(result.scores, usage, Timing(inference_ms=total_ms, total_ms=total_ms))

    def _model(self, name: str) -> ScoringModel:
        model = self._models.get(name)
        if model is None:
            known = ", ".join(sorted(self._models)) or "none"
            raise XscoreError(ErrorCode.NOT_FOUND, f"model {name!r} is not served here (served: {known})",
                              details={"model": name})
        return model

    def _info(self, name: str) -> ModelInfo:
        model = self._models[name]
        batcher = self._batchers.get(name)
        return ModelInfo(
            name=name,
            source=model.manifest.source,
            variant=model.manifest.variant,
            engine=model.engine.name,
            device=model.engine.device,
            max_length=model.tokenizer.max_length,
            max_items_per_request=self.limits.max_items_per_request,
            max_batch_tokens=batcher.max_batch_tokens if batcher is not None else model.engine.max_batch_tokens,
            ready=self.model_ready(name),
        )

    def _check_query(self, query: object, field_name: str = "query") -> None:
        if not isinstance(query, str):
            raise invalid(f"{field_name} must be a string, got {type(query).__name__}", field=field_name)
        if not query.strip():
            raise XscoreError(ErrorCode.UNPROCESSABLE, f"{field_name} is empty", details={"field": field_name})
        self._check_text(query, field_name)

    def _check_items(self, items: Sequence[Item]) -> list[str]:
        self._check_count(len(items), "items")
        texts = []
        for index, item in enumerate(items):
            self._check_text(item.text, f"items[{index}].text")
            texts.append(item.text)
        return texts

    def _check_count(self, count: int, field_name: str) -> None:
        if count == 0:
            raise invalid(f"{field_name} is empty: give at least one", field=field_name)
        if count > self.limits.max_items_per_request:
            raise XscoreError(
                ErrorCode.TOO_LARGE,
                f"{field_name} has {count} entries, over the limit of {self.limits.max_items_per_request}",
                details={"field": field_name, "count": count, "limit": self.limits.max_items_per_request},
            )

    def _check_text(self, text: object, field_name: str) -> None:
        if not isinstance(text, str):
            raise invalid(f"{field_name} must be a string, got {type(text).__name__}", field=field_name)
        if len(text) > self.limits.max_text_chars:
            raise XscoreError(
                ErrorCode.TOO_LARGE,
                f"{field_name} is {len(text)} characters, over the limit of {self.limits.max_text_chars}",
                details={"field": field_name, "chars": len(text), "limit": self.limits.max_text_chars},
            )


def pair_up(queries: Sequence[str], documents: Sequence[str]) -> tuple[list[str], list[str]]:
    """1:1, 1:N and N:N pairings (the vLLM /score rule), in input order."""
    if len(queries) == 0:
        raise invalid("queries is empty: give at least one", field="queries")
    if len(documents) == 0:
        raise invalid("documents is empty: give at least one", field="documents")
    if len(queries) == 1:
        return [queries[0]] * len(documents), list(documents)
    if len(queries) == len(documents):
        return list(queries), list(documents)
    raise invalid(
        f"Input lengths must be 1:1, 1:N or N:N; got {len(queries)} queries and {len(documents)} documents",
        field="queries",
    )


__all__ = [
    "Item", "Limits", "ModelInfo", "PairsRequest", "PairsResult", "ScoreRequest", "ScoreResult",
    "ScoredItem", "Scorer", "Timing", "Usage", "pair_up",
]
