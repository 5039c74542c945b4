"""`--variant auto`: every candidate built and gated, the passing ones timed here, the fastest
served (a lossy one only with a real gain), and the decision remembered per machine class."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys

import pytest

from xscore.service.models import cache
from xscore.service.models.engines import EngineOptions
from xscore.service.models.export import export_each
from xscore.service.models.hardware import cpu_class, physical_cores
from xscore.service.models.registry import ModelSpec, load_model
from xscore.service.models.selection import LOSSY_MARGIN, Trial, _choose, decide, decision_path
from xscore.service.models.sources import resolve_source
from xscore.service.models.variants import BY_NAME


@pytest.fixture(scope="module")
def minilm_decision(minilm_model_dir, cache_dir):
    return decide(str(minilm_model_dir), name="minilm", device="cpu", progress=False, root=cache_dir)


def test_the_int8_gate_judges_the_ranking_set_and_a_refusal_carries_its_figures(minilm_model_dir, cache_dir):
    results, refusals = export_each(str(minilm_model_dir), ["int8"], root=cache_dir, progress=False)
    gate = BY_NAME["int8"].gate
    if "int8" in results:
        ranking = results["int8"].manifest.ranking
        assert ranking["queries"] == 8 and ranking["spearman_mean"] >= gate.min_rank_spearman
        assert ranking["ndcg10_ratio"] >= gate.min_ndcg10_ratio
    else:
        refusal = refusals["int8"]
        assert "refused" in refusal.message and "ranking set" in refusal.message
        ranking = refusal.details["ranking"]
        assert ranking["spearman_mean"] < gate.min_rank_spearman or ranking["ndcg10_ratio"] < gate.min_ndcg10_ratio


def test_auto_times_every_passing_candidate_and_serves_the_fastest(minilm_decision):
    decision = minilm_decision
    measured = [t for t in decision.trials if t.status == "measured"]
    pairs = {(t.variant, t.engine) for t in measured}
    assert ("fp32", "openvino") in pairs and ("fp32", "onnxruntime") in pairs  # both engines run fp32 here
    assert all(t.pairs_per_s > 0 and t.directory for t in measured)
    assert {t.variant for t in decision.trials} >= {"int8", "int8w", "fp32"} | (
        {"bf16"} if BY_NAME["bf16"].unavailable() is None else set())
    refused = [t for t in decision.trials if t.status == "refused"]
    assert all(t.reason for t in refused)
    chosen = next(t for t in measured if (t.variant, t.engine) == (decision.variant, decision.engine))
    best_exact = max(t.pairs_per_s for t in measured if t.variant == "fp32")
    if decision.variant == "fp32":
        assert chosen.pairs_per_s == best_exact
    else:  # a lossy variant serves only when it is the fastest and clearly faster than exact
        assert chosen.pairs_per_s == max(t.pairs_per_s for t in measured)
        assert chosen.pairs_per_s >= LOSSY_MARGIN * best_exact
    assert decision.machine["class"] == cpu_class() and "flags" in decision.machine
    assert decision.reason and "pairs/s" in decision.reason


def test_the_decision_is_remembered_per_machine_class_and_options(minilm_decision, minilm_model_dir, cache_dir):
    again = decide(str(minilm_model_dir), device="cpu", progress=False, root=cache_dir)
    assert again.measured_at == minilm_decision.measured_at and again.trials == minilm_decision.trials
    one_thread = decide(str(minilm_model_dir), device="cpu", options=EngineOptions(threads=1), progress=False,
                        root=cache_dir)
    assert one_thread.options["threads"] == 1 and one_thread.measured_at >= minilm_decision.measured_at
    remembered = {path.name for path in cache_dir.glob("*/auto-*.json")}
    for options in (EngineOptions(), EngineOptions(threads=1)):
        model_dir = cache.model_dir(cache_dir, resolve_source(str(minilm_model_dir)))
        assert decision_path(cache_dir, model_dir, "cpu", "auto", options).name in remembered


def test_load_model_serves_the_decision_and_says_why(minilm_decision, minilm_model_dir, caplog):
    with caplog.at_level(logging.INFO, logger="xscore"):
        model = load_model(ModelSpec("m", str(minilm_model_dir)), device="cpu", progress=False)
    assert (model.manifest.variant, model.engine.name) == (minilm_decision.variant, minilm_decision.engine)
    assert f"variant auto for m: serving {minilm_decision.label}: {minilm_decision.reason}" in caplog.text
    # a server runs 2 OpenVINO streams on 2 cores or more unless --streams says otherwise, and auto timed it so
    if model.engine.name == "openvino":
        assert model.engine.parallelism == minilm_decision.streams == min(2, physical_cores())


def test_an_engine_asked_for_limits_the_candidates(minilm_decision, minilm_model_dir, cache_dir):
    decision = decide(str(minilm_model_dir), device="cpu", engine="onnxruntime", progress=False, root=cache_dir)
    assert decision.engine == "onnxruntime"
    assert all(t.engine in (None, "onnxruntime") for t in decision.trials)


def test_models_list_shows_the_figures_and_what_auto_serves(minilm_decision, cache_dir):
    done = subprocess.run([sys.executable, "-m", "xscore.service.cli", "models", "list", "--cache", str(cache_dir)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"serves {minilm_decision.label}: {minilm_decision.reason}" in done.stdout
    assert f"({cpu_class()}, " in done.stdout and "pairs/s" in done.stdout
    assert f"   * {minilm_decision.label:32}" in done.stdout
    listed = json.loads(subprocess.run(
        [sys.executable, "-m", "xscore.service.cli", "models", "list", "--cache", str(cache_dir), "--json"],
        capture_output=True, text=True, timeout=120).stdout)
    minilm = next(model for model in listed if model["auto"] and model["source"].endswith("minilm"))
    assert any(entry["variant"] == "fp32" and entry["parity"]["max_abs_diff"] <= 1e-4 for entry in minilm["variants"])
    int8w = [entry for entry in minilm["variants"] if entry["variant"] == "int8w"]
    for entry in int8w:  # the run-time group size its build chose on this CPU
        assert entry["quantization_group_size"] in {"128", "64", "32"}
        assert f"groups of {entry['quantization_group_size']}  {entry['path']}" in done.stdout


def _trial(variant: str, engine: str, rate: float) -> Trial:
    return Trial(variant, engine, "measured", pairs_per_s=rate, directory="/x")


def test_a_lossy_variant_must_beat_exact_by_the_margin():
    exact = _trial("fp32", "openvino", 100.0)
    slower = _trial("int8", "openvino", 100.0 * LOSSY_MARGIN - 1)
    chosen, reason = _choose([exact, slower, _trial("fp32", "onnxruntime", 90)])
    assert chosen is exact and "under the" in reason
    fast = _trial("int8", "openvino", 250.0)
    chosen, reason = _choose([exact, fast])
    assert chosen is fast and "2.50x fp32 on openvino" in reason
    faster_exact = _trial("fp32", "onnxruntime", 120.0)
    assert _choose([exact, faster_exact, _trial("bf16", "openvino", 110.0)])[0] is faster_exact


def test_without_the_export_extra_auto_chooses_among_what_is_exported_here(minilm_exports, minilm_model_dir, tmp_path):
    fp32 = minilm_exports["fp32"].path
    shutil.copytree(fp32, tmp_path / fp32.parent.name / fp32.name)
    # an int8 gated on another CPU class: its figures do not hold here
    elsewhere = tmp_path / fp32.parent.name / "int8-elsewhere"
    shutil.copytree(minilm_exports["int8"].path, elsewhere)
    manifest = json.loads((elsewhere / "manifest.json").read_text())
    manifest["versions"]["cpu"] = "another-class"
    (elsewhere / "manifest.json").write_text(json.dumps(manifest))
    script = (
        "import sys, logging; sys.modules['torch'] = None; sys.modules['optimum'] = None\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "from pathlib import Path\n"
        "from xscore.service.models.selection import decide\n"
        f"d = decide({str(minilm_model_dir)!r}, name='m', device='cpu', progress=False, root=Path({str(tmp_path)!r}))\n"
        "print(d.variant, d.engine)\n"
        "print([t.reason for t in d.trials if t.variant == 'int8'][0])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "fp32"
    assert "variant int8 was gated on CPU class another-class, not this one" in done.stdout
    assert "variant auto for m: choosing among the exported variants only: exporting a model needs the export extra" \
        in done.stderr


def test_a_kept_figure_is_written_whole_or_not_at_all(tmp_path):
    path = tmp_path / "kept" / "figures.json"
    cache.write_json_atomically(path, {"b": 1, "a": [2.5]})
    assert json.loads(path.read_text()) == {"a": [2.5], "b": 1}

    with pytest.raises(TypeError):
        cache.write_json_atomically(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": [2.5], "b": 1}
    assert [entry.name for entry in path.parent.iterdir()] == ["figures.json"]


def test_a_fingerprint_names_the_facts_not_their_order():
    assert cache.fingerprint({"a": 1, "b": [1, 2]}) == cache.fingerprint({"b": [1, 2], "a": 1})
    assert cache.fingerprint({"a": 1}) != cache.fingerprint({"a": 2})
    assert len(cache.fingerprint({"a": 1}, length=16)) == 16
