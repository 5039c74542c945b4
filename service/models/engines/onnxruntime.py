"""onnxruntime backend: CUDA with IO binding when a GPU is present, CPU otherwise."""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort

from xscore.api.errors import model_error
from xscore.service.models.engines.base import EngineOptions
from xscore.service.models.hardware import physical_cores
from xscore.service.models.tokenization import EncodedBatch

log = logging.getLogger(__name__)

# Measured on 2-core Zen 4, AVX-512 VNNI + BF16 (benchmarks/results/engine-avx512-vnni-bf16.md): 4096 padded tokens beat 8192 and batches of 32.
CPU_MAX_BATCH_TOKENS = 4096
CUDA_MAX_BATCH_TOKENS = 16384


def cuda_available() -> bool:
    """True only when the CUDA provider is built in *and* a driver is there to run it."""
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


class OnnxRuntimeEngine:
    name = "onnxruntime"
    parallelism = 1  # one session already uses every core through intra-op threads

    def __init__(self, model_path: Path, *, precision: str = "fp32", device: str = "cpu",
                 options: EngineOptions = EngineOptions()) -> None:
        # one session already spreads a batch over every core: `options.streams` does not apply
        session_options = ort.SessionOptions()
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session_options.intra_op_num_threads = options.threads or physical_cores()
        session_options.inter_op_num_threads = 1
        session_options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session_options.enable_cpu_mem_arena = True
        session_options.log_severity_level = 3
        providers: list = ["CPUExecutionProvider"]
        if device == "cuda":
            providers.insert(0, ("CUDAExecutionProvider", {"arena_extend_strategy": "kSameAsRequested"}))
        try:
            self._session = ort.InferenceSession(str(model_path), session_options, providers=providers)
        except Exception as exc:
            raise model_error(f"onnxruntime cannot load {model_path}: {exc}", cannot_load="onnxruntime") from exc
        self.device = "cuda" if self._session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        if device == "cuda" and self.device != "cuda":
            log.warning("CUDA provider could not start; running %s on CPU", model_path.name)
        self.precision = precision
        self.max_batch_tokens = options.max_batch_tokens or (
            CUDA_MAX_BATCH_TOKENS if self.device == "cuda" else CPU_MAX_BATCH_TOKENS)
        self._inputs = [node.name for node in self._session.get_inputs()]
        self._output = self._session.get_outputs()[0].name

    @property
    def input_names(self) -> list[str]:
        return list(self._inputs)

    def run(self, batch: EncodedBatch) -> np.ndarray:
        feeds = {name: getattr(batch, name) for name in self._inputs}
        if self.device == "cuda":
            return self._run_bound(feeds)
        logits = self._session.run([self._output], feeds)[0]
        return np.asarray(logits, dtype=np.float32)

    def _run_bound(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        # IO binding lets onnxruntime place inputs on the GPU once and keep the output there
        # until the single copy back, instead of its own per-run staging.
        binding = self._session.io_binding()
        for name, array in feeds.items():
            binding.bind_cpu_input(name, array)
        binding.bind_output(self._output, "cuda")
        self._session.run_with_iobinding(binding)
        return np.asarray(binding.copy_outputs_to_cpu()[0], dtype=np.float32)
