"""Content negotiation on POST /v1/score/{model}: the full Content-Type x Accept matrix."""

from __future__ import annotations

import json

import msgpack
import pytest
from gateway_harness import JSON, MSGPACK, base_url, client, decoded, loop, scorer  # noqa: F401

from xscore.gateway.media import Format, body_format, response_format

BODY = {"query": {"text": "what is a list"}, "items": [{"text": "a list is a sequence"}, {"text": "a cat"}]}

CONTENT_TYPES = {  # Content-Type -> how the body is encoded, or None when it must be refused (415)
    "application/msgpack": "msgpack",
    "application/x-msgpack": "msgpack",
    "application/json": "json",
    "application/json; charset=utf-8": "json",
    "Application/JSON": "json",
    "text/plain": None,
    "application/x-www-form-urlencoded": None,
    None: None,
}

ACCEPTS = {  # Accept -> the response Content-Type, or None when nothing is acceptable (406)
    None: MSGPACK,
    "*/*": MSGPACK,
    "application/*": MSGPACK,
    MSGPACK: MSGPACK,
    "application/x-msgpack": "application/x-msgpack",
    JSON: JSON,
    "application/json; charset=utf-8": JSON,
    "application/json;q=0.5, application/msgpack;q=0.9": MSGPACK,
    "application/msgpack;q=0.1, application/json": JSON,
    "text/html, application/json;q=0.2": JSON,
    "*/*;q=0.1, application/json": JSON,
    "*/*, application/msgpack;q=0": JSON,
    "application/json;q=0": None,
    "text/html": None,
    "text/*": None,
}


def encode(kind: str) -> bytes:
    return msgpack.packb(BODY) if kind == "msgpack" else json.dumps(BODY).encode()


@pytest.mark.parametrize("accept", list(ACCEPTS), ids=str)
@pytest.mark.parametrize("content_type", list(CONTENT_TYPES), ids=str)
def test_content_type_and_accept_matrix(client, content_type, accept):
    headers = {key: value for key, value in (("content-type", content_type), ("accept", accept)) if value}
    body = encode(CONTENT_TYPES[content_type] or "json")
    response = client.post("/v1/score/tiny", content=body, headers=headers)
    assert response.headers["vary"] == "Accept"
    answer_type = ACCEPTS[accept]
    if answer_type is None:
        assert response.status_code == 406
        assert response.headers["content-type"] == JSON  # the unusable-Accept fallback
        assert decoded(response)["code"] == "NOT_ACCEPTABLE"
        return
    assert response.headers["content-type"] == answer_type
    payload = decoded(response)
    if CONTENT_TYPES[content_type] is None:
        assert response.status_code == 415
        assert payload["code"] == "UNSUPPORTED_MEDIA_TYPE"
        return
    assert response.status_code == 200, payload
    assert [entry["item_id"] for entry in payload["scores"]] != []


def test_body_format_allows_parameters_and_refuses_others():
    assert body_format("application/json; charset=utf-8") is Format.JSON
    assert body_format("application/x-msgpack;foo=bar") is Format.MSGPACK
    assert body_format("application/jsonx") is None
    assert body_format(None) is None


def test_accept_parsing_survives_garbage_and_honours_specificity():
    assert response_format("application/json;q=abc, ,/,;;", Format.MSGPACK).format is Format.MSGPACK
    assert response_format("application/json;q=0.9, */*;q=1", Format.MSGPACK).format is Format.MSGPACK
    assert response_format("application/msgpack;q=0.8, application/*;q=0.9", Format.MSGPACK).format is Format.JSON
    assert response_format("application/json;q=2", Format.MSGPACK).format is Format.MSGPACK  # invalid q: skipped
