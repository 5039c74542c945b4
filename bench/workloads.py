"""Deterministic rerank workloads: generated from a seed, or read from the user's JSONL file."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from xscore.api.errors import invalid
from xscore.service.models.corpus import passages, queries

# name -> (documents per request: fixed, or a (low, high) range drawn per request)
KINDS: dict[str, int | tuple[int, int]] = {
    "rerank-10": 10,
    "rerank-100": 100,
    "rerank-500": 500,
    "short": 1,  # one short pair: transport and batching overhead, not the engine
    "mixed": (1, 200),
}
DISTINCT = 16  # distinct requests a generated workload cycles through


@dataclass(frozen=True, slots=True)
class Request:
    query: str
    documents: tuple[str, ...]

    @property
    def pairs(self) -> int:
        return len(self.documents)


def generate(kind: str, seed: int = 0, distinct: int = DISTINCT) -> list[Request]:
    """`distinct` requests of the kind: a query of the stdlib corpus and passages of 60-300 tokens
    (a single short pair for "short"), the same for the same seed on every machine."""
    if kind not in KINDS:
        raise invalid(f"unknown workload {kind!r}; choose from {', '.join(KINDS)}", field="workload")
    size = KINDS[kind]
    rng = random.Random(seed)
    made = []
    for index in range(distinct):
        count = size if isinstance(size, int) else rng.randint(*size)
        query = queries(1, seed * 1000 + index)[0]
        if kind == "short":
            documents = tuple(passages(1, seed * 1000 + index, min_words=5, max_words=12))
        else:
            documents = tuple(passages(count, seed * 1000 + index))
        made.append(Request(query, documents))
    return made


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
