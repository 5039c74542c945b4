"""Scoring in tests goes the way a request goes: a started Scorer, its batcher, the engine."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from xscore.service.models.model import LoadedModel
from xscore.service.serving.batcher import BatcherConfig
from xscore.service.serving.blocking import BlockingScorer


@dataclass(frozen=True, slots=True)
class Scored:
    scores: np.ndarray  # input order
    truncated: list[int]
    tokens: int


def score_pairs(model: LoadedModel, queries: Sequence[str], documents: Sequence[str], *, raw: bool = False,
                truncate: bool = True, max_tokens: int | None = None) -> Scored:
    """(query, document) pairs, 1:1 or 1:N, through a BlockingScorer over `model`."""
    with BlockingScorer(model, batching=BatcherConfig(max_batch_tokens=max_tokens)) as scorer:
        result = scorer.score_pairs(queries, documents, raw=raw, truncate=truncate)
    return Scored(np.asarray(result.scores, dtype=np.float32), result.usage.truncated, result.usage.tokens)
