"""Compatibility routes: vLLM /score (the seed 000 client's requests) and Cohere/Jina /rerank."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from gateway_harness import LoopThread, loop, running_gateway, scorer, single_scorer  # noqa: F401

MODEL = "tiny"


@pytest.fixture(scope="module")
def client(loop: LoopThread, single_scorer) -> Iterator[httpx.Client]:
    """One model served, so requests may leave `model` out."""
    with running_gateway(loop, single_scorer) as url, httpx.Client(base_url=url, timeout=30) as http:
        yield http


def post_like_seed(client: httpx.Client, path: str, prompt: dict) -> httpx.Response:
    """Exactly what seed 000's `post_http_request` sends: requests-style json= with a User-Agent."""
    return client.post(path, headers={"User-Agent": "Test Client"}, json=prompt)


@pytest.mark.parametrize("path", ["/score", "/v1/score"])
@pytest.mark.parametrize(
    ("text_1", "text_2", "count"),
    [
        ("What is the capital of Brazil?", "The capital of Brazil is Brasilia.", 1),
        ("What is the capital of France?", ["The capital of Brazil is Brasilia.", "The capital of France is Paris."], 2),
        (["What is the capital of Brazil?", "What is the capital of France?"],
         ["The capital of Brazil is Brasilia.", "The capital of France is Paris."], 2),
    ],
    ids=["1:1", "1:N", "N:N"],
)
def test_vllm_score_patterns_from_seed_000(client, path, text_1, text_2, count):
    response = post_like_seed(client, path, {"model": MODEL, "text_1": text_1, "text_2": text_2})
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    payload = response.json()
    assert payload["object"] == "list" and payload["model"] == MODEL
    assert payload["id"] and isinstance(payload["created"], int)
    assert [entry["index"] for entry in payload["data"]] == list(range(count))
    assert all(entry["object"] == "score" and 0 <= entry["score"] <= 1 for entry in payload["data"])
    assert payload["usage"]["prompt_tokens"] == payload["usage"]["total_tokens"] > 0


def test_vllm_score_keeps_input_order_and_accepts_queries_documents(client):
    docs = ["The capital of Brazil is Brasilia.", "The capital of France is Paris.", "Cats sleep a lot."]
    one = post_like_seed(client, "/score", {"text_1": "capital of France?", "text_2": docs}).json()
    other = post_like_seed(client, "/v1/score", {"queries": ["capital of France?"] * 3, "documents": docs}).json()
    assert [e["score"] for e in one["data"]] == pytest.approx([e["score"] for e in other["data"]], abs=1e-6)
    single = post_like_seed(client, "/score", {"text_1": "capital of France?", "text_2": docs[2]}).json()
    assert single["data"][0]["score"] == pytest.approx(one["data"][2]["score"], abs=1e-6)


def test_vllm_score_refuses_mismatched_lengths_with_its_message(client):
    response = post_like_seed(client, "/score", {"model": MODEL, "text_1": ["a", "b"], "text_2": ["x", "y", "z"]})
    assert response.status_code == 400
    assert "Input lengths must be 1:1, 1:N or N:N" in response.json()["message"]


@pytest.mark.parametrize("path", ["/rerank", "/v1/rerank"])
def test_cohere_and_jina_rerank_shape(client, path):
    documents = ["Paris is the capital of France.", {"text": "Cats sleep a lot."}, "France is in Europe."]
    response = client.post(path, json={"model": MODEL, "query": "capital of France", "documents": documents,
                                       "top_n": 2, "return_documents": True})
    assert response.status_code == 200
    payload = response.json()
    assert payload["model"] == MODEL and payload["id"] and payload["usage"]["total_tokens"] > 0
    results = payload["results"]
    assert len(results) == 2
    assert results[0]["relevance_score"] >= results[1]["relevance_score"]
    texts = [doc if isinstance(doc, str) else doc["text"] for doc in documents]
    assert all(result["document"]["text"] == texts[result["index"]] for result in results)


def test_rerank_without_documents_back_and_without_model(client):
    payload = client.post("/v1/rerank", json={"query": "q", "documents": ["a", "b"],
                                              "return_documents": False}).json()
    assert payload["model"] == MODEL
    assert sorted(result["index"] for result in payload["results"]) == [0, 1]
    assert all("document" not in result for result in payload["results"])


def test_compat_routes_answer_json_whatever_a_json_client_accepts(client):
    for accept in ("*/*", "text/html", "application/json, text/plain, */*"):
        response = client.post("/rerank", json={"query": "q", "documents": ["a"]}, headers={"accept": accept})
        assert response.status_code == 200 and response.headers["content-type"] == "application/json"


def test_model_is_required_when_several_are_served(loop, scorer):
    with running_gateway(loop, scorer) as url:
        response = httpx.post(f"{url}/score", json={"text_1": "a", "text_2": "b"})
    assert response.status_code == 400 and "model is required" in response.json()["message"]


@pytest.mark.parametrize(("path", "body", "message"), [
    ("/v1/rerank", {"query": "q", "documents": []}, "documents is empty"),
    ("/v1/rerank", {"query": "q", "documents": ["fine", "x" * 5000]}, "documents[1] is 5000 characters"),
    ("/v1/rerank", {"query": "q", "documents": ["a"], "top_n": -1}, "top_n must be >= 0"),
    ("/score", {"text_1": "q", "text_2": []}, "text_2 is empty"),
    ("/score", {"text_1": ["q", " "], "text_2": ["a", "b"]}, "text_1[1] is empty"),
    ("/score", {"queries": "q", "documents": []}, "documents is empty"),
])
def test_compat_routes_name_the_fields_their_caller_sent(client, path, body, message):
    response = client.post(path, json=body)
    assert 400 <= response.status_code < 500
    assert response.json()["message"].startswith(message), response.json()
    assert "items" not in response.json()["message"]
