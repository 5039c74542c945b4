"""HTTP clients for the xscore gateway, sync and async, with no stubs: msgpack by default, JSON on
request, the same `RetryPolicy` as the gRPC clients (429 and 503 retried, at least Retry-After,
never past the call's deadline).

Results are the shared vocabulary of `xscore.api.schema` (`ScoreResult`, `PairsResult`,
`ModelInfo`), and errors the `XscoreError` the server raised, rebuilt from its `{code, message,
details}` body, so code written against one transport reads the same against the other.
`score` uses the native route (`POST /v1/score/<model>`), `score_pairs` the pairs route
(`POST /v1/score`, one score per (query, document) pair, in input order).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx
import msgpack

from xscore.api.errors import ErrorCode, XscoreError
from xscore.api.http import DEADLINE_HEADER, RETRY_STATUSES, TIMING_HEADERS
from xscore.api.schema import (
    Item,
    LengthPolicy,
    ModelInfo,
    PairsResult,
    ScoredItem,
    ScoreResult,
    Timing,
    Usage,
    check_lengths,
)
from xscore.client.retry import RetryPolicy

FORMATS = {"msgpack": "application/msgpack", "json": "application/json"}
_LENGTH_FIELDS = tuple(field.name for field in dataclasses.fields(LengthPolicy))
ItemLike = str | tuple[str, str] | Item  # text, (id, text) or an Item


class _Wire:
    """Requests and answers of the HTTP API, with no I/O: what both clients share."""

    def __init__(self, base_url: str, format: str, token: str | None) -> None:
        if format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {format!r}")
        self.base_url = base_url.rstrip("/")
        self.media_type = FORMATS[format]
        self.headers = {"Accept": self.media_type, "Content-Type": self.media_type}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def encode(self, body: dict[str, Any]) -> bytes:
        if self.media_type == FORMATS["json"]:
            return json.dumps(body).encode()
        return msgpack.packb(body)

    @staticmethod
    def decode(response: httpx.Response) -> Any:
        if response.headers.get("content-type", "").startswith(FORMATS["msgpack"]):
            return msgpack.unpackb(response.content)
        return response.json()

    @staticmethod
    def score_body(query: str, items: Sequence[ItemLike], top_k: int | None, raw_scores: bool,
                   truncate: bool | None, return_text: bool, instruction: str | None,
                   lengths: LengthPolicy) -> dict[str, Any]:
        options: dict[str, Any] = {"raw_scores": raw_scores, "return_text": return_text,
                                   **_lengths(lengths)}
        if top_k:
            options["top_k"] = top_k
        if truncate is not None:
            options["truncate"] = truncate
        body: dict[str, Any] = {"query": {"text": query}, "items": [_item(item) for item in items],
                                "options": options}
        if instruction is not None:
            body["instruction"] = instruction
        return body

    @staticmethod
    def pairs_body(model: str, queries: Sequence[str], documents: Sequence[str], raw_scores: bool,
                   truncate: bool | None, instruction: str | None,
                   lengths: LengthPolicy) -> dict[str, Any]:
        body: dict[str, Any] = {"model": model, "queries": list(queries), "documents": list(documents),
                                "raw_scores": raw_scores, **_lengths(lengths)}
        if truncate is not None:
            body["truncate"] = truncate
        if instruction is not None:
            body["instruction"] = instruction
        return body

    def score_result(self, response: httpx.Response) -> ScoreResult:
        body = self.decode(response)
        scores = [ScoredItem(row["item_id"], row["index"], float(row["score"]), row["rank"], row.get("text"))
                  for row in body["scores"]]
        usage = body.get("usage") or {}
        return ScoreResult(body["model"], scores, Usage(
            pairs=usage.get("pairs", len(scores)), tokens=usage.get("tokens", 0),
            truncated=list(usage.get("truncated", [])), windows=list(usage.get("windows", [])),
            cached=usage.get("cached", 0)), _timing(response))

    def pairs_result(self, response: httpx.Response) -> PairsResult:
        body = self.decode(response)
        rows = sorted(body["data"], key=lambda row: row["index"])
        usage = body.get("usage") or {}
        return PairsResult(body["model"], [float(row["score"]) for row in rows],
                           Usage(pairs=len(rows), tokens=usage.get("total_tokens", 0),
                                 windows=list(usage.get("windows", []))), _timing(response))

    def model_info(self, row: dict[str, Any]) -> ModelInfo:
        return ModelInfo(**{name: row[name] for name in ModelInfo.__dataclass_fields__})

    def error(self, response: httpx.Response) -> XscoreError:
        """The server's error, as it raised it; a body that is not xscore's keeps the status."""
        retry_after = _retry_after(response)
        try:
            body = self.decode(response)
            return XscoreError(ErrorCode(body["code"]), body["message"], details=body.get("details"),
                               retry_after_s=retry_after)
        except (ValueError, KeyError, TypeError, msgpack.UnpackException):
            return XscoreError(ErrorCode.HTTP_ERROR, f"HTTP {response.status_code} from {response.url}: "
                               f"{response.text[:200]}", retry_after_s=retry_after)


def _item(item: ItemLike) -> dict[str, str]:
    if isinstance(item, Item):
        return {"text": item.text, **({"id": item.id} if item.id else {})}
    if isinstance(item, str):
        return {"text": item}
    item_id, text = item
    return {"id": item_id, "text": text} if item_id else {"text": text}


def _lengths(lengths: LengthPolicy) -> dict[str, Any]:
    checked = check_lengths(lengths)
    return {name: getattr(checked, name) for name in _LENGTH_FIELDS if getattr(checked, name) is not None}


def _timing(response: httpx.Response) -> Timing:
    values = {}
    for name, header in TIMING_HEADERS.items():
        try:
            values[name] = float(response.headers.get(header, "0"))
        except ValueError:
            values[name] = 0.0
    return Timing(**values)


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers["Retry-After"]))
    except (KeyError, ValueError):
        return None


def _deadline_headers(deadline: float | None) -> dict[str, str]:
    """The caller's remaining patience, so the server stops work nobody waits for."""
    if deadline is None:
        return {}
    return {DEADLINE_HEADER: str(max(1, int((deadline - time.monotonic()) * 1000)))}


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.001, deadline - time.monotonic())


