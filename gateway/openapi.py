"""The OpenAPI 3.1 document of the HTTP API, written as data (served at /openapi.json).

Written by hand rather than generated so that it says exactly what the gateway accepts,
including the msgpack bodies and the compatibility shapes; a test validates it and checks that
every route in the app's table is described.
"""

from __future__ import annotations

import copy
from typing import Any

from xscore.api.http import TIMING_HEADERS

_JSON = "application/json"
_MSGPACK = "application/msgpack"
_X_MSGPACK = "application/x-msgpack"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_INSTRUCTION = {"type": ["string", "null"],
                "description": "The task given to a causal-LM reranker's prompt (default: its profile's); "
                               "cross-encoders ignore it"}


_LENGTHS: dict[str, Any] = {
    "max_tokens_per_doc": {"type": ["integer", "null"], "minimum": 1,
                           "description": "Cut each document to this many tokens before the model's limit applies"},
    "max_tokens_per_query": {"type": ["integer", "null"], "minimum": 1,
                             "description": "Cut the query to this many tokens before the model's limit applies"},
    "long_documents": {"enum": ["truncate", "chunk", None],
                       "description": "A document over the room the query leaves: cut it (truncate, the default) or "
                                      "score it in overlapping windows (chunk) and aggregate their scores"},
    "chunk_overlap": {"type": ["integer", "null"], "minimum": 0, "description": "Tokens neighbouring windows share "
                                                                               "(default 32)"},
    "aggregate": {"enum": ["max", "mean", "first", None],
                  "description": "A chunked document's score from its windows' (default max)"},
    "max_chunks_per_doc": {"type": ["integer", "null"], "minimum": 1,
                           "description": "Windows scored per document (default 16); the rest is cut and the "
                                          "document listed in usage.truncated (a 422 with truncate=false)"},
}
_USAGE_WINDOWS = {"type": "array", "items": {"type": "integer"},
                  "description": "Per document, windows scored (long_documents=chunk only)"}


def _content(schema: str, *types: str) -> dict[str, Any]:
    return {media_type: {"schema": _ref(schema)} for media_type in types}


def _error(description: str, *types: str, retry: bool = False) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": _content("Error", *(types or (_JSON,)))}
    if retry:
        response["headers"] = {"Retry-After": {"$ref": "#/components/headers/Retry-After"}}
    return response


_TIMING_HEADERS = {name: {"$ref": f"#/components/headers/{name}"} for name in (
    "X-Request-ID", *TIMING_HEADERS.values())}

_PARAMETERS = [{"$ref": "#/components/parameters/X-Request-ID"}, {"$ref": "#/components/parameters/X-Timeout-Ms"}]


def _scoring_errors(*types: str) -> dict[str, Any]:
    return {
        "400": _error("Malformed body, wrong field type or shape; the message names the field", *types),
        "401": _error("Bearer token missing or wrong (when auth is on)", *types),
        "404": _error("Model not served", *types),
        "413": _error("Body, item count or text over a limit", *types),
        "415": _error("Content-Type is neither msgpack nor JSON", *types),
        "422": _error("Semantically invalid: empty query, too long with truncate=false", *types),
        "429": _error("Queue full", *types, retry=True),
        "503": _error("Not ready or draining", *types, retry=True),
        "504": _error("Deadline (X-Timeout-Ms) passed", *types),
    }


