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

LISTENING = re.compile(r"^xscore listening grpc=(\S+):(\d+) http=(\S+):(\d+)$")


def scraped(http_address: str, sample: str) -> float:
    """One sample's value from the server's /metrics, as a Prometheus scraper reads it."""
    import httpx

    text = httpx.get(f"http://{http_address}/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(sample + " "))


def start_process(*arguments: str, line_pattern: re.Pattern = LISTENING) -> tuple[subprocess.Popen, str, str]:
    """`xscore serve ARGUMENTS` on free ports; returns it with its gRPC and HTTP addresses."""
    process = subprocess.Popen(
        [sys.executable, "-m", "xscore.service.cli", "serve", "--grpc-port", "0", "--http-port", "0",
         "--device", "cpu", *arguments],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    line = process.stdout.readline().strip()
    match = line_pattern.match(line)
    assert match, f"no listening line, got {line!r}; stderr: {process.stderr.read() if not line else ''}"
    return process, f"{match.group(1)}:{match.group(2)}", f"{match.group(3)}:{match.group(4)}"


def test_sigterm_under_load_finishes_every_accepted_call_then_exits_0(minilm_exports):
    import httpx

    process, address, http_address = start_process("--model", f"minilm={minilm_exports['fp32'].path}",
                                                   "--drain-timeout", "60")
    # ~100 pairs of ~200 tokens: seconds of engine work on any CPU, so the drain is observable
    # distinct documents: identical pairs in one request are scored once
    documents = [f"{index}: " + " ".join(["passages about ranking and search relevance"] * 32) for index in range(8)]

    async def load_then_terminate():
        async with AsyncScorerClient(address, retry=RetryPolicy(attempts=1), timeout=120) as client, \
                httpx.AsyncClient(timeout=120) as http:
            assert await client.health() == health_pb2.HealthCheckResponse.SERVING
            accepted = [asyncio.ensure_future(client.score(f"query {n}", documents, model="minilm"))
                        for n in range(12)]
            over_http = [asyncio.ensure_future(http.post(f"http://{http_address}/v1/rerank",
                                                         json={"query": f"http {n}", "documents": documents}))
                         for n in range(4)]
            waiting = 0.0
            for _ in range(600):  # until all 16 calls are admitted: they are in flight at SIGTERM
                waiting = await asyncio.to_thread(scraped, http_address, 'xscore_requests_in_flight{model="minilm"}')
                if waiting == 16:
                    break
                await asyncio.sleep(0.05)
            process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.2)
            health = await client.health()
            with_refusal = await asyncio.gather(client.score("late", ["d"], model="minilm"), return_exceptions=True)
            answered = await asyncio.gather(*accepted, return_exceptions=True)
            return answered, health, with_refusal[0], waiting, await asyncio.gather(*over_http, return_exceptions=True)

    results, health_during_drain, late, waiting, http_results = asyncio.run(load_then_terminate())
    assert all(not isinstance(r, BaseException) and r.status_code == 200 and len(r.json()["results"]) == 8
               for r in http_results), http_results
    assert waiting == 16, f"{waiting} of 16 calls were in flight when SIGTERM was sent"
    assert process.wait(timeout=120) == 0
    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, f"accepted calls lost: {failures[:2]}"
    assert all(len(r.scores) == 8 for r in results)
    assert health_during_drain == health_pb2.HealthCheckResponse.NOT_SERVING
    assert isinstance(late, grpc.RpcError) and late.code() is grpc.StatusCode.UNAVAILABLE
    assert "draining" in late.details()


def test_one_process_serves_grpc_and_http_and_a_gateway_can_front_it(tiny_export):
    import httpx

    from xscore.client import ScorerClient

    service, grpc_address, http_address = start_process("--model", f"tiny={tiny_export.path}")
    try:
        gateway = subprocess.Popen(
            [sys.executable, "-m", "xscore.service.cli", "serve", "--upstream", grpc_address, "--http-port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            line = gateway.stdout.readline().strip()
            match = re.match(r"^xscore listening grpc=disabled http=(\S+) upstream=(\S+)$", line)
            assert match and match.group(2) == grpc_address, line
            body = {"query": {"text": "which passage ranks"}, "items": [{"id": "a", "text": "ranking passages"},
                                                                         {"text": "unrelated words"}]}
            with httpx.Client() as http:
                local = http.post(f"http://{http_address}/v1/score/tiny", json=body,
                                  headers={"accept": "application/json"}).json()
                remote = http.post(f"http://{match.group(1)}/v1/score/tiny", json=body,
                                   headers={"accept": "application/json"}).json()
            with ScorerClient(grpc_address) as client:
                direct = client.score("which passage ranks", [("a", "ranking passages"), "unrelated words"],
                                      model="tiny")
            # the same answer across the hop; the second time round the service's score cache has the pairs
            assert (local["usage"]["cached"], remote["usage"]["cached"]) == (0, 2)
            assert {**local, "usage": {**local["usage"], "cached": 2}} == remote
            assert [e["item_id"] for e in local["scores"]] == [e.item_id for e in direct.scores]
            assert all(abs(a["score"] - b.score) < 1e-6 for a, b in zip(local["scores"], direct.scores))
        finally:
            gateway.send_signal(signal.SIGTERM)
            assert gateway.wait(timeout=60) == 0
    finally:
        service.send_signal(signal.SIGTERM)
        assert service.wait(timeout=60) == 0


def test_a_drain_that_times_out_answers_what_is_left_unavailable_and_exits_1(minilm_exports):
    import httpx

    process, address, http_address = start_process("--model", f"minilm={minilm_exports['fp32'].path}",
                                                   "--drain-timeout", "0.2")
    # far more than 0.2 s of work; distinct, since identical pairs in one request are scored once
    documents = [f"{index}: " + " ".join(["passages about ranking and search relevance"] * 32) for index in range(8)]

    async def post(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post(f"http://{http_address}/v1/rerank", json={"query": "q", "documents": documents})

    async def load_then_terminate():
        async with AsyncScorerClient(address, retry=RetryPolicy(attempts=1), timeout=120) as grpc_client, \
                httpx.AsyncClient(timeout=120) as http_client:
            calls = [asyncio.ensure_future(grpc_client.score(f"query {n}", documents, model="minilm"))
                     for n in range(16)]
            calls += [asyncio.ensure_future(post(http_client)) for _ in range(4)]
            for _ in range(600):
                if await asyncio.to_thread(scraped, http_address, 'xscore_queue_pairs{model="minilm"}') > 8 * 12:
                    break
                await asyncio.sleep(0.05)
            process.send_signal(signal.SIGTERM)
            return await asyncio.gather(*calls, return_exceptions=True)

    results = asyncio.run(load_then_terminate())
    assert process.wait(timeout=120) == 1
    grpc_results, http_results = results[:16], results[16:]
    unavailable = [r for r in grpc_results if isinstance(r, grpc.RpcError)]
    assert unavailable and all(r.code() is grpc.StatusCode.UNAVAILABLE for r in unavailable), unavailable[:2]
    assert all(not isinstance(r, BaseException) or r in unavailable for r in grpc_results)
    for response in http_results:
        assert not isinstance(response, BaseException), response
        assert response.status_code in (200, 503), response.text
        if response.status_code == 503:
            assert response.json()["code"] == "UNAVAILABLE" and response.headers["retry-after"]
    assert "drain timed out" in process.stderr.read()


def test_serve_reads_its_token_from_a_file_and_guards_both_transports(tiny_export, tmp_path):
    import httpx

    from xscore.client import ScorerClient

    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    service, grpc_address, http_address = start_process("--model", f"tiny={tiny_export.path}",
                                                        "--auth-token-file", str(token_file))
    try:
        with ScorerClient(grpc_address, token="s3cret") as member, ScorerClient(grpc_address) as stranger:
            assert member.score("q", ["d"], model="tiny").scores
            try:
                stranger.score("q", ["d"], model="tiny")
                raise AssertionError("a call without the token was answered")
            except grpc.RpcError as error:
                assert error.code() is grpc.StatusCode.UNAUTHENTICATED
        assert httpx.get(f"http://{http_address}/v1/models").status_code == 401
        assert httpx.get(f"http://{http_address}/v1/models",
                         headers={"Authorization": "Bearer s3cret"}).status_code == 200
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(timeout=60)
