"""The gateway's own Prometheus metrics: requests by route and status, and their latency.

One set per registry: apps built twice against the same registry (tests, reloads) share it
instead of failing on duplicate names.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, GatewayMetrics] = weakref.WeakKeyDictionary()


@dataclass(frozen=True, slots=True)
class GatewayMetrics:
    requests: Counter
    latency: Histogram

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)


def gateway_metrics(registry: CollectorRegistry) -> GatewayMetrics:
    found = _BY_REGISTRY.get(registry)
    if found is None:
        found = GatewayMetrics(
            Counter("xscore_http_requests", "HTTP requests by route template, method and status",
                    ["route", "method", "status"], registry=registry),
            Histogram("xscore_http_request_duration_seconds", "HTTP request latency by route template",
                      ["route", "method"], registry=registry,
                      buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)),
        )
        _BY_REGISTRY[registry] = found
    return found
