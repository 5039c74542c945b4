"""Closed and open loop load, bounded in requests and in time, with the warm-up kept out of the figures.

Closed loop: N clients, each sending its next request when the last is answered (throughput at a
concurrency). Open loop: requests sent at Poisson arrival times at a fixed rate, whatever the
server does; each latency runs from the time the request was meant to be sent, so a server that
stalls is charged for the requests it held back (no coordinated omission). The generator caps the
requests it has in flight; one it could not send because of the cap is counted as "client
saturated", not silently skipped.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

from tqdm import tqdm

from xscore.bench.protocols import Adapter, Failure
from xscore.bench.workloads import Request


@dataclass(frozen=True, slots=True)
class Sample:
    intended: float  # seconds from the run's start when the request was meant to go
    sent: float
    finished: float
    pairs: int  # documents the request carried
    error: str | None = None  # a failure kind; None when answered in full

    @property
    def latency(self) -> float:
        return self.finished - self.intended


@dataclass(frozen=True, slots=True)
class Run:
    mode: str  # "closed" or "open"
    level: float  # clients (closed) or requests/s offered (open)
    warmup_s: float
    samples: list[Sample]
    end_s: float | None = None  # closed loop: when the clients stopped sending

    def measured(self) -> list[Sample]:
        """Open loop: the samples meant to be sent after the warm-up. Closed loop: the answers
        that came in between the warm-up and the end of sending, whenever they were sent (a
        server slower than the warm-up would otherwise show no answer, or only the lucky ones)."""
        if self.mode == "closed" and self.end_s is not None:
            return [sample for sample in self.samples if self.warmup_s <= sample.finished <= self.end_s]
        return [sample for sample in self.samples if sample.intended >= self.warmup_s]

    def window_s(self) -> float | None:
        """The closed loop's measured window (None: from the samples themselves)."""
        return self.end_s - self.warmup_s if self.mode == "closed" and self.end_s is not None else None


async def _one(adapter: Adapter, request: Request, intended: float, origin: float) -> Sample:
    sent = time.perf_counter() - origin
    try:
        await adapter.score(request)
        error = None
    except Failure as failure:
        error = failure.kind
    except Exception as exc:  # an adapter's own bug still leaves a sample, not a hole
        error = f"client error {type(exc).__name__}"
    return Sample(intended, sent, time.perf_counter() - origin, request.pairs, error)


def _bar(total: int | None, description: str, progress: bool) -> tqdm:
    return tqdm(total=total, desc=description, unit="req", disable=not progress, leave=False)


async def closed_loop(adapter: Adapter, requests: Sequence[Request], clients: int, *, duration_s: float,
                      warmup_s: float = 0.0, max_requests: int | None = None, progress: bool = True) -> Run:
    """`clients` loops, each sending back to back until the time or the request bound (requests
    measured, after the warm-up) is reached; requests unanswered at the time bound are cancelled."""
    origin = time.perf_counter()
    end = warmup_s + duration_s
    samples: list[Sample] = []
    issued = measured = 0
    bar = _bar(max_requests, f"closed loop, {clients} clients", progress)

    async def client() -> None:
        nonlocal issued, measured
        while time.perf_counter() - origin < end and (max_requests is None or measured < max_requests):
            request = requests[issued % len(requests)]  # each send the next request, none twice
            issued += 1
            now = time.perf_counter() - origin
            if now >= warmup_s:
                measured += 1
            samples.append(await _one(adapter, request, now, origin))
            bar.update()

    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    try:
        # clients stop by themselves at the request bound; at the time bound the requests still
        # out are cancelled, since an answer after the window would not count (a slow server's
        # queue could otherwise hold the run for minutes)
        await asyncio.wait(tasks, timeout=max(0.0, end - (time.perf_counter() - origin)))
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        bar.close()
    by_count = max_requests is not None and measured >= max_requests
    stopped = min(end, max((sample.finished for sample in samples), default=end)) if by_count else end
    return Run("closed", clients, warmup_s, sorted(samples, key=lambda sample: sample.intended), stopped)


def arrival_times(rate: float, duration_s: float, seed: int, max_requests: int | None = None,
                  warmup_s: float = 0.0) -> list[float]:
    """Poisson arrivals at `rate` per second over `duration_s`, the same for the same seed; at
    most `max_requests` of them at or after `warmup_s`."""
    rng = random.Random(seed)
    times: list[float] = []
    at = rng.expovariate(rate)
    after = 0
    while at < duration_s and (max_requests is None or after < max_requests):
        times.append(at)
        after += at >= warmup_s
        at += rng.expovariate(rate)
    return times


async def open_loop(adapter: Adapter, requests: Sequence[Request], rate: float, *, duration_s: float,
                    warmup_s: float = 0.0, max_requests: int | None = None, max_in_flight: int = 1024,
                    seed: int = 0, progress: bool = True) -> Run:
    """Send at Poisson arrival times at `rate`; latencies from the intended send times."""
    schedule = arrival_times(rate, warmup_s + duration_s, seed, max_requests, warmup_s)
    origin = time.perf_counter()
    samples: list[Sample] = []
    running: set[asyncio.Task] = set()
    bar = _bar(len(schedule), f"open loop, {rate:g} req/s", progress)

    def done(task: asyncio.Task) -> None:
        running.discard(task)
        samples.append(task.result())
        bar.update()

    try:
        for index, intended in enumerate(schedule):
            delay = intended - (time.perf_counter() - origin)
            if delay > 0:
                await asyncio.sleep(delay)
            request = requests[index % len(requests)]
            if len(running) >= max_in_flight:
                now = time.perf_counter() - origin
                samples.append(Sample(intended, now, now, request.pairs, "client saturated"))
                bar.update()
                continue
            task = asyncio.create_task(_one(adapter, request, intended, origin))
            running.add(task)
            task.add_done_callback(done)
        await asyncio.gather(*list(running))
    finally:
        bar.close()
    return Run("open", rate, warmup_s, sorted(samples, key=lambda sample: sample.intended))
