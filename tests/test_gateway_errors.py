"""Every HTTP error status with its body, the size limits, and a fuzz test: no 5xx."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import msgpack
import pytest
from gateway_harness import JSON, MSGPACK, LoopThread, decoded, loop, packb, running_gateway, scorer  # noqa: F401
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks import fuzzing
from xscore.api.errors import HTTP_STATUS, ErrorCode, XscoreError
from xscore.gateway.codec import DecodeLimits
from xscore.gateway.errors import error_response
from xscore.gateway.media import Format, default_for

LIMITS = DecodeLimits(max_body_bytes=64 * 1024, max_depth=8, max_array_len=100, max_map_len=50,
                      max_str_len=32 * 1024)


@pytest.fixture(scope="module")
def client(loop: LoopThread, scorer) -> Iterator[httpx.Client]:
    with running_gateway(loop, scorer, limits=LIMITS) as url, httpx.Client(base_url=url, timeout=30) as http:
        yield http


def post(client, body: bytes, content_type=MSGPACK, accept=None, path="/v1/score/tiny", **headers):
    headers = {"content-type": content_type, **({"accept": accept} if accept else {}), **headers}
    return client.post(path, content=body, headers=headers)


def error_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.content
    payload = decoded(response)
    assert set(payload) <= {"code", "message", "details"} and payload["message"]
    return payload


@pytest.mark.parametrize("accept", [None, JSON])
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"\xc1", "not valid msgpack"),
        (b"\x92\x01", "truncated msgpack"),
        (packb({"query": "q", "items": ["a"]}) + b"\x00", "data after the first msgpack object"),
        (b"", "request body is empty"),
        (packb([1, 2]), "body must be an object, got array"),
        (packb({"items": ["a"]}), "query is required"),
        (packb({"query": "q", "items": ["a", "b", "c", {"text": 7}]}), "items[3].text must be a string, got integer"),
        (packb({"query": "q", "items": "a"}), "items must be an array, got string"),
        (packb({"query": "q", "items": ["a"], "options": {"top_k": True}}), "options.top_k must be an integer"),
        (packb({"query": "q", "items": ["a"], "options": {"top_k": 2.0}}), "options.top_k must be an integer"),
        (packb({"query": "q", "items": ["a"], "options": {"truncate": "no"}}), "options.truncate must be a boolean"),
        (packb({"query": {"id": 5, "text": "q"}, "items": ["a"]}), "query.id must be a string"),
        (packb({"query": "q", "items": [b"bytes"]}), "items[0] must be an object {id?, text} or a string"),
        (packb({1: "q"}), "not valid msgpack"),
        (b"\xa3\xff\xfe\xfd", "not valid msgpack"),
        (packb({"query": "q", "items": [[[[[[[["deep"]]]]]]]]}), "nests deeper than 8"),
        (packb({"query": "q", "items": ["a"], "options": {"top_k": -1}}), "top_k must be >= 0"),
    ],
)
def test_malformed_msgpack_is_400_naming_the_problem(client, body, message, accept):
    payload = error_of(post(client, body, accept=accept), 400)
    assert payload["code"] == "INVALID_ARGUMENT" and message in payload["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "not valid JSON"),
        (b'{"query": "q", "items": [NaN]}', "NaN is not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b'{"query": "q", "items": ["a", {"text": null}]}', "items[1].text is required"),
        (b'{"query": "q", "items": ["a"]} trailing', "not valid JSON"),
        (b"[" * 5000 + b"]" * 5000, "nests"),
    ],
)
def test_malformed_json_is_400(client, body, message):
    payload = error_of(post(client, body, JSON, accept=JSON), 400)
    assert message in payload["message"]


def test_unauthenticated_is_401_with_a_challenge(loop, scorer):
    body = packb({"query": "q", "items": ["a"]})
    with running_gateway(loop, scorer, auth_token="s3cret") as url, httpx.Client(base_url=url) as http:
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "Basic s3cret"}):
            response = post(http, body, accept=JSON, **headers)
            assert error_of(response, 401)["code"] == "UNAUTHENTICATED"
            assert response.headers["www-authenticate"].startswith("Bearer")
        assert post(http, body, authorization="Bearer s3cret").status_code == 200
        assert http.get("/v1/models").status_code == 401
        assert http.post("/rerank", json={"query": "q", "documents": ["a"], "model": "tiny"}).status_code == 401
        for public in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
            assert http.get(public).status_code == 200, public


def test_unknown_model_and_unknown_route_are_404(client):
    assert error_of(post(client, packb({"query": "q", "items": ["a"]}), path="/v1/score/org/none"),
                    404)["code"] == "NOT_FOUND"
    response = client.get("/v2/nothing", headers={"accept": MSGPACK})
    assert error_of(response, 404)["code"] == "NOT_FOUND" and response.headers["content-type"] == MSGPACK
    assert error_of(client.get("/nothing"), 404)["message"] == "no route /nothing"


def test_wrong_method_is_405_with_allow(client):
    response = client.get("/v1/score/tiny")
    assert error_of(response, 405)["code"] == "METHOD_NOT_ALLOWED"
    assert response.headers["allow"] == "POST"
    assert client.delete("/v1/models").status_code == 405


def test_body_over_the_limit_is_413_before_decoding(client):
    big = packb({"query": "q", "items": ["x" * 70_000]})
    assert error_of(post(client, big), 413)["code"] == "TOO_LARGE"

    def chunks():  # no Content-Length: the limit holds while streaming, on garbage never decoded
        for _ in range(100):
            yield b"\xc1" * 1024

    assert error_of(post(client, chunks()), 413)["code"] == "TOO_LARGE"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (packb({"query": "q", "items": ["a"] * 33}), "items has 33 entries, over the limit of 32"),
        (packb({"query": "q", "items": ["a", "b" * 4001]}), "items[1].text is 4001 characters"),
        (packb({"query": "q", "items": ["a"] * 101}), "exceeds max_array_len"),
        (b"\xdd\xff\xff\xff\xff", "exceeds max_array_len"),  # 5 bytes declaring 4 billion entries
        (packb({"query": "q", "items": ["a"], "x": {str(i): i for i in range(51)}}), "exceeds max_map_len"),
    ],
)
def test_count_and_text_limits_are_413(client, body, message):
    payload = error_of(post(client, body, accept=JSON), 413)
    assert payload["code"] == "TOO_LARGE" and message in payload["message"]


def test_empty_query_and_too_long_without_truncation_are_422(client):
    assert error_of(post(client, packb({"query": "  ", "items": ["a"]})), 422)["code"] == "UNPROCESSABLE"
    body = packb({"query": "q", "items": ["word " * 700], "options": {"truncate": False}})
    assert "pair 0" in error_of(post(client, body, accept=JSON), 422)["message"]


def test_passed_deadline_is_504_and_a_bad_one_400(client):
    body = packb({"query": "q", "items": ["a"]})
    assert error_of(post(client, body, **{"x-timeout-ms": "0"}), 504)["code"] == "DEADLINE_EXCEEDED"
    assert "X-Timeout-Ms" in error_of(post(client, body, **{"x-timeout-ms": "soon"}), 400)["message"]
    assert post(client, body, **{"x-timeout-ms": "60000"}).status_code == 200


@pytest.mark.parametrize("code", list(HTTP_STATUS))
@pytest.mark.parametrize("body_format", list(Format))
def test_every_error_code_maps_through_the_shared_table(code, body_format):
    """Queue-full (429) and draining (503) cannot be provoked before the batcher lands; their
    mapping, Retry-After included, is checked on the response the gateway would send."""
    response = error_response(XscoreError(code, "why", details={"field": "f"}, retry_after_s=2.5),
                              default_for(body_format))
    assert response.status_code == HTTP_STATUS[code]
    body = msgpack.unpackb(response.body) if body_format is Format.MSGPACK else json.loads(response.body)
    assert body == {"code": code.value, "message": "why", "details": {"field": "f"}}
    assert (response.headers.get("retry-after") == "3") == (HTTP_STATUS[code] in (429, 503))
    if code is ErrorCode.RESOURCE_EXHAUSTED:
        assert response.status_code == 429


# --- fuzz: whatever arrives, the answer is never a 5xx -------------------------------------------

@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(fuzzing.msgpack_bodies)
def test_fuzzed_msgpack_bodies_never_get_a_5xx(client, body):
    assert post(client, body).status_code < 500


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from(["/v1/score/tiny", "/score", "/v1/rerank"]),
       body=fuzzing.json_bodies)
def test_fuzzed_json_bodies_never_get_a_5xx(client, path, body):
    assert post(client, body, JSON, path=path).status_code < 500


def test_a_lone_surrogate_in_json_text_is_400_naming_the_field(client):
    body = b'{"query": {"text": "q"}, "items": [{"text": "fine"}, {"text": "bad \\ud800 text"}]}'
    response = post(client, body, JSON)
    assert response.status_code == 400
    assert decoded(response)["message"] == "items[1].text is not valid Unicode: a lone surrogate at character 4"
    key = post(client, b'{"query": {"text": "q"}, "items": ["a"], "\\udfff": 1}', JSON)
    assert key.status_code == 400 and "a key of body is not valid Unicode" in decoded(key)["message"]


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from(["/v1/score/tiny", "/score", "/v1/rerank"]), text=fuzzing.unicode_text,
       where=st.sampled_from(["query", "document", "key", "instruction"]))
def test_any_unicode_in_json_never_gets_a_5xx(client, path, text, where):
    body: dict = {"query": {"text": "q"}, "items": [{"text": "d"}]} if path.startswith("/v1/score/") else \
        {"query": "q", "documents": ["d"], "text_1": "q", "text_2": ["d"]}
    if where == "query":
        body["query"] = {"text": text} if path.startswith("/v1/score/") else text
    elif where == "document":
        body["items" if path.startswith("/v1/score/") else "documents"] = [text]
    elif where == "key":
        body[text] = text
    else:
        body["instruction"] = text
    assert post(client, json.dumps(body).encode(), JSON, path=path).status_code < 500


def test_a_client_that_disconnects_has_its_queued_work_cancelled(loop, tiny_model):
    """Batchers not started: the request waits in the queue until its caller gives up."""
    from prometheus_client import CollectorRegistry

    from xscore.service.serving.metrics import Metrics
    from xscore.service.serving.scorer import Scorer

    async def idle_scorer() -> Scorer:
        return Scorer({"tiny": tiny_model}, metrics=Metrics())

    scorer = loop.run(idle_scorer())
    with running_gateway(loop, scorer, metrics_registry=CollectorRegistry()) as url:
        with pytest.raises(httpx.ReadTimeout), httpx.Client(base_url=url, timeout=1.0) as impatient:
            impatient.post("/v1/rerank", json={"query": "q", "documents": ["a", "b", "c"]})
        for _ in range(400):  # the server notices the closed connection on its own loop
            if scorer.metrics.value("xscore_dropped_pairs_total", model="tiny", reason="cancelled") == 3:
                break
            time.sleep(0.01)
        # still serving: the cancellation came from the disconnect, not from the server stopping
        assert scorer.metrics.value("xscore_dropped_pairs_total", model="tiny", reason="cancelled") == 3
        assert scorer.metrics.value("xscore_requests_total", model="tiny", status="CANCELLED") == 1
        assert scorer.in_flight == 0
    loop.run(scorer.close())
