"""What one server can do at best under Poisson arrivals: the latency spread of an ideal queue.

An open-loop sweep reports p99 / p50 at shares of saturation. Part of that spread is the arrivals'
own: with Poisson arrivals, requests bunch up, and any server that finishes work at a fixed rate
makes the unlucky ones wait. These simulations give that part for identical requests (constant
service time, M/D/1) under the two orders a batcher sits between: first come first served (each
request runs alone, in arrival order) and processor sharing (every waiting request advances
together, as when each batch takes pairs from all of them). Both are scale-free: the ratio does
not depend on the service time, only on the load.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Spread:
    """Time in the system, in units of one request's service time."""

    load: float
    discipline: str
    mean: float
    p50: float
    p99: float

    @property
    def ratio(self) -> float:
        return self.p99 / self.p50


def _interarrivals(load: float, arrivals: int, seed: int) -> list[float]:
    if not 0.0 < load < 1.0:
        raise ValueError(f"load must lie strictly between 0 and 1, got {load}")
    draw = random.Random(seed)
    return [draw.expovariate(load) for _ in range(arrivals)]


def _spread(load: float, discipline: str, sojourns: list[float], warmup: int) -> Spread:
    kept = np.asarray(sojourns[warmup:])
    return Spread(load=load, discipline=discipline, mean=float(kept.mean()),
                  p50=float(np.percentile(kept, 50)), p99=float(np.percentile(kept, 99)))


def first_come_first_served(load: float, arrivals: int = 200_000, seed: int = 0) -> Spread:
    """M/D/1 in arrival order, by Lindley's recursion on the waiting time."""
    gaps = _interarrivals(load, arrivals, seed)
    sojourns, wait = [], 0.0
    for gap in gaps:
        wait = max(0.0, wait + 1.0 - gap) if sojourns else 0.0
        sojourns.append(wait + 1.0)
    return _spread(load, "first come first served", sojourns, warmup=arrivals // 20)


def processor_sharing(load: float, arrivals: int = 200_000, seed: int = 0) -> Spread:
    """M/D/1 with every request present served at an equal share of the rate.

    Present requests gain service at the same rate, so they leave in arrival order. `attained` is
    the service a request present since time 0 would have gained; a request leaves when it has
    grown by one service time since the request's arrival."""
    gaps = _interarrivals(load, arrivals, seed)
    present: deque[tuple[float, float]] = deque()  # (arrival time, attained service at which it leaves)
    sojourns: list[float] = []
    now = attained = 0.0
    for gap in gaps:
        arrival = now + gap
        while present:  # requests that leave before the next arrival
            finishes_at = now + (present[0][1] - attained) * len(present)
            if finishes_at > arrival:
                break
            arrived, attained = present.popleft()
            now = finishes_at
            sojourns.append(now - arrived)
        if present:
            attained += (arrival - now) / len(present)
        now = arrival
        present.append((arrival, attained + 1.0))
    return _spread(load, "processor sharing", sojourns, warmup=arrivals // 20)
