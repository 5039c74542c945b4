"""The request and result types of the scoring API, shared by every transport and the clients.

The Scorer takes and returns these; the gRPC servicer, the HTTP gateway and the remote scorer map
their own wire formats onto them (`xscore.api.wire` for protobuf).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from xscore.api.errors import invalid


@dataclass(frozen=True, slots=True)
class Item:
    text: str
    id: str | None = None


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


def check_top_k(top_k: int | None) -> None:
    """top_k is a count: every side checks it (the wire's uint32 cannot carry a negative one)."""
    if top_k is not None and top_k < 0:
        raise invalid(f"top_k must be >= 0, got {top_k}", field="top_k")


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
    truncated: list[int] = field(default_factory=list)  # pair indices that were truncated


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
    "Item", "ModelInfo", "check_top_k", "PairsRequest", "PairsResult", "ScoreRequest", "ScoreResult", "ScoredItem",
    "Timing", "Usage",
]
