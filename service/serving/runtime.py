"""One serving process: transports -> Scorer (one batcher per model) -> engines, and their lifecycle.

`xscore serve` builds a Runtime and awaits `serve()`. Transports are servers, each with
`async start() -> "host:port"` and `async stop(grace)`: gRPC and the HTTP gateway share one event
loop and one Scorer. With `--upstream` the process is a gateway only, in front of a remote
scorer. SIGTERM (or SIGINT) drains: readiness goes false, new calls get UNAVAILABLE, admitted
calls finish within the drain timeout, then the servers stop.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from xscore.api.errors import model_error
from xscore.api.schema import LengthPolicy
from xscore.api.tls import TlsFiles
from xscore.service.models.engines.base import EngineOptions
from xscore.service.models.model import LoadedModel
from xscore.service.models.registry import ModelSpec, load_model
from xscore.service.serving.batcher import BatcherConfig
from xscore.service.serving.grpc_server import GrpcServer
from xscore.service.serving.metrics import Metrics
from xscore.service.serving.score_cache import DEFAULT_MAX_MB, ScoreCache
from xscore.service.serving.scorer import Scorer
from xscore.service.serving.validation import Limits

if TYPE_CHECKING:
    from xscore.gateway.upstream import RemoteScorer

log = logging.getLogger(__name__)


class Server(Protocol):
    async def start(self) -> str:
        """Begin serving; return the bound "host:port"."""
        ...

    async def stop(self, grace: float | None = None) -> None: ...


# SIGTERM: how long accepted calls may take to finish before what is left is answered UNAVAILABLE
DRAIN_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class ServeConfig:
    host: str = "127.0.0.1"
    grpc_port: int = 50051
    http_port: int | None = 8080  # None: no HTTP transport
    upstream: str | None = None  # HOST:PORT of a remote scorer: serve the gateway only
    cors_origins: tuple[str, ...] = ()
    auth_token: str | None = None
    tls: TlsFiles | None = None  # both transports serve TLS (mutual when it has a CA)
    upstream_tls: TlsFiles | None = None  # how a gateway reaches --upstream over TLS
    drain_timeout_s: float = DRAIN_TIMEOUT_S
    limits: Limits = field(default_factory=Limits)
    batcher: BatcherConfig = field(default_factory=BatcherConfig)
    score_cache_bytes: int = DEFAULT_MAX_MB * 1024 * 1024  # 0: no score cache
    lengths: Mapping[str, LengthPolicy] = field(default_factory=dict)  # per model; unnamed: DEFAULT_LENGTHS


def load_models(specs: list[ModelSpec], *, variant: str = "auto", device: str = "auto", engine: str = "auto",
                options: EngineOptions = EngineOptions(), max_length: int | None = None) -> dict[str, LoadedModel]:
    """Load each spec once, under its name; names must be distinct."""
    models: dict[str, LoadedModel] = {}
    for spec in specs:
        if spec.name in models:
            raise model_error(f"model name {spec.name!r} is given twice; name them with NAME=SOURCE")
        models[spec.name] = load_model(spec, variant=variant, device=device, engine=engine, options=options,
                                       max_length=max_length)
    return models


class Runtime:
    """The serving process's parts: one Scorer (local models) or one remote, and its servers."""

    def __init__(self, models: Mapping[str, LoadedModel], config: ServeConfig | None = None) -> None:
        self.config = config or ServeConfig()
        self.metrics = Metrics()
        self.addresses: dict[str, str] = {}
        self.remote: RemoteScorer | None = None
        if self.config.upstream:
            from xscore.gateway.upstream import RemoteScorer

            if models:
                raise model_error("a gateway in front of --upstream serves the upstream's models, not its own")
            self.scorer: Scorer | None = None
            # the upstream scorer shares the deployment's token
            self.remote = RemoteScorer(self.config.upstream, token=self.config.auth_token,
                                       tls=self.config.upstream_tls)
            self.servers: dict[str, Server] = {"http": _gateway_server(self.remote, self.config, self.metrics)}
            return
        self.scorer = Scorer(models, self.config.limits, metrics=self.metrics, batching=self.config.batcher,
                             lengths=self.config.lengths,
                             score_cache=ScoreCache(self.config.score_cache_bytes, self.metrics))
        self.servers = {"grpc": GrpcServer(self.scorer, self.config.host, self.config.grpc_port,
                                           auth_token=self.config.auth_token, tls=self.config.tls)}
        if self.config.http_port is not None:
            self.servers["http"] = _gateway_server(self.scorer, self.config, self.metrics)

    async def start(self) -> dict[str, str]:
        if self.scorer is not None:
            self.scorer.start()
        for name, server in self.servers.items():
            self.addresses[name] = await server.start()
        return dict(self.addresses)

    def listening_line(self) -> str:
        grpc = self.addresses.get("grpc", "disabled")
        http = self.addresses.get("http", "disabled")
        upstream = f" upstream={self.config.upstream}" if self.scorer is None else ""
        return f"xscore listening grpc={grpc} http={http}{upstream}"

    async def shutdown(self) -> bool:
        """Drain, close the batchers, stop the servers. False if the drain timed out."""
        if self.scorer is None:
            # a gateway only: drain as a scorer does (readiness false, new calls UNAVAILABLE, the
            # calls sent upstream answered), then stop the server
            assert self.remote is not None
            self.remote.begin_drain()
            drained = await self.remote.wait_idle(self.config.drain_timeout_s)
            if not drained:
                log.warning("drain timed out after %.1fs with calls still at the upstream",
                            self.config.drain_timeout_s)
            for server in self.servers.values():
                await server.stop(grace=1.0)
            await self.remote.close()
            return drained
        drained = await self.scorer.drain(self.config.drain_timeout_s)
        if not drained:
            log.warning("drain timed out after %.1fs with %d calls still in flight; answering the queued "
                        "ones UNAVAILABLE", self.config.drain_timeout_s, self.scorer.in_flight)
        # closed while the transports still run: every call still queued is answered UNAVAILABLE
        # (503 over HTTP) in the documented format, and batches already running finish
        await self.scorer.close()
        for server in self.servers.values():
            await server.stop(grace=1.0)
        return drained

    async def serve(self, announce: Callable[[str], None] | None = None) -> int:
        """Serve until SIGTERM or SIGINT, then drain; the exit status is 0, or 1 when the drain
        timed out (some calls were answered UNAVAILABLE instead of scored)."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await self.start()
        (announce or _print_line)(self.listening_line())
        await stop.wait()
        log.info("signal received: draining (timeout %.1fs)", self.config.drain_timeout_s)
        drained = await self.shutdown()
        log.info("stopped (%s)", "drained" if drained else "drain timed out")
        return 0 if drained else 1


def _gateway_server(backend: object, config: ServeConfig, metrics: Metrics) -> Server:
    from xscore.gateway.app import create_app
    from xscore.gateway.server import GatewayServer

    app = create_app(backend, cors_origins=config.cors_origins, auth_token=config.auth_token,
                     metrics_registry=metrics.registry)
    return GatewayServer(app, config.host, config.http_port or 0, tls=config.tls)


def _print_line(line: str) -> None:
    print(line, flush=True)
    if not sys.stdout.isatty():
        log.info(line)
