"""The dynamic micro-batcher: one per model, pairs from concurrent requests share engine batches.

Shape (TEI's queue): the batcher alone owns its queue, and it only ever sees encoded pairs (the
Scorer tokenizes). A request becomes a `Job` holding its pairs and the future its answer goes back
on, so scattering needs no lookup table. One scheduler task on the event loop forms a batch
whenever an engine slot is free; nothing sleeps or polls:

- admission is bounded (pairs admitted and unanswered); a full queue fails fast with
  RESOURCE_EXHAUSTED and a retry-after estimated from the measured throughput;
- a batch is grown around the pair whose turn it is (jobs take turns, so a 500-item request
  cannot starve a 1-item one) from a window of every job's next pairs, by length, closed by
  the padded-token budget and the pair cap (`planner.select_batch`); on several streams a
  short queue gets smaller batches than a deep one (`planner.batch_budget`);
- `parallelism + 1` batches are out at once: one per engine worker plus one formed and padded
  ahead, so a worker never waits on Python between batches, and an idle engine gets work at
  once (no wait timer);
- a cancelled job leaves the queue when its future is cancelled; an expired one when its
  deadline timer fires: neither reaches the engine;
- identical pairs in one batch (concurrent requests asking the same) are run once, and every
  job that holds one gets the same row;
- results are written into each job's rows; a job completes when its last pair does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import numpy as np

from xscore.api.errors import ErrorCode, XscoreError
from xscore.service.models.engines.base import Engine
from xscore.service.models.planner import batch_budget, select_batch
from xscore.service.models.tokenization import EncodedBatch, EncodedPair, pad_batch
from xscore.service.serving.metrics import Metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BatcherConfig:
    max_batch_tokens: int | None = None  # padded tokens per batch; None: the engine's measured best
    max_batch_pairs: int = 256
    max_queue_pairs: int = 4096  # pairs admitted and not yet answered, over all requests
    window_pairs: int = 1024  # candidates considered when forming one batch


@dataclass(frozen=True, slots=True)
class BatchedLogits:
    logits: np.ndarray  # (pairs, labels), input order
    queue_ms: float
    inference_ms: float


class Job:
    """One request's pairs, where its answer goes, and its bookkeeping. Made by `Batcher.admit`."""

    __slots__ = ("size", "future", "deadline", "pairs", "pending", "logits", "remaining", "enqueued_at",
                 "queue_s", "inference_s", "drop_reason", "timer", "queued")

    def __init__(self, size: int, future: asyncio.Future, deadline: float | None) -> None:
        self.size = size
        self.future = future
        self.deadline = deadline
        self.pairs: Sequence[EncodedPair] = ()
        self.pending: list[int] = []  # pair indices not yet in a batch
        self.logits: np.ndarray | None = None
        self.remaining = size
        self.enqueued_at = 0.0
        self.queue_s: float | None = None
        self.inference_s = 0.0
        self.drop_reason = "cancelled"
        self.timer: asyncio.TimerHandle | None = None
        self.queued = False  # in the batcher's deque (has pairs not yet batched)


@dataclass(slots=True)
class _Batch:
    entries: list[tuple[Job, int]]
    encoded: EncodedBatch  # the distinct pairs of the entries
    jobs: list[Job]  # distinct, in entry order
    rows: list[int]  # per entry, its pair's row in `encoded`


