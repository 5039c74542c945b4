"""`xscore serve` as a subprocess: the listening line, and SIGTERM under load losing no accepted call."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys

import grpc
from grpc_health.v1 import health_pb2

from xscore.client import AsyncScorerClient, RetryPolicy

LISTENING = re.compile(r"^xscore listening grpc=(\S+):(\d+) http=(\S+)$")


def start_serving(model_dir, *extra: str) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "xscore.service.cli", "serve", "--model", f"minilm={model_dir}",
         "--grpc-port", "0", "--http-port", "0", "--device", "cpu", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    line = process.stdout.readline().strip()
    match = LISTENING.match(line)
    assert match, f"no listening line, got {line!r}; stderr: {process.stderr.read() if not line else ''}"
    return process, f"{match.group(1)}:{match.group(2)}"


def test_sigterm_under_load_finishes_every_accepted_call_then_exits_0(minilm_exports):
    process, address = start_serving(minilm_exports["fp32"].path, "--drain-timeout", "60")
    documents = [" ".join(["passages about ranking and search relevance"] * 12)] * 4

    async def load_then_terminate():
        async with AsyncScorerClient(address, retry=RetryPolicy(attempts=1), timeout=120) as client:
            assert await client.health() == health_pb2.HealthCheckResponse.SERVING
            accepted = [asyncio.ensure_future(client.score(f"query {n}", documents, model="minilm"))
                        for n in range(12)]
            await asyncio.sleep(0.5)  # let them be admitted; the engine needs seconds for 48 pairs
            process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.2)
            health = await client.health()
            with_refusal = await asyncio.gather(client.score("late", ["d"], model="minilm"), return_exceptions=True)
            return await asyncio.gather(*accepted, return_exceptions=True), health, with_refusal[0]

    results, health_during_drain, late = asyncio.run(load_then_terminate())
    assert process.wait(timeout=120) == 0
    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, f"accepted calls lost: {failures[:2]}"
    assert all(len(r.scores) == 4 for r in results)
    assert health_during_drain == health_pb2.HealthCheckResponse.NOT_SERVING
    assert isinstance(late, grpc.RpcError) and late.code() is grpc.StatusCode.UNAVAILABLE
    assert "draining" in late.details()
