"""The attempts the engine benchmark measures, and how each becomes a scoring callable.

Engine attempts are scored through a `BlockingScorer` over the attempt's engine (validation,
tokenization, the micro-batcher at the attempt's token budget), the path every request takes. "service" attempts go through the real thing: an `xscore
serve` process on a free port with the exported variant, called by one gRPC client.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import re
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.engine.evaluation import Scorer
from xscore.service.models.engines import EngineOptions
from xscore.service.models.export import ExportResult
from xscore.service.models.fidelity import Gate
from xscore.service.models.model import LoadedModel
from xscore.service.models.variants import BY_NAME, Variant, build_ort_dynamic_int8
from xscore.service.serving.batcher import BatcherConfig
from xscore.service.serving.blocking import BlockingScorer

CLOSERS: list = []  # what `close_all` stops: every BlockingScorer an attempt started


def close_all() -> None:
    while CLOSERS:
        CLOSERS.pop()()


# onnxruntime's dynamic int8, kept beside NNCF's int8 as the comparison it replaced
ORT_INT8 = "int8-ortdyn"
AUTO = "auto"  # the service attempt that serves whatever `--variant auto` chose here


def bench_row(name: str) -> Variant:
    """The row a benchmark variant is built from. Lossy rows are built without their ranking bar
    under their own cache name: a variant this CPU's gate refuses is still measured and reported
    (its gate column says so), and `auto` never finds such a build under the served name."""
    if name == "fp32":
        return BY_NAME["fp32"]
    base = BY_NAME["int8"].with_build(ORT_INT8, build_ort_dynamic_int8) if name == ORT_INT8 else BY_NAME[name]
    return dataclasses.replace(base, name=f"{name}-bench", gate=Gate())


def gate_row(name: str) -> Variant:
    """The row whose gate a benchmark variant is judged by (the comparison int8 by int8's)."""
    return BY_NAME["int8" if name == ORT_INT8 else name]


@dataclass(frozen=True, slots=True)
class Attempt:
    backend: str  # "torch" | "onnxruntime" | "openvino" | "service" (OpenVINO behind gRPC)
    variant: str  # export variant (for torch: "fp32")
    budget: int | None  # padded tokens per batch; None: batches of 32 pairs (predict)
    hint: str = "LATENCY"
    streams: int = 1
    threads: int = 2

    @property
    def label(self) -> str:
        if self.backend == "torch":
            return f"torch fp32 CrossEncoder.predict {self.threads}t"
        if self.backend == "service" and self.variant == AUTO:
            return f"service gRPC 1 client, --variant auto {self.threads}t"
        shape = f"{self.hint.lower()} {self.streams}x{self.threads // self.streams}t" \
            if self.backend in ("openvino", "service") else f"{self.threads}t"
        if self.backend == "service":
            return f"service gRPC 1 client, openvino {self.variant} budget {self.budget} {shape}"
        return f"{self.backend} {self.variant} budget {self.budget} {shape}"

    @property
    def fidelity_key(self) -> tuple[str, str, str]:
        """Attempts differing only in batching share their fidelity figures (static scales)."""
        return self.backend, self.variant, "dynamic" if self.variant == ORT_INT8 else ""


ATTEMPTS: list[Attempt] = [
    # predict's 2 OpenMP threads degrade when other processes share the 2 cores; 1 thread shows
    # how much of a ratio measured on a busy machine is that degradation
    Attempt("torch", "fp32", None, threads=1),
    Attempt("onnxruntime", "fp32", 4096),
    Attempt("onnxruntime", ORT_INT8, 4096),
    Attempt("onnxruntime", "int8", 4096),  # the NNCF QDQ file, run by onnxruntime
    Attempt("openvino", "fp32", 2048),
    Attempt("openvino", "fp32", 2048, hint="THROUGHPUT", streams=2),
    Attempt("openvino", "bf16", 2048),
    Attempt("openvino", "bf16", 4096),
    Attempt("openvino", "int8", 1024),
    Attempt("openvino", "int8", 2048),
    Attempt("openvino", "int8", 4096),
    Attempt("openvino", "int8", 2048, hint="THROUGHPUT", streams=2),
    Attempt("openvino", "int8w", 2048),
    # the target is measured here: through `xscore serve`, one gRPC client
    Attempt("service", "fp32", 2048),
    Attempt("service", "fp32", 2048, hint="THROUGHPUT", streams=2),
    Attempt("service", "bf16", 2048),
    Attempt("service", "int8", 2048),
    Attempt("service", "int8", 2048, hint="THROUGHPUT", streams=2),
    Attempt("service", "int8w", 2048),
    Attempt("service", AUTO, None),  # what `xscore serve` does by default: 2 streams on 2 cores
]


def variants_needed(attempts: Sequence[Attempt]) -> list[Variant]:
    """The rows to export for these attempts (the auto attempt exports through `decide`)."""
    names = sorted({attempt.variant for attempt in attempts if attempt.backend != "torch" and attempt.variant != AUTO})
    return [bench_row(name) for name in names]


def engine_scorer(attempt: Attempt, exported: ExportResult) -> Scorer:
    from xscore.service.models.engines import create_engine

    options = EngineOptions(threads=attempt.threads)
    if attempt.backend == "openvino":
        if (attempt.hint == "THROUGHPUT") != (attempt.streams > 1):
            raise ValueError(f"{attempt.label}: OpenVINO runs THROUGHPUT exactly when streams > 1")
        options = EngineOptions(threads=attempt.threads, streams=attempt.streams, max_batch_tokens=attempt.budget)
    # through create_engine, as the service does: the facts a build recorded (int8w's group size) apply
    engine = create_engine(exported.path, exported.manifest, engine=attempt.backend, device="cpu", options=options)
    if engine.name != attempt.backend:
        raise ValueError(f"{attempt.label}: {attempt.backend} cannot load {exported.path}; "
                         f"{engine.name} would serve it")
    model = LoadedModel.load(attempt.label, exported.path, engine)
    scorer = BlockingScorer(model, batching=BatcherConfig(max_batch_tokens=attempt.budget))
    # closed by the benchmark when it is done: at interpreter exit its loop can no longer be
    # handed work, so an atexit hook would fail
    CLOSERS.append(scorer.close)

    def score(query: str, candidates: Sequence[str]) -> np.ndarray:
        return np.asarray(scorer.score_pairs([query], list(candidates), raw=True).scores, dtype=np.float32)

    return score


def service_scorer(attempt: Attempt, exported: ExportResult | None, model_dir: Path, cache: Path) -> Scorer:
    """One gRPC client of an `xscore serve` process: the exported variant on OpenVINO, or for the
    auto attempt the model itself under `--variant auto` (its decision read from `cache`)."""
    from xscore.client import ScorerClient

    # no score cache: the rounds repeat one workload, and each must reach the engine
    command = [sys.executable, "-m", "xscore.service.cli", "--log-level", "WARNING", "serve", "--grpc-port", "0",
               "--http-port", "0", "--device", "cpu", "--threads", str(attempt.threads), "--score-cache-mb", "0"]
    if exported is None:
        command += ["--model", f"bench={model_dir}", "--variant", AUTO]
    else:
        command += ["--model", f"bench={exported.path}", "--engine", "openvino", "--max-batch-tokens",
                    str(attempt.budget), "--streams", str(attempt.streams)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "XSCORE_CACHE": str(cache)})
    atexit.register(_stop, process)
    match = re.search(r"grpc=(\S+)", process.stdout.readline())
    if not match:
        process.kill()
        raise SystemExit(f"xscore serve did not start for {attempt.label}")
    client = ScorerClient(match.group(1), timeout=600)

    def score(query: str, candidates: Sequence[str]) -> np.ndarray:
        response = client.score(query, list(candidates), model="bench", raw_scores=True)
        scores = np.empty(len(candidates), dtype=np.float32)
        for entry in response.scores:
            scores[entry.index] = entry.score
        return scores

    return score


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(60)


def baseline_scorer(model_dir: Path, threads: int) -> Scorer:
    """sentence-transformers' own predict: torch fp32, batch 32, already length-sorted."""
    import torch
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(model_dir), device="cpu", activation_fn=torch.nn.Identity())

    def score(query: str, candidates: Sequence[str]) -> np.ndarray:
        torch.set_num_threads(threads)  # several torch attempts share the process
        return np.asarray(model.predict([(query, c) for c in candidates], batch_size=32,
                                        show_progress_bar=False), dtype=np.float32)

    return score
