"""`python -m benchmarks.family_matrix`: every architecture family through export and serving.

For each small random-weight family model (`benchmarks/families.py`) it exports every variant
this machine can build, and records the parity figures against PyTorch, the engine that serves
the variant, or why the variant was refused; then which variant `--variant auto` serves. Writes
benchmarks/results/families.{json,md}. Long (int8 calibration per family); not run by the tests.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

from tqdm.auto import tqdm

from benchmarks.families import causal_reranker, families
from xscore.api.errors import XscoreError
from xscore.service.models import variants
from xscore.service.models.export import export
from xscore.service.models.hardware import cpu_flags
from xscore.service.models.registry import ModelSpec, load_model

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_class() -> str:
    flags = cpu_flags()
    found = [flag for flag in ("avx512_vnni", "avx512_bf16", "amx_bf16") if flag in flags]
    return "AVX-512 " + "+".join(found) if "avx512f" in flags else "AVX2 only"


def measure_family(family, root: Path) -> dict:
    model_dir = family.build(root / "models" / family.name)
    row: dict = {"family": family.name, "real_models": list(family.real_models), "variants": {}}
    for name in variants.NAMES:
        reason = variants.BY_NAME[name].unavailable()
        if reason:
            row["variants"][name] = {"status": "not here", "reason": reason}
            continue
        started = time.perf_counter()
        try:
            result = export(str(model_dir), [name], progress=False)[name]
        except XscoreError as exc:
            row["variants"][name] = {"status": "refused", "reason": exc.message}
            continue
        row["variants"][name] = {"status": "served", "engine": result.manifest.extra.get("fidelity_engine"),
                                 "parity": result.manifest.parity,
                                 "seconds": round(time.perf_counter() - started, 1)}
    auto = load_model(ModelSpec(family.name, str(model_dir)), device="cpu", progress=False)
    row["auto"] = {"variant": auto.manifest.variant, "engine": auto.engine.name}
    return row


def render(rows: list[dict], machine: str) -> str:
    lines = ["# Family matrix", "",
             f"Small random-weight models (2 layers, hidden 64) of each family, built offline; {machine}.",
             "Parity: max |diff| of logits and Spearman against PyTorch on the 53 probe pairs, each pair scored "
             "alone in PyTorch and in mixed-length batches by the serving engine.", "",
             "| family | variant | result | engine | max abs diff | Spearman | auto serves |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        auto = f"{row['auto']['variant']} ({row['auto']['engine']})"
        for name, figures in row["variants"].items():
            if figures["status"] == "served":
                parity = figures["parity"]
                lines.append(f"| {row['family']} | {name} | served | {figures['engine']} | "
                             f"{parity['max_abs_diff']:.2g} | {parity['spearman']:.4f} | {auto} |")
            else:
                reason = figures["reason"].replace("|", "/")[:160]
                lines.append(f"| {row['family']} | {name} | {figures['status']}: {reason} | - | - | - | {auto} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.family_matrix", description=__doc__)
    parser.add_argument("--only", action="append", help="family name (repeatable); default: all")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    machine = f"{platform.machine()}, {cpu_class()}"
    causal = [causal_reranker(name) for name in ("qwen3-reranker", "mxbai-rerank-v2", "bge-reranker-v2-gemma")]
    chosen = [family for family in (*families(), *causal) if not args.only or family.name in args.only]
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["XSCORE_CACHE"] = str(Path(scratch) / "cache")  # exports and `auto` share it
        for family in tqdm(chosen, desc="families", unit="family"):
            rows.append(measure_family(family, Path(scratch)))
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "families.json").write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
    (args.output / "families.md").write_text(render(rows, machine))
    print(render(rows, machine))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
