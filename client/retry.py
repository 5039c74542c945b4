"""The retry policy every xscore client shares, whatever its transport.

A full queue (gRPC RESOURCE_EXHAUSTED, HTTP 429) and a draining or not-yet-ready server
(UNAVAILABLE, 503) are retried with jittered exponential backoff, waiting at least the server's
retry-after hint, and never past the call's deadline: a retry that could not finish in time is
not started.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 4  # calls in all, the first included
    initial_backoff_s: float = 0.05
    max_backoff_s: float = 2.0
    multiplier: float = 2.0

    def backoff(self, retry: int, hint: float | None = None) -> float:
        """Seconds before retry number `retry` (0-based): jittered backoff, at least `hint`."""
        backoff = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** retry)
        backoff *= random.uniform(0.5, 1.0)  # de-synchronise clients refused together
        return max(backoff, hint) if hint is not None else backoff

    def next_delay(self, retry: int, hint: float | None, deadline: float | None) -> float | None:
        """The delay before retry number `retry` of a retryable failure, or None when the
        attempts are spent or the retry could not start before `deadline` (time.monotonic())."""
        if retry + 1 >= self.attempts:
            return None
        delay = self.backoff(retry, hint)
        if deadline is not None and time.monotonic() + delay >= deadline:
            return None
        return delay


__all__ = ["RetryPolicy"]
