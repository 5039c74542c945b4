"""Deterministic rerank workloads: real English passages from the Python standard library.

Every machine with Python has these docstrings, so the corpus needs no download. Passages are
docstrings of 60-300 tokens (the realistic spread of retrieved chunks); queries are summary
lines of other docstrings.
"""

from __future__ import annotations

import random

from xscore.service.models.calibration import docstrings

__all__ = ["docstrings", "passages", "queries", "rerank_workload"]


def passages(count: int, seed: int = 0, min_words: int = 45, max_words: int = 170) -> list[str]:
    """`count` passages of about 60-300 tokens (45-170 words), drawn deterministically."""
    pool = [text for _, text in docstrings() if min_words <= len(text.split())]
    rng = random.Random(seed)
    chosen = []
    for _ in range(count):
        words = rng.choice(pool).split()
        chosen.append(" ".join(words[: rng.randint(min_words, max_words)]))
    return chosen


def queries(count: int, seed: int = 0) -> list[str]:
    pool = [summary for summary, _ in docstrings() if 4 <= len(summary.split()) <= 20]
    rng = random.Random(seed + 7919)
    return [rng.choice(pool) for _ in range(count)]


def rerank_workload(documents: int = 128, seed: int = 0) -> tuple[str, list[str]]:
    """One query and its candidate passages: the shape of a reranking request."""
    return queries(1, seed)[0], passages(documents, seed)