_BOTH = (_MSGPACK, _X_MSGPACK, _JSON)

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {
            "code": {"type": "string", "examples": ["INVALID_ARGUMENT", "NOT_FOUND", "TOO_LARGE"]},
            "message": {"type": "string"},
            "details": {"type": "object", "additionalProperties": True},
        },
    },
    "Item": {
        "oneOf": [
            {"type": "object", "required": ["text"], "properties": {
                "id": {"type": ["string", "null"], "description": "Echoed as item_id; default item-<index>"},
                "text": {"type": "string"},
                "metadata": {"type": ["object", "null"], "description": "Accepted and ignored"},
            }},
            {"type": "string", "description": "Shorthand for {text}"},
        ],
    },
    "ScoreOptions": {
        "type": "object",
        "properties": {
            "top_k": {"type": ["integer", "null"], "minimum": 0, "description": "Keep the best k; 0 or null: all"},
            "raw_scores": {"type": "boolean", "default": False, "description": "Logits instead of the activation"},
            "truncate": {"type": "boolean", "default": True,
                         "description": "false: an over-long pair is a 422 instead of being truncated"},
            "return_text": {"type": "boolean", "default": False},
            **_LENGTHS,
        },
    },
    "ScoreRequest": {
        "type": "object",
        "required": ["query", "items"],
        "properties": {
            "query": _ref("Item"),
            "items": {"type": "array", "items": _ref("Item")},
            "instruction": _INSTRUCTION,
            "options": _ref("ScoreOptions"),
        },
    },
    "ScoreEntry": {
        "type": "object",
        "required": ["item_id", "index", "score", "rank"],
        "properties": {
            "item_id": {"type": "string"},
            "index": {"type": "integer", "description": "Position in the request's items"},
            "score": {"type": "number"},
            "rank": {"type": "integer", "description": "0 = most relevant"},
            "text": {"type": "string"},
        },
    },
    "Usage": {
        "type": "object",
        "properties": {
            "pairs": {"type": "integer"},
            "tokens": {"type": "integer"},
            "truncated": {"type": "array", "items": {"type": "integer"},
                          "description": "Indices of pairs not scored whole (cut by the model's limit or a cap)"},
            "windows": _USAGE_WINDOWS,
            "cached": {"type": "integer", "description": "Windows answered without the engine (score cache or a "
                                                         "duplicate pair)"},
        },
    },
    "ScoreResponse": {
        "type": "object",
        "required": ["model", "query_id", "scores"],
        "properties": {
            "model": {"type": "string"},
            "query_id": {"type": ["string", "null"]},
            "scores": {"type": "array", "items": _ref("ScoreEntry"), "description": "Best first"},
            "usage": _ref("Usage"),
        },
    },
    "Texts": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
    "VllmScoreRequest": {
        "type": "object",
        "description": "text_1/text_2 or queries/documents; lengths 1:1, 1:N or N:N",
        "properties": {
            "model": {"type": "string", "description": "Optional when one model is served"},
            "text_1": _ref("Texts"),
            "text_2": _ref("Texts"),
            "queries": _ref("Texts"),
            "documents": _ref("Texts"),
            "use_activation": {"type": "boolean", "default": True},
            "instruction": _INSTRUCTION,
            "truncate": {"type": "boolean", "default": True},
            **_LENGTHS,
        },
    },
    "VllmScoreResponse": {
        "type": "object",
        "required": ["id", "object", "created", "model", "data", "usage"],
        "properties": {
            "id": {"type": "string"},
            "object": {"const": "list"},
            "created": {"type": "integer"},
            "model": {"type": "string"},
            "data": {"type": "array", "items": {
                "type": "object", "required": ["index", "object", "score"],
                "properties": {"index": {"type": "integer"}, "object": {"const": "score"}, "score": {"type": "number"}},
            }},
            "usage": {"type": "object", "properties": {
                "prompt_tokens": {"type": "integer"}, "total_tokens": {"type": "integer"}, "windows": _USAGE_WINDOWS}},
        },
    },
    "RerankRequest": {
        "type": "object",
        "required": ["query", "documents"],
        "properties": {
            "model": {"type": "string", "description": "Optional when one model is served"},
            "query": {"type": "string"},
            "documents": {"type": "array", "items": {"oneOf": [
                {"type": "string"},
                {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}},
            ]}},
            "top_n": {"type": ["integer", "null"], "minimum": 0},
            "instruction": _INSTRUCTION,
            "return_documents": {"type": "boolean", "default": True},
            **_LENGTHS,
        },
    },
    "RerankResponse": {
        "type": "object",
        "required": ["id", "model", "results"],
        "properties": {
            "id": {"type": "string"},
            "model": {"type": "string"},
            "results": {"type": "array", "items": {
                "type": "object", "required": ["index", "relevance_score"],
                "properties": {
                    "index": {"type": "integer"},
                    "relevance_score": {"type": "number"},
                    "document": {"type": "object", "properties": {"text": {"type": "string"}}},
                },
            }},
            "usage": {"type": "object", "properties": {"total_tokens": {"type": "integer"},
                                                       "windows": _USAGE_WINDOWS}},
        },
    },
    "ModelInfo": {
        "type": "object",
        "required": ["id", "name", "ready"],
        "properties": {
            "id": {"type": "string"}, "object": {"const": "model"}, "owned_by": {"type": "string"},
            "name": {"type": "string"}, "source": {"type": "string"}, "variant": {"type": "string"},
            "engine": {"type": "string"}, "device": {"type": "string"}, "max_length": {"type": "integer"},
            "max_items_per_request": {"type": "integer"}, "max_batch_tokens": {"type": "integer"},
            "ready": {"type": "boolean"},
        },
    },
    "ModelList": {
        "type": "object",
        "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": _ref("ModelInfo")}},
    },
    "Status": {"type": "object", "properties": {"status": {"type": "string"}}},
}


def _vllm_score(summary: str) -> dict[str, Any]:
    return {"post": {
        "summary": summary,
        "tags": ["compatibility"],
        "parameters": _PARAMETERS,
        "requestBody": {"required": True, "content": _content("VllmScoreRequest", _JSON, _MSGPACK)},
        "responses": {"200": {"description": "Scores in input order", "headers": _TIMING_HEADERS,
                              "content": _content("VllmScoreResponse", _JSON, _MSGPACK)},
                      **_scoring_errors()},
    }}


