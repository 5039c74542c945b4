"""The engine benchmark's ranking-fidelity measures (the numbers the CPU targets are judged by)."""

from __future__ import annotations

import numpy as np

from benchmarks.engine.evaluation import (
    Query,
    compare,
    corpus_queries,
    ndcg_at_10,
    reference_scores,
)


def _table_scorer(table: dict[str, np.ndarray]):
    return lambda query, candidates: table[query]


def test_identical_scores_are_perfect_and_a_lost_winner_costs_more_than_a_near_tie_swap():
    reference = np.array([5.0, 4.0, 3.99, 1.0, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.0, -1.0])
    near_tie = reference.copy()
    near_tie[[1, 2]] = near_tie[[2, 1]]
    lost_winner = reference.copy()
    lost_winner[0] = -5.0
    queries = [Query("q", [str(i) for i in range(12)])]
    references = reference_scores(_table_scorer({"q": reference}), queries)
    assert compare(_table_scorer({"q": reference}), queries, references).ndcg10_ratio == 1.0
    swapped = compare(_table_scorer({"q": near_tie}), queries, references)
    lost = compare(_table_scorer({"q": lost_winner}), queries, references)
    assert 0.999 < swapped.ndcg10_ratio < 1.0 and lost.ndcg10_ratio < 0.9
    assert swapped.top10_agreement == 1.0 and lost.top10_agreement == 0.9


def test_labels_when_given_are_the_gains():
    gains = np.array([0.0, 1.0, 0.0])
    assert ndcg_at_10(gains, np.array([0.1, 0.9, 0.5])) == 1.0
    assert ndcg_at_10(gains, np.array([0.9, 0.1, 0.5])) < 1.0


def test_the_stand_in_evaluation_set_is_deterministic_and_has_distinct_queries():
    first, again = corpus_queries(4, 20), corpus_queries(4, 20)
    assert first == again and len(first) == 4 and all(len(q.candidates) == 20 for q in first)
    assert len({q.text for q in first}) == 4
