"""Protobuf (`xscore.v1`) <-> `xscore.api.schema`, and `XscoreError` <-> gRPC status, both directions.

The servicer, the clients and the gateway's remote scorer all speak through this one module, so
the two ends of the wire cannot drift apart: what the server encodes, the remote scorer decodes
with the same rules (unset `truncate` means true, top_k 0 means all, an empty id means none).

A gRPC status code alone cannot tell INVALID_ARGUMENT from "too large" or "unprocessable" (all
three travel as INVALID_ARGUMENT), so an error also carries the precise code, its details (JSON)
and the retry-after hint as trailing metadata; decoding prefers them when present.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import grpc

from xscore.api.errors import (
    ERROR_CODE_METADATA,
    ERROR_DETAILS_METADATA,
    GRPC_STATUS,
    RETRY_AFTER_METADATA,
    ErrorCode,
    XscoreError,
)
from xscore.api.schema import (
    Item,
    LengthPolicy,
    ModelInfo,
    PairsRequest,
    PairsResult,
    ScoredItem,
    ScoreRequest,
    ScoreResult,
    Timing,
    Usage,
)
from xscore.v1 import score_pb2

# One size limit for both directions at both ends: gRPC's default receive limit (4 MiB) would
# refuse a large response with return_text long before the server's own request limits do.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
)

Metadata = tuple[tuple[str, str], ...]

# The proto's counts are uint32: a larger one (a top_k or a token cap past any request's size)
# travels as the largest, which means the same thing.
UINT32_MAX = 2**32 - 1

# Reverse of GRPC_STATUS for errors without the precise-code trailer: the first code listed
# for a status is its plain meaning.
_FROM_GRPC: dict[str, ErrorCode] = {}
for _code, _status in GRPC_STATUS.items():
    _FROM_GRPC.setdefault(_status, _code)


# -- requests ------------------------------------------------------------------------------

def encode_score_request(request: ScoreRequest) -> score_pb2.ScoreRequest:
    """The deadline does not travel in the message: the caller sends it as the call's timeout."""
    return score_pb2.ScoreRequest(
        model=request.model, query=request.query,
        items=[score_pb2.Item(id=item.id or "", text=item.text) for item in request.items],
        top_k=min(request.top_k or 0, UINT32_MAX), raw_scores=request.raw_scores, truncate=request.truncate,
        return_text=request.return_text, instruction=request.instruction, lengths=encode_lengths(request.lengths))


def decode_score_request(message: score_pb2.ScoreRequest, deadline: float | None = None) -> ScoreRequest:
    return ScoreRequest(
        model=message.model,
        query=message.query,
        items=[Item(item.text, item.id or None) for item in message.items],
        top_k=message.top_k or None,
        raw_scores=message.raw_scores,
        truncate=_truncate(message),
        return_text=message.return_text,
        deadline=deadline,
        instruction=_instruction(message),
        lengths=decode_lengths(message.lengths),
    )


def encode_pairs_request(request: PairsRequest) -> score_pb2.ScorePairsRequest:
    return score_pb2.ScorePairsRequest(model=request.model, queries=list(request.queries),
                                       documents=list(request.documents), raw_scores=request.raw_scores,
                                       truncate=request.truncate, instruction=request.instruction,
                                       lengths=encode_lengths(request.lengths))


def decode_pairs_request(message: score_pb2.ScorePairsRequest, deadline: float | None = None) -> PairsRequest:
    return PairsRequest(
        model=message.model,
        queries=list(message.queries),
        documents=list(message.documents),
        raw_scores=message.raw_scores,
        truncate=_truncate(message),
        deadline=deadline,
        instruction=_instruction(message),
        lengths=decode_lengths(message.lengths),
    )


_LENGTH_FIELDS = ("max_tokens_per_doc", "max_tokens_per_query", "long_documents", "chunk_overlap", "aggregate",
                  "max_chunks_per_doc")


def encode_lengths(lengths: LengthPolicy) -> score_pb2.Lengths:
    """Only the fields the caller set travel: unset ones stay unset, so the server's default applies."""
    values = {name: getattr(lengths, name) for name in _LENGTH_FIELDS if getattr(lengths, name) is not None}
    return score_pb2.Lengths(**{name: min(value, UINT32_MAX) if isinstance(value, int) else value
                                for name, value in values.items()})


def decode_lengths(message: score_pb2.Lengths) -> LengthPolicy:
    return LengthPolicy(**{name: getattr(message, name) if message.HasField(name) else None
                           for name in _LENGTH_FIELDS})


def _instruction(message: score_pb2.ScoreRequest | score_pb2.ScorePairsRequest) -> str | None:
    """Optional on the wire: unset means the model's default instruction."""
    return message.instruction if message.HasField("instruction") else None


def _truncate(message: score_pb2.ScoreRequest | score_pb2.ScorePairsRequest) -> bool:
    """`truncate` is optional on the wire so that a caller who says nothing gets the default, true."""
    return message.truncate if message.HasField("truncate") else True


# -- results -------------------------------------------------------------------------------

def encode_usage(usage: Usage) -> score_pb2.Usage:
    return score_pb2.Usage(pairs=usage.pairs, tokens=usage.tokens, truncated=usage.truncated,
                           windows=usage.windows, cached=usage.cached)


