"""Long documents: the server's default length policy and how a document's windows make one score."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xscore.api.schema import LengthPolicy

# Truncation stays the default (the model's own behaviour); chunking is asked for per request or
# per model. The window bound keeps one document's cost at most 16 pairs.
DEFAULT_LENGTHS = LengthPolicy(long_documents="truncate", chunk_overlap=32, aggregate="max", max_chunks_per_doc=16)


def aggregate(window_scores: np.ndarray, counts: Sequence[int], rule: str) -> np.ndarray:
    """One score per document from its consecutive windows' scores: the best, the mean, or the first's."""
    if all(count == 1 for count in counts):
        return np.asarray(window_scores, dtype=np.float32)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
    if rule == "max":
        combined = np.maximum.reduceat(window_scores, starts)
    elif rule == "mean":
        combined = np.add.reduceat(np.asarray(window_scores, dtype=np.float64), starts) / np.asarray(counts)
    elif rule == "first":
        combined = window_scores[starts]
    else:
        raise ValueError(f"unknown aggregate {rule!r}")
    return np.asarray(combined, dtype=np.float32)
