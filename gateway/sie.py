"""`POST /v1/score/{model}`: the SIE-compatible score API, msgpack by default.

Request `{query: Item, items: [Item], instruction?, options?: {top_k, raw_scores, truncate,
return_text, max_tokens_per_doc, max_tokens_per_query, long_documents, chunk_overlap, aggregate,
max_chunks_per_doc}}` with `Item = {id?, text, metadata?}` (a bare string is taken as `{text}`);
response `{model, query_id, scores: [{item_id, index, score, rank, text?}], usage}`, best first.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from xscore.api.errors import invalid
from xscore.api.schema import Item, ScoreRequest, ScoreResult, Usage
from xscore.gateway.codec import finite
from xscore.gateway.endpoint import GatewayState
from xscore.gateway.fields import Fields, length_policy, wrong_type
from xscore.gateway.media import Negotiated
from xscore.gateway.requests import deadline_of, read_payload, while_connected
from xscore.gateway.responses import EncodedResponse, timing_headers


def _item(value: Any, path: str) -> Item:
    if isinstance(value, str):
        return Item(value)
    if not isinstance(value, dict):
        raise wrong_type(path, "an object {id?, text} or a string", value)
    fields = Fields(value, path)
    fields.obj("metadata")  # type-checked, then ignored: it is the caller's, not the model's
    return Item(fields.string("text", required=True), fields.string("id"))


def parse(body: Any, model: str, deadline: float | None) -> tuple[ScoreRequest, str | None]:
    """The scorer's request and the query id to echo."""
    fields = Fields(body)
    if not fields.has("query"):
        raise invalid("query is required", field="query")
    query = _item(fields.raw("query"), "query")
    items = [_item(value, f"items[{index}]") for index, value in enumerate(fields.array("items", required=True))]
    # a causal-LM reranker's task; cross-encoders ignore it
    instruction = fields.string("instruction")
    options = fields.obj("options") or Fields({}, "options")
    request = ScoreRequest(
        model=model,
        query=query.text,
        items=items,
        top_k=options.integer("top_k"),
        raw_scores=options.boolean("raw_scores", False),
        truncate=options.boolean("truncate", True),
        return_text=options.boolean("return_text", False),
        deadline=deadline,
        instruction=instruction,
        lengths=length_policy(options),
    )
    return request, query.id


def render(result: ScoreResult, query_id: str | None) -> dict[str, Any]:
    scores = []
    for entry in result.scores:
        scored: dict[str, Any] = {"item_id": entry.item_id, "index": entry.index, "score": finite(entry.score),
                                  "rank": entry.rank}
        if entry.text is not None:
            scored["text"] = entry.text
        scores.append(scored)
    return {"model": result.model, "query_id": query_id, "scores": scores, "usage": render_usage(result.usage)}


def render_usage(usage: Usage) -> dict[str, Any]:
    rendered: dict[str, Any] = {"pairs": usage.pairs, "tokens": usage.tokens, "truncated": list(usage.truncated),
                                "cached": usage.cached}
    if usage.windows:
        rendered["windows"] = list(usage.windows)
    return rendered


async def score(request: Request, negotiated: Negotiated, state: GatewayState) -> Response:
    body = await read_payload(request, state.limits)
    score_request, query_id = parse(body, request.path_params["model"], deadline_of(request))
    result = await while_connected(request, state.backend.score(score_request))
    return EncodedResponse(render(result, query_id), negotiated, headers=timing_headers(result.timing))