def decode_usage(message: score_pb2.Usage) -> Usage:
    return Usage(pairs=message.pairs, tokens=message.tokens, truncated=list(message.truncated),
                 windows=list(message.windows), cached=message.cached)


def encode_timing(timing: Timing) -> score_pb2.Timing:
    return score_pb2.Timing(queue_ms=timing.queue_ms, tokenize_ms=timing.tokenize_ms,
                            inference_ms=timing.inference_ms, total_ms=timing.total_ms)


def decode_timing(message: score_pb2.Timing) -> Timing:
    return Timing(message.queue_ms, message.tokenize_ms, message.inference_ms, message.total_ms)


def encode_score_result(result: ScoreResult) -> score_pb2.ScoreResponse:
    scores = [score_pb2.ScoredItem(item_id=entry.item_id, index=entry.index, score=entry.score, rank=entry.rank,
                                   text=entry.text)
              for entry in result.scores]
    return score_pb2.ScoreResponse(model=result.model, scores=scores, usage=encode_usage(result.usage),
                                   timing=encode_timing(result.timing))


def decode_score_result(message: score_pb2.ScoreResponse) -> ScoreResult:
    # `text` has presence: an empty document asked back with return_text is "", not None
    scores = [ScoredItem(entry.item_id, entry.index, entry.score, entry.rank,
                         entry.text if entry.HasField("text") else None)
              for entry in message.scores]
    return ScoreResult(message.model, scores, decode_usage(message.usage), decode_timing(message.timing))


def encode_pairs_result(result: PairsResult) -> score_pb2.ScorePairsResponse:
    return score_pb2.ScorePairsResponse(model=result.model, scores=result.scores, usage=encode_usage(result.usage),
                                        timing=encode_timing(result.timing))


def decode_pairs_result(message: score_pb2.ScorePairsResponse) -> PairsResult:
    return PairsResult(message.model, list(message.scores), decode_usage(message.usage),
                       decode_timing(message.timing))


def encode_model_info(info: ModelInfo) -> score_pb2.ModelInfo:
    return score_pb2.ModelInfo(name=info.name, source=info.source, variant=info.variant, engine=info.engine,
                               device=info.device, max_length=info.max_length,
                               max_items_per_request=info.max_items_per_request,
                               max_batch_tokens=info.max_batch_tokens, ready=info.ready)


def decode_model_info(message: score_pb2.ModelInfo) -> ModelInfo:
    return ModelInfo(message.name, message.source, message.variant, message.engine, message.device,
                     message.max_length, message.max_items_per_request, message.max_batch_tokens, message.ready)


# -- errors --------------------------------------------------------------------------------

def encode_error(error: XscoreError) -> tuple[grpc.StatusCode, str, Metadata]:
    """The gRPC status, message and trailing metadata (precise code, details, retry-after) of an error."""
    metadata = [(ERROR_CODE_METADATA, error.code.value)]
    if error.details:
        metadata.append((ERROR_DETAILS_METADATA, json.dumps(error.details)))
    if error.retry_after_s is not None:
        metadata.append((RETRY_AFTER_METADATA, f"{error.retry_after_s:.3f}"))
    return grpc.StatusCode[GRPC_STATUS[error.code]], error.message, tuple(metadata)


def decode_error(status: grpc.StatusCode, message: str | None,
                 metadata: Iterable[tuple[str, str | bytes]] | None) -> XscoreError:
    """The error a status and its trailing metadata describe; the status alone when the trailers are absent."""
    trailers = text_metadata(metadata)
    try:
        code = ErrorCode(trailers[ERROR_CODE_METADATA])
    except (KeyError, ValueError):
        code = _FROM_GRPC.get(status.name, ErrorCode.INTERNAL)
    details: Any = None
    try:
        details = json.loads(trailers[ERROR_DETAILS_METADATA])
    except (KeyError, ValueError):
        pass
    return XscoreError(code, message or status.name, details=details if isinstance(details, dict) else None,
                       retry_after_s=retry_after(trailers))


def retry_after(metadata: Iterable[tuple[str, str | bytes]] | dict[str, str] | None) -> float | None:
    """The `retry-after` hint in seconds, if the metadata carries a readable one."""
    trailers = metadata if isinstance(metadata, dict) else text_metadata(metadata)
    try:
        return float(trailers[RETRY_AFTER_METADATA])
    except (KeyError, ValueError):
        return None


def text_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> dict[str, str]:
    """Metadata as a dict of its text entries (binary `-bin` entries are not ours)."""
    return {key: value for key, value in (metadata or ()) if isinstance(value, str)}


__all__ = [
    "CHANNEL_OPTIONS", "MAX_MESSAGE_BYTES", "decode_error", "decode_lengths", "encode_lengths", "decode_model_info", "decode_pairs_request",
    "decode_pairs_result", "decode_score_request", "decode_score_result", "decode_timing", "decode_usage",
    "encode_error", "encode_model_info", "encode_pairs_request", "encode_pairs_result", "encode_score_request",
    "encode_score_result", "encode_timing", "encode_usage", "retry_after", "text_metadata",
]
