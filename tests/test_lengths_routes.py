"""Token caps and long documents on every route: honoured, reported in usage, refused precisely."""

from __future__ import annotations

import pytest
from gateway_harness import JSON, MSGPACK, client, decoded, loop, packb, scorer, base_url  # noqa: F401
from servers import RunningServer

from xscore.api.schema import LengthPolicy
from xscore.client import RetryPolicy, ScorerClient

QUERY = "one two three four five six"  # 6 tokens
DOCUMENT = "alpha beta gamma delta epsilon zeta eta theta"  # 8 tokens
LONG = "word " * 700  # over the tiny model's 512 tokens
SPECIAL = 3  # [CLS] query [SEP] document [SEP]


def sie(client, body):
    return client.post("/v1/score/tiny", content=packb(body), headers={"content-type": MSGPACK})


def test_native_route_caps_each_side_and_reports_it(client):
    plain = decoded(sie(client, {"query": QUERY, "items": [DOCUMENT, "x"]}))
    capped = decoded(sie(client, {"query": QUERY, "items": [DOCUMENT, "x"],
                                  "options": {"max_tokens_per_doc": 3, "max_tokens_per_query": 4}}))
    assert plain["usage"]["tokens"] == (SPECIAL + 6 + 8) + (SPECIAL + 6 + 1)
    assert capped["usage"]["tokens"] == (SPECIAL + 4 + 3) + (SPECIAL + 4 + 1)
    assert capped["usage"]["truncated"] == [0, 1] and plain["usage"]["truncated"] == []


def test_native_route_chunks_a_long_document_and_says_how_many_windows(client):
    payload = decoded(sie(client, {"query": "q", "items": [LONG, "short"],
                                   "options": {"long_documents": "chunk", "chunk_overlap": 32}}))
    assert payload["usage"]["windows"] == [2, 1] and payload["usage"]["truncated"] == []
    truncated = decoded(sie(client, {"query": "q", "items": [LONG, "short"]}))
    assert "windows" not in truncated["usage"] and truncated["usage"]["truncated"] == [0]


def test_rerank_route_takes_cohere_max_tokens_per_doc(client):
    body = {"model": "tiny", "query": QUERY, "documents": [DOCUMENT], "max_tokens_per_doc": 2}
    payload = client.post("/v1/rerank", json=body).json()
    assert payload["usage"]["total_tokens"] == SPECIAL + 6 + 2
    chunked = client.post("/v1/rerank", json={"model": "tiny", "query": "q", "documents": [LONG],
                                              "long_documents": "chunk"}).json()
    assert chunked["usage"]["windows"] == [2]


def test_score_route_takes_vllm_token_caps(client):
    body = {"model": "tiny", "text_1": QUERY, "text_2": [DOCUMENT, DOCUMENT], "max_tokens_per_query": 1,
            "max_tokens_per_doc": 5}
    payload = client.post("/score", json=body).json()
    assert payload["usage"]["prompt_tokens"] == 2 * (SPECIAL + 1 + 5)


@pytest.mark.parametrize(("options", "message"), [
    ({"chunk_overlap": -1}, "chunk_overlap must be an integer >= 0, got -1"),
    ({"max_tokens_per_doc": 0}, "max_tokens_per_doc must be an integer >= 1, got 0"),
    ({"long_documents": "split"}, "long_documents must be one of truncate, chunk, got 'split'"),
    ({"aggregate": 3}, "options.aggregate must be a string, got integer"),
    ({"max_chunks_per_doc": True}, "options.max_chunks_per_doc must be an integer, got boolean"),
])
def test_bad_length_fields_are_400s_naming_the_field(client, options, message):
    response = sie(client, {"query": "q", "items": ["a"], "options": options})
    assert response.status_code == 400 and decoded(response)["message"] == message


def test_an_overlap_wider_than_the_window_is_a_422(client):
    response = sie(client, {"query": "q", "items": [LONG], "options": {"long_documents": "chunk",
                                                                       "chunk_overlap": 600}})
    assert response.status_code == 422 and "chunk_overlap 600" in decoded(response)["message"]


def test_chunk_over_the_window_bound_without_truncation_is_a_422(client):
    body = {"query": "q", "items": [LONG], "options": {"long_documents": "chunk", "max_chunks_per_doc": 1,
                                                         "truncate": False}}
    response = sie(client, body)
    assert response.status_code == 422 and decoded(response)["details"]["field"] == "max_chunks_per_doc"


@pytest.fixture(scope="module")
def grpc_server(tiny_model):
    running = RunningServer({"tiny": tiny_model})
    yield running
    running.stop()


def test_grpc_carries_the_policy_and_the_usage(grpc_server):
    with ScorerClient(grpc_server.address, retry=RetryPolicy(attempts=1)) as grpc_client:
        capped = grpc_client.score(QUERY, [DOCUMENT], model="tiny", lengths=LengthPolicy(max_tokens_per_doc=3))
        chunked = grpc_client.score_pairs(["q"], [LONG, "short"], model="tiny",
                                          lengths=LengthPolicy(long_documents="chunk", aggregate="first"))
        truncated = grpc_client.score_pairs(["q"], [LONG, "short"], model="tiny")
    assert capped.usage.tokens == SPECIAL + 6 + 3 and list(capped.usage.truncated) == [0]
    assert list(chunked.usage.windows) == [2, 1] and list(truncated.usage.windows) == []
    # the first window is the truncated pair
    assert chunked.scores[0] == pytest.approx(truncated.scores[0], abs=1e-5)
