"""Ranking fidelity of a scorer against a reference on any list of (query, candidates).

Per query: Spearman of the two score lists, top-10 agreement, and the NDCG@10 ratio: the
candidate ranking's NDCG@10 over the reference ranking's. With relevance labels the gains are
the labels. Without, the gains are the reference's own scores rescaled to [0, 1] per query, so
swapping two near-tied candidates costs almost nothing and losing a clear winner costs a lot (a
rank-graded gain would punish the near-ties that a random-weight head is full of).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from xscore.service.models.fidelity import spearman, top_k_agreement

Scorer = Callable[[str, Sequence[str]], np.ndarray]  # (query, candidates) -> scores, input order


@dataclass(frozen=True, slots=True)
class Query:
    text: str
    candidates: list[str]
    labels: list[float] | None = None  # graded relevance, if the set has it


def corpus_queries(count: int = 8, candidates: int = 50) -> list[Query]:
    """Stand-in evaluation set from the stdlib corpus until the held-out set lands: each query's
    candidates include its own docstring among passages drawn for it."""
    from benchmarks.corpus import docstrings, passages

    pool = [(summary, text) for summary, text in docstrings()
            if 4 <= len(summary.split()) <= 20 and len(text.split()) >= 45]
    step = len(pool) // count
    chosen = [pool[index * step + 3] for index in range(count)]
    return [Query(summary, [" ".join(text.split()[:170])] + passages(candidates - 1, seed=100 + index))
            for index, (summary, text) in enumerate(chosen)]


def ndcg_at_10(gains: np.ndarray, scores: np.ndarray) -> float:
    order = np.argsort(-scores, kind="stable")[:10]
    discounts = 1 / np.log2(np.arange(2, len(order) + 2))
    return float(np.sum(gains[order] * discounts))


def _gains(query: Query, reference: np.ndarray) -> np.ndarray:
    if query.labels is not None:
        return np.asarray(query.labels, dtype=np.float64)
    spread = float(reference.max() - reference.min())
    return (reference - reference.min()) / spread if spread else np.ones(len(reference))


@dataclass(frozen=True, slots=True)
class RankingFidelity:
    spearman_mean: float
    spearman_min: float
    ndcg10_ratio: float  # mean over queries
    top10_agreement: float  # mean over queries
    max_abs_diff: float
    queries: int

    def as_dict(self) -> dict[str, float]:
        return {"spearman_mean": self.spearman_mean, "spearman_min": self.spearman_min,
                "ndcg10_ratio": self.ndcg10_ratio,
                "top10_agreement": self.top10_agreement, "max_abs_diff": self.max_abs_diff, "queries": self.queries}


def reference_scores(scorer: Scorer, queries: Sequence[Query]) -> list[np.ndarray]:
    return [np.asarray(scorer(query.text, query.candidates), dtype=np.float64) for query in queries]


def compare(scorer: Scorer, queries: Sequence[Query], references: Sequence[np.ndarray]) -> RankingFidelity:
    rhos, ratios, tops, diffs = [], [], [], []
    for query, reference in zip(queries, references):
        scores = np.asarray(scorer(query.text, query.candidates), dtype=np.float64)
        rhos.append(spearman(reference, scores))
        gains = _gains(query, reference)
        ideal = ndcg_at_10(gains, reference)
        ratios.append(ndcg_at_10(gains, scores) / ideal if ideal else 1.0)
        tops.append(top_k_agreement(reference, scores, 10))
        diffs.append(float(np.max(np.abs(reference - scores))))
    return RankingFidelity(float(np.mean(rhos)), float(np.min(rhos)), float(np.mean(ratios)),
                           float(np.mean(tops)), max(diffs),
                           len(queries))
