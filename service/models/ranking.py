"""Ranking fidelity: does a variant order each query's candidates as its reference does?

Probe pairs pool unrelated queries, so a variant can match them well and still reorder the
candidates of one query (the thing a reranker is for). The lossy variants are therefore also
gated on a ranking set: 8 queries x 50 candidates of held-out stdlib text, each query's own
docstring among passages drawn for it, scored by the fp32 export as reference.

Per query: Spearman of the two score lists, top-10 agreement, and the NDCG@10 ratio: the
candidate ranking's NDCG@10 over the reference ranking's. With relevance labels the gains are
the labels. Without, the gains are the reference's own scores rescaled to [0, 1] per query, so
swapping two near-tied candidates costs almost nothing and losing a clear winner costs a lot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from xscore.service.models.fidelity import spearman, top_k_agreement

if TYPE_CHECKING:
    from xscore.service.models.activation import Activation
    from xscore.service.models.engines.base import Engine
    from xscore.service.models.tokenization import PairTokenizer


@dataclass(frozen=True, slots=True)
class Query:
    text: str
    candidates: list[str]
    labels: list[float] | None = None  # graded relevance, if the set has it


def ranking_set(count: int = 8, candidates: int = 50, part: str = "held_out") -> list[Query]:
    """`count` queries x `candidates` passages from one part of the stdlib corpus (the gate's is
    the held-out part; a build that tunes itself uses the calibration part, so the gate never
    judges text a build was tuned on): each query is a docstring's summary line, and its own
    docstring is among the candidates."""
    from xscore.service.models.corpus import PARTS, passages

    pool = [(summary, text) for summary, text in PARTS[part]()
            if 4 <= len(summary.split()) <= 20 and len(text.split()) >= 45]
    step = len(pool) // count
    chosen = [pool[index * step + step // 2] for index in range(count)]
    return [Query(summary, [" ".join(text.split()[:170])] + passages(candidates - 1, seed=100 + index, part=part))
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
                "ndcg10_ratio": self.ndcg10_ratio, "top10_agreement": self.top10_agreement,
                "max_abs_diff": self.max_abs_diff, "queries": self.queries}


def ranking_fidelity(queries: Sequence[Query], references: Sequence[np.ndarray],
                     scores: Sequence[np.ndarray]) -> RankingFidelity:
    """Per-query figures of `scores` against `references` (one array per query, input order)."""
    rhos, ratios, tops, diffs = [], [], [], []
    for query, reference, candidate in zip(queries, references, scores, strict=True):
        reference, candidate = np.asarray(reference, np.float64), np.asarray(candidate, np.float64)
        rhos.append(spearman(reference, candidate))
        gains = _gains(query, reference)
        ideal = ndcg_at_10(gains, reference)
        ratios.append(ndcg_at_10(gains, candidate) / ideal if ideal else 1.0)
        tops.append(top_k_agreement(reference, candidate, 10))
        diffs.append(float(np.max(np.abs(reference - candidate))))
    return RankingFidelity(float(np.mean(rhos)), float(np.min(rhos)), float(np.mean(ratios)),
                           float(np.mean(tops)), max(diffs), len(queries))


class RankingCheck:
    """A ranking set, encoded once, with the fp32 export's raw scores as the reference."""

    def __init__(self, fp32_onnx: Path, tokenizer: PairTokenizer, activation: Activation,
                 queries: Sequence[Query] | None = None) -> None:
        from xscore.service.models.engines.onnxruntime import OnnxRuntimeEngine

        self._queries = list(queries) if queries is not None else ranking_set()
        self._pairs = tokenizer.encode([q.text for q in self._queries for _ in q.candidates],
                                       [c for q in self._queries for c in q.candidates], truncate=True)
        self._pad_id, self._activation = tokenizer.pad_id, activation
        # the fp32 export on onnxruntime's CPU provider: exact to the PyTorch model (the fp32
        # gate), and present on every install
        self._reference = self._split(OnnxRuntimeEngine(fp32_onnx, device="cpu"))

    def _split(self, engine: Engine) -> list[np.ndarray]:
        from xscore.service.models.planner import run_planned

        scores = run_planned(engine.run, self._pairs, self._pad_id, RANKING_BATCH_TOKENS)
        raw = self._activation.raw(scores)
        bounds = np.cumsum([len(q.candidates) for q in self._queries])[:-1]
        return np.split(raw.astype(np.float64), bounds)

    def measure(self, engine: Engine) -> RankingFidelity:
        return ranking_fidelity(self._queries, self._reference, self._split(engine))


RANKING_SET_SHAPE = "8 queries x 50 candidates"
# batches under a budget every engine runs comfortably (the probe pairs' too)
RANKING_BATCH_TOKENS = 4096


__all__ = ["RANKING_SET_SHAPE", "Query", "RankingCheck", "RankingFidelity", "ndcg_at_10", "ranking_fidelity",
           "ranking_set"]
