"""Speed-free fidelity figures of a variant against a reference, and the gates on them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from xscore.service.models.ranking import RankingFidelity


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ranks_a, ranks_b = _ranks(np.asarray(a, np.float64)), _ranks(np.asarray(b, np.float64))
    if ranks_a.std() == 0 or ranks_b.std() == 0:
        return 1.0 if np.array_equal(ranks_a, ranks_b) else 0.0
    return float(np.corrcoef(ranks_a, ranks_b)[0, 1])


def _ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (ties share their mean rank), as scipy.stats.rankdata does."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(len(values), dtype=np.float64)
    sorted_values = values[order]
    start = 0
    for end in range(1, len(values) + 1):
        if end == len(values) or sorted_values[end] != sorted_values[start]:
            ranks[order[start:end]] = (start + end - 1) / 2
            start = end
    return ranks


def top_k_agreement(reference: np.ndarray, candidate: np.ndarray, k: int = 10) -> float:
    """Overlap of the two top-k sets, as a fraction of k."""
    k = min(k, len(reference))
    top_reference = set(np.argsort(-np.asarray(reference), kind="stable")[:k].tolist())
    top_candidate = set(np.argsort(-np.asarray(candidate), kind="stable")[:k].tolist())
    return len(top_reference & top_candidate) / k if k else 1.0


@dataclass(frozen=True, slots=True)
class Fidelity:
    max_abs_diff: float
    spearman: float
    top10_agreement: float
    pairs: int

    def as_dict(self) -> dict[str, float | int]:
        return {
            "max_abs_diff": self.max_abs_diff,
            "spearman": self.spearman,
            "top10_agreement": self.top10_agreement,
            "pairs": self.pairs,
        }


def measure(reference: np.ndarray, candidate: np.ndarray) -> Fidelity:
    reference, candidate = np.asarray(reference, np.float64), np.asarray(candidate, np.float64)
    return Fidelity(
        max_abs_diff=float(np.max(np.abs(reference - candidate))),
        spearman=spearman(reference, candidate),
        top10_agreement=top_k_agreement(reference, candidate, 10),
        pairs=len(reference),
    )


@dataclass(frozen=True, slots=True)
class Gate:
    """The bar a variant must meet (each row of the variant table has one): on the probe pairs
    against the PyTorch reference, for lossy variants on the ranking set against the fp32 export
    (per-query Spearman mean, NDCG@10 ratio), and where the model carries its own labelled ranking
    set, on each of its sets: the reference's NDCG@10 against the labels that the variant keeps on
    the queries it ranks worse (`unfallen_share`). The net ratio of means let a static int8 of the
    default model through at 100.60% of the reference's on its WordNet set, because as many
    queries moved up as down, and it then kept 99.09% on the held-out WordNet evaluation."""

    max_abs_diff: float | None = None
    min_spearman: float | None = None
    min_rank_spearman: float | None = None
    min_ndcg10_ratio: float | None = None
    min_own_unfallen_share: float | None = None

    @property
    def ranked(self) -> bool:
        """Whether this gate judges the ranking sets (and the export must score them)."""
        return (self.min_rank_spearman is not None or self.min_ndcg10_ratio is not None
                or self.min_own_unfallen_share is not None)

    def failures(self, fidelity: Fidelity, ranking: RankingFidelity | None = None,
                 own: Mapping[str, RankingFidelity] | None = None) -> list[str]:
        problems = []
        if self.max_abs_diff is not None and fidelity.max_abs_diff > self.max_abs_diff:
            problems.append(f"max |diff| {fidelity.max_abs_diff:.3g} > {self.max_abs_diff:g}")
        if self.min_spearman is not None and fidelity.spearman < self.min_spearman:
            problems.append(f"Spearman {fidelity.spearman:.4f} < {self.min_spearman:g} on the probe pairs")
        if ranking is not None:
            if self.min_rank_spearman is not None and ranking.spearman_mean < self.min_rank_spearman:
                problems.append(f"mean per-query Spearman {ranking.spearman_mean:.4f} (min "
                                f"{ranking.spearman_min:.4f}) < {self.min_rank_spearman:g} on the ranking set")
            if self.min_ndcg10_ratio is not None and ranking.ndcg10_ratio < self.min_ndcg10_ratio:
                problems.append(f"NDCG@10 ratio {ranking.ndcg10_ratio:.4f} < {self.min_ndcg10_ratio:g} "
                                "on the ranking set")
        if self.min_own_unfallen_share is not None:
            for name, figures in (own or {}).items():
                if figures.unfallen_share < self.min_own_unfallen_share:
                    problems.append(f"NDCG@10 against the labels kept on the queries it ranks worse "
                                    f"{100 * figures.unfallen_share:.2f}% of the reference's < "
                                    f"{100 * self.min_own_unfallen_share:g}% on the model's own {name} set "
                                    f"({figures.queries} queries; net {100 * figures.ndcg10_ratio:.2f}%)")
        return problems
