"""vLLM's `POST /score` and `/v1/score`: explicit pairs (1:1, 1:N, N:N), scores in input order.

Request `{model?, text_1, text_2}` or `{model?, queries, documents}`, each a string or a list of
strings, with vLLM's `max_tokens_per_doc` / `max_tokens_per_query` caps (and xscore's other length
fields); response `{id, object: "list", created, model, data: [{index, object: "score", score}],
usage: {prompt_tokens, total_tokens}}`. The pairing rule and its 400 ("Input lengths must be 1:1,
1:N or N:N") are the scorer's.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from xscore.api.errors import invalid
from xscore.api.schema import PairsRequest, PairsResult
from xscore.gateway.backend import model_or_only
from xscore.gateway.codec import finite
from xscore.gateway.endpoint import GatewayState
from xscore.gateway.errors import FieldNames
from xscore.gateway.fields import Fields, length_policy, string_or_strings
from xscore.gateway.media import Format, Negotiated
from xscore.gateway.requests import deadline_of, read_payload, while_connected
from xscore.gateway.responses import EncodedResponse, timing_headers


def _texts(fields: Fields, names: tuple[str, ...]) -> list[str]:
    for name in names:
        if fields.has(name):
            return string_or_strings(fields.raw(name), name)
    raise invalid(f"{' or '.join(names)} is required", field=names[0])


def parse(body: Any, model: str, deadline: float | None) -> PairsRequest:
    fields = Fields(body)
    queries = _texts(fields, ("text_1", "queries"))
    documents = _texts(fields, ("text_2", "documents"))
    # vLLM's `use_activation: false` (older: `activation`) asks for raw logits
    activation = fields.boolean("use_activation", fields.boolean("activation", True))
    return PairsRequest(
        model=model,
        queries=queries,
        documents=documents,
        raw_scores=fields.boolean("raw_scores", not activation),
        truncate=fields.boolean("truncate", True),
        deadline=deadline,
        instruction=fields.string("instruction"),  # a causal-LM reranker's task (an xscore extension)
        lengths=length_policy(fields),  # Cohere v2's and vLLM's token caps, and xscore's long-document fields
    )


def render(result: PairsResult) -> dict[str, Any]:
    usage: dict[str, Any] = {"prompt_tokens": result.usage.tokens, "total_tokens": result.usage.tokens}
    if result.usage.windows:
        usage["windows"] = list(result.usage.windows)
    return {
        "id": f"score-{uuid.uuid4().hex}",
        "object": "list",
        "created": int(time.time()),
        "model": result.model,
        "data": [{"index": index, "object": "score", "score": finite(value)}
                 for index, value in enumerate(result.scores)],
        "usage": usage,
    }


# the scorer names pairs queries/documents; a caller who sent text_1/text_2 is told about those
TEXT_FIELD_NAMES = FieldNames((r"queries(\[\d+\])?", r"text_1\1"), (r"documents(\[\d+\])?", r"text_2\1"))
OWN_FIELD_NAMES = FieldNames()


async def score(request: Request, negotiated: Negotiated, state: GatewayState) -> Response:
    body = await read_payload(request, state.limits, untyped=Format.JSON)
    fields = Fields(body)
    model = await model_or_only(state.backend, fields.string("model"))
    names = TEXT_FIELD_NAMES if fields.has("text_1") or fields.has("text_2") else OWN_FIELD_NAMES
    with names.apply():
        result = await while_connected(request, state.backend.score_pairs(parse(body, model, deadline_of(request))))
    return EncodedResponse(render(result), negotiated, headers=timing_headers(result.timing))
