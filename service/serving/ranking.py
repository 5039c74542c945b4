"""Rank rules shared by every transport: score descending, ties by input order (SPEC 4)."""

from __future__ import annotations

import numpy as np


def rank_order(scores: np.ndarray) -> list[int]:
    """Indices best first; a stable sort on the negated score keeps ties in input order."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable").tolist()