def _next_delay(wire: _Wire, response: httpx.Response, retry: int, policy: RetryPolicy,
                deadline: float | None) -> float:
    """Seconds before retrying a refused call; the server's error when it is not to be retried."""
    delay = policy.next_delay(retry, _retry_after(response), deadline) \
        if response.status_code in RETRY_STATUSES else None
    if delay is None:
        raise wire.error(response)
    return delay


def _model_path(model: str) -> str:
    return quote(model, safe="/")


class HttpScorerClient:
    """Blocking client of an xscore HTTP gateway. `timeout` (seconds) bounds each call with its retries."""

    def __init__(self, base_url: str = "http://127.0.0.1:8080", *, format: str = "msgpack",
                 timeout: float | None = 30.0, retry: RetryPolicy | None = None, token: str | None = None,
                 verify: str | bool = True, transport: httpx.BaseTransport | None = None) -> None:
        """`verify`: True (the system's CAs), False, or a CA bundle file for a server's own certificate."""
        self._wire = _Wire(base_url, format, token)
        self._http = httpx.Client(base_url=self._wire.base_url, headers=self._wire.headers, verify=verify,
                                  timeout=None, transport=transport)
        self.timeout = timeout
        self.retry = retry or RetryPolicy()

    def score(self, query: str, items: Sequence[ItemLike], *, model: str = "default", top_k: int | None = None,
              raw_scores: bool = False, truncate: bool | None = None, return_text: bool = False,
              instruction: str | None = None, lengths: LengthPolicy = LengthPolicy(),
              timeout: float | None = None) -> ScoreResult:
        body = self._wire.score_body(query, items, top_k, raw_scores, truncate, return_text, instruction, lengths)
        return self._wire.score_result(self._call("POST", f"/v1/score/{_model_path(model)}", body, timeout))

    def score_pairs(self, queries: Sequence[str], documents: Sequence[str], *, model: str = "default",
                    raw_scores: bool = False, truncate: bool | None = None, instruction: str | None = None,
                    lengths: LengthPolicy = LengthPolicy(), timeout: float | None = None) -> PairsResult:
        body = self._wire.pairs_body(model, queries, documents, raw_scores, truncate, instruction, lengths)
        return self._wire.pairs_result(self._call("POST", "/v1/score", body, timeout))

    def list_models(self, *, timeout: float | None = None) -> list[ModelInfo]:
        return [self._wire.model_info(row) for row in self._wire.decode(self._call("GET", "/v1/models", None, timeout))["data"]]

    def get_model(self, name: str, *, timeout: float | None = None) -> ModelInfo:
        return self._wire.model_info(self._wire.decode(self._call("GET", f"/v1/models/{_model_path(name)}", None, timeout)))

    def ready(self, *, timeout: float = 5.0) -> bool:
        """/readyz: every model loaded and not draining."""
        try:
            return self._http.get("/readyz", timeout=timeout).status_code == 200
        except httpx.TransportError:
            return False

    def _call(self, method: str, path: str, body: dict[str, Any] | None, timeout: float | None) -> httpx.Response:
        deadline = _deadline(self.timeout if timeout is None else timeout)
        content = None if body is None else self._wire.encode(body)
        for retry in itertools.count():
            response = self._http.request(method, path, content=content, timeout=_remaining(deadline),
                                          headers=_deadline_headers(deadline))
            if response.is_success:
                return response
            time.sleep(_next_delay(self._wire, response, retry, self.retry, deadline))
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> HttpScorerClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncHttpScorerClient:
    """asyncio client of an xscore HTTP gateway: the same calls as `HttpScorerClient`, awaited."""

    def __init__(self, base_url: str = "http://127.0.0.1:8080", *, format: str = "msgpack",
                 timeout: float | None = 30.0, retry: RetryPolicy | None = None, token: str | None = None,
                 verify: str | bool = True, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._wire = _Wire(base_url, format, token)
        self._http = httpx.AsyncClient(base_url=self._wire.base_url, headers=self._wire.headers, verify=verify,
                                       timeout=None, transport=transport)
        self.timeout = timeout
        self.retry = retry or RetryPolicy()

    async def score(self, query: str, items: Sequence[ItemLike], *, model: str = "default",
                    top_k: int | None = None, raw_scores: bool = False, truncate: bool | None = None,
                    return_text: bool = False, instruction: str | None = None,
                    lengths: LengthPolicy = LengthPolicy(), timeout: float | None = None) -> ScoreResult:
        body = self._wire.score_body(query, items, top_k, raw_scores, truncate, return_text, instruction, lengths)
        return self._wire.score_result(await self._call("POST", f"/v1/score/{_model_path(model)}", body, timeout))

    async def score_pairs(self, queries: Sequence[str], documents: Sequence[str], *, model: str = "default",
                          raw_scores: bool = False, truncate: bool | None = None, instruction: str | None = None,
                          lengths: LengthPolicy = LengthPolicy(), timeout: float | None = None) -> PairsResult:
        body = self._wire.pairs_body(model, queries, documents, raw_scores, truncate, instruction, lengths)
        return self._wire.pairs_result(await self._call("POST", "/v1/score", body, timeout))

    async def list_models(self, *, timeout: float | None = None) -> list[ModelInfo]:
        response = await self._call("GET", "/v1/models", None, timeout)
        return [self._wire.model_info(row) for row in self._wire.decode(response)["data"]]

    async def get_model(self, name: str, *, timeout: float | None = None) -> ModelInfo:
        response = await self._call("GET", f"/v1/models/{_model_path(name)}", None, timeout)
        return self._wire.model_info(self._wire.decode(response))

    async def ready(self, *, timeout: float = 5.0) -> bool:
        try:
            return (await self._http.get("/readyz", timeout=timeout)).status_code == 200
        except httpx.TransportError:
            return False

    async def _call(self, method: str, path: str, body: dict[str, Any] | None,
                    timeout: float | None) -> httpx.Response:
        deadline = _deadline(self.timeout if timeout is None else timeout)
        content = None if body is None else self._wire.encode(body)
        for retry in itertools.count():
            response = await self._http.request(method, path, content=content, timeout=_remaining(deadline),
                                                headers=_deadline_headers(deadline))
            if response.is_success:
                return response
            await asyncio.sleep(_next_delay(self._wire, response, retry, self.retry, deadline))
        raise AssertionError("unreachable")

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncHttpScorerClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


__all__ = ["AsyncHttpScorerClient", "FORMATS", "HttpScorerClient"]