def _rerank(summary: str) -> dict[str, Any]:
    return {"post": {
        "summary": summary,
        "tags": ["compatibility"],
        "parameters": _PARAMETERS,
        "requestBody": {"required": True, "content": _content("RerankRequest", _JSON, _MSGPACK)},
        "responses": {"200": {"description": "Results, best first", "headers": _TIMING_HEADERS,
                              "content": _content("RerankResponse", _JSON, _MSGPACK)},
                      **_scoring_errors()},
    }}


def _get(summary: str, schema: str, tag: str, *, errors: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"get": {"summary": summary, "tags": [tag], "responses": {
        "200": {"description": summary, "content": _content(schema, _JSON, _MSGPACK)}, **(errors or {})}}}


_MODEL_PARAMETER = {"name": "model", "in": "path", "required": True,
                    "description": "A served model's name; may contain '/' (hub ids)", "schema": {"type": "string"}}

_DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "xscore",
        "version": "1",
        "summary": "Cross-encoder scoring (reranking)",
        "description": "Native API: msgpack by default, JSON when Accept asks for it. "
                       "Compatibility routes speak JSON like vLLM, Cohere and Jina.",
    },
    "paths": {
        "/v1/score/{model}": {"post": {
            "summary": "Score items against a query (SIE-compatible), best first",
            "tags": ["score"],
            "parameters": [_MODEL_PARAMETER, *_PARAMETERS],
            "requestBody": {"required": True, "content": _content("ScoreRequest", *_BOTH)},
            "responses": {
                "200": {"description": "Scores sorted by score, descending; msgpack unless Accept asks for JSON",
                        "headers": _TIMING_HEADERS, "content": _content("ScoreResponse", *_BOTH)},
                "406": _error("Accept names no type this route answers"),
                **_scoring_errors(*_BOTH),
            },
        }},
        "/score": _vllm_score("vLLM score: 1:1, 1:N or N:N pairs, input order"),
        "/v1/score": _vllm_score("vLLM score (v1 path)"),
        "/rerank": _rerank("Cohere / Jina rerank"),
        "/v1/rerank": _rerank("Cohere / Jina rerank (v1 path)"),
        "/v1/models": _get("Served models", "ModelList", "models", errors={"401": _error("Bearer token wrong")}),
        "/v1/models/{model}": {"get": {
            "summary": "One served model", "tags": ["models"], "parameters": [_MODEL_PARAMETER],
            "responses": {"200": {"description": "The model", "content": _content("ModelInfo", _JSON, _MSGPACK)},
                          "404": _error("Model not served")}}},
        "/healthz": _get("Liveness", "Status", "operations"),
        "/readyz": _get("Readiness: every model loaded and not draining", "Status", "operations",
                        errors={"503": _error("Not ready", retry=True)}),
        "/metrics": {"get": {"summary": "Prometheus metrics", "tags": ["operations"], "responses": {
            "200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/openapi.json": {"get": {"summary": "This document", "tags": ["operations"], "responses": {
            "200": {"description": "OpenAPI 3.1", "content": {_JSON: {"schema": {"type": "object"}}}}}}},
        "/docs": {"get": {"summary": "Interactive API documentation", "tags": ["operations"], "responses": {
            "200": {"description": "HTML page; its assets are served locally",
                    "content": {"text/html": {"schema": {"type": "string"}}}}}}},
    },
    "components": {
        "schemas": _SCHEMAS,
        "parameters": {
            "X-Request-ID": {"name": "X-Request-ID", "in": "header", "required": False, "schema": {"type": "string"},
                             "description": "Echoed back; generated when absent"},
            "X-Timeout-Ms": {"name": "X-Timeout-Ms", "in": "header", "required": False,
                             "schema": {"type": "number", "minimum": 0},
                             "description": "Deadline in ms; work not done by then is dropped (504)"},
        },
        "headers": {
            "X-Request-ID": {"schema": {"type": "string"}},
            "X-Queue-Time": {"schema": {"type": "string"}, "description": "ms"},
            "X-Tokenization-Time": {"schema": {"type": "string"}, "description": "ms"},
            "X-Inference-Time": {"schema": {"type": "string"}, "description": "ms"},
            "X-Total-Time": {"schema": {"type": "string"}, "description": "ms"},
            "Retry-After": {"schema": {"type": "integer"}, "description": "seconds"},
        },
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    },
}


def document(*, auth: bool = False) -> dict[str, Any]:
    """The document; with `auth`, every non-operations route requires the bearer token."""
    result = copy.deepcopy(_DOCUMENT)
    if auth:
        for path_item in result["paths"].values():
            for operation in path_item.values():
                if operation["tags"] != ["operations"]:
                    operation["security"] = [{"bearer": []}]
    return result
