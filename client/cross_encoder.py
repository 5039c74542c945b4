"""`RemoteCrossEncoder`: sentence-transformers' `CrossEncoder.predict` and `.rank`, answered by an
xscore server, so that a sentence-transformers user switches by changing one import:

    from xscore.client import RemoteCrossEncoder as CrossEncoder
    model = CrossEncoder("http://127.0.0.1:8080")          # or "grpc://127.0.0.1:50051"
    model.predict([("query", "passage"), ...])              # np.ndarray, one score per pair
    model.rank("query", ["passage", ...], top_k=3)          # [{"corpus_id", "score", "text"?}]

Scores are the served model's activation (sigmoid for a one-logit cross-encoder, as
sentence-transformers reads it from the model's config); `activation_fn` is applied, here, to the
raw logits instead, as `CrossEncoder` does. No torch is needed: `convert_to_tensor=True` is the
one option that imports it, and `convert_to_numpy=False` gives a list of floats.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from xscore.client.grpc_client import ScorerClient
from xscore.client.http_client import HttpScorerClient
from xscore.client.retry import RetryPolicy

Pair = tuple[str, str] | list[str]


class RemoteCrossEncoder:
    def __init__(self, url: str | Sequence[str] = "http://127.0.0.1:8080", model: str = "default", *,
                 token: str | None = None, timeout: float | None = 60.0, retry: RetryPolicy | None = None,
                 format: str = "msgpack") -> None:
        """`url`: `http(s)://host:port` for the HTTP gateway (msgpack, or `format="json"`);
        `grpc://host:port`, `host:port`, a `dns:///` name or several `host:port`s for gRPC."""
        self.model = model
        if isinstance(url, str) and url.startswith(("http://", "https://")):
            self._http: HttpScorerClient | None = HttpScorerClient(url, format=format, timeout=timeout,
                                                                   retry=retry, token=token)
            self._grpc: ScorerClient | None = None
        else:
            target = url.removeprefix("grpc://") if isinstance(url, str) else url
            self._http, self._grpc = None, ScorerClient(target, timeout=timeout, retry=retry, token=token)

    def predict(self, sentences: Sequence[Pair] | Pair, batch_size: int = 32,
                show_progress_bar: bool | None = None, activation_fn: Callable | None = None,
                apply_softmax: bool | None = False, convert_to_numpy: bool = True,
                convert_to_tensor: bool = False, **options: Any) -> Any:
        """One score per (query, document) pair, in input order; one pair in, one score out."""
        _check_options(options)
        if batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}.")
        singular = _is_pair(sentences)
        pairs = [tuple(sentences)] if singular else [tuple(pair) for pair in sentences]
        for index, pair in enumerate(pairs):
            if len(pair) != 2 or not all(isinstance(text, str) for text in pair):
                raise ValueError(f"input {index} is not a (query, document) pair of strings")
        raw = activation_fn is not None
        scores: list[float] = []
        starts = range(0, len(pairs), batch_size)
        for start in tqdm(starts, desc="Batches", disable=not show_progress_bar):
            batch = pairs[start:start + batch_size]
            scores.extend(self._score_pairs([q for q, _ in batch], [d for _, d in batch], raw))
        values = np.asarray(scores, dtype=np.float32)
        if activation_fn is not None:
            values = _activate(activation_fn, values)
        # apply_softmax: the served models have one logit per pair, and CrossEncoder applies the
        # softmax to several labels only, so it changes nothing here either
        if convert_to_tensor:
            import torch

            result: Any = torch.from_numpy(values)
        elif convert_to_numpy:
            result = values
        else:
            result = [float(value) for value in values]
        return result[0] if singular else result

    def rank(self, query: str, documents: Sequence[str], top_k: int | None = None,
             return_documents: bool = False, batch_size: int = 32, show_progress_bar: bool | None = None,
             activation_fn: Callable | None = None, apply_softmax: bool = False,
             convert_to_numpy: bool = True, convert_to_tensor: bool = False,
             **options: Any) -> list[dict[str, Any]]:
        """[{"corpus_id", "score", "text" when return_documents}], best first, the top_k of them."""
        scores = self.predict([(query, document) for document in documents], batch_size=batch_size,
                              show_progress_bar=show_progress_bar, activation_fn=activation_fn,
                              apply_softmax=apply_softmax, convert_to_numpy=convert_to_numpy,
                              convert_to_tensor=convert_to_tensor, **options)
        results = []
        for index, score in enumerate(scores):
            results.append({"corpus_id": index, "score": score})
            if return_documents:
                results[-1]["text"] = documents[index]
        results.sort(key=lambda entry: entry["score"], reverse=True)
        return results[:top_k]

    def _score_pairs(self, queries: list[str], documents: list[str], raw: bool) -> list[float]:
        if self._http is not None:
            return self._http.score_pairs(queries, documents, model=self.model, raw_scores=raw).scores
        assert self._grpc is not None
        return list(self._grpc.score_pairs(queries, documents, model=self.model, raw_scores=raw).scores)

    def close(self) -> None:
        (self._http or self._grpc).close()

    def __enter__(self) -> RemoteCrossEncoder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# CrossEncoder's options that choose where it computes: the server chooses that here
_PLACEMENT = frozenset({"device", "pool", "chunk_size"})


def _check_options(options: dict[str, Any]) -> None:
    for name, value in options.items():
        if name in ("prompt", "prompt_name"):
            if value is not None:
                raise ValueError(f"{name} is not sent to the server: a served reranker's prompt is "
                                 "its model's (a causal-LM reranker takes an instruction instead)")
        elif name not in _PLACEMENT:
            raise TypeError(f"predict() got an unexpected keyword argument {name!r}")


def _is_pair(inputs: Any) -> bool:
    return isinstance(inputs, (list, tuple)) and len(inputs) == 2 and all(isinstance(text, str) for text in inputs)


def _activate(activation_fn: Callable, logits: np.ndarray) -> np.ndarray:
    """A torch module (nn.Sigmoid(), nn.Identity()) on a tensor, anything else on the array."""
    if type(activation_fn).__module__.startswith("torch"):
        import torch

        with torch.no_grad():
            return activation_fn(torch.from_numpy(logits)).numpy().astype(np.float32)
    return np.asarray(activation_fn(logits), dtype=np.float32)


__all__ = ["RemoteCrossEncoder"]
