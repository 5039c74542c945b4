"""`RemoteScorer`: the scorer interface over gRPC, for a gateway in front of a remote service.

It offers the same async methods as `Scorer` (`score`, `score_pairs`, and `list_models` /
`get_model` as coroutines) over the committed `xscore.v1` stubs, and turns gRPC errors back into
`XscoreError`s. A status code alone cannot tell INVALID_ARGUMENT from "too large" or
"unprocessable" (all three are INVALID_ARGUMENT on the wire), so the servicer sends the precise
code in the `xscore-error-code` trailing metadata (and the details as JSON in
`xscore-error-details`); this side prefers them when present.
"""

from __future__ import annotations

import json
import time

import grpc

from xscore.api.errors import (
    ERROR_CODE_METADATA,
    ERROR_DETAILS_METADATA,
    GRPC_STATUS,
    RETRY_AFTER_METADATA,
    ErrorCode,
    XscoreError,
    invalid,
)
from xscore.api.schema import (
    ModelInfo,
    PairsRequest,
    PairsResult,
    ScoredItem,
    ScoreRequest,
    ScoreResult,
    Timing,
    Usage,
)
from xscore.v1 import score_pb2, score_pb2_grpc

# Reverse of GRPC_STATUS: the first code listed for a status is its plain meaning.
_FROM_GRPC: dict[str, ErrorCode] = {}
for _code, _status in GRPC_STATUS.items():
    _FROM_GRPC.setdefault(_status, _code)


def error_from_rpc(error: grpc.aio.AioRpcError, target: str) -> XscoreError:
    metadata = {key: value for key, value in (error.trailing_metadata() or ()) if isinstance(value, str)}
    try:
        code = ErrorCode(metadata[ERROR_CODE_METADATA])
    except (KeyError, ValueError):
        code = _FROM_GRPC.get(error.code().name, ErrorCode.INTERNAL)
    retry_after = None
    try:
        retry_after = float(metadata[RETRY_AFTER_METADATA])
    except (KeyError, ValueError):
        pass
    details = None
    try:
        details = json.loads(metadata[ERROR_DETAILS_METADATA])
    except (KeyError, ValueError):
        pass
    message = error.details() or error.code().name
    if error.code() is grpc.StatusCode.UNAVAILABLE and ERROR_CODE_METADATA not in metadata:
        message = f"upstream {target} unavailable: {message}"  # a transport failure, not the servicer
        retry_after = retry_after or 1.0
    return XscoreError(code, message, details=details if isinstance(details, dict) else None,
                       retry_after_s=retry_after)


def _timing(timing: score_pb2.Timing) -> Timing:
    return Timing(timing.queue_ms, timing.tokenize_ms, timing.inference_ms, timing.total_ms)


def _usage(usage: score_pb2.Usage) -> Usage:
    return Usage(pairs=usage.pairs, tokens=usage.tokens, truncated=list(usage.truncated))


def _model(info: score_pb2.ModelInfo) -> ModelInfo:
    return ModelInfo(info.name, info.source, info.variant, info.engine, info.device, info.max_length,
                     info.max_items_per_request, info.max_batch_tokens, info.ready)


class RemoteScorer:
    def __init__(self, target: str, *, channel: grpc.aio.Channel | None = None) -> None:
        """`target` is "host:port"; the channel is created lazily on the running loop."""
        self.target = target
        self._channel = channel
        self._stub: score_pb2_grpc.ScorerStub | None = None

    def _scorer(self) -> score_pb2_grpc.ScorerStub:
        if self._stub is None:
            if self._channel is None:
                self._channel = grpc.aio.insecure_channel(self.target)
            self._stub = score_pb2_grpc.ScorerStub(self._channel)
        return self._stub

    async def _call(self, method: str, message: object, deadline: float | None = None) -> object:
        timeout = None if deadline is None else deadline - time.monotonic()
        if timeout is not None and timeout <= 0:
            raise XscoreError(ErrorCode.DEADLINE_EXCEEDED, "the deadline passed before scoring started")
        try:
            return await getattr(self._scorer(), method)(message, timeout=timeout)
        except grpc.aio.AioRpcError as error:
            raise error_from_rpc(error, self.target) from None

    async def score(self, request: ScoreRequest) -> ScoreResult:
        if request.top_k is not None and request.top_k < 0:  # uint32 on the wire cannot say it
            raise invalid(f"top_k must be >= 0, got {request.top_k}", field="top_k")
        message = score_pb2.ScoreRequest(
            model=request.model, query=request.query,
            items=[score_pb2.Item(id=item.id or "", text=item.text) for item in request.items],
            top_k=request.top_k or 0, raw_scores=request.raw_scores, truncate=request.truncate,
            return_text=request.return_text)
        reply = await self._call("Score", message, request.deadline)
        scores = [ScoredItem(entry.item_id, entry.index, entry.score, entry.rank,
                             entry.text if entry.HasField("text") else None) for entry in reply.scores]
        return ScoreResult(reply.model, scores, _usage(reply.usage), _timing(reply.timing))

    async def score_pairs(self, request: PairsRequest) -> PairsResult:
        message = score_pb2.ScorePairsRequest(model=request.model, queries=list(request.queries),
                                              documents=list(request.documents), raw_scores=request.raw_scores,
                                              truncate=request.truncate)
        reply = await self._call("ScorePairs", message, request.deadline)
        return PairsResult(reply.model, list(reply.scores), _usage(reply.usage), _timing(reply.timing))

    async def list_models(self) -> list[ModelInfo]:
        reply = await self._call("ListModels", score_pb2.ListModelsRequest())
        return [_model(info) for info in reply.models]

    async def get_model(self, name: str) -> ModelInfo:
        return _model(await self._call("GetModel", score_pb2.GetModelRequest(name=name)))

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
        self._channel = self._stub = None


__all__ = ["RemoteScorer", "error_from_rpc"]
