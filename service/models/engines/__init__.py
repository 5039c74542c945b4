"""Engine selection: which backend runs an exported variant on which device.

`auto` picks OpenVINO on an x86 CPU (where it measured fastest) and onnxruntime for CUDA and
everywhere else. An engine that was asked for but cannot run here falls back to the next best
with a warning, never a crash.
"""

from __future__ import annotations

import logging
from pathlib import Path

from xscore.api.errors import model_error
from xscore.service.models.engines.base import Engine
from xscore.service.models.engines.onnxruntime import OnnxRuntimeEngine, cuda_available
from xscore.service.models.engines.openvino import OpenVinoEngine, openvino_available
from xscore.service.models.hardware import is_x86_64
from xscore.service.models.manifest import Manifest

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
ENGINES = ("auto", "onnxruntime", "openvino")


def resolve_device(device: str) -> str:
    if device not in DEVICES:
        raise model_error(f"unknown device {device!r}; choose from {', '.join(DEVICES)}")
    if device == "cpu":
        return "cpu"
    if cuda_available():
        return "cuda"
    if device == "cuda":
        log.warning("CUDA was asked for but is not available here; falling back to CPU")
    return "cpu"


def resolve_engine(engine: str, device: str, precision: str = "fp32") -> str:
    """The backend that will run a variant of `precision` on the resolved `device`."""
    if engine not in ENGINES:
        raise model_error(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    openvino_fits = device == "cpu" and is_x86_64()
    if engine == "onnxruntime":
        if precision == "bf16":
            log.warning("onnxruntime has no bf16 inference precision; the bf16 variant runs in fp32 there")
        return "onnxruntime"
    if engine == "auto" and not openvino_fits:
        return "onnxruntime"
    if not openvino_fits:
        log.warning("OpenVINO runs on x86 CPUs only; using onnxruntime on %s", device)
        return "onnxruntime"
    if not openvino_available():
        log.warning("OpenVINO is not installed or cannot be imported; using onnxruntime "
                    "(pip install openvino for the fast CPU path)")
        return "onnxruntime"
    return "openvino"


def create_engine(directory: Path, manifest: Manifest, *, engine: str = "auto", device: str = "auto",
                  threads: int | None = None, streams: int = 1, **openvino_options) -> Engine:
    """`streams` > 1 asks OpenVINO for its THROUGHPUT mode with that many streams (the engine's
    `parallelism`: the batcher runs that many batches at once); onnxruntime ignores it."""
    resolved_device = resolve_device(device)
    if engine == "auto" and manifest.extra.get("engine"):
        # the variant was built for (and its fidelity measured on) this engine
        engine = manifest.extra["engine"]
    chosen = resolve_engine(engine, resolved_device, manifest.precision)
    if chosen == "openvino":
        if streams > 1:
            openvino_options = {"hint": "THROUGHPUT", "streams": streams, **openvino_options}
        return OpenVinoEngine(directory / manifest.model_file, precision=manifest.precision,
                              threads=threads, **openvino_options)
    # bf16 weights are the fp32 file: onnxruntime computes it in fp32, and says so
    precision = "fp32" if manifest.precision == "bf16" else manifest.precision
    return OnnxRuntimeEngine(directory / manifest.model_file, device=resolved_device,
                             threads=threads, precision=precision)


__all__ = ["Engine", "create_engine", "resolve_device", "resolve_engine", "DEVICES", "ENGINES"]
