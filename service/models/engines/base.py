"""The one interface every inference backend implements (TEI's `backends/` split).

The batcher and scorer hand an engine a padded batch and get logits back; they never learn
which runtime or device did the work.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from xscore.service.models.tokenization import EncodedBatch


class Engine(Protocol):
    name: str  # "onnxruntime" | "openvino"
    device: str  # "cpu" | "cuda"
    precision: str  # what the runtime computes in: "fp32", "fp16", "bf16", "int8"
    max_batch_tokens: int  # the padded-token budget this engine runs best at (measured)
    parallelism: int  # how many run() calls it profits from at once (OpenVINO streams); 1 = serial

    def run(self, batch: EncodedBatch) -> np.ndarray:
        """Logits of shape (pairs, labels), float32. Safe to call from worker threads."""
        ...
