"""Cohere / Jina `POST /v1/rerank` and `/rerank`: one query, documents, best first.

Request `{model?, query, documents: [string | {text}], top_n?, return_documents?,
max_tokens_per_doc?}` (Cohere v2's cap; xscore's other length fields too); response
`{id, model, results: [{index, relevance_score, document?: {text}}], usage: {total_tokens, windows?}}`.
`return_documents` defaults to true as Jina's does: a client that does not ask gets a field it
can ignore, rather than missing one it reads.
"""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from xscore.api.schema import Item, ScoreRequest, ScoreResult
from xscore.gateway.backend import model_or_only
from xscore.gateway.codec import finite
from xscore.gateway.endpoint import GatewayState
from xscore.gateway.errors import FieldNames
from xscore.gateway.fields import Fields, length_policy, wrong_type
from xscore.gateway.media import Format, Negotiated
from xscore.gateway.requests import deadline_of, read_payload, while_connected
from xscore.gateway.responses import EncodedResponse, timing_headers


def _document(value: Any, path: str) -> Item:
    if isinstance(value, str):
        return Item(value)
    if not isinstance(value, dict):
        raise wrong_type(path, "a string or an object {text}", value)
    return Item(Fields(value, path).string("text", required=True))


def parse(body: Any, model: str, deadline: float | None) -> ScoreRequest:
    fields = Fields(body)
    documents = fields.array("documents", required=True)
    return ScoreRequest(
        model=model,
        query=fields.string("query", required=True),
        items=[_document(value, f"documents[{index}]") for index, value in enumerate(documents)],
        top_k=fields.integer("top_n"),
        raw_scores=fields.boolean("raw_scores", False),
        truncate=fields.boolean("truncate", True),
        return_text=fields.boolean("return_documents", True),
        deadline=deadline,
        instruction=fields.string("instruction"),  # a causal-LM reranker's task (an xscore extension)
        lengths=length_policy(fields),  # Cohere v2's and vLLM's token caps, and xscore's long-document fields
    )


def render(result: ScoreResult) -> dict[str, Any]:
    results = []
    for entry in result.scores:
        ranked: dict[str, Any] = {"index": entry.index, "relevance_score": finite(entry.score)}
        if entry.text is not None:
            ranked["document"] = {"text": entry.text}
        results.append(ranked)
    usage: dict[str, Any] = {"total_tokens": result.usage.tokens}
    if result.usage.windows:
        usage["windows"] = list(result.usage.windows)
    return {"id": f"rerank-{uuid.uuid4().hex}", "model": result.model, "results": results, "usage": usage}


# the scorer's names for what this route calls documents and top_n
FIELD_NAMES = FieldNames((r"items\[(\d+)\]\.text", r"documents[\1]"), (r"items", "documents"), (r"top_k", "top_n"))


async def rerank(request: Request, negotiated: Negotiated, state: GatewayState) -> Response:
    body = await read_payload(request, state.limits, untyped=Format.JSON)
    model = await model_or_only(state.backend, Fields(body).string("model"))
    with FIELD_NAMES.apply():
        result = await while_connected(request, state.backend.score(parse(body, model, deadline_of(request))))
    return EncodedResponse(render(result), negotiated, headers=timing_headers(result.timing))
