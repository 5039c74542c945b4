"""Rerank-shaped (query, passage) pairs the int8 exporter calibrates on, from the stdlib corpus."""

from __future__ import annotations

import random

from xscore.service.models.corpus import calibration_docstrings


def calibration_pairs(count: int = 300, seed: int = 12345) -> list[tuple[str, str]]:
    """A summary line with its own docstring (relevant) or another one (not), passages cut to
    20-250 words so lengths spread like retrieved chunks. Drawn from the calibration part of the
    corpus only: the ranking gate's text is never seen here."""
    pool = [(summary, text) for summary, text in calibration_docstrings() if len(text.split()) >= 20
            and 3 <= len(summary.split()) <= 20]
    rng = random.Random(seed)
    pairs = []
    for index in range(count):
        summary, text = rng.choice(pool)
        if index % 2:
            text = rng.choice(pool)[1]
        words = text.split()
        pairs.append((summary, " ".join(words[: rng.randint(20, 250)])))
    return pairs
