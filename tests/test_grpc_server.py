"""The gRPC service end to end: a real server on a free port, real ONNX sessions, real clients."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)
from scoring import score_pairs
from servers import RunningServer, wait_until
from texts import mixed_documents

from xscore.client import AsyncScorerClient, RetryPolicy, ScorerClient
from xscore.service.serving.batcher import BatcherConfig
from xscore.service.serving.grpc_server import _status_of
from xscore.service.serving.runtime import ServeConfig
from xscore.service.serving.validation import Limits
from xscore.v1 import score_pb2

NO_RETRY = RetryPolicy(attempts=1)


@pytest.fixture(scope="module")
def server(tiny_model):
    running = RunningServer({"tiny": tiny_model},
                            ServeConfig(grpc_port=0, http_port=None, limits=Limits(max_items_per_request=64,
                                                                                    max_text_chars=5000)))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def slow_server(minilm_model):
    """MiniLM-size: slow enough on CPU that a request can be caught waiting in the queue."""
    config = ServeConfig(grpc_port=0, http_port=None, batcher=BatcherConfig(max_queue_pairs=30))
    running = RunningServer({"minilm": minilm_model}, config)
    yield running
    running.stop()


@pytest.fixture()
def client(server):
    with ScorerClient(server.address, retry=NO_RETRY) as client:
        yield client


def code_of(call) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as failure:
        call()
    return failure.value.code(), failure.value.details()


def test_64_concurrent_calls_of_mixed_sizes_score_as_if_alone_and_share_batches(server, tiny_model):
    documents = mixed_documents(64, seed=1, longest_words=150)
    requests = [(f"query {n} about ranking", documents[n % 13: n % 13 + 1 + (n * 7) % 40]) for n in range(64)]
    batches_before = server.metric("xscore_batch_requests_count", model="tiny")
    single_before = server.metric("xscore_batch_requests_bucket", model="tiny", le="1.0")

    async def call_all():
        async with AsyncScorerClient(server.address, retry=NO_RETRY) as client:
            return await asyncio.gather(*(client.score(q, d, model="tiny", raw_scores=True) for q, d in requests))

    responses = asyncio.run(call_all())
    for (query, docs), response in zip(requests, responses):
        alone = score_pairs(tiny_model, [query] * len(docs), docs, raw=True).scores
        got = np.zeros(len(docs), dtype=np.float32)
        for entry in response.scores:
            got[entry.index] = entry.score
        np.testing.assert_allclose(got, alone, atol=1e-5)
        assert response.usage.pairs == len(docs)
    batches = server.metric("xscore_batch_requests_count", model="tiny") - batches_before
    single = server.metric("xscore_batch_requests_bucket", model="tiny", le="1.0") - single_before
    assert batches - single >= 1, "no batch mixed pairs of different requests"
    assert server.metric("xscore_requests_total", model="tiny", status="ok") >= 64


def test_score_keeps_ids_ranks_descending_and_cuts_top_k_after_sorting(client):
    items = [("a", "first passage about ranking"), "second", ("c", "third passage about search relevance")]
    full = client.score("ranking query", items, model="tiny", return_text=True)
    assert [e.rank for e in full.scores] == [0, 1, 2]
    assert sorted(e.item_id for e in full.scores) == ["a", "c", "item-1"]
    assert [e.score for e in full.scores] == sorted((e.score for e in full.scores), reverse=True)
    assert all(e.HasField("text") for e in full.scores)
    top = client.score("ranking query", items, model="tiny", top_k=2)
    assert [e.index for e in top.scores] == [e.index for e in full.scores][:2]
    assert not any(e.HasField("text") for e in top.scores)
    ties = client.score("q", ["same text"] * 4, model="tiny")
    assert [e.index for e in ties.scores] == [0, 1, 2, 3]
    assert full.timing.total_ms > 0 and full.usage.tokens > 0


def test_score_pairs_one_to_one_one_to_many_and_n_to_n_in_input_order(client, tiny_model):
    docs = ["first doc", "a second document", "third"]
    expected = score_pairs(tiny_model, ["q"] * 3, docs).scores
    assert client.score_pairs(["q"], docs, model="tiny").scores == pytest.approx(expected, abs=1e-6)
    assert client.score_pairs(["q"] * 3, docs, model="tiny").scores == pytest.approx(expected, abs=1e-6)
    assert client.score_pairs(["q"], ["third"], model="tiny").scores == pytest.approx([expected[2]], abs=1e-6)
    code, message = code_of(lambda: client.score_pairs(["a", "b"], docs, model="tiny"))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "Input lengths must be 1:1, 1:N or N:N; got 2 queries and 3 documents" in message


@pytest.mark.parametrize(
    ("call", "code", "message"),
    [
        (lambda c: c.score("  ", ["d"], model="tiny"), "INVALID_ARGUMENT", "query is empty"),
        (lambda c: c.score("q", [], model="tiny"), "INVALID_ARGUMENT", "items is empty"),
        (lambda c: c.score("q", ["d"], model="nope"), "NOT_FOUND", "model 'nope' is not served here (served: tiny)"),
        (lambda c: c.score("q", ["d"] * 65, model="tiny"), "INVALID_ARGUMENT",
         "items has 65 entries, over the limit of 64"),
        (lambda c: c.score("q", ["d", "x" * 5001], model="tiny"), "INVALID_ARGUMENT",
         "items[1].text is 5001 characters, over the limit of 5000"),
        (lambda c: c.score("q", ["short", "word " * 600], model="tiny", truncate=False), "INVALID_ARGUMENT",
         "pair 1 is"),
        (lambda c: c.score_pairs([""], ["d"], model="tiny"), "INVALID_ARGUMENT", "queries[0] is empty"),
        (lambda c: c.score_pairs(["q"], [], model="tiny"), "INVALID_ARGUMENT", "documents is empty"),
        (lambda c: c.get_model("nope"), "NOT_FOUND", "model 'nope' is not served"),
    ],
)
def test_bad_requests_get_their_status_and_a_message_naming_the_field(client, call, code, message):
    got_code, got_message = code_of(lambda: call(client))
    assert got_code is grpc.StatusCode[code]
    assert message in got_message


def test_truncation_is_reported_by_default(client):
    response = client.score("q", ["short", "word " * 600], model="tiny")
    assert list(response.usage.truncated) == [1]


def test_unexpected_errors_become_internal_with_a_request_id():
    code, message, retry = _status_of(RuntimeError("boom"), "req-42", "Score")
    assert code is grpc.StatusCode.INTERNAL and "req-42" in message and "boom" not in message


def test_models_are_listed_and_described(client, tiny_model):
    [info] = client.list_models()
    assert info.name == "tiny" and info.ready and info.max_items_per_request == 64
    assert info.engine == tiny_model.engine.name and info.max_batch_tokens == tiny_model.engine.max_batch_tokens
    assert info.max_length == 512
    assert client.get_model("tiny") == info


def test_health_overall_and_per_model_and_reflection(server, client):
    assert client.health("") == health_pb2.HealthCheckResponse.SERVING
    assert client.health("tiny") == health_pb2.HealthCheckResponse.SERVING
    assert client.health("xscore.v1.Scorer") == health_pb2.HealthCheckResponse.SERVING
    code, _ = code_of(lambda: client.health("nope"))
    assert code is grpc.StatusCode.NOT_FOUND
    with grpc.insecure_channel(server.address) as channel:
        services = ProtoReflectionDescriptorDatabase(channel).get_services()
    assert "xscore.v1.Scorer" in services and "grpc.health.v1.Health" in services


def test_the_stream_answers_every_request_by_id_with_errors_in_band(server):
    messages = [
        score_pb2.ScoreStreamRequest(request_id="one", request=score_pb2.ScoreRequest(
            model="tiny", query="q", items=[score_pb2.Item(text="d1"), score_pb2.Item(text="d2")])),
        score_pb2.ScoreStreamRequest(request_id="bad", request=score_pb2.ScoreRequest(
            model="nope", query="q", items=[score_pb2.Item(text="d")])),
        score_pb2.ScoreStreamRequest(request_id="three", request=score_pb2.ScoreRequest(
            model="tiny", query="another", items=[score_pb2.Item(text="d3")])),
    ]

    async def converse():
        async def outgoing():
            for message in messages:
                yield message

        async with AsyncScorerClient(server.address) as client:
            return {answer.request_id: answer async for answer in client.stream(outgoing())}

    answers = asyncio.run(converse())
    assert set(answers) == {"one", "bad", "three"}
    assert len(answers["one"].response.scores) == 2 and len(answers["three"].response.scores) == 1
    assert answers["bad"].WhichOneof("result") == "error"
    assert answers["bad"].error.code == grpc.StatusCode.NOT_FOUND.value[0]


def _with_invalid_utf8(message) -> bytes:
    """The message's bytes with its query's text replaced by bytes that are not UTF-8."""
    data = message.SerializeToString()
    assert data.count(b"QQQQ") == 1
    return data.replace(b"QQQQ", b"Q\xff\xfeQ")


def test_invalid_utf8_in_a_protobuf_string_is_invalid_argument_and_the_server_stays_up(server):
    bad = _with_invalid_utf8(score_pb2.ScoreRequest(model="tiny", query="QQQQ", items=[score_pb2.Item(text="d")]))
    bad_pairs = _with_invalid_utf8(score_pb2.ScorePairsRequest(model="tiny", queries=["QQQQ"], documents=["d"]))
    with grpc.insecure_channel(server.address) as channel:
        for method, data in (("Score", bad), ("ScorePairs", bad_pairs)):
            call = channel.unary_unary(f"/xscore.v1.Scorer/{method}", request_serializer=None,
                                       response_deserializer=None)
            with pytest.raises(grpc.RpcError) as refused:
                call(data, timeout=10)
            assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert "valid UTF-8" in refused.value.details()
            assert dict(refused.value.trailing_metadata())["xscore-error-code"] == "INVALID_ARGUMENT"
    with ScorerClient(server.address, retry=NO_RETRY) as client:
        assert len(client.score("q", ["d"], model="tiny").scores) == 1


def test_an_unreadable_stream_message_is_answered_in_band_and_the_stream_goes_on(server):
    good = score_pb2.ScoreStreamRequest(request_id="good", request=score_pb2.ScoreRequest(
        model="tiny", query="q", items=[score_pb2.Item(text="d")]))
    bad = _with_invalid_utf8(score_pb2.ScoreStreamRequest(request_id="bad", request=score_pb2.ScoreRequest(
        model="tiny", query="QQQQ", items=[score_pb2.Item(text="d")])))
    with grpc.insecure_channel(server.address) as channel:
        call = channel.stream_stream("/xscore.v1.Scorer/ScoreStream", request_serializer=None,
                                     response_deserializer=score_pb2.ScoreStreamResponse.FromString)
        answers = list(call(iter([bad, good.SerializeToString()]), timeout=30))
    by_id = {answer.request_id: answer for answer in answers}
    assert set(by_id) == {"", "good"}  # the unreadable one has no id to echo
    assert by_id[""].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "valid UTF-8" in by_id[""].error.message
    assert len(by_id["good"].response.scores) == 1


_OCCUPIED = itertools.count()


def _occupy(server: RunningServer, client: ScorerClient, pairs: int = 24) -> threading.Thread:
    """Keep the MiniLM engine busy with one long request; return once its first batch runs."""
    batches = server.metric("xscore_batch_pairs_count", model="minilm")
    # pairs it has never seen: identical pairs in one request are scored once, and the score cache
    # answers pairs an earlier request scored
    documents = [f"{index}: " + " ".join(["relevance ranking of passages for a search query"] * 30)
                 for index in range(pairs)]
    query = f"busy query {next(_OCCUPIED)}"
    worker = threading.Thread(target=client.score, args=(query, documents), kwargs={"model": "minilm"})
    worker.start()
    wait_until(lambda: server.metric("xscore_batch_pairs_count", model="minilm") > batches)
    return worker


def test_a_real_deadline_and_a_real_cancel_drop_the_work_before_inference(slow_server):
    inferred = lambda: slow_server.metric("xscore_batch_pairs_sum", model="minilm")  # noqa: E731
    dropped = lambda: sum(slow_server.metric("xscore_dropped_pairs_total", model="minilm", reason=r)  # noqa: E731
                          for r in ("cancelled", "expired"))
    with ScorerClient(slow_server.address, retry=NO_RETRY, timeout=60) as client:
        before_inferred, before_dropped = inferred(), dropped()
        busy = _occupy(slow_server, client)
        code, _ = code_of(lambda: client.score("late", ["a short document"], model="minilm", timeout=0.2))
        assert code is grpc.StatusCode.DEADLINE_EXCEEDED
        wait_until(lambda: dropped() == before_dropped + 1)

        pending = client._stub.Score.future(score_pb2.ScoreRequest(
            model="minilm", query="abandoned", items=[score_pb2.Item(text="d1"), score_pb2.Item(text="d2")]))
        wait_until(lambda: slow_server.runtime.scorer.in_flight == 2)
        pending.cancel()
        wait_until(lambda: dropped() == before_dropped + 3)
        busy.join()
    assert inferred() == before_inferred + 24  # only the busy request reached the engine


def test_a_full_queue_fails_fast_with_retry_after_and_the_client_retries_through_it(slow_server):
    rejected = lambda: slow_server.metric("xscore_rejected_requests_total", model="minilm")  # noqa: E731
    with ScorerClient(slow_server.address, retry=NO_RETRY, timeout=60) as client:
        busy = _occupy(slow_server, client)
        ten = [f"d{index}" for index in range(10)]
        with pytest.raises(grpc.RpcError) as refused:
            client.score("q", ten, model="minilm")
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "24 pairs queued, limit 30" in refused.value.details()
        hint = dict(refused.value.trailing_metadata())["retry-after"]
        assert float(hint) > 0
        before = rejected()
        patient = ScorerClient(slow_server.address, retry=RetryPolicy(attempts=50, max_backoff_s=0.5), timeout=60)
        response = patient.score("q", ten, model="minilm")  # refused while busy, then admitted
        patient.close()
        busy.join()
    assert len(response.scores) == 10
    assert rejected() > before


def test_an_answer_over_the_clients_size_limit_is_not_retried_as_a_full_queue(server):
    """gRPC's own RESOURCE_EXHAUSTED (a message too large) carries no xscore-error-code: retrying
    the same call would fail the same way, so the client raises it at once."""
    before = server.metric("xscore_requests_total", model="tiny", status="ok")
    channel = grpc.insecure_channel(server.address, options=[("grpc.max_receive_message_length", 2048)])
    with ScorerClient(server.address, channel=channel, retry=RetryPolicy(attempts=4)) as small:
        code, details = code_of(lambda: small.score("q", ["x" * 4000], model="tiny", return_text=True))
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in details
    assert server.metric("xscore_requests_total", model="tiny", status="ok") == before + 1


def test_a_score_stream_holds_a_bounded_number_of_requests_and_loses_none(tiny_model):
    """With the batcher not started nothing is answered: the stream stops reading at its bound,
    and once scoring starts every one of the 200 requests is answered."""
    from gateway_harness import LoopThread

    from xscore.service.serving.grpc_server import STREAM_IN_FLIGHT, GrpcServer
    from xscore.service.serving.scorer import Scorer

    loop = LoopThread()

    async def serve() -> tuple[Scorer, GrpcServer, str]:
        scorer = Scorer({"tiny": tiny_model})
        server = GrpcServer(scorer, "127.0.0.1", 0)
        return scorer, server, await server.start()

    async def start_scoring(started: Scorer) -> None:
        started.start()  # on the server's loop

    scorer, server, address = loop.run(serve())
    requests = [score_pb2.ScoreStreamRequest(request_id=str(n), request=score_pb2.ScoreRequest(
        model="tiny", query="q", items=[score_pb2.Item(text=f"document {n}")])) for n in range(200)]

    async def outgoing():
        for request in requests:
            yield request

    async def converse():
        async with AsyncScorerClient(address, timeout=60) as client:
            return [answer async for answer in client.stream(outgoing())]

    answers = asyncio.run_coroutine_threadsafe(converse(), loop.loop)
    try:
        wait_until(lambda: scorer.in_flight == STREAM_IN_FLIGHT)
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:  # the other 136 are there to be read: none may be taken
            assert scorer.in_flight == STREAM_IN_FLIGHT
            time.sleep(0.01)
        loop.run(start_scoring(scorer))
        received = answers.result(60)
    finally:
        loop.run(server.stop(0))
        loop.run(scorer.close())
        loop.close()
    assert sorted(int(answer.request_id) for answer in received) == list(range(200))
    assert all(answer.HasField("response") for answer in received)


def test_an_auth_token_guards_grpc_as_it_guards_http_and_leaves_health_open(tiny_model):
    running = RunningServer({"tiny": tiny_model}, ServeConfig(grpc_port=0, http_port=None, auth_token="s3cret"))
    try:
        for token in (None, "wrong"):
            with ScorerClient(running.address, retry=NO_RETRY, token=token) as stranger:
                code, message = code_of(lambda: stranger.score("q", ["d"], model="tiny"))
                assert code is grpc.StatusCode.UNAUTHENTICATED and "bearer token" in message
                assert stranger.health() == health_pb2.HealthCheckResponse.SERVING  # probes need no token

        async def stream_without_token():
            # sends nothing: the refusal comes at the call's start, and a message racing it would
            # fail on the client's side instead (gRPC reports that as INTERNAL)
            async def nothing():
                await asyncio.Event().wait()
                yield score_pb2.ScoreStreamRequest()

            async with AsyncScorerClient(running.address) as client:
                return [answer async for answer in client.stream(nothing())]

        with pytest.raises(grpc.RpcError) as refused:
            asyncio.run(stream_without_token())
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
        with ScorerClient(running.address, token="s3cret") as member:
            assert member.score("q", ["d"], model="tiny").scores[0].item_id == "item-0"
    finally:
        running.stop()
