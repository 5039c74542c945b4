"""The HTTP API's own names, which the gateway writes and the HTTP clients read: one place, so
the two ends cannot drift apart."""

from __future__ import annotations

DEADLINE_HEADER = "X-Timeout-Ms"  # the caller's remaining patience; past it the answer is 504
# Timing field (xscore.api.schema.Timing) -> the response header that carries it, in ms
TIMING_HEADERS = {"queue_ms": "X-Queue-Time", "tokenize_ms": "X-Tokenization-Time",
                  "inference_ms": "X-Inference-Time", "total_ms": "X-Total-Time"}
# Statuses at which a client should come back later; they always carry Retry-After.
RETRY_STATUSES = frozenset({429, 503})

__all__ = ["DEADLINE_HEADER", "RETRY_STATUSES", "TIMING_HEADERS"]
