"""Deterministic texts of mixed lengths for tests."""

from __future__ import annotations

import random

_WORDS = ("search relevance ranking query document passage score model token batch cross encoder "
          "latency throughput python service gradient vector index retrieval answer question").split()


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words)).capitalize() + "."


def mixed_documents(count: int, seed: int = 0, longest_words: int = 300) -> list[str]:
    rng = random.Random(seed)
    return [sentence(rng, rng.randint(1, longest_words)) for _ in range(count)]
