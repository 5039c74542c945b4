"""The clients against real servers: gRPC round-robin over several servers, the HTTP clients
(msgpack and JSON, sync and async, errors and retries), and RemoteCrossEncoder beside a local
sentence-transformers CrossEncoder."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from servers import RunningServer, wait_until

from xscore.api import wire
from xscore.api.errors import ErrorCode, XscoreError
from xscore.client import (
    AsyncHttpScorerClient,
    HttpScorerClient,
    RemoteCrossEncoder,
    RetryPolicy,
    ScorerClient,
    channel_target,
)
from xscore.service.models.registry import DEFAULT_NAME, default_spec, load_model
from xscore.service.serving.runtime import ServeConfig

NO_RETRY = RetryPolicy(attempts=1)
DOCUMENTS = ["Creates encrypted, deduplicated backups of your files to local disks or remote servers.",
             "An image viewer for the desktop.", "Documentation for the Perl programming language.",
             "A tool that copies files to a remote machine over SSH and keeps them in sync."]


@pytest.fixture(scope="module")
def two_servers(tiny_model):
    servers = [RunningServer({"tiny": tiny_model}) for _ in range(2)]
    yield servers
    for server in servers:
        server.stop()


def served_ok(server: RunningServer) -> float:
    return server.metric("xscore_requests_total", model="tiny", status="ok")


@pytest.mark.parametrize("form", ["list", "comma-separated"])
def test_a_client_of_several_servers_spreads_its_calls_round_robin(two_servers, form) -> None:
    before = [served_ok(server) for server in two_servers]
    addresses = [server.address for server in two_servers]
    target = addresses if form == "list" else ",".join(addresses)
    with ScorerClient(target, retry=NO_RETRY) as client:
        # the channel connects to both before balancing over them
        wait_until(lambda: all(client.health() == 1 for _ in range(4)), timeout=30)
        for n in range(40):
            client.score(f"query {n}", [f"document {n}"], model="tiny")
    served = [served_ok(server) - start for server, start in zip(two_servers, before)]
    assert sum(served) == 40
    assert min(served) >= 10, served  # round-robin: each server takes about half


def test_one_server_by_a_dns_name_and_targets_that_cannot_be_used(two_servers) -> None:
    port = two_servers[0].address.rsplit(":", 1)[1]
    with ScorerClient(f"dns:///localhost:{port}", retry=NO_RETRY) as client:
        assert client.score("q", ["d"], model="tiny").scores[0].index == 0
    uri, options = channel_target(["127.0.0.1:1", "127.0.0.1:2"])
    assert uri == "ipv4:127.0.0.1:1,127.0.0.1:2" and ("grpc.lb_policy_name", "round_robin") in options
    for bad, message in ((["127.0.0.1:1", "dns:///x:2"], "each be host:port"), (["nohost", "127.0.0.1:2"], "not host:port"),
                         (["no-such-host.invalid:1", "127.0.0.1:2"], "cannot resolve"), ([], "no gRPC target")):
        with pytest.raises(XscoreError, match=message) as caught:
            channel_target(bad)
        assert caught.value.code is ErrorCode.INVALID_ARGUMENT


# ----------------------------------------------------------------------------- HTTP clients


@pytest.fixture(scope="module")
def http_server(tiny_model):
    server = RunningServer({"tiny": tiny_model}, ServeConfig(grpc_port=0, http_port=0, score_cache_bytes=0))
    yield server
    server.stop()


@pytest.mark.parametrize("format", ["msgpack", "json"])
def test_the_http_client_scores_like_the_grpc_client(http_server, format) -> None:
    with ScorerClient(http_server.address) as grpc_client:
        expected = wire.decode_score_result(grpc_client.score("backup tool", DOCUMENTS, model="tiny", top_k=3,
                                                              return_text=True))
        pairs = grpc_client.score_pairs(["backup tool", "image viewer"], DOCUMENTS[:2], model="tiny",
                                        raw_scores=True)
        info = wire.decode_model_info(grpc_client.get_model("tiny"))
    with HttpScorerClient(f"http://{http_server.addresses['http']}", format=format) as client:
        got = client.score("backup tool", DOCUMENTS, model="tiny", top_k=3, return_text=True)
        assert [(s.index, s.rank, s.text) for s in got.scores] == \
            [(s.index, s.rank, s.text) for s in expected.scores]
        assert [s.score for s in got.scores] == pytest.approx([s.score for s in expected.scores], abs=1e-6)
        assert got.usage.pairs == 4 and got.usage.tokens == expected.usage.tokens
        assert got.timing.total_ms > 0
        by_pairs = client.score_pairs(["backup tool", "image viewer"], DOCUMENTS[:2], model="tiny", raw_scores=True)
        assert by_pairs.scores == pytest.approx(list(pairs.scores), abs=1e-6)
        assert client.get_model("tiny") == info and client.list_models() == [info]
        assert client.ready()


def test_the_http_client_raises_the_servers_errors(http_server) -> None:
    with HttpScorerClient(f"http://{http_server.addresses['http']}", retry=NO_RETRY) as client:
        with pytest.raises(XscoreError) as missing:
            client.score("q", ["d"], model="nope")
        assert missing.value.code is ErrorCode.NOT_FOUND and "nope" in missing.value.message
        with pytest.raises(XscoreError) as empty:
            client.score("q", [], model="tiny")
        assert empty.value.code is ErrorCode.INVALID_ARGUMENT
        with pytest.raises(XscoreError) as pairs:
            client.score_pairs(["a", "b"], ["x", "y", "z"], model="tiny")
        assert pairs.value.code is ErrorCode.INVALID_ARGUMENT
    with HttpScorerClient("http://127.0.0.1:9", format="json") as unreachable:
        assert not unreachable.ready()


def test_the_async_http_client_scores_concurrently(http_server) -> None:
    async def run():
        async with AsyncHttpScorerClient(f"http://{http_server.addresses['http']}") as client:
            results = await asyncio.gather(*(client.score(f"query {n}", DOCUMENTS, model="tiny") for n in range(8)))
            return results, await client.list_models()

    results, models = asyncio.run(run())
    assert [len(result.scores) for result in results] == [4] * 8 and models[0].name == "tiny"


def test_a_draining_server_is_retried_by_the_policy_then_reported(tiny_model) -> None:
    server = RunningServer({"tiny": tiny_model}, ServeConfig(grpc_port=0, http_port=0))
    try:
        async def begin_drain() -> None:  # on the server's loop: its listeners schedule there
            server.runtime.scorer.begin_drain()  # new calls: 503 with Retry-After

        server.call(begin_drain())
        policy = RetryPolicy(attempts=3, initial_backoff_s=0.01, max_backoff_s=0.02)
        with HttpScorerClient(f"http://{server.addresses['http']}", retry=policy, timeout=30) as client:
            with pytest.raises(XscoreError) as refused:
                client.score("q", ["d"], model="tiny")
        assert refused.value.code is ErrorCode.UNAVAILABLE and refused.value.retry_after_s is not None
        def answered() -> float:  # counted once the answer is sent, so possibly after the client reads it
            return server.metric("xscore_http_requests_total", route="/v1/score/{model:path}", method="POST",
                                 status="503")

        wait_until(lambda: answered() >= 3, timeout=10)
        assert answered() == 3  # the first call and two retries, as the policy allows
    finally:
        server.stop()


# ----------------------------------------------------------------------------- RemoteCrossEncoder


@pytest.fixture(scope="module")
def served_default(cache_dir):
    spec = default_spec()
    server = RunningServer({DEFAULT_NAME: load_model(spec, variant="fp32", device="cpu", progress=False)},
                           ServeConfig(grpc_port=0, http_port=0, score_cache_bytes=0))
    yield server, spec.source
    server.stop()


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_remote_cross_encoder_answers_like_a_local_cross_encoder(served_default, transport) -> None:
    sentence_transformers = pytest.importorskip("sentence_transformers")
    torch = pytest.importorskip("torch")
    server, model_dir = served_default
    local = sentence_transformers.CrossEncoder(model_dir, device="cpu")
    url = f"http://{server.addresses['http']}" if transport == "http" else f"grpc://{server.address}"
    query = "backup tool with encryption"
    pairs = [(query, document) for document in DOCUMENTS] + [("image viewer", DOCUMENTS[1])]
    with RemoteCrossEncoder(url) as remote:
        got = remote.predict(pairs, batch_size=2)
        assert isinstance(got, np.ndarray) and got.dtype == np.float32 and got.shape == (5,)
        np.testing.assert_allclose(got, local.predict(pairs), atol=1e-4)
        single = remote.predict(pairs[0])
        assert np.ndim(single) == 0 and single == pytest.approx(float(local.predict(pairs[0])), abs=1e-4)
        logits = remote.predict(pairs, activation_fn=torch.nn.Identity())
        np.testing.assert_allclose(logits, local.predict(pairs, activation_fn=torch.nn.Identity()), atol=1e-4)
        assert remote.predict(pairs, convert_to_numpy=False) == pytest.approx(got.tolist(), abs=1e-6)
        assert torch.is_tensor(remote.predict(pairs, convert_to_tensor=True))

        ranked = remote.rank(query, DOCUMENTS, top_k=3, return_documents=True)
        expected = local.rank(query, DOCUMENTS, top_k=3, return_documents=True)
        assert [(r["corpus_id"], r["text"]) for r in ranked] == [(r["corpus_id"], r["text"]) for r in expected]
        assert [float(r["score"]) for r in ranked] == pytest.approx([float(r["score"]) for r in expected], abs=1e-4)
        assert set(remote.rank(query, DOCUMENTS)[0]) == {"corpus_id", "score"}
        with pytest.raises(ValueError, match="not sent to the server"):
            remote.predict(pairs, prompt="Instruct: ")
        with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
            remote.predict(pairs, colour="red")
