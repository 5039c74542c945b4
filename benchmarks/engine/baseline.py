"""`python -m benchmarks.engine.baseline`: CrossEncoder.predict timed in a process of its own.

In the engine benchmark's process, predict shares the machine with every other engine's thread
pools (idle, but there); here nothing else is loaded, so this is the clean figure. It prints one
JSON object: the per-round pairs/s on the benchmark's workload.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from xscore.service.models.corpus import rerank_workload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.engine.baseline", description=__doc__)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--passages", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import torch
    from sentence_transformers import CrossEncoder

    torch.set_num_threads(args.threads)
    model = CrossEncoder(str(args.model), device="cpu", activation_fn=torch.nn.Identity())
    query, passages = rerank_workload(args.passages)
    pairs = [(query, passage) for passage in passages]
    model.predict(pairs[:32], batch_size=32, show_progress_bar=False)  # warm-up: first shapes
    rates = []
    for _ in range(args.rounds):
        started = time.perf_counter()
        model.predict(pairs, batch_size=32, show_progress_bar=False)
        rates.append(len(pairs) / (time.perf_counter() - started))
    print(json.dumps({"pairs_per_s": rates, "median": statistics.median(rates), "threads": args.threads,
                      "torch": torch.__version__}))
    return 0


def clean_baseline(model: Path, passages: int, rounds: int, threads: int) -> dict:
    """Run this module in a fresh interpreter and return its figures (or why it could not run)."""
    done = subprocess.run([sys.executable, "-m", "benchmarks.engine.baseline", "--model", str(model),
                           "--passages", str(passages), "--rounds", str(rounds), "--threads", str(threads)],
                          capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    raise SystemExit(main())
