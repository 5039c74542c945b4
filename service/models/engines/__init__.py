"""The engine table: which backend runs an exported variant on which device.

Each row says where a backend runs, why it cannot run here (if so) and how to make one. `auto`
takes the first row, in table order, that fits the device and can run here: OpenVINO on an x86
CPU (where it measured fastest), onnxruntime for CUDA and everywhere else. An engine that was
asked for but cannot run here falls back to the next best with a warning, never a crash.
Adding a backend = one module with its Engine class + one row here.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xscore.api.errors import XscoreError, model_error
from xscore.service.models.engines.base import Engine, EngineOptions
from xscore.service.models.engines.onnxruntime import OnnxRuntimeEngine, cuda_available
from xscore.service.models.engines.openvino import OpenVinoEngine, openvino_available
from xscore.service.models.hardware import is_x86_64, physical_cores
from xscore.service.models.manifest import Manifest

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
# the manifest fact in which a build records the run-time quantization group size it chose
GROUP_SIZE_FACT = "quantization_group_size"


@dataclass(frozen=True, slots=True)
class EngineKind:
    name: str
    devices: tuple[str, ...]
    precisions: tuple[str, ...]  # inference precisions it computes in; others run as fp32
    unavailable: Callable[[str], str | None]  # device -> why it cannot run here, or None
    create: Callable[..., Engine]  # (model_path, *, precision, device, options) -> Engine


def _openvino_unavailable(device: str) -> str | None:
    if device != "cpu" or not is_x86_64():
        return f"OpenVINO runs on x86 CPUs only; using onnxruntime on {device}"
    if not openvino_available():
        return ("OpenVINO is not installed or cannot be imported; using onnxruntime "
                "(pip install openvino for the fast CPU path)")
    return None


# In order of preference: `--engine auto` takes the first that fits.
ENGINE_KINDS: dict[str, EngineKind] = {kind.name: kind for kind in (
    EngineKind("openvino", ("cpu",), ("fp32", "bf16", "int8"), _openvino_unavailable, OpenVinoEngine),
    EngineKind("onnxruntime", ("cpu", "cuda"), ("fp32", "fp16", "int8"), lambda device: None, OnnxRuntimeEngine),
)}
ENGINES = ("auto", *ENGINE_KINDS)


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
    if engine != "auto":
        kind = ENGINE_KINDS[engine]
        reason = kind.unavailable(device) if device in kind.devices else \
            f"{engine} does not run on {device}; using the best engine there"
        if reason is None:
            if precision not in kind.precisions:
                log.warning("%s has no %s inference precision; the %s variant runs in fp32 there",
                            engine, precision, precision)
            return engine
        log.warning("%s", reason)
    for kind in ENGINE_KINDS.values():
        if device in kind.devices and kind.unavailable(device) is None:
            return kind.name
    raise model_error(f"no engine can run on {device} here")


# OpenVINO streams a server runs when --streams is not given: 2 (THROUGHPUT, one thread each) on
# 2 cores or more. A server is never alone on its cores (its event loop, tokenizer and transports
# run beside the engine), and LATENCY mode's one request spread over every core waits for the
# slowest: default model, 2 Zen 5 cores (AVX-512 VNNI + BF16), engine only on 800 pairs of the
# peer comparison's workload, with a fifth of one core busy beside it, fp32 lost 22% on 1 stream
# and 6% on 2, int8 19% and 12%; alone, 2 streams were as fast for fp32 (74.3 against 74.7
# pairs/s) and faster for int8 (156.9 against 140.7). `--streams 1` keeps LATENCY mode.
SERVING_STREAMS = 2


def serving_options(options: EngineOptions) -> EngineOptions:
    """The options a served model runs with: the streams made concrete."""
    if options.streams is not None:
        return options
    return dataclasses.replace(options, streams=min(SERVING_STREAMS, options.threads or physical_cores()))


def create_engine(directory: Path, manifest: Manifest, *, engine: str = "auto", device: str = "auto",
                  options: EngineOptions = EngineOptions()) -> Engine:
    """The engine for an exported variant. A variant built for one engine (its manifest says
    which, and its fidelity was measured there) gets that engine under `auto`. A runtime that
    cannot load the graph hands it to the next engine that fits, with a warning."""
    resolved_device = resolve_device(device)
    if options.quantization_group_size is None and manifest.extra.get(GROUP_SIZE_FACT):
        options = dataclasses.replace(options, quantization_group_size=int(manifest.extra[GROUP_SIZE_FACT]))
    if engine == "auto" and manifest.extra.get("engine"):
        engine = manifest.extra["engine"]
    chosen = resolve_engine(engine, resolved_device, manifest.precision)
    candidates = [chosen] + [kind.name for kind in ENGINE_KINDS.values() if kind.name != chosen
                             and resolved_device in kind.devices and kind.unavailable(resolved_device) is None]
    failures: list[str] = []
    for name in candidates:
        kind = ENGINE_KINDS[name]
        # a precision the backend cannot compute in (bf16 on onnxruntime) runs the same file in fp32
        precision = manifest.precision if manifest.precision in kind.precisions else "fp32"
        try:
            made = kind.create(directory / manifest.model_file, precision=precision, device=resolved_device,
                               options=options)
        except XscoreError as exc:
            if "cannot_load" not in exc.details:
                raise  # not the graph (a CPU without bf16, bad options): falling back would hide it
            failures.append(exc.message)
            if name != candidates[-1]:
                log.warning("%s; trying %s", exc.message, candidates[candidates.index(name) + 1])
            continue
        if made.parallelism > 1:
            one_stream = functools.partial(kind.create, directory / manifest.model_file, precision=precision,
                                           device=resolved_device, options=dataclasses.replace(options, streams=1))
            _check_streams_agree(made, one_stream, directory, manifest, options)
        return made
    raise model_error(f"no engine here can run {directory / manifest.model_file}: {'; '.join(failures)}")


# How far a multi-stream engine's logits may stray from the same file on one stream, the way its
# gates measured it. Kernels split differently across streams agree to float rounding; OpenVINO's
# int8w (run-time activation quantization) on THROUGHPUT streams of the default model was off by
# up to 2,314 on the probe pairs (ranking NDCG@10 at 53% of fp32's on held-out Debian queries)
# while the same file on one stream was within 0.06 and had passed its ranking gate.
STREAMS_MAX_LOGIT_DIFFERENCE = 0.05


# Each check's figure, kept beside the export so a restart does not compile a one-stream twin again.
STREAMS_CHECK_FILE = "streams-check.json"


def _check_streams_agree(engine: Engine, one_stream: Callable[[], Engine], directory: Path, manifest: Manifest,
                         options: EngineOptions) -> None:
    """Refuse an engine whose streams score the probe pairs unlike one stream does."""
    key = _streams_check_key(engine, directory / manifest.model_file, options)
    checks = _read_streams_checks(directory)
    difference = checks.get(key)
    if not isinstance(difference, float):
        difference = _streams_difference(engine, one_stream(), directory)
        _write_streams_checks(directory, {**checks, key: difference})
    if not difference <= STREAMS_MAX_LOGIT_DIFFERENCE:
        raise model_error(
            f"{manifest.variant} on {engine.name} with {engine.parallelism} streams scores the probe pairs unlike "
            f"one stream (the way its gates measured it): max logit difference {difference:.4g}, allowed "
            f"{STREAMS_MAX_LOGIT_DIFFERENCE}; refused (serve it with --streams 1)",
            streams=engine.parallelism, logit_difference=difference)


def _streams_difference(engine: Engine, single: Engine, directory: Path) -> float:
    from xscore.service.models.probes import probe_pairs
    from xscore.service.models.tokenization import PairTokenizer, pad_batch

    tokenizer = PairTokenizer.from_dir(directory)
    probes = probe_pairs()
    pairs = tokenizer.encode([q for q, _ in probes], [d for _, d in probes], truncate=True)
    batch = pad_batch(pairs, tokenizer.pad_id)
    return float(np.abs(engine.run(batch) - single.run(batch)).max())


def _streams_check_key(engine: Engine, model_file: Path, options: EngineOptions) -> str:
    """What the figure depends on: the graph file as it is now, how it runs, the machine class and
    the libraries (a directory copied to another machine, or a newer OpenVINO, is checked again)."""
    from xscore.service.models.cache import fingerprint, library_versions
    from xscore.service.models.hardware import machine

    stat = model_file.stat()
    facts = {"file": [stat.st_size, stat.st_mtime_ns], "engine": engine.name, "device": engine.device,
             "precision": engine.precision, "streams": engine.parallelism, "options": dataclasses.asdict(options),
             "machine": machine(), "versions": library_versions()}
    return fingerprint(facts, length=16)


def _read_streams_checks(directory: Path) -> dict[str, object]:
    try:
        checks = json.loads((directory / STREAMS_CHECK_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return checks if isinstance(checks, dict) else {}


def _write_streams_checks(directory: Path, checks: dict[str, object]) -> None:
    """Best effort: a read-only export (a container image) is checked at every start instead."""
    from xscore.service.models.cache import write_json_atomically

    try:
        write_json_atomically(directory / STREAMS_CHECK_FILE, checks, indent=1)
    except OSError as exc:
        log.debug("streams check not kept in %s: %s", directory, exc)


__all__ = ["DEVICES", "ENGINES", "ENGINE_KINDS", "GROUP_SIZE_FACT", "SERVING_STREAMS", "Engine", "EngineKind",
           "EngineOptions", "serving_options",
           "create_engine", "resolve_device", "resolve_engine"]