class Batcher:
    """Queue, batch, run, scatter, for one model's engine.

    A caller `admit`s a request first (fails fast when the queue is full), encodes its pairs,
    then awaits `run(job, pairs)`; `release(job)` in a `finally` frees the admission of a job
    that never ran or whose caller left.
    """

    def __init__(self, name: str, engine: Engine, pad_id: int, metrics: Metrics | None = None,
                 config: BatcherConfig | None = None) -> None:
        self.name = name
        self.engine = engine
        self.pad_id = pad_id
        self.config = config or BatcherConfig()
        self.metrics = metrics or Metrics()
        self.max_batch_tokens = self.config.max_batch_tokens or engine.max_batch_tokens
        self.parallelism = max(1, engine.parallelism)
        self._labels = {"model": name}
        self._jobs: deque[Job] = deque()  # jobs with pairs not yet batched; the head's turn is next
        self._live: set[Job] = set()  # admitted and not yet answered, queued or in a batch
        self._queued_pairs = 0
        self._admitted_pairs = 0
        self._pairs_per_s: float | None = None  # measured engine throughput, for retry-after
        self._in_flight = 0  # batches the engine is running
        self._wake = asyncio.Event()
        self._slots: asyncio.Semaphore | None = None
        self._scheduler: asyncio.Task | None = None
        self._engine_pool: ThreadPoolExecutor | None = None
        self._closed = False

    @property
    def running(self) -> bool:
        return self._scheduler is not None and not self._scheduler.done()

    def start(self) -> None:
        """Start scheduling on the running loop. Requests admitted before this wait in the queue."""
        if self.running:
            return
        self._engine_pool = ThreadPoolExecutor(self.parallelism, thread_name_prefix=f"engine-{self.name}")
        self._slots = asyncio.Semaphore(self.parallelism + 1)
        self._scheduler = asyncio.get_running_loop().create_task(self._schedule(), name=f"batcher-{self.name}")
        self._scheduler.add_done_callback(self._on_scheduler_exit)

    def _on_scheduler_exit(self, scheduler: asyncio.Task) -> None:
        """A scheduler that died (a bug) fails every waiting call and refuses new ones, instead of
        leaving them to hang; `running` turns false, so readiness does too."""
        if scheduler.cancelled() or scheduler.exception() is None:
            return
        log.error("the batcher for %s stopped; failing %d waiting requests", self.name, len(self._live),
                  exc_info=scheduler.exception())
        self._closed = True
        for job in list(self._live):
            if not job.future.done():
                job.drop_reason = "failed"
                job.future.set_exception(XscoreError(ErrorCode.INTERNAL, f"the batcher for {self.name!r} stopped"))

    async def close(self) -> None:
        """Stop scheduling; requests still queued fail with UNAVAILABLE. Running batches finish."""
        self._closed = True
        if self._scheduler is not None:
            self._scheduler.cancel()
            await asyncio.gather(self._scheduler, return_exceptions=True)
        for job in list(self._jobs):
            if not job.future.done():
                job.future.set_exception(XscoreError(ErrorCode.UNAVAILABLE, "the server is shutting down"))
        if self._engine_pool is not None:
            await asyncio.get_running_loop().run_in_executor(None, partial(self._engine_pool.shutdown, wait=True))

    def admit(self, size: int, deadline: float | None = None) -> Job:
        """Reserve room for `size` pairs, or fail at once with RESOURCE_EXHAUSTED."""
        self.check_room(size)
        job = Job(size, asyncio.get_running_loop().create_future(), deadline)
        self._admitted_pairs += size
        self._live.add(job)
        job.future.add_done_callback(partial(self._on_job_done, job))
        return job

    def check_room(self, size: int) -> None:
        """Fail as `admit(size)` would now, without reserving anything."""
        if self._closed:
            raise XscoreError(ErrorCode.UNAVAILABLE, f"model {self.name!r} is not serving (shutting down or "
                              "its batcher stopped)", retry_after_s=1.0)
        if self._admitted_pairs and self._admitted_pairs + size > self.config.max_queue_pairs:
            self.metrics.rejected.labels(**self._labels).inc()
            retry = self.retry_after_s()
            raise XscoreError(
                ErrorCode.RESOURCE_EXHAUSTED,
                f"model {self.name!r} is at capacity: {self._admitted_pairs} pairs queued, "
                f"limit {self.config.max_queue_pairs}; retry in {retry:.1f}s",
                details={"queued_pairs": self._admitted_pairs, "limit": self.config.max_queue_pairs},
                retry_after_s=retry,
            )

    async def run(self, job: Job, pairs: Sequence[EncodedPair]) -> BatchedLogits:
        """Queue the job's encoded pairs and await their logits, in input order."""
        if len(pairs) != job.size:
            raise ValueError(f"job admitted {job.size} pairs, got {len(pairs)}")
        job.pairs = pairs
        if not job.future.done():
            self._enqueue(job)
        logits = await job.future  # cancelling the caller cancels this future: the job leaves the queue
        return BatchedLogits(logits, queue_ms=(job.queue_s or 0.0) * 1000, inference_ms=job.inference_s * 1000)

    @staticmethod
    def release(job: Job) -> None:
        """Give up a job that has not been answered (its caller failed or left)."""
        if not job.future.done():
            job.future.cancel()

    def retry_after_s(self) -> float:
        """How long until the queue has drained, from the measured throughput (1 s until measured)."""
        if not self._pairs_per_s:
            return 1.0
        return float(min(60.0, max(0.1, self._admitted_pairs / self._pairs_per_s)))

    # -- the queue -------------------------------------------------------------------------

    def _enqueue(self, job: Job) -> None:
        job.pending = list(range(job.size))
        job.enqueued_at = time.perf_counter()
        if job.deadline is not None:
            job.timer = asyncio.get_running_loop().call_at(_loop_time_of(job.deadline), self._expire, job)
        self._jobs.append(job)
        job.queued = True
        self._queued_pairs += job.size
        self._publish_depth()
        self._wake.set()

    def _expire(self, job: Job) -> None:
        if not job.future.done():
            job.drop_reason = "expired"
            job.future.set_exception(XscoreError(
                ErrorCode.DEADLINE_EXCEEDED,
                f"the deadline passed after {job.size - job.remaining} of {job.size} pairs were scored"))

    def _on_job_done(self, job: Job, future: asyncio.Future) -> None:
        if job.timer is not None:
            job.timer.cancel()
        if job.queued:  # cancelled, expired or closed before all its pairs were batched
            job.queued = False
            self._jobs.remove(job)
            self._queued_pairs -= len(job.pending)
            self.metrics.dropped_pairs.labels(reason=job.drop_reason, **self._labels).inc(len(job.pending))
            job.pending = []
            self._publish_depth()
        self._admitted_pairs -= job.size
        self._live.discard(job)

    def _publish_depth(self) -> None:
        self.metrics.queue_pairs.labels(**self._labels).set(self._queued_pairs)
        self.metrics.queue_requests.labels(**self._labels).set(len(self._jobs))

    def _budget(self, lengths: Sequence[int]) -> int:
        """The next batch's padded-token budget: `planner.batch_budget` of what waits now."""
        return batch_budget(sum(lengths), self.parallelism - self._in_flight, self.parallelism,
                            self.max_batch_tokens)

    def _take_batch(self) -> _Batch | None:
        """Form the next batch, or None when nothing is queued."""
        if not self._jobs:
            return None
        share = max(1, self.config.window_pairs // len(self._jobs))
        candidates: list[tuple[Job, int]] = []
        for job in self._jobs:  # the head first: its first pair is the pivot
            candidates.extend((job, index) for index in job.pending[:share])
        lengths = [job.pairs[index].length for job, index in candidates]
        chosen = select_batch(lengths, 0, self._budget(lengths), self.config.max_batch_pairs)
        entries = [candidates[position] for position in chosen]
        now = time.perf_counter()
        taken: dict[Job, set[int]] = {}
        for job, index in entries:
            taken.setdefault(job, set()).add(index)
        for job, indices in taken.items():
            job.pending = [i for i in job.pending[:share] if i not in indices] + job.pending[share:]
            if job.queue_s is None:
                job.queue_s = now - job.enqueued_at
                self.metrics.queue_seconds.labels(**self._labels).observe(job.queue_s)
        self._queued_pairs -= len(entries)
        head = self._jobs.popleft()
        if head.pending:
            self._jobs.append(head)  # its turn is over: the next job's pair pivots the next batch
        else:
            head.queued = False
        for job in taken:
            if job is not head and not job.pending:
                job.queued = False
                self._jobs.remove(job)
        self._publish_depth()
        distinct: list[EncodedPair] = []
        rows: list[int] = []
        seen: dict[tuple[tuple[int, ...], tuple[int, ...]], int] = {}
        for job, index in entries:
            pair = job.pairs[index]
            row = seen.setdefault((tuple(pair.ids), tuple(pair.type_ids)), len(distinct))
            if row == len(distinct):
                distinct.append(pair)
            rows.append(row)
        if len(distinct) < len(entries):
            self.metrics.duplicate_pairs.labels(**self._labels).inc(len(entries) - len(distinct))
        return _Batch(entries, pad_batch(distinct, self.pad_id), list(taken), rows)

    # -- scheduling and inference ----------------------------------------------------------

    async def _schedule(self) -> None:
        assert self._slots is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._slots.acquire()
            batch = self._take_batch()
            while batch is None:
                self._wake.clear()
                await self._wake.wait()
                batch = self._take_batch()
            if not self._jobs:
                self._wake.clear()
            self._observe_batch(batch)
            self._in_flight += 1
            running = loop.run_in_executor(self._engine_pool, self._infer, batch.encoded)
            running.add_done_callback(partial(self._scatter, batch))

    def _infer(self, encoded: EncodedBatch) -> tuple[np.ndarray, float]:
        started = time.perf_counter()
        logits = self.engine.run(encoded)
        return logits, time.perf_counter() - started

    def _observe_batch(self, batch: _Batch) -> None:
        padded, real = batch.encoded.padded_tokens, batch.encoded.real_tokens
        labels = self._labels
        self.metrics.batch_pairs.labels(**labels).observe(batch.encoded.pairs)
        self.metrics.batch_tokens.labels(**labels).observe(padded)
        self.metrics.batch_requests.labels(**labels).observe(len(batch.jobs))
        self.metrics.padding_ratio.labels(**labels).observe(1.0 - real / padded)

    def _scatter(self, batch: _Batch, running: asyncio.Future) -> None:
        assert self._slots is not None
        self._slots.release()
        self._in_flight -= 1
        if running.cancelled():
            return
        error = running.exception()
        if error is not None:
            log.error("engine failed on a batch of %d pairs for %s", len(batch.entries), self.name, exc_info=error)
            for job in batch.jobs:
                if not job.future.done():
                    job.future.set_exception(XscoreError(ErrorCode.INTERNAL, "the engine failed on this batch"))
            return
        logits, seconds = running.result()
        self.metrics.inference_seconds.labels(**self._labels).observe(seconds)
        rate = len(batch.entries) * self.parallelism / max(seconds, 1e-6)
        self._pairs_per_s = rate if self._pairs_per_s is None else 0.8 * self._pairs_per_s + 0.2 * rate
        for job in batch.jobs:
            job.inference_s += seconds
        for (job, index), row in zip(batch.entries, logits[batch.rows]):
            if job.future.done():
                continue  # its caller is gone or its deadline passed
            if job.logits is None:
                job.logits = np.empty((job.size, logits.shape[1]), dtype=np.float32)
            job.logits[index] = row
            job.remaining -= 1
            if job.remaining == 0:
                job.future.set_result(job.logits)


def _loop_time_of(deadline: float) -> float:
    """asyncio's clock is time.monotonic() on every platform we run; map defensively anyway."""
    loop = asyncio.get_running_loop()
    return loop.time() + (deadline - time.monotonic())
