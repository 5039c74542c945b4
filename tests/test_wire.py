"""`xscore.api.wire`: what one end encodes, the other decodes unchanged, values and errors alike."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from xscore.api import wire
from xscore.api.errors import ERROR_CODE_METADATA, GRPC_STATUS, ErrorCode, XscoreError
from xscore.api.schema import (
    Item,
    ModelInfo,
    PairsRequest,
    PairsResult,
    ScoredItem,
    ScoreRequest,
    ScoreResult,
    Timing,
    Usage,
)
from xscore.client import AsyncScorerClient, RetryPolicy
from xscore.v1 import score_pb2

UINT32 = st.integers(min_value=0, max_value=2**32 - 1)
UINT64 = st.integers(min_value=0, max_value=2**64 - 1)
TEXT = st.text(max_size=30)
NON_EMPTY = st.text(min_size=1, max_size=30)  # "" travels as "unset" where a field has no presence
FLOAT32 = st.floats(width=32, allow_nan=False)  # scores are `float` on the wire
DOUBLE = st.floats(allow_nan=False)

items = st.builds(Item, text=TEXT, id=st.none() | NON_EMPTY)
score_requests = st.builds(
    ScoreRequest, model=TEXT, query=TEXT, items=st.lists(items, max_size=5),
    top_k=st.none() | st.integers(min_value=1, max_value=2**32 - 1), raw_scores=st.booleans(),
    truncate=st.booleans(), return_text=st.booleans(), deadline=st.none() | st.floats(allow_nan=False),
    instruction=st.none() | TEXT)
pairs_requests = st.builds(
    PairsRequest, model=TEXT, queries=st.lists(TEXT, max_size=5), documents=st.lists(TEXT, max_size=5),
    raw_scores=st.booleans(), truncate=st.booleans(), deadline=st.none() | st.floats(allow_nan=False),
    instruction=st.none() | TEXT)
usages = st.builds(Usage, pairs=UINT32, tokens=UINT64, truncated=st.lists(UINT32, max_size=5))
timings = st.builds(Timing, queue_ms=DOUBLE, tokenize_ms=DOUBLE, inference_ms=DOUBLE, total_ms=DOUBLE)
scored_items = st.builds(ScoredItem, item_id=TEXT, index=UINT32, score=FLOAT32, rank=UINT32,
                         text=st.none() | TEXT)  # "" and None differ: `text` has presence
score_results = st.builds(ScoreResult, model=TEXT, scores=st.lists(scored_items, max_size=5), usage=usages,
                          timing=timings)
pairs_results = st.builds(PairsResult, model=TEXT, scores=st.lists(FLOAT32, max_size=5), usage=usages,
                          timing=timings)
model_infos = st.builds(ModelInfo, name=TEXT, source=TEXT, variant=TEXT, engine=TEXT, device=TEXT,
                        max_length=UINT32, max_items_per_request=UINT32, max_batch_tokens=UINT32,
                        ready=st.booleans())


def _through_bytes(message):
    """The message as the peer parses it: serialised and read back, as gRPC does."""
    return type(message).FromString(message.SerializeToString())


@given(score_requests)
def test_a_score_request_survives_the_wire(request):
    message = _through_bytes(wire.encode_score_request(request))
    assert wire.decode_score_request(message, deadline=request.deadline) == request


@given(pairs_requests)
def test_a_pairs_request_survives_the_wire(request):
    message = _through_bytes(wire.encode_pairs_request(request))
    assert wire.decode_pairs_request(message, deadline=request.deadline) == request


@given(score_results)
def test_a_score_result_survives_the_wire(result):
    assert wire.decode_score_result(_through_bytes(wire.encode_score_result(result))) == result


@given(pairs_results)
def test_a_pairs_result_survives_the_wire(result):
    assert wire.decode_pairs_result(_through_bytes(wire.encode_pairs_result(result))) == result


@given(model_infos)
def test_model_info_survives_the_wire(info):
    assert wire.decode_model_info(_through_bytes(wire.encode_model_info(info))) == info


def test_an_unset_truncate_means_true_and_empty_values_mean_absent():
    message = score_pb2.ScoreRequest(model="m", query="q", items=[score_pb2.Item(text="d")])
    request = wire.decode_score_request(message)
    assert request.truncate is True and request.top_k is None and request.items == [Item("d", None)]
    assert request.instruction is None  # unset: the model's default instruction
    assert wire.decode_pairs_request(score_pb2.ScorePairsRequest(model="m")).truncate is True
    explicit = wire.decode_score_request(score_pb2.ScoreRequest(truncate=False))
    assert explicit.truncate is False


details = st.dictionaries(
    NON_EMPTY,
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                 | st.text(max_size=10),
                 lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                 max_leaves=6),
    max_size=3)
# retry-after travels with millisecond precision
retry_afters = st.none() | st.integers(min_value=0, max_value=10**7).map(lambda ms: ms / 1000)


@given(code=st.sampled_from(ErrorCode), message=NON_EMPTY, details=details, retry=retry_afters)
def test_every_error_survives_status_and_trailers(code, message, details, retry):
    error = XscoreError(code, message, details=details, retry_after_s=retry)
    status, text, metadata = wire.encode_error(error)
    assert status is grpc.StatusCode[GRPC_STATUS[code]]
    back = wire.decode_error(status, text, metadata)
    assert (back.code, back.message, back.details, back.retry_after_s) == (code, message, details, retry)


def test_without_trailers_the_status_gives_its_plain_code():
    plain = wire.decode_error(grpc.StatusCode.INVALID_ARGUMENT, "bad", ())
    assert plain.code is ErrorCode.INVALID_ARGUMENT and plain.details == {} and plain.retry_after_s is None
    assert wire.decode_error(grpc.StatusCode.FAILED_PRECONDITION, "", None).code is ErrorCode.MODEL_ERROR
    assert wire.decode_error(grpc.StatusCode.DATA_LOSS, "", None).code is ErrorCode.INTERNAL
    unknown = wire.decode_error(grpc.StatusCode.NOT_FOUND, "", [(ERROR_CODE_METADATA, "NO_SUCH_CODE")])
    assert unknown.code is ErrorCode.NOT_FOUND and unknown.message == "NOT_FOUND"


ERRORS = [XscoreError(code, f"why {code.value}: naïve ✓", details={"field": "items[3]", "limit": 32},
                      retry_after_s=0.25) for code in ErrorCode]


def test_encoded_errors_pass_a_real_grpc_call_unchanged():
    """Trailers must be valid gRPC metadata (lower-case keys, ASCII values) to arrive at all."""

    async def fail(request: score_pb2.GetModelRequest, context: grpc.aio.ServicerContext) -> score_pb2.ModelInfo:
        status, message, metadata = wire.encode_error(ERRORS[int(request.name)])
        context.set_trailing_metadata(metadata)
        await context.abort(status, message)

    handler = grpc.method_handlers_generic_handler("xscore.v1.Scorer", {"GetModel": grpc.unary_unary_rpc_method_handler(
        fail, request_deserializer=score_pb2.GetModelRequest.FromString,
        response_serializer=score_pb2.ModelInfo.SerializeToString)})

    async def call_each() -> list[XscoreError]:
        server = grpc.aio.server(handlers=[handler], options=wire.CHANNEL_OPTIONS)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        received = []
        try:
            async with AsyncScorerClient(f"127.0.0.1:{port}", retry=RetryPolicy(attempts=1), timeout=10) as client:
                for index in range(len(ERRORS)):
                    with pytest.raises(grpc.RpcError) as failure:
                        await client.get_model(str(index))
                    error = failure.value
                    received.append(wire.decode_error(error.code(), error.details(), error.trailing_metadata()))
        finally:
            await server.stop(None)
        return received

    for sent, got in zip(ERRORS, asyncio.run(call_each()), strict=True):
        assert (got.code, got.message, got.details, got.retry_after_s) == \
            (sent.code, sent.message, sent.details, sent.retry_after_s)

