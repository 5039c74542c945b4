"""Models, probes, metrics, the OpenAPI document, /docs and CORS."""

from __future__ import annotations

import re

import httpx
from gateway_harness import (  # noqa: F401
    JSON,
    MSGPACK,
    base_url,
    client,
    decoded,
    loop,
    packb,
    running_gateway,
    scorer,
)
from openapi_spec_validator import validate
from prometheus_client import CollectorRegistry

from xscore.gateway.app import create_app


def test_models_lists_every_served_model(client):
    payload = client.get("/v1/models").json()
    assert [model["id"] for model in payload["data"]] == ["tiny", "org/tiny"]
    assert payload["data"][0]["ready"] is True and payload["data"][0]["max_items_per_request"] == 32
    assert decoded(client.get("/v1/models", headers={"accept": MSGPACK})) == payload
    assert client.get("/v1/models/org/tiny").json()["name"] == "org/tiny"
    assert client.get("/v1/models/none").status_code == 404


def test_probes(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}


def test_metrics_count_requests_by_route_template(loop, scorer):
    registry = CollectorRegistry()
    with running_gateway(loop, scorer, metrics_registry=registry) as url, httpx.Client(base_url=url) as http:
        http.post("/v1/score/org/tiny", content=packb({"query": "q", "items": ["a"]}),
                  headers={"content-type": MSGPACK})
        http.get("/no/such/route")
        text = http.get("/metrics").text
    assert 'xscore_http_requests_total{method="POST",route="/v1/score/{model:path}",status="200"} 1.0' in text
    assert 'route="unmatched",status="404"' in text


def test_metrics_default_to_the_global_registry(scorer):
    from prometheus_client import REGISTRY

    create_app(scorer)
    create_app(scorer)  # twice in one process: the metrics are shared, not registered again
    assert REGISTRY.get_sample_value("xscore_http_requests_total", {"route": "x", "method": "GET",
                                                                    "status": "200"}) is None


def test_openapi_document_is_valid_and_describes_every_route(client, scorer):
    document = client.get("/openapi.json").json()
    validate(document)
    assert document["openapi"] == "3.1.0"
    described = set(document["paths"])
    for route in create_app(scorer, metrics_registry=CollectorRegistry()).routes:
        path = re.sub(r"\{(\w+):path\}", r"{\1}", route.path)
        assert path in described or path.startswith("/docs/assets"), path


def test_docs_page_uses_only_local_assets(client):
    page = client.get("/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(source.startswith("/") for source in sources)
    for source in sources:
        asset = client.get(source)
        assert asset.status_code == 200 and len(asset.content) > 10_000, source
    assert client.get("/docs/assets/../../etc/passwd").status_code == 404
    assert client.get("/docs/assets/index.html").status_code == 404


def test_cors_is_off_by_default(client):
    preflight = client.options("/v1/score/tiny", headers={"origin": "https://app.example",
                                                          "access-control-request-method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-origin" not in client.get("/healthz", headers={"origin": "https://app.example"}).headers


def test_cors_allows_configured_origins(loop, scorer):
    with running_gateway(loop, scorer, cors_origins=["https://app.example"]) as url, httpx.Client(base_url=url) as http:
        preflight = http.options("/v1/score/tiny", headers={
            "origin": "https://app.example", "access-control-request-method": "POST",
            "access-control-request-headers": "content-type, x-request-id"})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        response = http.post("/v1/score/tiny", content=packb({"query": "q", "items": ["a"]}),
                             headers={"content-type": MSGPACK, "origin": "https://app.example"})
        assert response.headers["access-control-allow-origin"] == "https://app.example"
        assert "X-Total-Time" in response.headers["access-control-expose-headers"]
        other = http.options("/v1/score/tiny", headers={"origin": "https://evil.example",
                                                        "access-control-request-method": "POST"})
        assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
