"""Turning logits into scores, by the sentence-transformers rule.

A 1-label model gets a sigmoid unless its config names another activation (ms-marco models
name Identity, so they score raw logits, as in sentence-transformers). A multi-label model
scores the softmax probability of its "relevant" label.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

ActivationName = Literal["sigmoid", "identity", "softmax"]

_BY_CLASS_NAME: dict[str, ActivationName] = {
    "Sigmoid": "sigmoid",
    "Identity": "identity",
    "Softmax": "softmax",
}
_RELEVANT_LABELS = ("relevant", "positive", "entailment", "yes", "true", "label_1")


@dataclass(frozen=True, slots=True)
class Activation:
    name: ActivationName
    label_index: int  # which logit column is the relevance logit

    def raw(self, logits: np.ndarray) -> np.ndarray:
        return np.asarray(logits[:, self.label_index], dtype=np.float32)

    def apply(self, logits: np.ndarray) -> np.ndarray:
        logits = np.asarray(logits, dtype=np.float64)
        if self.name == "softmax":
            shifted = logits - logits.max(axis=1, keepdims=True)
            probabilities = np.exp(shifted)
            probabilities /= probabilities.sum(axis=1, keepdims=True)
            return probabilities[:, self.label_index].astype(np.float32)
        column = logits[:, self.label_index]
        if self.name == "sigmoid":
            return (1.0 / (1.0 + np.exp(-column))).astype(np.float32)
        return column.astype(np.float32)


def activation_from_config(config: dict[str, Any]) -> Activation:
    num_labels = _num_labels(config)
    declared = _declared_activation(config)
    if num_labels == 1:
        return Activation(declared or "sigmoid", 0)
    return Activation(declared if declared == "identity" else "softmax", _relevant_label(config, num_labels))


def _num_labels(config: dict[str, Any]) -> int:
    id2label = config.get("id2label")
    if isinstance(id2label, dict) and id2label:
        return len(id2label)
    return int(config.get("num_labels", 1))


def _declared_activation(config: dict[str, Any]) -> ActivationName | None:
    # sentence-transformers >= 4 writes {"sentence_transformers": {"activation_fn": "torch...Sigmoid"}};
    # older versions wrote sbert_ce_default_activation_function.
    nested = config.get("sentence_transformers")
    candidates = [
        nested.get("activation_fn") if isinstance(nested, dict) else None,
        config.get("sbert_ce_default_activation_function"),
    ]
    for qualified in candidates:
        if isinstance(qualified, str):
            name = _BY_CLASS_NAME.get(qualified.rsplit(".", 1)[-1])
            if name:
                return name
    return None


def _relevant_label(config: dict[str, Any], num_labels: int) -> int:
    id2label = config.get("id2label") or {}
    for index, label in sorted(id2label.items(), key=lambda item: int(item[0])):
        if str(label).lower() in _RELEVANT_LABELS:
            return int(index)
    return num_labels - 1
