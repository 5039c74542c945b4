"""The request and result types of the scoring API, shared by every transport and the clients.

The Scorer takes and returns these; the gRPC servicer, the HTTP gateway and the remote scorer map
their own wire formats onto them (`xscore.api.wire` for protobuf).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields

from xscore.api.errors import invalid


@dataclass(frozen=True, slots=True)
class Item:
    text: str
    id: str | None = None


LONG_DOCUMENT_MODES = ("truncate", "chunk")
AGGREGATES = ("max", "mean", "first")


@dataclass(frozen=True, slots=True)
class LengthPolicy:
    """How much of each pair is scored; None leaves a field to the server's default for the model.

    `max_tokens_per_query` / `max_tokens_per_doc` cap each side (in tokens, before the model's own
    limit). A document longer than the room the query leaves is cut (`long_documents="truncate"`)
    or split into windows of that room overlapping by `chunk_overlap` tokens (`"chunk"`), each
    scored as a pair of its own; the document's score is the `aggregate` of its windows' scores,
    and at most `max_chunks_per_doc` windows are scored (the rest is cut and reported).
    """

    max_tokens_per_doc: int | None = None
    max_tokens_per_query: int | None = None
    long_documents: str | None = None  # one of LONG_DOCUMENT_MODES
    chunk_overlap: int | None = None
    aggregate: str | None = None  # one of AGGREGATES
    max_chunks_per_doc: int | None = None

    def over(self, default: LengthPolicy) -> LengthPolicy:
        """This policy with its unset fields taken from `default`."""
        values = {name: getattr(self, name) for name in _POLICY_FIELDS}
        return LengthPolicy(**{name: getattr(default, name) if value is None else value
                               for name, value in values.items()})


_POLICY_FIELDS = tuple(f.name for f in fields(LengthPolicy))


@dataclass(frozen=True, slots=True)
class ScoreRequest:
    """One query against N items, answered best first."""

    model: str
    query: str
    items: Sequence[Item]
    top_k: int | None = None
    raw_scores: bool = False
    truncate: bool = True
    return_text: bool = False
    deadline: float | None = None  # time.monotonic() after which the caller no longer waits
    instruction: str | None = None  # a causal-LM reranker's task (its default when None); others ignore it
    lengths: LengthPolicy = LengthPolicy()


def check_top_k(top_k: int | None) -> None:
    """top_k is a count: every side checks it (the wire's uint32 cannot carry a negative one)."""
    if top_k is not None and top_k < 0:
        raise invalid(f"top_k must be >= 0, got {top_k}", field="top_k")


def check_lengths(policy: LengthPolicy) -> LengthPolicy:
    """A length policy whose every given field is in range; every side checks it (the wire's
    uint32 fields cannot carry a negative one)."""
    for name, least in (("max_tokens_per_doc", 1), ("max_tokens_per_query", 1), ("chunk_overlap", 0),
                        ("max_chunks_per_doc", 1)):
        value = getattr(policy, name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < least):
            raise invalid(f"{name} must be an integer >= {least}, got {value!r}", field=name)
    for name, choices in (("long_documents", LONG_DOCUMENT_MODES), ("aggregate", AGGREGATES)):
        value = getattr(policy, name)
        if value is not None and value not in choices:
            raise invalid(f"{name} must be one of {', '.join(choices)}, got {value!r}", field=name)
    return policy


@dataclass(frozen=True, slots=True)
class PairsRequest:
    """Explicit pairs (1:1, 1:N or N:N), answered in input order."""

    model: str
    queries: Sequence[str]
    documents: Sequence[str]
    raw_scores: bool = False
    truncate: bool = True
    deadline: float | None = None
    instruction: str | None = None
    lengths: LengthPolicy = LengthPolicy()


@dataclass(frozen=True, slots=True)
class ScoredItem:
    item_id: str
    index: int
    score: float
    rank: int
    text: str | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    pairs: int
    tokens: int
    truncated: list[int] = field(default_factory=list)  # pair indices not scored whole (cut or capped)
    windows: list[int] = field(default_factory=list)  # per pair, windows scored (long_documents="chunk" only)
    cached: int = 0  # windows answered without the engine: the score cache or an identical pair in the request


@dataclass(frozen=True, slots=True)
class Timing:
    queue_ms: float = 0.0
    tokenize_ms: float = 0.0
    inference_ms: float = 0.0
    total_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class ScoreResult:
    model: str
    scores: list[ScoredItem]  # best first
    usage: Usage
    timing: Timing


@dataclass(frozen=True, slots=True)
class PairsResult:
    model: str
    scores: list[float]  # input order
    usage: Usage
    timing: Timing


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str
    source: str
    variant: str
    engine: str
    device: str
    max_length: int
    max_items_per_request: int
    max_batch_tokens: int
    ready: bool


__all__ = [
    "AGGREGATES", "LONG_DOCUMENT_MODES", "LengthPolicy", "Item", "ModelInfo", "check_lengths", "check_top_k", "PairsRequest", "PairsResult", "ScoreRequest", "ScoreResult", "ScoredItem",
    "Timing", "Usage",
]
