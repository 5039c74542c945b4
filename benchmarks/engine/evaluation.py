"""Ranking fidelity of a scorer against a reference, on the ranking set the export gates on."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from xscore.service.models.ranking import Query, RankingFidelity, ranking_fidelity

Scorer = Callable[[str, Sequence[str]], np.ndarray]  # (query, candidates) -> scores, input order


def reference_scores(scorer: Scorer, queries: Sequence[Query]) -> list[np.ndarray]:
    return [np.asarray(scorer(query.text, query.candidates), dtype=np.float64) for query in queries]


def compare(scorer: Scorer, queries: Sequence[Query], references: Sequence[np.ndarray]) -> RankingFidelity:
    return ranking_fidelity(queries, references, reference_scores(scorer, queries))
