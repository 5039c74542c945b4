"""One adapter per wire shape a rerank server speaks: send a request, count the scores it answers.

A failure becomes a `Failure` whose `kind` groups it in the report ("http 429", "grpc UNAVAILABLE",
"timeout", "connect", "bad response"); an answer with the wrong number of scores is a failure
too, so a server that drops documents cannot look fast.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import msgpack

from xscore.bench.workloads import Request
from xscore.api.errors import invalid
from xscore.client import AsyncScorerClient, RetryPolicy


class Failure(Exception):
    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class HttpShape:
    """How one HTTP API asks for scores and answers them."""

    path: str  # "{model}" is filled in
    body: Callable[[Request, str], dict[str, Any]]
    scores: Callable[[Any], list]  # the answered scores, from the decoded response
    msgpack: bool = False


def _results(payload: Any) -> list:
    return payload["results"]


HTTP_SHAPES: dict[str, HttpShape] = {
    # xscore's native route (the SIE score API), either encoding
    "xscore-msgpack": HttpShape("/v1/score/{model}", lambda r, m: {
        "query": {"text": r.query}, "items": [{"text": d} for d in r.documents]}, lambda p: p["scores"], msgpack=True),
    "xscore-json": HttpShape("/v1/score/{model}", lambda r, m: {
        "query": {"text": r.query}, "items": [{"text": d} for d in r.documents]}, lambda p: p["scores"]),
    # Cohere's and Jina's rerank APIs (xscore serves them at /v1/rerank too)
    "cohere": HttpShape("/v1/rerank", lambda r, m: {
        "model": m, "query": r.query, "documents": list(r.documents), "top_n": len(r.documents)}, _results),
    "jina": HttpShape("/v1/rerank", lambda r, m: {
        "model": m, "query": r.query, "documents": list(r.documents), "top_n": len(r.documents),
        "return_documents": False}, _results),
    # vLLM's score API: one query against N texts
    "vllm": HttpShape("/score", lambda r, m: {"model": m, "text_1": r.query, "text_2": list(r.documents)},
                      lambda p: p["data"]),
    # text-embeddings-inference: a bare list of {index, score}
    "tei": HttpShape("/rerank", lambda r, m: {"query": r.query, "texts": list(r.documents), "raw_scores": False},
                     lambda p: p),
    # infinity-emb: Cohere-like results
    "infinity": HttpShape("/rerank", lambda r, m: {
        "model": m, "query": r.query, "documents": list(r.documents), "return_documents": False}, _results),
}
PROTOCOLS = ("xscore-grpc", *HTTP_SHAPES)


class HttpAdapter:
    def __init__(self, shape: HttpShape, target: str, model: str, *, connections: int, timeout: float,
                 token: str | None = None) -> None:
        if not target.startswith(("http://", "https://")):
            raise invalid(f"an HTTP protocol needs an http:// or https:// target, got {target!r}", field="target")
        self.shape = shape
        self.model = model
        headers = {"authorization": f"Bearer {token}"} if token else {}
        media = "application/msgpack" if shape.msgpack else "application/json"
        self._headers = {**headers, "content-type": media, "accept": media}
        self._client = httpx.AsyncClient(base_url=target.rstrip("/"), timeout=timeout,
                                         limits=httpx.Limits(max_connections=connections,
                                                             max_keepalive_connections=connections))

    async def score(self, request: Request) -> int:
        body = self.shape.body(request, self.model)
        content = msgpack.packb(body, use_bin_type=True) if self.shape.msgpack else json.dumps(body).encode()
        try:
            response = await self._client.post(self.shape.path.format(model=self.model), content=content,
                                               headers=self._headers)
        except httpx.TimeoutException as exc:
            raise Failure("timeout", str(exc)) from None
        except httpx.TransportError as exc:
            raise Failure("connect", str(exc) or type(exc).__name__) from None
        if response.status_code != 200:
            kind = f"http {response.status_code}"
            if response.status_code in (429, 503) and "retry-after" not in response.headers:
                kind += " (no Retry-After)"  # a refusal that does not say when to come back
            raise Failure(kind, response.text[:200])
        try:
            payload = msgpack.unpackb(response.content, raw=False) if self.shape.msgpack else response.json()
            answered = len(self.shape.scores(payload))
        except Exception as exc:  # any shape the adapter does not expect
            raise Failure("bad response", f"{type(exc).__name__}: {exc}") from None
        if answered != request.pairs:
            raise Failure("bad response", f"{answered} scores for {request.pairs} documents")
        return answered

    async def close(self) -> None:
        await self._client.aclose()


class GrpcAdapter:
    def __init__(self, target: str, model: str, *, timeout: float, token: str | None = None) -> None:
        self.model = model
        self._timeout = timeout
        # no retries: a refusal is what the report counts
        self._client = AsyncScorerClient(target, timeout=timeout, retry=RetryPolicy(attempts=1), token=token)

    async def score(self, request: Request) -> int:
        try:
            response = await self._client.score(request.query, list(request.documents), model=self.model)
        except grpc.RpcError as exc:
            code = exc.code()
            if code is grpc.StatusCode.DEADLINE_EXCEEDED:
                raise Failure("timeout", exc.details() or "") from None
            kind = f"grpc {code.name}"
            if code in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE) and \
                    "retry-after" not in dict(exc.trailing_metadata() or ()):
                kind += " (no retry-after)"
            raise Failure(kind, exc.details() or "") from None
        if len(response.scores) != request.pairs:
            raise Failure("bad response", f"{len(response.scores)} scores for {request.pairs} documents")
        return len(response.scores)

    async def close(self) -> None:
        await self._client.close()


Adapter = HttpAdapter | GrpcAdapter


def adapter(protocol: str, target: str, model: str, *, connections: int, timeout: float = 60.0,
            token: str | None = None) -> Adapter:
    if protocol == "xscore-grpc":
        return GrpcAdapter(target.removeprefix("grpc://"), model, timeout=timeout, token=token)
    if protocol not in HTTP_SHAPES:
        raise invalid(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}", field="protocol")
    return HttpAdapter(HTTP_SHAPES[protocol], target, model, connections=connections, timeout=timeout, token=token)
