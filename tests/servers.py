"""A real Runtime (batchers + gRPC server) on a free port, on its own event loop thread."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from xscore.service.serving.runtime import Runtime, ServeConfig


class RunningServer:
    def __init__(self, models: dict, config: ServeConfig | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-server", daemon=True)
        self.thread.start()
        config = config or ServeConfig(grpc_port=0, http_port=None)
        self.runtime = self.call(self._build(models, config))
        self.addresses = self.call(self.runtime.start())
        self.address = self.addresses["grpc"]

    @staticmethod
    async def _build(models: dict, config: ServeConfig) -> Runtime:
        return Runtime(models, config)

    def call(self, coroutine, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def metric(self, name: str, **labels: str) -> float:
        return self.runtime.metrics.value(name, **labels)

    def stop(self) -> None:
        self.call(self.runtime.shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll a condition the test cannot await (it lives on the server's loop)."""
    limit = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > limit:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)
