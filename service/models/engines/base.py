"""The one interface every inference backend implements, and the options they all take.

The batcher hands an engine a padded batch and gets logits back; it never learns which runtime
or device did the work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from xscore.service.models.tokenization import EncodedBatch


@dataclass(frozen=True, slots=True)
class EngineOptions:
    """How to run an engine; every backend takes all of them and says which it ignores."""

    threads: int | None = None  # CPU threads; None: the physical cores
    # OpenVINO: 1 = LATENCY mode; N > 1 = THROUGHPUT mode with N streams; None: what a server
    # runs (`engines.serving_options`: 2 on 2 cores or more), 1 for an engine made without it
    streams: int | None = None
    max_batch_tokens: int | None = None  # padded tokens per batch; None: the engine's measured best
    # OpenVINO, int8w: activations are quantized at run time per group of this many values;
    # None: the group size the variant's build chose (its manifest), else OpenVINO's default
    quantization_group_size: int | None = None


class Engine(Protocol):
    name: str  # a key of `engines.ENGINES`
    device: str  # "cpu" | "cuda"
    precision: str  # what the runtime computes in: "fp32", "fp16", "bf16", "int8"
    max_batch_tokens: int  # the padded-token budget this engine runs best at (measured)
    parallelism: int  # how many run() calls it profits from at once (OpenVINO streams); 1 = serial

    def run(self, batch: EncodedBatch) -> np.ndarray:
        """Logits of shape (pairs, labels), float32. Safe to call from worker threads."""
        ...
