"""Hypothesis strategies for bodies and messages from callers who get everything wrong: wrong
types, huge numbers, deep nesting, invalid Unicode, bytes that are no message at all. The suite
draws a derandomized few hundred of each (`tests/test_gateway_errors.py`, `tests/test_grpc_fuzz.py`);
`python -m benchmarks.reliability.fuzz` draws tens of thousands."""

from __future__ import annotations

import json

import msgpack
from hypothesis import strategies as st

from xscore.v1 import score_pb2

OPTION_KEYS = ["top_k", "raw_scores", "truncate", "return_text", "max_tokens_per_doc", "max_tokens_per_query",
               "long_documents", "chunk_overlap", "aggregate", "max_chunks_per_doc"]
COMPAT_KEYS = ["model", "text_1", "text_2", "queries", "documents", "query", "top_n", "return_documents",
               "use_activation", "truncate", "instruction", *OPTION_KEYS[4:]]

scalars = st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats() | st.text(max_size=20) \
    | st.binary(max_size=10)
values = st.recursive(scalars, lambda children: st.lists(children, max_size=4)
                      | st.dictionaries(st.text(max_size=8), children, max_size=4), max_leaves=20)
item = st.one_of(st.text(max_size=30), st.fixed_dictionaries({"text": scalars}, optional={"id": scalars}), values)
native_requests = st.fixed_dictionaries(
    {"query": item, "items": st.lists(item, max_size=5) | values},
    optional={"options": st.dictionaries(st.sampled_from(OPTION_KEYS), scalars | st.sampled_from(
        ["chunk", "truncate", "max", "mean", "first"])), "instruction": scalars},
)
compat_requests = st.dictionaries(st.sampled_from(COMPAT_KEYS), values | st.lists(st.text(max_size=9))
                                  | st.sampled_from(["chunk", "max"]))
unicode_text = st.text(st.characters(exclude_categories=()), min_size=1, max_size=12)  # surrogates included


def packb(value) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def json_bytes(value) -> bytes:
    return json.dumps(value, default=lambda b: b.hex()).encode()


msgpack_bodies = st.one_of(st.binary(max_size=200), native_requests.map(packb), values.map(packb))
json_bodies = st.one_of(st.binary(max_size=200), native_requests.map(json_bytes), compat_requests.map(json_bytes))

# -- gRPC: messages with any field values the types allow, corrupted ones, and bytes --------------

_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)  # protobuf strings are UTF-8
_count = st.integers(0, 2**32 - 1)
_lengths = st.builds(
    score_pb2.Lengths,
    max_tokens_per_doc=st.none() | _count, max_tokens_per_query=st.none() | _count,
    long_documents=st.none() | st.sampled_from(["chunk", "truncate"]) | _text, chunk_overlap=st.none() | _count,
    aggregate=st.none() | st.sampled_from(["max", "mean", "first"]) | _text, max_chunks_per_doc=st.none() | _count)


def grpc_calls(model: str):
    """(method, request bytes) for a server of `model`: messages with any field values the types
    allow (the model named in most), one byte of a message broken, and bytes that are no message."""
    models = st.sampled_from([model] * 4 + ["", "nope"]) | _text
    score_messages = st.builds(
        score_pb2.ScoreRequest, model=models, query=_text,
        items=st.lists(st.builds(score_pb2.Item, id=_text, text=_text), max_size=6), top_k=_count,
        raw_scores=st.booleans(), truncate=st.none() | st.booleans(), return_text=st.booleans(),
        instruction=st.none() | _text, lengths=st.none() | _lengths)
    pairs_messages = st.builds(
        score_pb2.ScorePairsRequest, model=models, queries=st.lists(_text, max_size=4),
        documents=st.lists(_text, max_size=6), raw_scores=st.booleans(), truncate=st.none() | st.booleans(),
        instruction=st.none() | _text, lengths=st.none() | _lengths)
    serialized = score_messages.map(lambda message: message.SerializeToString())
    return st.one_of(
        st.tuples(st.just("Score"), serialized),
        st.tuples(st.just("ScorePairs"), pairs_messages.map(lambda message: message.SerializeToString())),
        st.tuples(st.just("Score"), st.builds(_corrupted, serialized, st.integers(0, 10_000))),
        st.tuples(st.sampled_from(["Score", "ScorePairs", "GetModel", "ListModels"]), st.binary(max_size=120)),
    )


def _corrupted(data: bytes, at: int) -> bytes:
    """The bytes with one byte set to 0xff: often invalid UTF-8 inside a string, or a broken tag."""
    if not data:
        return b"\xff"
    at %= len(data)
    return data[:at] + b"\xff" + data[at + 1:]
