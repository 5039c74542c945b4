"""`BlockingScorer`: the Scorer for synchronous callers, on an event loop thread of its own.

`xscore score`, the export-free evaluations, the benchmarks and the tests score through it, so
every caller goes through the same path as `xscore serve`: validation, tokenization, a started
micro-batcher and the engine.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from xscore.api.schema import Item, LengthPolicy, PairsRequest, PairsResult, ScoreRequest, ScoreResult
from xscore.service.models.model import LoadedModel
from xscore.service.serving.batcher import BatcherConfig
from xscore.service.serving.metrics import Metrics
from xscore.service.serving.score_cache import ScoreCache
from xscore.service.serving.scorer import Scorer
from xscore.service.serving.validation import Limits

_T = TypeVar("_T")

# No request-size limits for a caller in the same process: it only hurts itself.
UNLIMITED = Limits(max_items_per_request=2**31 - 1, max_text_chars=2**31 - 1)


class BlockingScorer:
    """No score cache unless given one: a benchmark that repeats a workload must reach the engine."""

    def __init__(self, models: Mapping[str, LoadedModel] | LoadedModel, *, limits: Limits = UNLIMITED,
                 batching: BatcherConfig | None = None, metrics: Metrics | None = None,
                 lengths: Mapping[str, LengthPolicy] | None = None, score_cache: ScoreCache | None = None) -> None:
        if isinstance(models, LoadedModel):
            models = {models.name: models}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="blocking-scorer", daemon=True)
        self._thread.start()
        self.scorer: Scorer = self.run(self._started(models, limits, batching, metrics, lengths, score_cache))
        self.default_model = next(iter(models))

    @staticmethod
    async def _started(models: Mapping[str, LoadedModel], limits: Limits, batching: BatcherConfig | None,
                       metrics: Metrics | None, lengths: Mapping[str, LengthPolicy] | None,
                       score_cache: ScoreCache | None) -> Scorer:
        # its Events bind to this loop
        scorer = Scorer(models, limits, metrics=metrics, batching=batching, lengths=lengths, score_cache=score_cache)
        scorer.start()
        return scorer

    def run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """Run a coroutine (a call on `self.scorer`) on the scorer's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def score_pairs(self, queries: Sequence[str], documents: Sequence[str], *, model: str | None = None,
                    raw: bool = False, truncate: bool = True, instruction: str | None = None,
                    lengths: LengthPolicy = LengthPolicy()) -> PairsResult:
        """Scores of (query, document) pairs, 1:1, 1:N or N:N, in input order."""
        request = PairsRequest(model or self.default_model, list(queries), list(documents), raw_scores=raw,
                               truncate=truncate, instruction=instruction, lengths=lengths)
        return self.run(self.scorer.score_pairs(request))

    def score(self, query: str, documents: Sequence[str | Item], *, model: str | None = None,
              top_k: int | None = None, raw: bool = False, truncate: bool = True,
              return_text: bool = False, instruction: str | None = None,
              lengths: LengthPolicy = LengthPolicy()) -> ScoreResult:
        """One query against documents, best first."""
        items = [item if isinstance(item, Item) else Item(item) for item in documents]
        request = ScoreRequest(model or self.default_model, query, items, top_k=top_k, raw_scores=raw,
                               truncate=truncate, return_text=return_text, instruction=instruction, lengths=lengths)
        return self.run(self.scorer.score(request))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self.run(self.scorer.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> BlockingScorer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


__all__ = ["BlockingScorer", "UNLIMITED"]
