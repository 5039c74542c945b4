"""Serving the gateway with uvicorn on an event loop someone else owns.

`xscore serve` runs the gRPC server and this on one loop, so this neither installs signal
handlers nor runs its own loop: `start()` binds (port 0 picks a free port) and returns the bound
address; `stop(grace)` stops accepting, lets in-flight requests finish for up to `grace` seconds,
then cancels the rest.
"""

from __future__ import annotations

import asyncio
import socket
import ssl

import uvicorn
from starlette.types import ASGIApp

from xscore.api.tls import TlsFiles


def _listening_socket(host: str, port: int, backlog: int) -> socket.socket:
    # proto must be IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on accepted sockets whose
    # proto says TCP, and without it every keep-alive response waits ~40 ms for a delayed ACK.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


class GatewayServer:
    def __init__(self, app: ASGIApp, host: str = "127.0.0.1", port: int = 8080, *, log_level: str = "warning",
                 access_log: bool = False, tls: TlsFiles | None = None) -> None:
        """`tls`: serve HTTPS with its certificate and key; with its CA, require client certificates."""
        self.host = host
        self.port = port
        self._config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=access_log,
                                      lifespan="off",
                                      ssl_certfile=str(tls.cert) if tls and tls.cert else None,
                                      ssl_keyfile=str(tls.key) if tls and tls.key else None,
                                      ssl_ca_certs=str(tls.ca) if tls and tls.ca else None,
                                      ssl_cert_reqs=ssl.CERT_REQUIRED if tls and tls.ca else ssl.CERT_NONE,
                                      server_header=False)
        self._server: uvicorn.Server | None = None
        self._sockets: list[socket.socket] = []
        self._ticker: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    async def start(self) -> str:
        """Bind, start serving, and return "host:port" (the real port when 0 was asked)."""
        sock = _listening_socket(self.host, self.port, self._config.backlog)
        self.port = sock.getsockname()[1]
        self._sockets = [sock]
        if not self._config.loaded:
            self._config.load()
        server = uvicorn.Server(self._config)
        server.lifespan = self._config.lifespan_class(self._config)
        await server.startup(sockets=self._sockets)
        self._server = server
        # main_loop refreshes the Date header each second and returns once should_exit is set
        self._ticker = asyncio.create_task(server.main_loop(), name="xscore-http-ticker")
        return self.address

    async def stop(self, grace: float = 5.0) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.should_exit = True
        if self._ticker is not None:
            await self._ticker
        self._config.timeout_graceful_shutdown = max(grace, 0.0)
        await server.shutdown(sockets=self._sockets)
        self._sockets = []
