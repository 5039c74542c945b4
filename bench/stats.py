"""The figures of a run: throughput over the measured window, latency percentiles, errors by kind."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from xscore.bench.loadgen import Run, Sample

PERCENTILES = (50, 90, 99)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile by linear interpolation between the closest ranks (numpy's default)."""
    if not values:
        return float("nan")
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def window_s(samples: Sequence[Sample]) -> float:
    """From the first measured request's intended send to the last answer."""
    if not samples:
        return 0.0
    return max(sample.finished for sample in samples) - min(sample.intended for sample in samples)


def summary(run: Run) -> dict[str, Any]:
    measured = run.measured()
    answered = [sample for sample in measured if sample.error is None]
    seconds = run.window_s() or window_s(measured)
    latencies_ms = [sample.latency * 1000 for sample in answered]
    return {
        "mode": run.mode,
        "level": run.level,
        "requests": len(measured),
        "answered": len(answered),
        "errors": dict(Counter(sample.error for sample in measured if sample.error is not None)),
        "window_s": seconds,
        "requests_per_s": len(answered) / seconds if seconds else 0.0,
        "pairs_per_s": sum(sample.pairs for sample in answered) / seconds if seconds else 0.0,
        "latency_ms": {**{f"p{q}": percentile(latencies_ms, q) for q in PERCENTILES},
                       "max": max(latencies_ms, default=float("nan")),
                       "mean": float(np.mean(latencies_ms)) if latencies_ms else float("nan")},
    }
