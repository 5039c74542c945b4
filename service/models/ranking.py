"""Ranking fidelity: does a variant order each query's candidates as its reference does?

Probe pairs pool unrelated queries, so a variant can match them well and still reorder the
candidates of one query (the thing a reranker is for). The lossy variants are therefore also
gated on a ranking set: 8 queries x 50 candidates of held-out stdlib text, each query's own
docstring among passages drawn for it, scored by the fp32 export as reference.

Per query: Spearman of the two score lists, top-10 agreement, and the NDCG@10 ratio: the
candidate ranking's NDCG@10 over the reference ranking's, averaged over queries; the gains are
the reference's own scores rescaled to [0, 1] per query, so swapping two near-tied candidates
costs almost nothing and losing a clear winner costs a lot.

A model may also carry its own ranking set (`OWN_RANKING_FILE` in its directory): its task's
text with relevance labels, in named sets, optionally with the reference's raw scores. There the
NDCG@10 ratio is the task's figure: the candidate's mean NDCG@10 against the labels over the
reference's, per named set.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from xscore.service.models.fidelity import spearman, top_k_agreement

if TYPE_CHECKING:
    from xscore.service.models.activation import Activation
    from xscore.service.models.engines.base import Engine
    from xscore.service.models.tokenization import PairTokenizer


@dataclass(frozen=True, slots=True)
class Query:
    text: str
    candidates: list[str]
    labels: list[float] | None = None  # graded relevance, if the set has it


def ranking_set(count: int = 8, candidates: int = 50, part: str = "held_out") -> list[Query]:
    """`count` queries x `candidates` passages from one part of the stdlib corpus (the gate's is
    the held-out part; a build that tunes itself uses the calibration part, so the gate never
    judges text a build was tuned on): each query is a docstring's summary line, and its own
    docstring is among the candidates."""
    from xscore.service.models.corpus import PARTS, passages

    pool = [(summary, text) for summary, text in PARTS[part]()
            if 4 <= len(summary.split()) <= 20 and len(text.split()) >= 45]
    step = len(pool) // count
    chosen = [pool[index * step + step // 2] for index in range(count)]
    return [Query(summary, [" ".join(text.split()[:170])] + passages(candidates - 1, seed=100 + index, part=part))
            for index, (summary, text) in enumerate(chosen)]


# A model directory's own ranking set: JSON lines, gzip, one query a line:
# {"set": name, "query": text, "candidates": [text], "relevance": [gain], "reference": [raw score]}
# ("reference" optional: without it the fp32 export scores the set)
OWN_RANKING_FILE = "ranking_set.jsonl.gz"

OwnRankingSet = dict[str, tuple[list[Query], list[np.ndarray] | None]]


def save_ranking_set(sets: Mapping[str, Sequence[tuple[Query, Sequence[float] | None]]], path: Path) -> None:
    """Write named sets of (labelled query, reference raw scores or None); the same sets give the
    same bytes (gzip without a timestamp)."""
    with path.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as sink:
        for name, rows in sets.items():
            for query, reference in rows:
                if query.labels is None:
                    raise ValueError(f"set {name}: query {query.text!r} has no relevance labels")
                row = {"set": name, "query": query.text, "candidates": query.candidates,
                       "relevance": query.labels}
                if reference is not None:
                    row["reference"] = [float(x) for x in reference]
                sink.write((json.dumps(row, ensure_ascii=False) + "\n").encode())


def load_ranking_set(path: Path) -> OwnRankingSet:
    """{set name: (queries, reference raw scores per query, or None when any row lacks them)}.
    Raises ValueError on a row that does not hold together."""
    queries: dict[str, list[Query]] = {}
    references: dict[str, list[np.ndarray | None]] = {}
    with gzip.open(path, "rt", encoding="utf-8") as source:
        for number, line in enumerate(source, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            candidates, labels = row["candidates"], row["relevance"]
            reference = row.get("reference")
            if len(labels) != len(candidates) or (reference is not None and len(reference) != len(candidates)):
                raise ValueError(f"{path} line {number}: candidates, relevance and reference differ in length")
            if not candidates or not any(labels):
                raise ValueError(f"{path} line {number}: a query needs candidates and a relevant one")
            queries.setdefault(row["set"], []).append(Query(row["query"], candidates, [float(x) for x in labels]))
            references.setdefault(row["set"], []).append(
                None if reference is None else np.asarray(reference, np.float64))
    out: OwnRankingSet = {}
    for name, items in queries.items():
        given = references[name]
        out[name] = (items, None if any(r is None for r in given) else [r for r in given if r is not None])
    return out


def ndcg_at_10(gains: np.ndarray, scores: np.ndarray) -> float:
    order = np.argsort(-scores, kind="stable")[:10]
    discounts = 1 / np.log2(np.arange(2, len(order) + 2))
    return float(np.sum(gains[order] * discounts))


def _graded_gains(reference: np.ndarray) -> np.ndarray:
    spread = float(reference.max() - reference.min())
    return (reference - reference.min()) / spread if spread else np.ones(len(reference))


def unfallen_share(reference: Sequence[float], candidate: Sequence[float]) -> float:
    """The share of the reference's summed per-query NDCG@10 that the candidate keeps when only the
    queries it ranks worse count: 1 - sum(max(0, reference - candidate)) / sum(reference). A query
    ranked better does not pay for one ranked worse, as it does in a ratio of means."""
    total = sum(reference)
    if not total:
        return 1.0
    return 1.0 - sum(max(0.0, before - after) for before, after in zip(reference, candidate, strict=True)) / total


@dataclass(frozen=True, slots=True)
class RankingFidelity:
    spearman_mean: float
    spearman_min: float
    ndcg10_ratio: float  # mean over queries; labelled: mean NDCG@10 over the reference's
    top10_agreement: float  # mean over queries
    max_abs_diff: float
    queries: int
    unfallen_share: float  # of the reference's NDCG@10, counting only the queries ranked worse

    def as_dict(self) -> dict[str, float]:
        return {"spearman_mean": self.spearman_mean, "spearman_min": self.spearman_min,
                "ndcg10_ratio": self.ndcg10_ratio, "top10_agreement": self.top10_agreement,
                "max_abs_diff": self.max_abs_diff, "queries": self.queries,
                "unfallen_share": self.unfallen_share}


def ranking_fidelity(queries: Sequence[Query], references: Sequence[np.ndarray],
                     scores: Sequence[np.ndarray]) -> RankingFidelity:
    """Per-query figures of `scores` against `references` (one array per query, input order).
    Labelled queries (all or none) take the labels as gains and the ratio of mean NDCG@10s."""
    labelled = all(query.labels is not None for query in queries)
    rhos, ratios, tops, diffs, got, ideal = [], [], [], [], [], []
    for query, reference, candidate in zip(queries, references, scores, strict=True):
        reference, candidate = np.asarray(reference, np.float64), np.asarray(candidate, np.float64)
        rhos.append(spearman(reference, candidate))
        if labelled:
            gains = np.asarray(query.labels, np.float64)
            best = ndcg_at_10(gains, gains) or 1.0  # the labels' own order: the ideal DCG
            got.append(ndcg_at_10(gains, candidate) / best)
            ideal.append(ndcg_at_10(gains, reference) / best)
        else:
            gains = _graded_gains(reference)
            reached = ndcg_at_10(gains, reference)
            ratios.append(ndcg_at_10(gains, candidate) / reached if reached else 1.0)
        tops.append(top_k_agreement(reference, candidate, 10))
        diffs.append(float(np.max(np.abs(reference - candidate))))
    if labelled:
        ratio = float(np.mean(got) / np.mean(ideal)) if np.mean(ideal) else 1.0
        kept = unfallen_share(ideal, got)
    else:  # each query's own reference reaches 1
        ratio, kept = float(np.mean(ratios)), unfallen_share([1.0] * len(ratios), ratios)
    return RankingFidelity(float(np.mean(rhos)), float(np.min(rhos)), ratio, float(np.mean(tops)), max(diffs),
                           len(queries), kept)


class RankingCheck:
    """A ranking set, encoded once, with the fp32 export's raw scores as the reference (or the
    reference's raw scores given, one array per query)."""

    def __init__(self, fp32_onnx: Path, tokenizer: PairTokenizer, activation: Activation,
                 queries: Sequence[Query] | None = None, references: Sequence[np.ndarray] | None = None) -> None:
        self._queries = list(queries) if queries is not None else ranking_set()
        self._pairs = tokenizer.encode([q.text for q in self._queries for _ in q.candidates],
                                       [c for q in self._queries for c in q.candidates], truncate=True)
        self._pad_id, self._activation = tokenizer.pad_id, activation
        if references is not None:
            self._reference = [np.asarray(r, np.float64) for r in references]
        else:
            from xscore.service.models.engines.onnxruntime import OnnxRuntimeEngine

            # the fp32 export on onnxruntime's CPU provider: exact to the PyTorch model (the fp32
            # gate), and present on every install
            self._reference = self._split(OnnxRuntimeEngine(fp32_onnx, device="cpu"))

    def _split(self, engine: Engine) -> list[np.ndarray]:
        from xscore.service.models.planner import run_planned

        scores = run_planned(engine.run, self._pairs, self._pad_id, RANKING_BATCH_TOKENS)
        raw = self._activation.raw(scores)
        bounds = np.cumsum([len(q.candidates) for q in self._queries])[:-1]
        return np.split(raw.astype(np.float64), bounds)

    def measure(self, engine: Engine) -> RankingFidelity:
        return ranking_fidelity(self._queries, self._reference, self._split(engine))


