"""Ranking metrics as pure functions: graded relevances in ranked order in, a number out.

`ranked_relevance` gives the relevances of the candidates sorted by descending score. Ties are
broken by the candidate's input position (a stable sort), so a constant scorer gets exactly the
metric of the input order and never a lucky or unlucky random tie-break.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def ranked_relevance(scores: Sequence[float] | np.ndarray, relevance: Sequence[int]) -> list[int]:
    if len(scores) != len(relevance):
        raise ValueError(f"{len(scores)} scores for {len(relevance)} relevance labels")
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return [int(relevance[i]) for i in order]


def reciprocal_rank_at(ranked: Sequence[int], k: int) -> float:
    """1/rank of the first relevant item within the top k, else 0."""
    for rank, rel in enumerate(ranked[:k], start=1):
        if rel > 0:
            return 1.0 / rank
    return 0.0


def dcg_at(ranked: Sequence[int], k: int) -> float:
    # The exponential gain (2^rel - 1) of Burges et al.; equal to the linear gain for 0/1 labels.
    return sum((2.0 ** rel - 1.0) / math.log2(rank + 1) for rank, rel in enumerate(ranked[:k], start=1))


def ndcg_at(ranked: Sequence[int], k: int) -> float:
    """DCG@k over the ideal DCG@k; 0 for a query with no relevant item."""
    ideal = dcg_at(sorted(ranked, reverse=True), k)
    return dcg_at(ranked, k) / ideal if ideal > 0 else 0.0


def mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else 0.0
