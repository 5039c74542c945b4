"""The scorer: the one façade both transports call (TEI's `Infer`).

It validates a request once, tokenizes it, submits the encoded pairs to the model's batcher,
applies the model's activation and assembles the response (ranks, ids, top_k, usage, timing).
The gRPC servicer and the HTTP gateway know nothing else about models; they only map their wire
formats and error codes onto the types of `xscore.api.schema`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import numpy as np

from xscore.api.errors import ErrorCode, XscoreError
from xscore.api.schema import (
    LengthPolicy,
    ModelInfo,
    PairsRequest,
    PairsResult,
    ScoredItem,
    ScoreRequest,
    ScoreResult,
    Timing,
    Usage,
    check_lengths,
    check_top_k,
)
from xscore.service.models.model import LoadedModel
from xscore.service.models.tokenization import EncodedDocument, EncodedPair
from xscore.service.serving.batcher import Batcher, BatcherConfig
from xscore.service.serving.lengths import DEFAULT_LENGTHS, aggregate
from xscore.service.serving.metrics import Metrics
from xscore.service.serving.score_cache import ScoreCache
from xscore.service.serving.validation import (
    Limits,
    check_documents,
    check_instruction,
    check_items,
    check_query,
    pair_up,
)

_T = TypeVar("_T")

# Requests this short are tokenized on the loop: a thread hop costs more than the work.
INLINE_TOKENIZE_CHARS = 2_000


def rank_order(scores: np.ndarray) -> list[int]:
    """Indices best first: score descending, ties in input order (a stable sort on the negation)."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable").tolist()


@dataclass(frozen=True, slots=True)
class _Scored:
    scores: np.ndarray
    usage: Usage
    timing: Timing


@dataclass(frozen=True, slots=True)
class _Logits:
    logits: np.ndarray  # (windows, labels), in window order
    cached: int  # windows answered without the engine
    queue_ms: float = 0.0
    inference_ms: float = 0.0


