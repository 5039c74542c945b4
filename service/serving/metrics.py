"""Prometheus metrics for the scoring path, in a registry of their own.

`xscore serve` hands this registry to the HTTP gateway, which adds its own request metrics
and serves the whole registry at /metrics. A registry per `Metrics` (not the process-global
default) lets several services, or tests, live in one process without clashing names.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Seconds, from a sub-millisecond short pair to a multi-second 500-item request.
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_PAIR_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_TOKEN_BUCKETS = (64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
_REQUEST_BUCKETS = (1, 2, 3, 4, 8, 16, 32, 64)
_RATIO_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75)


class Metrics:
    """The service's metrics, labelled by model."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("xscore_requests", "Scoring requests by model and outcome (ok or error code).",
                                ["model", "status"], registry=r)
        self.in_flight = Gauge("xscore_requests_in_flight", "Scoring calls admitted and not yet answered.",
                               ["model"], registry=r)
        self.queue_pairs = Gauge("xscore_queue_pairs", "Pairs waiting for a batch (queue depth).", ["model"], registry=r)
        self.queue_requests = Gauge("xscore_queue_requests", "Requests with pairs waiting for a batch.", ["model"],
                                    registry=r)
        self.batch_pairs = Histogram("xscore_batch_pairs", "Pairs per engine batch.", ["model"],
                                     buckets=_PAIR_BUCKETS, registry=r)
        self.batch_tokens = Histogram("xscore_batch_tokens", "Padded tokens (longest x pairs) per engine batch.",
                                      ["model"], buckets=_TOKEN_BUCKETS, registry=r)
        self.batch_requests = Histogram("xscore_batch_requests", "Distinct requests sharing one engine batch.",
                                        ["model"], buckets=_REQUEST_BUCKETS, registry=r)
        self.padding_ratio = Histogram("xscore_batch_padding_ratio",
                                       "Share of a batch's padded tokens that are padding.", ["model"],
                                       buckets=_RATIO_BUCKETS, registry=r)
        self.queue_seconds = Histogram("xscore_queue_seconds", "Admission to the first batch of a request.",
                                       ["model"], buckets=_LATENCY_BUCKETS, registry=r)
        self.tokenize_seconds = Histogram("xscore_tokenize_seconds", "Tokenization of a request.", ["model"],
                                          buckets=_LATENCY_BUCKETS, registry=r)
        self.inference_seconds = Histogram("xscore_inference_seconds", "Engine run of one batch.", ["model"],
                                           buckets=_LATENCY_BUCKETS, registry=r)
        self.rejected = Counter("xscore_rejected_requests", "Requests refused because the queue was full.",
                                ["model"], registry=r)
        self.dropped_pairs = Counter("xscore_dropped_pairs",
                                     "Pairs dropped before inference (caller cancelled or deadline passed).",
                                     ["model", "reason"], registry=r)
        self.cache_hits = Counter("xscore_score_cache_hits", "Pairs answered from the score cache.", registry=r)
        self.cache_misses = Counter("xscore_score_cache_misses", "Pairs looked up in the score cache and not found.",
                                    registry=r)
        self.cache_evictions = Counter("xscore_score_cache_evictions",
                                       "Entries dropped from the score cache to stay within its bound.", registry=r)
        self.cache_bytes = Gauge("xscore_score_cache_bytes", "Bytes the score cache holds (keys, logits, slots).",
                                 registry=r)
        self.cache_entries = Gauge("xscore_score_cache_entries", "Pairs the score cache holds.", registry=r)
        self.duplicate_pairs = Counter("xscore_batch_duplicate_pairs",
                                       "Pairs answered by an identical pair of the same engine batch (another "
                                       "request asked the same).", ["model"], registry=r)
        self.windows = Counter("xscore_document_windows",
                               "Windows scored for documents split in chunk mode (long_documents=chunk).",
                               ["model"], registry=r)

    def value(self, name: str, **labels: str) -> float:
        """One sample's current value (0 when absent): for tests, benchmarks and readiness probes."""
        found = self.registry.get_sample_value(name, labels)
        return float(found) if found is not None else 0.0
