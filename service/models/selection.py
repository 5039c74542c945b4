"""`--variant auto` and `--engine auto`: the fastest (variant, engine) here that passes its gate.

The first time a model is served with `auto` on a machine, every variant that fits the device is
built and gated (a refused one is recorded with its figures), and every (variant, engine) pair
that passed is timed on the same fixed rerank workload, interleaved round by round, with the
streams it would serve with, fed as many batches at once as the batcher feeds it. The fastest
is served, except that a lossy variant must beat the best exact (fp32) one by `LOSSY_MARGIN`:
a variant that trades fidelity for no real speed is never chosen. The decision, its figures and
the CPU's instruction sets are written beside the exports, keyed by the machine class, the
engine options and the library versions, so later starts read it instead of measuring again.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from xscore.api.errors import XscoreError, model_error
from xscore.service.models import cache, variants
from xscore.service.models.engines import (
    ENGINE_KINDS,
    EngineOptions,
    create_engine,
    resolve_device,
    serving_options,
)
from xscore.service.models.engines.base import Engine
from xscore.service.models.hardware import machine
from xscore.service.models.manifest import MANIFEST_NAME, Manifest
from xscore.service.models.planner import plan_batches
from xscore.service.models.tokenization import PairTokenizer, pad_batch

log = logging.getLogger(__name__)

LOSSY_MARGIN = 1.05  # a lossy variant must be at least this much faster than the best exact one
ROUNDS = 3
ROUND_SECONDS = 2.0  # the workload is cut so the slowest candidate's round takes about this long
WORKLOAD_PAIRS = (16, 64)  # fewest and most pairs per round
# Batches each stream runs in a round, at least: with 2 streams and the 3 batches 64 pairs make at
# 4096 tokens, one batch runs alone at the end, and a round read OpenVINO fp32 at 37.0 pairs/s
# against onnxruntime's 43.3, while 4 passes read 46.0 against 43.2 (default model, engine only,
# AVX2 cap on the AVX-512 VNNI + BF16 class); through `xscore serve` it was 52.8 against 42.5.
MIN_BATCHES_PER_STREAM = 4
# candidates whose files together exceed this are timed one after another, not side by side
INTERLEAVE_BYTES = 1536 * 1024**2
EXACT = "fp32"


def engine_label(variant: str, engine: str | None, streams: int = 1) -> str:
    """"int8 on openvino", "int8 on openvino (2 streams)": how a candidate is named to people."""
    return f"{variant} on {engine or '-'}" + (f" ({streams} streams)" if streams > 1 else "")


@dataclass(slots=True)
class Trial:
    """One (variant, engine) candidate: measured, or why it was not."""

    variant: str
    engine: str | None
    status: str  # "measured" | "refused" | "failed"
    pairs_per_s: float | None = None
    reason: str = ""
    parity: dict[str, Any] = field(default_factory=dict)  # probe pairs against PyTorch
    ranking: dict[str, Any] = field(default_factory=dict)  # the ranking set against fp32
    ranking_own: dict[str, Any] = field(default_factory=dict)  # the model's own labelled sets, by name
    directory: str = ""
    streams: int = 1  # OpenVINO streams it was timed with

    @property
    def label(self) -> str:
        return engine_label(self.variant, self.engine, self.streams)


@dataclass(slots=True)
class Decision:
    model: str
    device: str
    variant: str
    engine: str
    directory: str
    reason: str
    machine: dict[str, Any]
    options: dict[str, Any]
    workload: str
    trials: list[Trial]
    measured_at: str
    seconds: float
    streams: int = 1  # OpenVINO streams to serve with (decisions written before streams were timed: 1)

    @property
    def label(self) -> str:
        return engine_label(self.variant, self.engine, self.streams)

    def write(self, path: Path) -> None:
        cache.write_json_atomically(path, dataclasses.asdict(self))

    @classmethod
    def read(cls, path: Path) -> Decision | None:
        try:
            data = json.loads(path.read_text())
            data["trials"] = [Trial(**trial) for trial in data["trials"]]
            return cls(**data)
        except (OSError, ValueError, KeyError, TypeError):
            return None


# Raised whenever what a decision may choose changes, so a decision cached by older rules is made
# again: 2 refuses an engine whose streams score unlike one stream (int8w on OpenVINO THROUGHPUT);
# 3 times every stream on MIN_BATCHES_PER_STREAM batches a round.
DECISION_RULES = 3


def decision_path(root: Path, source_dir: Path, device: str, engine: str, options: EngineOptions) -> Path:
    """Where the decision for this model, machine class, request and library versions lives."""
    facts = {"rules": DECISION_RULES, "machine": machine(), "device": device, "engine": engine,
             "options": dataclasses.asdict(serving_options(options)), "versions": cache.library_versions()}
    return source_dir / f"auto-{cache.fingerprint(facts)}.json"


def decide(spec: str, *, name: str | None = None, device: str = "auto", engine: str = "auto",
           options: EngineOptions = EngineOptions(),
           progress: bool = True, root: Path | None = None) -> Decision:
    """The (variant, engine) `auto` serves `spec` with here: remembered, or measured now."""
    from xscore.service.models.export import export_each, find_exported
    from xscore.service.models.sources import resolve_source

    root = root or cache.cache_root()
    name = name or spec
    options = serving_options(options)
    resolved = resolve_device(device)
    source = resolve_source(spec)
    path = decision_path(root, cache.model_dir(root, source), resolved, engine, options)
    remembered = Decision.read(path)
    if remembered is not None and cache.load_complete(Path(remembered.directory)) is not None:
        return remembered
    started = time.perf_counter()
    rows = [variants.BY_NAME[variant] for variant in variants.candidates(resolved, engine)]
    if not rows:
        raise model_error(f"no variant runs on {resolved} with engine {engine}")
    try:
        built, refused = export_each(spec, rows, root=root, progress=progress)
        exported = {variant: result.path for variant, result in built.items()}
    except XscoreError as exc:
        # e.g. a serving install without the export extra: choose among what is already exported
        found = {row.name: find_exported(spec, row.name, root=root) for row in rows}
        refused = {}
        for row in rows:
            directory = found[row.name]
            reason = cache.gated_elsewhere(Manifest.read(directory / MANIFEST_NAME), row.name) if directory else None
            if reason is not None:
                refused[row.name] = model_error(reason)
                found[row.name] = None
        exported = {variant: directory for variant, directory in found.items() if directory is not None}
        if not exported:
            raise
        log.warning("variant auto for %s: choosing among the exported variants only: %s", name, exc.message)
        refused.update({row.name: exc for row in rows if row.name not in exported and row.name not in refused})
    trials = [Trial(variant, None, "refused", reason=exc.message, parity=exc.details.get("parity", {}),
                     ranking=exc.details.get("ranking", {}), ranking_own=exc.details.get("ranking_own", {}))
              for variant, exc in refused.items()]
    candidates: list[tuple[Trial, Manifest]] = []
    for row in rows:
        if row.name not in exported:
            continue
        manifest = Manifest.read(exported[row.name] / MANIFEST_NAME)
        for engine_name in _engines_for(manifest, resolved, engine):
            streams = (options.streams or 1) if engine_name == "openvino" else 1
            candidates.append((Trial(row.name, engine_name, "measured", parity=manifest.parity,
                                     ranking=manifest.ranking, ranking_own=manifest.ranking_own,
                                     directory=str(exported[row.name]),
                                     streams=streams), manifest))
    workload = _measure(candidates, resolved, options)
    measured = [trial for trial, _ in candidates if trial.status == "measured"]
    trials = [trial for trial, _ in candidates] + trials
    if not measured:
        raise model_error(f"no variant of {spec} can be served here: "
                          + "; ".join(f"{t.variant}: {t.reason}" for t in trials))
    chosen, reason = _choose(measured)
    decision = Decision(model=spec, device=resolved, variant=chosen.variant, engine=chosen.engine or "",
                        directory=chosen.directory, reason=reason, machine=machine(),
                        options=dataclasses.asdict(options), workload=workload, trials=trials,
                        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
                        seconds=round(time.perf_counter() - started, 1), streams=chosen.streams)
    decision.write(path)
    for trial in trials:
        if trial.status == "measured":
            log.info("variant auto for %s: %s measured %.1f pairs/s", name, trial.label, trial.pairs_per_s)
        else:
            log.warning("variant auto for %s: %s %s: %s", name, trial.variant, trial.status, trial.reason)
    return decision


def _engines_for(manifest: Manifest, device: str, engine: str) -> list[str]:
    """The engines that may serve this export: the one it was built and measured for, if any,
    else every engine that runs here and computes in its precision."""
    pinned = manifest.extra.get("engine")
    names = [pinned] if pinned else [
        kind.name for kind in ENGINE_KINDS.values()
        if device in kind.devices and kind.unavailable(device) is None and manifest.precision in kind.precisions]
    return [name for name in names if engine in ("auto", name)]


def _measure(candidates: list[tuple[Trial, Manifest]], device: str, options: EngineOptions) -> str:
    """Time every candidate on the same pairs; a candidate that cannot load is marked failed."""
    from xscore.service.models.corpus import rerank_workload

    if not candidates:
        return ""
    query, passages = rerank_workload(WORKLOAD_PAIRS[1], seed=4242)
    tokenizer = PairTokenizer.from_dir(Path(candidates[0][0].directory))
    pairs = tokenizer.encode([query] * len(passages), passages, truncate=True)
    interleave = sum(_size(Path(trial.directory), manifest) for trial, manifest in candidates) <= INTERLEAVE_BYTES
    engines: dict[int, Engine] = {}
    rates: dict[int, list[float]] = {index: [] for index in range(len(candidates))}

    def load(index: int) -> Engine | None:
        trial, manifest = candidates[index]
        try:
            made = create_engine(Path(trial.directory), manifest, engine=trial.engine or "auto", device=device,
                                 options=dataclasses.replace(options, streams=trial.streams))
        except XscoreError as exc:
            trial.status, trial.reason = "failed", exc.message
            return None
        if made.name != trial.engine:  # the engine could not load the graph and handed it on
            trial.status, trial.reason = "failed", f"{trial.engine} could not load it ({made.name} took over)"
            return None
        return made

    def timed(engine: Engine, count: int, repeats: int = 1, every_stream_busy: bool = True) -> float:
        batches = [pad_batch([pairs[index] for index in batch], tokenizer.pad_id)
                   for batch in plan_batches([pair.length for pair in pairs[:count]], engine.max_batch_tokens)]
        if every_stream_busy:
            repeats = max(repeats, math.ceil(MIN_BATCHES_PER_STREAM * engine.parallelism / len(batches)))
        started = time.perf_counter()
        # as the batcher runs them under load: `parallelism` at once, the next as soon as one ends
        with ThreadPoolExecutor(engine.parallelism) as pool:
            list(pool.map(engine.run, batches * repeats))
        return count * repeats / (time.perf_counter() - started)

    # warm-up on the fewest pairs also sizes the rounds: about ROUND_SECONDS for the slowest
    warm: dict[int, float] = {}
    for index in range(len(candidates)):
        engine = load(index)
        if engine is None:
            continue
        try:
            warm[index] = timed(engine, WORKLOAD_PAIRS[0], every_stream_busy=False)
        except Exception as exc:  # noqa: BLE001 - a runtime that fails on this CPU is a candidate less
            candidates[index][0].status = "failed"
            candidates[index][0].reason = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[-1][:300]}"
            continue
        if interleave:
            engines[index] = engine
    slowest = min(warm.values(), default=0)
    count = max(WORKLOAD_PAIRS[0], min(WORKLOAD_PAIRS[1], int(slowest * ROUND_SECONDS)))
    # a round of a few batches would charge a 2-stream engine for the one it runs alone at the end
    repeats = max(1, round(slowest * ROUND_SECONDS / count))
    if interleave:
        for _ in range(ROUNDS):
            for index, engine in engines.items():
                rates[index].append(timed(engine, count, repeats))
    else:
        for index in warm:
            engine = load(index)
            if engine is not None:
                rates[index] = [timed(engine, count, repeats) for _ in range(ROUNDS)]
            del engine
    for index, (trial, _) in enumerate(candidates):
        if rates[index]:
            trial.pairs_per_s = round(statistics.median(rates[index]), 2)
        elif trial.status == "measured":
            trial.status, trial.reason = "failed", trial.reason or "could not be timed"
    shape = "interleaved" if interleave else "one after another"
    return (f"1 query x {count} stdlib passages of 60-300 tokens ({repeats} times a round, or as often as gives "
            f"each stream {MIN_BATCHES_PER_STREAM} batches), median of {ROUNDS} rounds ({shape}), at each engine's "
            f"batch budget, as many batches at once as it has streams")


def _size(directory: Path, manifest: Manifest) -> int:
    return sum((directory / name).stat().st_size for name in manifest.files if (directory / name).is_file())


def _choose(measured: list[Trial]) -> tuple[Trial, str]:
    fastest = max(measured, key=lambda trial: trial.pairs_per_s or 0.0)
    exact = [trial for trial in measured if variants.BY_NAME[trial.variant].precision == EXACT]
    best_exact = max(exact, key=lambda trial: trial.pairs_per_s or 0.0) if exact else None
    if best_exact is None:
        return fastest, f"fastest that passed its gate ({fastest.pairs_per_s:.1f} pairs/s); no exact variant ran"
    if fastest is best_exact:
        return fastest, (f"exact and fastest here ({fastest.pairs_per_s:.1f} pairs/s)")
    gain = (fastest.pairs_per_s or 0.0) / (best_exact.pairs_per_s or 1.0)
    if gain < LOSSY_MARGIN:
        return best_exact, (f"exact: the fastest lossy variant ({fastest.label}) measured only "
                            f"{gain:.2f}x {best_exact.label}, under the "
                            f"{LOSSY_MARGIN:.2f}x a lossy variant must gain")
    return fastest, (f"fastest that passed its gate: {fastest.pairs_per_s:.1f} pairs/s, {gain:.2f}x "
                     f"{best_exact.label} ({best_exact.pairs_per_s:.1f} pairs/s)")


__all__ = ["Decision", "LOSSY_MARGIN", "Trial", "decide", "decision_path", "engine_label"]