class Scorer:
    """Validates, tokenizes, batches and assembles; one batcher per model.

    `start()` (on the serving loop) starts the batchers; until then admitted calls wait in
    their queues. The scorer also owns the lifecycle facts every transport needs: `ready`,
    `draining`, `begin_drain()`, `wait_idle()` and `close()`.

    `lengths` holds each model's default length policy (a request's fields override it; unnamed
    models get `DEFAULT_LENGTHS`); `score_cache` answers pairs already scored (None: no cache).
    """

    def __init__(self, models: Mapping[str, LoadedModel], limits: Limits | None = None, *,
                 metrics: Metrics | None = None, batching: BatcherConfig | None = None,
                 lengths: Mapping[str, LengthPolicy] | None = None, score_cache: ScoreCache | None = None) -> None:
        self._models = dict(models)
        self.limits = limits or Limits()
        self.metrics = metrics or Metrics()
        self._lengths = {name: check_lengths((lengths or {}).get(name, LengthPolicy()).over(DEFAULT_LENGTHS))
                         for name in self._models}
        self._cache = score_cache if score_cache is not None else ScoreCache(0, self.metrics)
        self._batchers = {name: Batcher(name, model.engine, model.tokenizer.pad_id, self.metrics, batching)
                          for name, model in self._models.items()}
        self._tokenize_pool: ThreadPoolExecutor | None = None
        self._draining = False
        self._drain_listeners: list[Callable[[], Awaitable[None] | None]] = []
        self._drain_notices: list[Awaitable[None]] = []
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start every model's batcher on the running loop."""
        if self._tokenize_pool is None:
            self._tokenize_pool = ThreadPoolExecutor(2, thread_name_prefix="tokenize")
        for batcher in self._batchers.values():
            batcher.start()

    async def close(self) -> None:
        """Stop the batchers (calls still queued fail with UNAVAILABLE) and the tokenizer threads."""
        for batcher in self._batchers.values():
            await batcher.close()
        if self._tokenize_pool is not None:
            pool, self._tokenize_pool = self._tokenize_pool, None
            await asyncio.get_running_loop().run_in_executor(None, partial(pool.shutdown, wait=True))

    @property
    def draining(self) -> bool:
        return self._draining

    @property
    def ready(self) -> bool:
        """Every model can take requests (readiness probes: gRPC health, /readyz)."""
        return not self._draining and all(self.model_ready(name) for name in self._models)

    def model_ready(self, name: str) -> bool:
        batcher = self._batchers.get(name)
        return not self._draining and batcher is not None and batcher.running

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
        self.metrics.in_flight.labels(model=label).inc()
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
            self.metrics.in_flight.labels(model=label).dec()
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
        query = check_query(request.query, self.limits)
        check_top_k(request.top_k)
        texts = check_items(request.items, self.limits)
        instruction = check_instruction(request.instruction, self.limits)
        scored = await self._score(request.model, [query] * len(texts), texts, request.raw_scores,
                                   request.truncate, request.deadline, instruction, request.lengths)
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
            check_query(query, self.limits, f"queries[{index}]")
        check_documents(documents, self.limits)
        instruction = check_instruction(request.instruction, self.limits)
        scored = await self._score(request.model, queries, documents, request.raw_scores,
                                   request.truncate, request.deadline, instruction, request.lengths)
        return PairsResult(request.model, [float(s) for s in scored.scores], scored.usage, scored.timing)

    async def _score(self, name: str, queries: Sequence[str], documents: Sequence[str], raw: bool,
                     truncate: bool, deadline: float | None, instruction: str | None,
                     lengths: LengthPolicy) -> _Scored:
        model, batcher = self._models[name], self._batchers[name]
        policy = check_lengths(lengths).over(self._lengths[name])
        started = time.perf_counter()
        if deadline is not None and time.monotonic() >= deadline:
            raise XscoreError(ErrorCode.DEADLINE_EXCEEDED, "the deadline passed before scoring started")
        batcher.check_room(len(documents))  # a full queue refuses before any tokenizing
        encoded = await self._tokenize(model, queries, documents, truncate, instruction, policy)
        tokenize_s = time.perf_counter() - started
        self.metrics.tokenize_seconds.labels(model=name).observe(tokenize_s)
        windows = [pair for document in encoded for pair in document.windows]
        counts = [len(document.windows) for document in encoded]
        chunked = policy.long_documents == "chunk"
        if chunked:
            self.metrics.windows.labels(model=name).inc(sum(count for count in counts if count > 1))
        found = await self._logits(name, model, batcher, windows, deadline)
        window_scores = model.activation.raw(found.logits) if raw else model.activation.apply(found.logits)
        scores = aggregate(window_scores, counts, policy.aggregate or "max")
        timing = Timing(queue_ms=found.queue_ms, tokenize_ms=tokenize_s * 1000,
                        inference_ms=found.inference_ms, total_ms=(time.perf_counter() - started) * 1000)
        usage = Usage(pairs=len(documents), tokens=sum(pair.length for pair in windows),
                      truncated=[index for index, document in enumerate(encoded) if document.truncated],
                      windows=counts if chunked else [], cached=found.cached)
        return _Scored(scores, usage, timing)

    async def _logits(self, name: str, model: LoadedModel, batcher: Batcher, windows: list[EncodedPair],
                      deadline: float | None) -> _Logits:
        """Each window's logits: from the cache, from an identical window of the same request, or
        from the batcher (only the distinct windows not cached go there)."""
        scope = ScoreCache.scope(name, model.manifest.variant, model.engine.name)
        keys = [ScoreCache.key(scope, pair) for pair in windows]
        known: dict[bytes, np.ndarray] = {}
        missing: dict[bytes, int] = {}  # key -> its first window
        for position, key in enumerate(keys):
            if key in known or key in missing:
                continue
            row = self._cache.get(key)
            if row is None:
                missing[key] = position
            else:
                known[key] = row
        cached = len(windows) - len(missing)
        if not missing:
            return _Logits(np.stack([known[key] for key in keys]), cached)
        job = batcher.admit(len(missing), deadline)
        try:
            batched = await batcher.run(job, [windows[position] for position in missing.values()])
        finally:
            batcher.release(job)
        for row, key in zip(batched.logits, missing):
            known[key] = row
            self._cache.put(key, row)
        logits = batched.logits if cached == 0 else np.stack([known[key] for key in keys])
        return _Logits(logits, cached, batched.queue_ms, batched.inference_ms)

    async def _tokenize(self, model: LoadedModel, queries: Sequence[str], documents: Sequence[str],
                        truncate: bool, instruction: str | None, lengths: LengthPolicy) -> list[EncodedDocument]:
        encode = partial(model.tokenizer.encode_documents, queries, documents, truncate=truncate,
                         instruction=instruction, lengths=lengths)
        chars = sum(map(len, documents)) + sum(map(len, set(queries)))
        if chars <= INLINE_TOKENIZE_CHARS or self._tokenize_pool is None:
            return encode()
        return await asyncio.get_running_loop().run_in_executor(self._tokenize_pool, encode)

    def _model(self, name: str) -> LoadedModel:
        model = self._models.get(name)
        if model is None:
            known = ", ".join(sorted(self._models)) or "none"
            raise XscoreError(ErrorCode.NOT_FOUND, f"model {name!r} is not served here (served: {known})",
                              details={"model": name})
        return model

    def _info(self, name: str) -> ModelInfo:
        model = self._models[name]
        return ModelInfo(
            name=name,
            source=model.manifest.source,
            variant=model.manifest.variant,
            engine=model.engine.name,
            device=model.engine.device,
            max_length=model.tokenizer.max_length,
            max_items_per_request=self.limits.max_items_per_request,
            max_batch_tokens=self._batchers[name].max_batch_tokens,
            ready=self.model_ready(name),
        )


__all__ = ["Limits", "Scorer", "rank_order"]
