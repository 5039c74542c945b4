"""The peer comparison's baselines: each one measured in a process of its own, or reported as
unavailable with the reason it could not start, never dropped."""

from __future__ import annotations

import argparse
import importlib.util
import os

import pytest

from servers import RunningServer

from benchmarks import compare


def _args(tmp_path) -> argparse.Namespace:
    return argparse.Namespace(workload="rerank-10", seed=0, infinity_venv=None, output=tmp_path, timed_requests=2,
                              calibration_texts=16)


def test_predict_in_a_fresh_process_measures_pairs_per_second(tiny_model_dir, tmp_path):
    row = compare.predict_row(tiny_model_dir, _args(tmp_path), "torch")
    assert row["pairs_per_s"] > 0 and "unavailable" not in row
    assert row["system"] == "sentence-transformers CrossEncoder.predict (torch fp32)"


@pytest.mark.skipif(importlib.util.find_spec("optimum.intel") is not None,
                    reason="optimum-intel is installed here, so its int8 export would run")
def test_sentence_transformers_int8_export_without_optimum_intel_is_reported_with_the_reason(tiny_model_dir,
                                                                                           tmp_path):
    row = compare.predict_row(tiny_model_dir, _args(tmp_path), "openvino-int8")
    assert "pairs_per_s" not in row and "optimum" in row["unavailable"].lower()
    assert row["system"] == "sentence-transformers CrossEncoder.predict (openvino-int8)"


def test_a_missing_infinity_virtualenv_is_a_row_saying_how_to_make_one(tiny_model_dir, tmp_path):
    row = compare.infinity_row(tiny_model_dir, _args(tmp_path))
    assert "make_infinity_venv.sh" in row["unavailable"]


def test_the_report_shows_unavailable_rows_and_each_backends_ranking_agreement():
    result = {"machine": {"class": "x", "cpu": "cpu", "cores": 2}, "model": "m", "clients": 8,
              "workload": "rerank-100", "duration_s": 8, "warmup_s": 2, "took_s": 60.0,
              "rows": [{"system": "xscore serve", "protocol": "xscore-grpc", "pairs_per_s": 300.0},
                       {"system": "st openvino int8", "protocol": "in-process", "pairs_per_s": 150.0,
                        "spearman_vs_torch": 0.9712},
                       {"system": "infinity", "protocol": "infinity", "unavailable": "no virtualenv"}]}
    text = compare.markdown(result, None)
    assert "| st openvino int8 | in-process | 150.0 |" in text and "2.00x" in text
    assert "| infinity | infinity | unavailable: no virtualenv |" in text
    assert "st openvino int8: 0.9712" in text


def test_the_tail_sweep_offers_shares_of_the_measured_saturation_and_reports_each(tiny_model, tmp_path):
    running = RunningServer({"tiny": tiny_model})
    try:
        args = argparse.Namespace(**vars(_args(tmp_path)), clients=4, warmup=0.0, tail_s=1.5, tail_shares=[0.3, 0.6])
        figures = compare.tail(running.address, args, os.getpid(), model="tiny")
    finally:
        running.stop()
    capacity = figures["saturation"]["requests_per_s"]
    assert capacity > 0 and [row["share"] for row in figures["loads"]] == [0.3, 0.6]
    for row in figures["loads"]:
        assert row["level"] == pytest.approx(row["share"] * capacity)
        assert row["answered"] == row["requests"] > 0 and not row["errors"]
        assert set(row["ideal_queue"]) == {"first come first served", "processor sharing"}
    assert figures["loads"][1]["ideal_queue"]["first come first served"] > figures["loads"][0]["ideal_queue"][
        "first come first served"] > 1.0
    assert (tmp_path / "latency_vs_offered_load.png").stat().st_size > 0
    text = "\n".join(compare.tail_markdown(figures))
    assert "| 30% |" in text and "| 60% |" in text and "![latency_vs_offered_load.png]" in text


def test_a_second_run_of_the_day_writes_beside_the_first_report_not_over_it(tmp_path):
    first = tmp_path / "compare-x-20261202"
    assert compare.unused_report_dir(first) == first
    first.mkdir()
    assert compare.unused_report_dir(first) == first  # a folder without a report is free
    (first / "results.json").write_text("{}")
    second = compare.unused_report_dir(first)
    assert second == tmp_path / "compare-x-20261202-2"
    second.mkdir()
    (second / "results.json").write_text("{}")
    assert compare.unused_report_dir(first) == tmp_path / "compare-x-20261202-3"


def test_a_peer_virtualenv_made_by_its_script_is_found_without_a_flag(tmp_path):
    assert compare.peer_venv("infinity", root=tmp_path) is None
    python = tmp_path / ".peers" / "infinity" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("")
    assert compare.peer_venv("infinity", root=tmp_path) == tmp_path / ".peers" / "infinity"
    assert compare.peer_venv("st-openvino", root=tmp_path) is None