class OwnRankingCheck:
    """A model's own ranking set: one `RankingCheck` per named set."""

    def __init__(self, fp32_onnx: Path, tokenizer: PairTokenizer, activation: Activation,
                 sets: OwnRankingSet) -> None:
        self._checks = {name: RankingCheck(fp32_onnx, tokenizer, activation, queries, references)
                        for name, (queries, references) in sets.items()}

    def measure(self, engine: Engine) -> dict[str, RankingFidelity]:
        return {name: check.measure(engine) for name, check in self._checks.items()}


def own_ranking_check(model_dir: Path, fp32_onnx: Path, tokenizer: PairTokenizer,
                      activation: Activation) -> OwnRankingCheck | None:
    """The check of the ranking set `model_dir` carries, or None when it carries none."""
    path = Path(model_dir) / OWN_RANKING_FILE
    return OwnRankingCheck(fp32_onnx, tokenizer, activation, load_ranking_set(path)) if path.is_file() else None


RANKING_SET_SHAPE = "8 queries x 50 candidates"
# batches under a budget every engine runs comfortably (the probe pairs' too)
RANKING_BATCH_TOKENS = 4096


__all__ = ["OWN_RANKING_FILE", "RANKING_SET_SHAPE", "OwnRankingCheck", "OwnRankingSet", "Query", "RankingCheck",
           "RankingFidelity", "load_ranking_set", "ndcg_at_10", "own_ranking_check", "ranking_fidelity",
           "ranking_set", "save_ranking_set", "unfallen_share"]
