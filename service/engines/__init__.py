"""Engine selection: which backend runs an exported variant on which device."""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import model_error
from ..manifest import Manifest
from .base import Engine
from .onnxruntime import OnnxRuntimeEngine, cuda_available

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
ENGINES = ("auto", "onnxruntime")


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


def create_engine(directory: Path, manifest: Manifest, *, engine: str = "auto", device: str = "auto",
                  threads: int | None = None) -> Engine:
    if engine not in ENGINES:
        raise model_error(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    return OnnxRuntimeEngine(directory / manifest.model_file, device=resolve_device(device),
                             threads=threads, precision=manifest.precision)


__all__ = ["Engine", "create_engine", "resolve_device", "DEVICES", "ENGINES"]
