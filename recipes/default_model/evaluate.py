"""Rank the held-out evaluation set with any scorer and report MRR@k / NDCG@k.

Every system is a `score_pairs(list[(query, passage)]) -> np.ndarray` callable, so BM25, the
bi-encoder, the torch cross-encoder and the served ONNX/OpenVINO engines are measured by the
same loop on the same candidates. Torch is imported lazily: the serving install has none.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from xscore.recipes.default_model.data import Bm25, EvalQuery
from xscore.recipes.default_model.ranking_metrics import mean, ndcg_at, ranked_relevance, reciprocal_rank_at

ScorePairs = Callable[[list[tuple[str, str]]], np.ndarray]


def evaluate_ranking(eval_set: Sequence[EvalQuery], score_pairs: ScorePairs, k: int = 10,
                     desc: str | None = None) -> dict[str, float]:
    """Mean MRR@k, NDCG@k and top-1 (the share of queries answered first) of score_pairs over the
    eval set (one call per query)."""
    rr, ndcg = [], []
    for item in tqdm(eval_set, desc=desc, disable=desc is None, leave=False):
        scores = np.asarray(score_pairs([(item.query, c) for c in item.candidates]), dtype=np.float64)
        ranked = ranked_relevance(scores.reshape(-1), item.relevance)
        rr.append(reciprocal_rank_at(ranked, k))
        ndcg.append(ndcg_at(ranked, k))
    return {f"mrr@{k}": mean(rr), f"ndcg@{k}": mean(ndcg), "top1": mean([float(r == 1.0) for r in rr]),
            "queries": float(len(eval_set))}


# ----------------------------------------------------------------------------- eval set files


def save_eval_set(eval_set: Sequence[EvalQuery], path: Path) -> None:
    # gzip with mtime=0 so the same set always gives the same bytes (and the same sha256).
    with path.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as sink:
        for item in eval_set:
            sink.write((json.dumps(asdict(item), ensure_ascii=False) + "\n").encode())


def load_eval_set(path: Path) -> list[EvalQuery]:
    with gzip.open(path, "rt", encoding="utf-8") as source:
        return [EvalQuery(**json.loads(line)) for line in source if line.strip()]


EVERYDAY_FILE = Path(__file__).resolve().parent / "everyday_questions.jsonl"


def load_everyday_set(path: Path = EVERYDAY_FILE) -> list[EvalQuery]:
    """The hand-written everyday questions: each answer among distractors that share its words
    (the lexical traps), at a position fixed by a hash of the query (no position bias)."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        candidates = list(row["distractors"])
        at = int(hashlib.sha256(row["query"].encode()).hexdigest()[:8], 16) % (len(candidates) + 1)
        candidates.insert(at, row["relevant"])
        out.append(EvalQuery(row["query"], candidates, [int(n == at) for n in range(len(candidates))]))
    return out


# ----------------------------------------------------------------------------- systems


def bm25_scorer(eval_set: Sequence[EvalQuery]) -> ScorePairs:
    """BM25 with term statistics from the eval set's own passage pool (self-contained)."""
    pool = list(dict.fromkeys(c for item in eval_set for c in item.candidates))
    position = {p: i for i, p in enumerate(pool)}
    index = Bm25(pool)
    cache: dict[str, np.ndarray] = {}

    def score_pairs(pairs: list[tuple[str, str]]) -> np.ndarray:
        out = np.empty(len(pairs), dtype=np.float32)
        for n, (query, passage) in enumerate(pairs):
            if query not in cache:
                cache[query] = index.scores(query)
            out[n] = cache[query][position[passage]]
        return out

    return score_pairs


def mean_pooled(hidden, attention_mask):
    """The sentence-transformers bi-encoder's embedding: the mean over real tokens, L2-normalised
    (torch tensors; BiEncoder at inference, stage one's body in training)."""
    import torch

    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9), dim=-1)


class BiEncoder:
    """A sentence-transformers bi-encoder as trained (all-MiniLM-L6-v2; the WordNet teacher
    all-mpnet-base-v2): mean pooling over tokens, L2-normalised, cosine."""

    def __init__(self, model_dir: Path, max_length: int = 256, batch_size: int = 64,
                 progress: str | None = None) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModel.from_pretrained(model_dir).eval()
        self.max_length, self.batch_size = max_length, batch_size
        self._progress = progress  # a bar's label where embedding takes minutes (a larger teacher)
        self._cache: dict[str, np.ndarray] = {}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        # Length-sorted batches: padding, not compute, dominates mixed-length batches.
        missing.sort(key=len)
        torch = self._torch
        with torch.inference_mode():
            starts = range(0, len(missing), self.batch_size)
            for start in tqdm(starts, desc=self._progress, disable=self._progress is None, leave=False):
                chunk = missing[start:start + self.batch_size]
                batch = self.tokenizer(chunk, truncation=True, max_length=self.max_length,
                                       padding=True, return_tensors="pt")
                pooled = mean_pooled(self.model(**batch).last_hidden_state, batch["attention_mask"])
                for text, row in zip(chunk, pooled.numpy(), strict=True):
                    self._cache[text] = row
        if texts:
            return np.stack([self._cache[t] for t in texts])
        return np.zeros((0, self.model.config.hidden_size), np.float32)

    def score_pairs(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        queries = self.embed([q for q, _ in pairs])
        passages = self.embed([p for _, p in pairs])
        return (queries * passages).sum(axis=1)


class TorchCrossEncoder:
    """A sequence-classification model in torch fp32, sigmoid over the single logit."""

    def __init__(self, model_dir: Path, max_length: int = 512, batch_size: int = 32) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
        self.max_length, self.batch_size = max_length, batch_size

    def logits(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
        out = np.empty(len(pairs), dtype=np.float32)
        with self._torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                ids = order[start:start + self.batch_size]
                batch = self.tokenizer([pairs[i][0] for i in ids], [pairs[i][1] for i in ids],
                                       truncation=True, max_length=self.max_length,
                                       padding=True, return_tensors="pt")
                out[ids] = self.model(**batch).logits[:, 0].numpy()
        return out

    def score_pairs(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        return self._torch.sigmoid(self._torch.from_numpy(self.logits(pairs))).numpy()


def metrics_table(results: dict[str, dict[str, float]], k: int = 10) -> str:
    lines = [f"| system | MRR@{k} | NDCG@{k} | top-1 |", "|---|---|---|---|"]
    for name, row in results.items():
        top1 = f"{row['top1']:.3f}" if "top1" in row else "-"
        lines.append(f"| {name} | {row[f'mrr@{k}']:.4f} | {row[f'ndcg@{k}']:.4f} | {top1} |")
    return "\n".join(lines)
