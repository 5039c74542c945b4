"""The engine benchmark runs on any x86 CPU class: a smoke run on the tiny model, fp32 only."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from xscore.service.models.hardware import cpu_class
from xscore.service.models.ranking import OWN_RANKING_FILE, Query, ranking_set, save_ranking_set

ROOT = Path(__file__).resolve().parents[1]


def test_a_short_run_reports_both_baselines_the_machine_and_the_gate(tiny_model_dir, tmp_path):
    # a model that carries its own labelled set (each stdlib query's own docstring is its answer)
    model = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    save_ranking_set({"docs": [(Query(q.text, q.candidates, [1.0] + [0.0] * (len(q.candidates) - 1)), None)
                               for q in ranking_set(3, 6)]}, model / OWN_RANKING_FILE)
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.engine", "--model", str(model), "--cache", str(tmp_path / "cache"),
         "--passages", "8", "--rounds", "1", "--threads", "1", "--output", str(tmp_path), "--only", "fp32 budget"],
        capture_output=True, text=True, timeout=600, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / f"engine-{cpu_class()}.json").read_text())
    env = results["environment"]
    assert env["machine"]["class"] == cpu_class() and env["machine"]["flags"]
    assert env["baselines"]["clean_process"]["median"] > 0 and env["baselines"]["in_process"] > 0
    assert env["baselines"]["used"] == max(env["baselines"]["clean_process"]["median"],
                                           env["baselines"]["in_process"])
    labels = [row["label"] for row in results["attempts"]]
    assert labels[0].startswith("torch fp32") and any(label.startswith("onnxruntime fp32") for label in labels)
    assert all(row["gate"] in ("reference", "passes") for row in results["attempts"])
    report = (tmp_path / f"engine-{cpu_class()}.md").read_text()
    assert f"class **{cpu_class()}**" in report and "clean process" in report
    # the own set is scored by every attempt but the reference, and reported beside the gate
    assert env["own_sets"] == {"docs": "3 queries x 6 candidates"}
    judged = [row for row in results["attempts"] if row["backend"] != "torch"]
    assert judged and all(set(row["fidelity_own"]) == {"docs"} for row in judged)
    assert all(row["fidelity_own"]["docs"]["ndcg10_ratio"] > 0.99 for row in judged)  # fp32 ranks as torch
    assert "| docs NDCG@10 |" in report
