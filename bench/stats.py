"""The figures of a run: throughput, latency percentiles, errors by kind.

An open loop's throughput is its answers over the measured window. A closed loop's is Little's
law instead, clients x answered work / the time its requests took: every client always has one
request out, so that is exact in steady state, while a count of the answers inside a window is
only as fine as a round of all the clients' requests. Under the batcher a round of equal
requests finishes nearly together (32 clients x 1 x 100 on 2 cores: about 50 s a round), so a
window of two rounds read 49 or 64 answers for the same server, 50.0 or 63.1 pairs/s.
"""

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
    busy_s = sum(sample.latency for sample in measured)
    by_latency = run.mode == "closed" and busy_s > 0
    # answers per second of the window, or per second of one client's time times the clients
    per_s = run.level / busy_s if by_latency else (1 / seconds if seconds else 0.0)
    requests_per_s = len(answered) * per_s
    pairs_per_s = sum(sample.pairs for sample in answered) * per_s
    return {
        "mode": run.mode,
        "level": run.level,
        "requests": len(measured),
        "answered": len(answered),
        "errors": dict(Counter(sample.error for sample in measured if sample.error is not None)),
        "window_s": seconds,
        "throughput_from": "clients / latency" if by_latency else "answers / window",
        "requests_per_s": requests_per_s,
        "pairs_per_s": pairs_per_s,
        "latency_ms": {**{f"p{q}": percentile(latencies_ms, q) for q in PERCENTILES},
                       "max": max(latencies_ms, default=float("nan")),
                       "mean": float(np.mean(latencies_ms)) if latencies_ms else float("nan")},
    }
