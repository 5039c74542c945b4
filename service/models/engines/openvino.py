"""OpenVINO backend (x86 CPUs): reads the same ONNX export, runs f32, bf16 or int8.

On 2 Zen 4 cores (AVX-512 VNNI + BF16) it measured 1.22x (f32), 2.17x (bf16) and 3.00x (NNCF
int8) the throughput of onnxruntime fp32 (benchmarks/results/engine-avx512-vnni-bf16.md). Other
CPU classes differ (AVX2-only CPUs have been reported where onnxruntime fp32 is faster), which is
why `--variant auto` times the engines on the machine it runs on.
`openvino` is imported lazily so that a machine without it still imports this package.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import queue
from pathlib import Path

import numpy as np

from xscore.api.errors import model_error
from xscore.service.models.engines.base import EngineOptions
from xscore.service.models.hardware import has_bf16, physical_cores
from xscore.service.models.tokenization import EncodedBatch

log = logging.getLogger(__name__)

# Measured (benchmarks/results/engine-avx512-vnni-bf16.md): OpenVINO is fastest at 1536-2048
# padded tokens per batch on 2 Zen 4 cores (AVX-512 VNNI + BF16); 4096 lost 10-15%, 8192 more.
CPU_MAX_BATCH_TOKENS = 2048
# On THROUGHPUT streams of one thread each a batch runs on one core, and larger batches pay: through
# `xscore serve` (default model's int8, 32 clients x 1 x 100, 3 interleaved rounds, 2 cores with Zen
# 5's flags, same class) 4096 gave 151.9 / 151.1 / 142.0 pairs/s against 2048's 137.5 / 143.0 /
# 133.6 (1.06x, median of the rounds' ratios), peak RSS 60 MiB higher.
STREAMS_MAX_BATCH_TOKENS = 4096


def openvino_available() -> bool:
    """True when the runtime can be imported (a blocked or missing module counts as absent)."""
    try:
        import openvino  # noqa: F401
    except ImportError:
        return False
    return True


def nncf_available() -> bool:
    try:
        return importlib.util.find_spec("nncf") is not None and openvino_available()
    except (ImportError, ValueError):
        return False


def inference_precision(precision: str) -> str:
    """The CPU plugin's INFERENCE_PRECISION_HINT for a variant's precision.

    The plugin defaults to bf16 on CPUs with AVX512_BF16, so f32 is always asked for
    explicitly where exactness matters. int8 layers run int8 either way; the layers left in
    float run bf16 where the CPU has it (measured: same ranking, a little faster).
    """
    if precision == "bf16":
        if not has_bf16():
            raise model_error("the bf16 variant needs a CPU with AVX512_BF16 or AMX; this one has neither: "
                              "serve fp32 or int8")
        return "bf16"
    if precision == "int8" and has_bf16():
        return "bf16"
    return "f32"


# The CPU plugin keeps the kernels it prepared for each input shape, 5,000 shapes by default. The
# batcher's batches come in thousands of (pairs, longest) shapes, so a long-lived server grew by
# about 1 MB a new shape (default model, AMX class: 314 MB to 1,036 MB over 600 random shapes, and
# +33% RSS in a 10-minute soak). 128 shapes hold it flat (630 MB with 64, 656 MB with 256) at
# about 4% of speed on shapes that never repeat; the batcher's repeat far more often.
RUNTIME_CACHE_SHAPES = 128

# Below that cache, oneDNN keeps 1,024 kernels per process by default, and those are what kept
# growing: one engine fed distinct (pairs, length) shapes grew without end (fp32 default model,
# 2 Zen 4 cores: 388 MB after 50 shapes, 512 MB after 1,000 and rising; bf16 levelled at 477 MB
# only after ~800). With 64 it holds flat after ~300 shapes (fp32 450 MB, bf16 376 MB) at no
# measured cost in speed (40 full batches cycled: within the rounds' 5% noise), since the
# runtime cache above keeps the kernels of the shapes that repeat. It is read when the runtime
# first builds a kernel, so it is set before openvino is imported; an operator's value wins.
ONEDNN_KERNEL_CACHE = 64
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(ONEDNN_KERNEL_CACHE))


class OpenVinoEngine:
    name = "openvino"
    device = "cpu"

    def __init__(self, model_path: Path, *, precision: str = "fp32", device: str = "cpu",
                 options: EngineOptions = EngineOptions()) -> None:
        import openvino as ov
        import openvino.properties as props
        import openvino.properties.hint as hints

        streams = 1 if options.streams is None else options.streams
        if streams < 1:
            raise model_error(f"streams must be >= 1, got {streams}")
        hint = "THROUGHPUT" if streams > 1 else "LATENCY"
        self.precision = precision
        self.max_batch_tokens = options.max_batch_tokens or (
            STREAMS_MAX_BATCH_TOKENS if hint == "THROUGHPUT" else CPU_MAX_BATCH_TOKENS)
        threads = options.threads or physical_cores()
        config: dict = {
            hints.performance_mode: getattr(hints.PerformanceMode, hint),
            hints.inference_precision: inference_precision(precision),
            props.inference_num_threads: threads,
            "CPU_RUNTIME_CACHE_CAPACITY": RUNTIME_CACHE_SHAPES,
        }
        if options.quantization_group_size is not None:
            config[hints.dynamic_quantization_group_size] = options.quantization_group_size
        if hint == "THROUGHPUT":
            config[props.num_streams] = streams
            # Streams of one thread each land on one core when pinned (measured 2.1x slower).
            config[props.hint.enable_cpu_pinning] = False
        core = ov.Core()
        try:
            self._compiled = core.compile_model(core.read_model(str(model_path)), "CPU", config)
        except Exception as exc:
            raise model_error(f"OpenVINO cannot load {model_path}: {exc}", cannot_load="openvino") from exc
        self.parallelism = int(self._compiled.get_property(props.optimal_number_of_infer_requests)) \
            if hint == "THROUGHPUT" else 1
        self.hint, self.threads = hint, threads
        self.quantization_group_size = int(self._compiled.get_property(hints.dynamic_quantization_group_size))
        self._inputs = [port.get_any_name() for port in self._compiled.inputs]
        # One infer request per concurrent caller: run() borrows one, so it is thread-safe and
        # `parallelism` callers keep every stream busy.
        self._idle: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(self.parallelism):
            self._idle.put(self._compiled.create_infer_request())

    @property
    def input_names(self) -> list[str]:
        return list(self._inputs)

    def matmul_kernels(self) -> dict[str, int]:
        """How many of the compiled model's FullyConnected (matmul) layers run on each kernel, as
        the CPU plugin names it ("brgemm_avx512_i8", "jit_gemm_i8", "gemm_mlas_f32"): the kernel
        is what a variant's speed on a CPU class comes down to, and what reports show. Kernels are
        chosen for the first input shape, so this is read after a batch has run ("undef" before)."""
        kernels: dict[str, int] = {}
        for op in self._compiled.get_runtime_model().get_ops():
            info = op.get_rt_info()
            if "primitiveType" in info and info["layerType"].astype(str) == "FullyConnected":
                kernel = info["primitiveType"].astype(str)
                kernels[kernel] = kernels.get(kernel, 0) + 1
        return dict(sorted(kernels.items(), key=lambda item: -item[1]))

    def run(self, batch: EncodedBatch) -> np.ndarray:
        feeds = {name: getattr(batch, name) for name in self._inputs}
        request = self._idle.get()
        try:
            # share_inputs avoids a copy; the output is copied out before the request is reused
            outputs = request.infer(feeds, share_inputs=True)
            return np.array(outputs[0], dtype=np.float32, copy=True)
        finally:
            self._idle.put(request)
