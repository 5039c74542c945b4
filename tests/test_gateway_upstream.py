"""Upstream mode: the gateway in front of the gRPC service gives what the in-process gateway gives."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import pytest
from gateway_harness import JSON, MSGPACK, LoopThread, decoded, loop, packb, running_gateway, scorer  # noqa: F401
from servers import wait_until

from xscore.api.errors import ErrorCode, XscoreError
from xscore.api.schema import Item, ScoreRequest
from xscore.gateway.upstream import RemoteScorer
from xscore.service.serving.batcher import BatcherConfig
from xscore.service.serving.grpc_server import GrpcServer
from xscore.service.serving.scorer import Scorer
from xscore.service.serving.validation import Limits


@pytest.fixture(scope="module")
def upstream(loop: LoopThread, scorer: Scorer) -> Iterator[str]:
    server = GrpcServer(scorer, "127.0.0.1", 0)
    address = loop.run(server.start())
    yield address
    loop.run(server.stop(None))


@pytest.fixture(scope="module")
def clients(loop, scorer, upstream) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    remote = RemoteScorer(upstream)
    with running_gateway(loop, scorer) as local_url, running_gateway(loop, remote) as remote_url, \
            httpx.Client(base_url=local_url) as local, httpx.Client(base_url=remote_url) as far:
        yield local, far
    loop.run(remote.close())


def _without_volatile(payload):
    return {key: value for key, value in payload.items() if key not in ("id", "created")}


REQUESTS = [
    ("/v1/score/org/tiny", MSGPACK, {"query": {"id": "q", "text": "What is Python?"},
                                     "items": [{"id": "a", "text": "A language."}, "Snakes.", "word " * 700],
                                     "options": {"return_text": True, "top_k": 2}}),
    ("/v1/score/tiny", MSGPACK, {"query": "q", "items": ["x", "y"], "options": {"raw_scores": True}}),
    ("/score", JSON, {"model": "tiny", "text_1": ["a", "b"], "text_2": ["c", "d"]}),
    ("/v1/rerank", JSON, {"model": "org/tiny", "query": "q", "documents": ["c", {"text": "d"}], "top_n": 1}),
    ("/v1/score/none", MSGPACK, {"query": "q", "items": ["a"]}),  # 404
    ("/v1/score/tiny", MSGPACK, {"query": " ", "items": ["a"]}),  # 422
    ("/v1/score/tiny", MSGPACK, {"query": "q", "items": ["a"] * 33}),  # 413
    ("/score", JSON, {"model": "tiny", "text_1": ["a", "b"], "text_2": ["c", "d", "e"]}),  # 400
    # token caps and long documents travel in the proto's Lengths, windows and cached come back
    ("/v1/score/tiny", MSGPACK, {"query": "q", "items": ["word " * 700, "same", "same"],
                                 "options": {"long_documents": "chunk", "chunk_overlap": 16, "aggregate": "mean",
                                             "max_chunks_per_doc": 2, "max_tokens_per_query": 1}}),
    ("/v1/rerank", JSON, {"model": "tiny", "query": "q", "documents": ["one two three four", "x"],
                          "max_tokens_per_doc": 2}),
    ("/score", JSON, {"model": "tiny", "text_1": "a b c d e", "text_2": ["x " * 600], "max_tokens_per_query": 2,
                      "long_documents": "chunk"}),
    ("/v1/score/tiny", MSGPACK, {"query": "q", "items": ["a"], "options": {"chunk_overlap": -1}}),  # 400
    # counts past the proto's uint32 mean what the largest does: all, no cap
    ("/v1/score/tiny", MSGPACK, {"query": "q", "items": ["a", "b"], "options": {
        "top_k": 2**40, "max_tokens_per_doc": 2**40, "max_chunks_per_doc": 2**63}}),
    ("/v1/score/tiny", MSGPACK, {"query": "q", "items": ["a"], "options": {"aggregate": "median"}}),  # 400
]


@pytest.mark.parametrize(("path", "content_type", "body"), REQUESTS, ids=[str(i) for i in range(len(REQUESTS))])
def test_upstream_mode_answers_exactly_like_in_process(clients, path, content_type, body):
    local, far = clients
    content = packb(body) if content_type == MSGPACK else httpx.Request("POST", "/", json=body).content
    answers = [http.post(path, content=content, headers={"content-type": content_type}) for http in (local, far)]
    assert answers[0].status_code == answers[1].status_code
    assert _without_volatile(decoded(answers[0])) == _without_volatile(decoded(answers[1]))


def test_upstream_models_and_readiness(clients):
    local, far = clients
    assert local.get("/v1/models").json() == far.get("/v1/models").json()
    assert far.get("/readyz").status_code == 200


def test_unreachable_upstream_is_503_with_retry_after(loop, scorer):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"
    remote = RemoteScorer(dead)
    with running_gateway(loop, remote) as url, httpx.Client(base_url=url) as http:
        response = http.post("/v1/score/tiny", content=packb({"query": "q", "items": ["a"]}),
                             headers={"content-type": MSGPACK, "accept": JSON})
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert response.json()["code"] == "UNAVAILABLE" and dead in response.json()["message"]
        assert http.get("/readyz").status_code == 503
    loop.run(remote.close())


@contextmanager
def serving(loop: LoopThread, scorer: Scorer) -> Iterator[str]:
    """`scorer` behind a real gRPC server on a free port; yields its address."""
    server = GrpcServer(scorer, "127.0.0.1", 0)
    address = loop.run(server.start())
    try:
        yield address
    finally:
        loop.run(server.stop(None))


def test_the_remote_scorer_retries_a_full_upstream_queue_until_admitted(loop, tiny_model):
    """An upstream whose queue is full refuses with RESOURCE_EXHAUSTED; the gateway waits and retries.

    The upstream's batcher is not started yet, so a request it admitted stays queued and fills it.
    """
    async def build() -> Scorer:
        return Scorer({"tiny": tiny_model}, Limits(), batching=BatcherConfig(max_queue_pairs=2))

    async def start(scorer: Scorer) -> None:
        scorer.start()

    upstream = loop.run(build())
    try:
        with serving(loop, upstream) as address:
            remote = RemoteScorer(address)
            queued = asyncio.run_coroutine_threadsafe(
                upstream.score(ScoreRequest("tiny", "q", [Item("a"), Item("b")])), loop.loop)
            wait_until(lambda: upstream.metrics.value("xscore_queue_pairs", model="tiny") == 2)
            # retry-after (1 s) is past this deadline: refused at once, not retried into a timeout
            with pytest.raises(XscoreError) as hurried:
                loop.run(remote.score(ScoreRequest("tiny", "q", [Item("c")], deadline=time.monotonic() + 0.5)))
            assert hurried.value.code is ErrorCode.RESOURCE_EXHAUSTED and hurried.value.retry_after_s == 1.0
            assert hurried.value.details == {"queued_pairs": 2, "limit": 2}
            refused = asyncio.run_coroutine_threadsafe(remote.score(
                ScoreRequest("tiny", "q", [Item("c", "only")], deadline=time.monotonic() + 30)), loop.loop)
            wait_until(lambda: upstream.metrics.value("xscore_rejected_requests_total", model="tiny") >= 2)
            loop.run(start(upstream))  # the queue drains; the remote scorer's retry is admitted
            result = refused.result(30)
            assert [(entry.item_id, entry.rank) for entry in result.scores] == [("only", 0)]
            assert len(queued.result(30).scores) == 2
            assert upstream.metrics.value("xscore_requests_total", model="tiny", status="ok") == 2
            loop.run(remote.close())
    finally:
        loop.run(upstream.close())


def test_a_response_over_grpcs_default_4_mib_passes_through_the_remote_scorer(loop, tiny_model):
    """Both ends use the shared message-size limit, so return_text of long documents comes back whole."""
    texts = [letter * 1_000_000 for letter in "abcde"]  # one long word each: cheap to tokenize

    async def build() -> Scorer:
        scorer = Scorer({"tiny": tiny_model}, Limits(max_text_chars=1_000_000))
        scorer.start()
        return scorer

    upstream = loop.run(build())
    try:
        with serving(loop, upstream) as address:
            remote = RemoteScorer(address)
            result = loop.run(remote.score(ScoreRequest("tiny", "q", [Item(text) for text in texts],
                                                        return_text=True)))
            loop.run(remote.close())
    finally:
        loop.run(upstream.close())
    assert sum(map(len, texts)) > 4 * 1024 * 1024
    assert sorted(entry.text for entry in result.scores) == texts


def test_the_upstream_hop_carries_the_token_of_a_guarded_scorer(loop, scorer):
    guarded = GrpcServer(scorer, "127.0.0.1", 0, auth_token="s3cret")
    address = loop.run(guarded.start())
    with_token, without = RemoteScorer(address, token="s3cret"), RemoteScorer(address)
    try:
        with running_gateway(loop, with_token) as good_url, running_gateway(loop, without) as bad_url:
            body = {"model": "tiny", "query": "q", "documents": ["a", "b"]}
            assert httpx.post(f"{good_url}/v1/rerank", json=body).status_code == 200
            refused = httpx.post(f"{bad_url}/v1/rerank", json=body)
            assert refused.status_code == 401 and refused.json()["code"] == "UNAUTHENTICATED"
    finally:
        loop.run(with_token.close())
        loop.run(without.close())
        loop.run(guarded.stop(None))


def test_a_full_queue_is_429_with_retry_after_locally_and_across_the_upstream_hop(loop, tiny_model):
    """Batchers not started and room for 4 pairs: the first request fills the queue, the next is
    refused at once, over HTTP in front of the scorer and in front of a remote one."""
    from prometheus_client import CollectorRegistry

    from xscore.service.serving.batcher import BatcherConfig
    from xscore.service.serving.metrics import Metrics

    async def idle_scorer() -> Scorer:
        return Scorer({"tiny": tiny_model}, metrics=Metrics(), batching=BatcherConfig(max_queue_pairs=4))

    scorer = loop.run(idle_scorer())
    server = GrpcServer(scorer, "127.0.0.1", 0)
    remote = RemoteScorer(loop.run(server.start()))
    body = {"query": "q", "documents": ["a", "b", "c", "d"]}
    try:
        with running_gateway(loop, scorer, metrics_registry=CollectorRegistry()) as local_url, \
                running_gateway(loop, remote, metrics_registry=CollectorRegistry()) as remote_url, \
                httpx.Client(timeout=30) as http:
            pool = ThreadPoolExecutor(1)
            filler = pool.submit(httpx.post, f"{local_url}/v1/rerank", json=body, timeout=60)
            for _ in range(500):
                if scorer.metrics.value("xscore_queue_pairs", model="tiny") == 4:
                    break
                time.sleep(0.01)
            assert scorer.metrics.value("xscore_queue_pairs", model="tiny") == 4
            local = http.post(f"{local_url}/v1/rerank", json=body)
            # a deadline shorter than the retry-after: the remote scorer does not wait to retry
            far = http.post(f"{remote_url}/v1/rerank", json=body, headers={"X-Timeout-Ms": "500"})
            for response in (local, far):
                assert response.status_code == 429, response.text
                assert response.json()["code"] == "RESOURCE_EXHAUSTED"
                assert int(response.headers["retry-after"]) >= 1
                assert "4 pairs queued, limit 4" in response.json()["message"]
            loop.run(start(scorer))  # the queued request is then answered: nothing was lost
            assert filler.result(60).status_code == 200
            pool.shutdown()
    finally:
        loop.run(remote.close())
        loop.run(server.stop(None))
        loop.run(scorer.close())


async def start(scorer: Scorer) -> None:
    scorer.start()


def test_a_draining_gateway_is_not_ready_refuses_new_calls_and_waits_for_those_upstream(loop, upstream) -> None:
    remote = RemoteScorer(upstream)
    with running_gateway(loop, remote) as base, httpx.Client(base_url=base, timeout=30) as http:
        body = {"query": {"text": "q"}, "items": [{"text": "d"}]}
        assert http.get("/readyz").status_code == 200
        assert http.post("/v1/score/tiny", json=body, headers={"accept": JSON}).status_code == 200
        assert loop.run(remote.wait_idle(1.0))  # nothing left in flight

        async def begin_drain() -> None:
            remote.begin_drain()

        loop.run(begin_drain())
        assert http.get("/readyz").status_code == 503
        refused = http.post("/v1/score/tiny", json=body, headers={"accept": JSON})
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert refused.json()["code"] == "UNAVAILABLE" and "draining" in refused.json()["message"]
        assert loop.run(remote.wait_idle(1.0))
    loop.run(remote.close())
