"""A loaded model: tokenizer + engine + activation, and one-shot pair scoring.

The service's batcher uses the same three parts; `score_pairs` is the direct path used by the
CLI, the exporter's parity checks and the engine benchmark.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xscore.api.errors import ErrorCode, XscoreError, invalid
from xscore.service.models.activation import Activation, activation_from_config
from xscore.service.models.engines.base import Engine
from xscore.service.models.manifest import MANIFEST_NAME, Manifest
from xscore.service.models.planner import plan_batches
from xscore.service.models.tokenization import EncodedPair, PairTokenizer, pad_batch


@dataclass(frozen=True, slots=True)
class PairScores:
    scores: np.ndarray  # float32, input order
    truncated: list[int]  # indices of pairs that were truncated
    tokens: int  # real (unpadded) tokens scored


class ScoringModel:
    def __init__(self, name: str, directory: Path, manifest: Manifest, tokenizer: PairTokenizer,
                 engine: Engine, activation: Activation) -> None:
        self.name = name
        self.directory = directory
        self.manifest = manifest
        self.tokenizer = tokenizer
        self.engine = engine
        self.activation = activation

    @classmethod
    def load(cls, name: str, directory: Path, engine: Engine, max_length: int | None = None) -> ScoringModel:
        manifest = Manifest.read(directory / MANIFEST_NAME)
        config = json.loads((directory / "config.json").read_text())
        tokenizer = PairTokenizer.from_dir(directory, max_length)
        return cls(name, directory, manifest, tokenizer, engine, activation_from_config(config))

    def logits(self, pairs: Sequence[EncodedPair], max_tokens: int | None = None) -> np.ndarray:
        """Logits for encoded pairs in input order, run in length-sorted token-budget batches."""
        budget = max_tokens or self.engine.max_batch_tokens
        batches = plan_batches([pair.length for pair in pairs], budget)

        def run(batch: list[int]) -> np.ndarray:
            return self.engine.run(pad_batch([pairs[i] for i in batch], self.tokenizer.pad_id))

        if self.engine.parallelism > 1 and len(batches) > 1:
            # an engine with several streams profits from that many batches in flight
            with ThreadPoolExecutor(self.engine.parallelism) as pool:
                results = list(pool.map(run, batches))
        else:
            results = [run(batch) for batch in batches]
        if not results:
            return np.zeros((0, 1), dtype=np.float32)
        out = np.zeros((len(pairs), results[0].shape[1]), dtype=np.float32)
        for batch, batch_logits in zip(batches, results):
            out[batch] = batch_logits
        return out

    def score_pairs(self, queries: Sequence[str], documents: Sequence[str], *, raw: bool = False,
                    truncate: bool = True, max_tokens: int | None = None) -> PairScores:
        check_texts(queries, "queries", allow_blank=False)
        check_texts(documents, "documents", allow_blank=True)
        pairs = self.tokenizer.encode(queries, documents, truncate=truncate)
        logits = self.logits(pairs, max_tokens)
        scores = self.activation.raw(logits) if raw else self.activation.apply(logits)
        truncated = [index for index, pair in enumerate(pairs) if pair.truncated]
        return PairScores(scores, truncated, sum(pair.length for pair in pairs))


def check_texts(texts: Sequence[str], field: str, *, allow_blank: bool) -> None:
    if len(texts) == 0:
        raise invalid(f"{field} is empty: give at least one text", field=field)
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise invalid(f"{field}[{index}] must be a string, got {type(text).__name__}",
                          field=field, index=index)
        if not allow_blank and not text.strip():
            raise XscoreError(ErrorCode.UNPROCESSABLE, f"{field}[{index}] is empty",
                              details={"field": field, "index": index})
