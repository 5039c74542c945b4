"""The engine benchmark runs on any x86 CPU class: a smoke run on the tiny model, fp32 only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from xscore.service.models.hardware import cpu_class

ROOT = Path(__file__).resolve().parents[1]


def test_a_short_run_reports_both_baselines_the_machine_and_the_gate(tiny_model_dir, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.engine", "--model", str(tiny_model_dir), "--cache", str(tmp_path / "cache"),
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
