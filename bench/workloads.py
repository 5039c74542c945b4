"""Deterministic rerank workloads: generated from a seed, or read from the user's JSONL file."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import overload

from xscore.api.errors import invalid
from xscore.service.models.corpus import docstrings, queries

# name -> (documents per request: fixed, or a (low, high) range drawn per request)
KINDS: dict[str, int | tuple[int, int]] = {
    "rerank-10": 10,
    "rerank-100": 100,
    "rerank-500": 500,
    "short": 1,  # one short pair: transport and batching overhead, not the engine
    "mixed": (1, 200),
}
# requests a generated workload holds before it would repeat: more than any bounded run sends
SIZE = 1_000_000


@dataclass(frozen=True, slots=True)
class Request:
    query: str
    documents: tuple[str, ...]

    @property
    def pairs(self) -> int:
        return len(self.documents)


class Workload(Sequence[Request]):
    """A generated workload: request i is made when asked for, from (kind, seed, i), the same on
    every machine, and no two are the same request. A load that repeated its requests would be
    measured on less work than it offers, since a server may score identical pairs once (xscore
    merges them within a batch and caches them across batches)."""

    def __init__(self, kind: str, seed: int = 0, size: int = SIZE) -> None:
        if kind not in KINDS:
            raise invalid(f"unknown workload {kind!r}; choose from {', '.join(KINDS)}", field="workload")
        self.kind, self.seed, self.size = kind, seed, size

    def __len__(self) -> int:
        return self.size

    @overload
    def __getitem__(self, index: int) -> Request: ...

    @overload
    def __getitem__(self, index: slice) -> list[Request]: ...

    def __getitem__(self, index: int | slice) -> Request | list[Request]:
        if isinstance(index, slice):
            return [self[position] for position in range(*index.indices(self.size))]
        if not -self.size <= index < self.size:
            raise IndexError(index)
        return self._make(index % self.size)  # not kept: a long run's requests would pile up

    def _make(self, index: int) -> Request:
        rng = random.Random(f"{self.kind}/{self.seed}/{index}")
        size = KINDS[self.kind]
        count = size if isinstance(size, int) else rng.randint(*size)
        query = rng.choice(_queries())
        if self.kind == "short":
            return Request(query, _windows(1, rng, 5, 12))
        return Request(query, _windows(count, rng, 45, 170))

    def mean_pairs(self, sample: int = 64) -> float:
        """Documents per request on average (over the first `sample` requests of a mixed one)."""
        size = KINDS[self.kind]
        if isinstance(size, int):
            return float(size)
        return sum(request.pairs for request in self[:sample]) / min(sample, self.size)


@cache
def _queries() -> tuple[str, ...]:
    return tuple(queries(4096, seed=0))


@cache
def _running_text() -> tuple[str, ...]:
    """The stdlib docstrings' words end to end: passages are windows of it, so a request of 500
    holds 500 different texts (the corpus has only a few hundred docstrings of passage length)."""
    return tuple(word for _, text in docstrings() for word in text.split())


def _windows(count: int, rng: random.Random, min_words: int, max_words: int) -> tuple[str, ...]:
    words = _running_text()
    made: dict[str, None] = {}
    while len(made) < count:
        length = rng.randint(min_words, max_words)
        start = rng.randrange(len(words) - length)
        made.setdefault(" ".join(words[start:start + length]))
    return tuple(made)


def generate(kind: str, seed: int = 0, size: int = SIZE) -> Workload:
    """A workload of the kind: a query of the stdlib corpus and passages of 60-300 tokens (a single
    short pair of 5-12 words for "short"), never repeating within its `size`."""
    return Workload(kind, seed, size)


def from_jsonl(path: Path) -> list[Request]:
    """One request a line: {"query": "...", "documents": ["...", ...]}."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise invalid(f"cannot read {path}: {exc.strerror}", field="requests_file") from None
    made = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            raise invalid(f"{path}:{number} is not JSON: {exc}", field="requests_file") from None
        query, documents = (value.get("query"), value.get("documents")) if isinstance(value, dict) else (None, None)
        if not isinstance(query, str) or not isinstance(documents, list) or not documents or \
                not all(isinstance(document, str) for document in documents):
            raise invalid(f'{path}:{number} must be {{"query": string, "documents": [string, ...]}}',
                          field="requests_file")
        made.append(Request(query, tuple(documents)))
    if not made:
        raise invalid(f"{path} holds no requests", field="requests_file")
    return made
