"""POST /v1/score/{model}: the SIE shape, id and rank rules, and the response headers."""

from __future__ import annotations

import math

import pytest
from gateway_harness import JSON, MSGPACK, base_url, client, decoded, loop, packb, scorer  # noqa: F401

from xscore.api.schema import Item, ScoreRequest

ITEMS = [{"id": "doc-1", "text": "Python is a programming language."}, {"text": "Snakes are reptiles."},
         {"id": "doc-3", "text": "Python was created by Guido van Rossum."}, "A bare string is an item too."]


def post(client, model, body, accept=None):
    headers = {"content-type": MSGPACK, **({"accept": accept} if accept else {})}
    return client.post(f"/v1/score/{model}", content=packb(body), headers=headers)


def test_score_keeps_ids_defaults_missing_ones_and_ranks_descending(client):
    response = post(client, "tiny", {"query": {"id": "q1", "text": "What is Python?"}, "items": ITEMS})
    assert response.status_code == 200
    payload = decoded(response)
    assert payload["model"] == "tiny" and payload["query_id"] == "q1"
    assert sorted(entry["item_id"] for entry in payload["scores"]) == ["doc-1", "doc-3", "item-1", "item-3"]
    assert [entry["rank"] for entry in payload["scores"]] == [0, 1, 2, 3]
    scores = [entry["score"] for entry in payload["scores"]]
    assert scores == sorted(scores, reverse=True)
    assert all("text" not in entry for entry in payload["scores"])
    assert payload["usage"]["pairs"] == 4


def test_scores_equal_the_scorer_called_directly(client, scorer, loop):
    payload = decoded(post(client, "tiny", {"query": {"text": "q"}, "items": ITEMS}))
    items = [Item(item) if isinstance(item, str) else Item(item["text"], item.get("id")) for item in ITEMS]
    direct = loop.run(scorer.score(ScoreRequest("tiny", "q", items)))
    assert [(e["item_id"], e["score"]) for e in payload["scores"]] == [(e.item_id, e.score) for e in direct.scores]


def test_model_names_may_contain_slashes(client):
    response = post(client, "org/tiny", {"query": "q", "items": ["a", "b"]}, accept=JSON)
    assert response.status_code == 200
    assert response.json()["model"] == "org/tiny" and response.json()["query_id"] is None


def test_options_top_k_return_text_and_raw_scores(client):
    body = {"query": {"text": "q"}, "items": ITEMS, "options": {"top_k": 2, "return_text": True}}
    payload = decoded(post(client, "tiny", body))
    assert [entry["rank"] for entry in payload["scores"]] == [0, 1]
    texts = {item["text"] if isinstance(item, dict) else item for item in ITEMS}
    assert all(entry["text"] in texts for entry in payload["scores"])
    raw = decoded(post(client, "tiny", {**body, "options": {"top_k": 2, "raw_scores": True}}))
    # the same ranking, logits instead of the sigmoid of them
    assert [entry["index"] for entry in raw["scores"]] == [entry["index"] for entry in payload["scores"]]
    sigmoid = [1 / (1 + math.exp(-entry["score"])) for entry in raw["scores"]]
    assert sigmoid == pytest.approx([entry["score"] for entry in payload["scores"]], abs=1e-6)
    assert [entry["score"] for entry in raw["scores"]] != pytest.approx(sigmoid, abs=1e-3)


def test_instruction_and_metadata_are_accepted(client):
    body = {"query": {"text": "q", "metadata": {"lang": "en"}}, "items": [{"text": "a", "metadata": {"k": [1]}}],
            "instruction": "Given a question, find passages that answer it"}
    assert post(client, "tiny", body).status_code == 200


def test_truncation_is_reported_and_refused_when_asked(client):
    long_text = "word " * 700
    payload = decoded(post(client, "tiny", {"query": "q", "items": ["short", long_text]}))
    assert payload["usage"]["truncated"] == [1]
    refused = post(client, "tiny", {"query": "q", "items": ["short", long_text], "options": {"truncate": False}})
    assert refused.status_code == 422 and "pair 1" in decoded(refused)["message"]


def test_timing_and_request_id_headers(client):
    response = client.post("/v1/score/tiny", content=packb({"query": "q", "items": ["a"]}),
                           headers={"content-type": MSGPACK, "x-request-id": "trace-42"})
    assert response.headers["x-request-id"] == "trace-42"
    for name in ("x-queue-time", "x-tokenization-time", "x-inference-time", "x-total-time"):
        assert float(response.headers[name]) >= 0
    generated = client.get("/healthz").headers["x-request-id"]
    assert len(generated) == 32 and generated != client.get("/healthz").headers["x-request-id"]
    forged = client.get("/healthz", headers={"x-request-id": "a b\tc" + "x" * 200}).headers["x-request-id"]
    assert " " not in forged and len(forged) == 32


@pytest.mark.parametrize("accept", [JSON, MSGPACK])
def test_error_bodies_come_in_the_negotiated_format(client, accept):
    response = post(client, "nope", {"query": "q", "items": ["a"]}, accept=accept)
    assert response.status_code == 404
    assert response.headers["content-type"] == accept
    assert decoded(response) == {"code": "NOT_FOUND", "message": decoded(response)["message"],
                                 "details": {"model": "nope"}}
