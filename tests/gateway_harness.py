"""Real gateways for tests: uvicorn on a free port, on an event loop in a background thread.

The tests talk to them with real HTTP clients (httpx), exactly as a caller would.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx
import msgpack
from prometheus_client import CollectorRegistry

from xscore.gateway.app import create_app
from xscore.gateway.server import GatewayServer

T = TypeVar("T")

MSGPACK = "application/msgpack"
JSON = "application/json"


class LoopThread:
    """An event loop running in a daemon thread; `run` executes a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="gateway-test-loop", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


@contextmanager
def running_gateway(loop: LoopThread, scorer: Any, **options: Any) -> Iterator[str]:
    """Serve `create_app(scorer, **options)` on a free port; yields the base URL."""
    options.setdefault("metrics_registry", CollectorRegistry())
    server = GatewayServer(create_app(scorer, **options), "127.0.0.1", 0)
    address = loop.run(server.start())
    try:
        yield f"http://{address}"
    finally:
        loop.run(server.stop(grace=1))


def packb(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def decoded(response: httpx.Response) -> Any:
    """The body, decoded by the response's own Content-Type."""
    media_type = response.headers.get("content-type", "").split(";")[0]
    if media_type in (MSGPACK, "application/x-msgpack"):
        return msgpack.unpackb(response.content, raw=False)
    assert media_type == JSON, f"unexpected Content-Type {media_type!r}"
    return response.json()


# Fixtures, imported by the gateway test modules.
import pytest  # noqa: E402

from xscore.service.serving.scorer import Scorer  # noqa: E402
from xscore.service.serving.validation import Limits  # noqa: E402

SCORER_LIMITS = Limits(max_items_per_request=32, max_text_chars=4000)


@pytest.fixture(scope="session")
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


@contextmanager
def started_scorer(loop: LoopThread, models: dict[str, Any]) -> Iterator[Scorer]:
    """A Scorer with its batchers running on the gateway's loop, as `xscore serve` runs it."""

    async def start() -> Scorer:
        scorer = Scorer(models, SCORER_LIMITS)
        scorer.start()
        return scorer

    scorer = loop.run(start())
    try:
        yield scorer
    finally:
        loop.run(scorer.close())


@pytest.fixture(scope="session")
def scorer(loop: LoopThread, tiny_model: Any) -> Iterator[Scorer]:
    """Two names for one model: a plain one and a hub-style one with a slash."""
    with started_scorer(loop, {"tiny": tiny_model, "org/tiny": tiny_model}) as started:
        yield started


@pytest.fixture(scope="session")
def single_scorer(loop: LoopThread, tiny_model: Any) -> Iterator[Scorer]:
    with started_scorer(loop, {"tiny": tiny_model}) as started:
        yield started


@pytest.fixture(scope="module")
def base_url(loop: LoopThread, scorer: Scorer) -> Iterator[str]:
    with running_gateway(loop, scorer) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=30) as http:
        yield http
