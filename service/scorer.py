"""The scorer: the one façade both transports call (TEI's `Infer`).

It validates a request, turns it into pairs, has them scored and assembles the response
(ranks, ids, top_k, usage, timing). The gRPC servicer and the HTTP gateway know nothing else
about models; they only map their wire formats and error codes onto these types.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import ErrorCode, XscoreError, invalid
from .ranking import rank_order
from .scoring import ScoringModel


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
    """Validates, scores and assembles. Model work runs off the event loop."""

    def __init__(self, models: Mapping[str, ScoringModel], limits: Limits | None = None) -> None:
        self._models = dict(models)
        self.limits = limits or Limits()

    @property
    def model_names(self) -> list[str]:
        return list(self._models)

    def list_models(self) -> list[ModelInfo]:
        return [self._info(name) for name in self._models]

    def get_model(self, name: str) -> ModelInfo:
        self._model(name)
        return self._info(name)

    async def score(self, request: ScoreRequest) -> ScoreResult:
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

    async def score_pairs(self, request: PairsRequest) -> PairsResult:
        self._model(request.model)
        queries, documents = pair_up(request.queries, request.documents)
        for index, query in enumerate(queries):
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
        return ModelInfo(
            name=name,
            source=model.manifest.source,
            variant=model.manifest.variant,
            engine=model.engine.name,
            device=model.engine.device,
            max_length=model.tokenizer.max_length,
            max_items_per_request=self.limits.max_items_per_request,
            max_batch_tokens=model.engine.max_batch_tokens,
            ready=True,
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
