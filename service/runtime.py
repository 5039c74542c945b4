"""One serving process: models -> batchers -> Scorer -> transports, and their lifecycle.

`xscore serve` builds a Runtime and awaits `serve()`. Transports are a list of servers, each
with `async start() -> "host:port"` and `async stop(grace)`; adding one (the HTTP gateway) is
one entry in `Runtime.__init__`. SIGTERM (or SIGINT) drains: readiness goes false, new calls
get UNAVAILABLE, admitted calls finish within the drain timeout, then the servers stop.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from .batcher import Batcher, BatcherConfig
from .errors import model_error
from .grpc_server import GrpcServer
from .metrics import Metrics
from .registry import ModelSpec, load_model
from .scorer import Limits, Scorer
from .scoring import ScoringModel

log = logging.getLogger(__name__)


class Server(Protocol):
    async def start(self) -> str:
        """Begin serving; return the bound "host:port"."""
        ...

    async def stop(self, grace: float | None = None) -> None: ...


@dataclass(frozen=True, slots=True)
class ServeConfig:
    host: str = "127.0.0.1"
    grpc_port: int = 50051
    http_port: int | None = 8080  # None: no HTTP transport
    drain_timeout_s: float = 30.0
    limits: Limits = field(default_factory=Limits)
    batcher: BatcherConfig = field(default_factory=BatcherConfig)


def load_models(specs: list[ModelSpec], **options) -> dict[str, ScoringModel]:
    """Load each spec once, under its name; names must be distinct."""
    models: dict[str, ScoringModel] = {}
    for spec in specs:
        if spec.name in models:
            raise model_error(f"model name {spec.name!r} is given twice; name them with NAME=SOURCE")
        models[spec.name] = load_model(spec, **options)
    return models


class Runtime:
    def __init__(self, models: Mapping[str, ScoringModel], config: ServeConfig | None = None) -> None:
        self.config = config or ServeConfig()
        self.metrics = Metrics()
        self.batchers = {name: Batcher(model, self.metrics, self.config.batcher) for name, model in models.items()}
        self.scorer = Scorer(models, self.config.limits, batchers=self.batchers, metrics=self.metrics)
        self.servers: dict[str, Server] = {
            "grpc": GrpcServer(self.scorer, self.config.host, self.config.grpc_port),
            # The HTTP gateway joins here: "http": <server over create_app(self.scorer)>.
        }
        self.addresses: dict[str, str] = {}

    async def start(self) -> dict[str, str]:
        for batcher in self.batchers.values():
            batcher.start()
        for name, server in self.servers.items():
            self.addresses[name] = await server.start()
        return dict(self.addresses)

    def listening_line(self) -> str:
        http = self.addresses.get("http", "disabled")
        return f"xscore listening grpc={self.addresses['grpc']} http={http}"

    async def shutdown(self) -> bool:
        """Drain, stop the servers, close the batchers. False if the drain timed out."""
        drained = await self.scorer.drain(self.config.drain_timeout_s)
        if not drained:
            log.warning("drain timed out after %.1fs with %d calls still in flight",
                        self.config.drain_timeout_s, self.scorer.in_flight)
        for server in self.servers.values():
            await server.stop(grace=1.0)
        for batcher in self.batchers.values():
            await batcher.close()
        return drained

    async def serve(self, announce: Callable[[str], None] | None = None) -> int:
        """Serve until SIGTERM or SIGINT, then drain; returns the exit status (0)."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await self.start()
        (announce or _print_line)(self.listening_line())
        await stop.wait()
        log.info("signal received: draining (timeout %.1fs, %d calls in flight)",
                 self.config.drain_timeout_s, self.scorer.in_flight)
        drained = await self.shutdown()
        log.info("stopped (%s)", "drained" if drained else "drain timed out")
        return 0


def _print_line(line: str) -> None:
    print(line, flush=True)
    if not sys.stdout.isatty():
        log.info(line)
