"""The ranking-fidelity measures the lossy variants are gated on (and the CPU targets judged by)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from benchmarks.engine.evaluation import compare, reference_scores
from xscore.service.models.calibration import calibration_pairs
from xscore.service.models.corpus import calibration_docstrings, held_out_docstrings
from xscore.service.models.ranking import Query, ndcg_at_10, ranking_set


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


def test_the_ranking_set_is_deterministic_and_has_distinct_queries():
    first, again = ranking_set(), ranking_set()
    assert first == again and len(first) == 8 and all(len(q.candidates) == 50 for q in first)
    assert len({q.text for q in first}) == 8


def test_the_ranking_set_and_the_int8_calibration_draw_on_disjoint_docstrings():
    calibration, held_out = set(calibration_docstrings()), set(held_out_docstrings())
    assert not calibration & held_out and len(held_out) >= 200
    held_out_texts = [text for _, text in held_out]
    for query in ranking_set():
        assert all(any(text.startswith(candidate) for text in held_out_texts) for candidate in query.candidates)
    calibration_texts = [text for _, text in calibration]
    assert all(any(text.startswith(passage) for text in calibration_texts) for _, passage in calibration_pairs())
    # the set int8w's build tunes its group size on is calibration text too, never the gate's
    tuning = ranking_set(8, 40, part="calibration")
    assert len(tuning) == 8 and all(len(q.candidates) == 40 for q in tuning)
    for query in tuning:
        assert all(any(text.startswith(candidate) for text in calibration_texts) for candidate in query.candidates)
        assert not any(text.startswith(candidate) for text in held_out_texts for candidate in query.candidates)


def test_the_corpus_does_not_depend_on_what_the_process_imported():
    # torch replaces inspect.getfile at import; concurrent.futures imports its executors lazily
    script = ("import hashlib, sys\n"
              "if sys.argv[1] == 'more': import torch, concurrent.futures; concurrent.futures.ThreadPoolExecutor\n"
              "from xscore.service.models.corpus import docstrings\n"
              "print(len(docstrings()), hashlib.sha256(repr(docstrings()).encode()).hexdigest())\n")
    outputs = {subprocess.run([sys.executable, "-c", script, which], capture_output=True, text=True,
                              check=True).stdout for which in ("less", "more")}
    assert len(outputs) == 1 and int(next(iter(outputs)).split()[0]) >= 800
