"""A model's int8 plan: the matmuls static int8 leaves in float, carried by the model and applied
by the export (the default model's is found by NNCF's accuracy control in its recipe)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from xscore.api.errors import XscoreError
from xscore.service.models.calibration import calibration_pairs
from xscore.service.models.int8_plan import INT8_PLAN_FILE, Int8Plan, load_int8_plan, quantized_matmuls, save_int8_plan


def _needs_nncf() -> None:
    from xscore.service.models.engines.openvino import nncf_available

    if not nncf_available():
        pytest.skip("static int8 is built by nncf")


def _fp32_copy(tiny_export, destination: Path) -> Path:
    """The tiny model's fp32 export, copied so a plan can be put beside it."""
    return Path(shutil.copytree(tiny_export.path, destination))


def test_a_plan_round_trips_and_a_model_without_one_has_none(tmp_path):
    assert load_int8_plan(tmp_path) is None
    plan = Int8Plan(("/a/MatMul", "/b/MatMul"), "chosen by hand", {"left_in_float": 2})
    save_int8_plan(plan, tmp_path / INT8_PLAN_FILE)
    assert load_int8_plan(tmp_path) == plan


@pytest.mark.parametrize("text", ["not json", '{"how": "no layers"}', '{"float_layers": "/a/MatMul"}',
                                  '{"float_layers": [""]}'])
def test_a_malformed_plan_is_a_model_error_not_a_whole_model_int8(tmp_path, text):
    (tmp_path / INT8_PLAN_FILE).write_text(text)
    with pytest.raises(XscoreError, match="cannot be read as an int8 plan"):
        load_int8_plan(tmp_path)


def test_static_int8_leaves_the_planned_matmuls_in_float_and_says_which(tiny_export, tmp_path):
    import onnx

    from xscore.service.models.variants import build_nncf_int8

    _needs_nncf()
    fp32 = _fp32_copy(tiny_export, tmp_path / "fp32")
    (tmp_path / "whole").mkdir()
    facts = build_nncf_int8(fp32 / "model.onnx", tmp_path / "whole" / "model.onnx", calibration_pairs(24))
    whole = quantized_matmuls(onnx.load(str(tmp_path / "whole" / "model.onnx")))
    assert len(whole) >= 2 and "float_layers" not in facts
    kept = sorted(whole)[:2]
    save_int8_plan(Int8Plan(tuple(kept), "test"), fp32 / INT8_PLAN_FILE)
    (tmp_path / "planned").mkdir()
    facts = build_nncf_int8(fp32 / "model.onnx", tmp_path / "planned" / "model.onnx", calibration_pairs(24))
    planned = quantized_matmuls(onnx.load(str(tmp_path / "planned" / "model.onnx")))
    assert planned == whole - set(kept)
    assert facts["float_layers"] == ", ".join(kept)


def test_a_plan_naming_a_layer_the_graph_lacks_refuses_the_build(tiny_export, tmp_path):
    from xscore.service.models.variants import build_nncf_int8

    _needs_nncf()
    fp32 = _fp32_copy(tiny_export, tmp_path / "fp32")
    save_int8_plan(Int8Plan(("/no/such/MatMul",), "test"), fp32 / INT8_PLAN_FILE)
    (tmp_path / "out").mkdir()
    with pytest.raises(XscoreError, match=r"int8 plan \(int8_plan.json\) names layers its graph does not have: "
                                          r"/no/such/MatMul"):
        build_nncf_int8(fp32 / "model.onnx", tmp_path / "out" / "model.onnx", calibration_pairs(24))


def test_the_export_carries_a_models_plan_to_its_int8_build(tiny_model_dir, tmp_path):
    """A plan in the model's directory reaches the builder, and a changed plan is a different model
    to the cache (its directory hash), so a stale int8 is never reused."""
    import dataclasses

    from xscore.service.models.export import export
    from xscore.service.models.fidelity import Gate
    from xscore.service.models.variants import BY_NAME

    _needs_nncf()
    model = Path(shutil.copytree(tiny_model_dir, tmp_path / "model"))
    save_int8_plan(Int8Plan(("/no/such/MatMul",), "test"), model / INT8_PLAN_FILE)
    row = dataclasses.replace(BY_NAME["int8"], name="int8-planned", gate=Gate(min_spearman=0.0))
    with pytest.raises(XscoreError, match="names layers its graph does not have"):
        export(str(model), [row], root=tmp_path / "cache", progress=False)


def test_the_default_model_carries_an_artifacts_plan_to_its_model_directory(tmp_path):
    """A plan beside the default model's weights (named by the nodes of its shipped graph) is copied
    into the materialized model, and a changed plan makes it again: the export sees the new one."""
    import onnx

    from xscore.service.models.defaultmodel import ARTIFACT_DIR, materialize_default
    from xscore.service.models.defaultmodel.graph import GRAPH_FILE

    artifact = Path(shutil.copytree(ARTIFACT_DIR, tmp_path / "artifact"))
    graph = onnx.load(str(artifact / GRAPH_FILE), load_external_data=False)
    matmuls = sorted(node.name for node in graph.graph.node if node.op_type == "MatMul")
    assert len(matmuls) >= 2
    first = Int8Plan((matmuls[0],), "test")
    save_int8_plan(first, artifact / INT8_PLAN_FILE)
    model = materialize_default(tmp_path / "model", artifact_dir=artifact)
    assert load_int8_plan(model) == first
    second = Int8Plan((matmuls[1],), "test")
    save_int8_plan(second, artifact / INT8_PLAN_FILE)
    assert load_int8_plan(materialize_default(model, artifact_dir=artifact)) == second


def test_the_plan_search_counts_only_the_queries_int8_ranks_worse():
    from xscore.service.models.ranking import unfallen_share

    reference = [0.5, 1.0, 0.5]
    assert unfallen_share(reference, reference) == 1.0
    # the third query's gain of 0.25 does not pay for the first one's loss of 0.2
    assert unfallen_share(reference, [0.3, 1.0, 0.75]) == pytest.approx(1 - 0.2 / 2.0)
    assert unfallen_share(reference, [0.0, 0.0, 0.0]) == 0.0
    assert unfallen_share([0.0, 0.0], [0.5, 0.0]) == 1.0
    with pytest.raises(ValueError):
        unfallen_share(reference, [1.0])


def test_the_plan_search_reverts_a_role_in_every_layer_at_once():
    from xscore.recipes.default_model.int8_plan import role_groups

    groups = role_groups(["/bert/encoder/layer.1/output/dense/MatMul", "/classifier/Gemm",
                          "/bert/encoder/layer.0/output/dense/MatMul", "/bert/encoder/layer.0/intermediate/dense/MatMul"])
    assert groups == {
        "/bert/encoder/layer.*/intermediate/dense/MatMul": ("/bert/encoder/layer.0/intermediate/dense/MatMul",),
        "/bert/encoder/layer.*/output/dense/MatMul": ("/bert/encoder/layer.0/output/dense/MatMul",
                                                      "/bert/encoder/layer.1/output/dense/MatMul"),
        "/classifier/Gemm": ("/classifier/Gemm",)}


def _stdlib_tuning_set(count: int) -> dict[str, list]:
    """Labelled queries from the calibration part of the stdlib corpus: each docstring's summary
    line, its own docstring the one relevant candidate."""
    from xscore.recipes.default_model.data import EvalQuery
    from xscore.service.models.ranking import ranking_set

    return {"stdlib": [EvalQuery(query.text, query.candidates, [1] + [0] * (len(query.candidates) - 1))
                       for query in ranking_set(count, 12, part="calibration")]}


def test_the_plan_search_leaves_nothing_in_float_when_whole_int8_keeps_the_bar(tiny_export, tmp_path):
    from xscore.recipes.default_model.int8_plan import find_int8_plan

    _needs_nncf()
    fp32 = _fp32_copy(tiny_export, tmp_path / "fp32")
    plan = find_int8_plan(fp32 / "model.onnx", _stdlib_tuning_set(4), calibration_pairs(24), max_drop=1.0)
    assert plan.float_layers == () and plan.figures["left_in_float"] == 0
    assert "each_role_in_float_on_moved_queries" not in plan.figures  # no role was built
    assert not (fp32 / INT8_PLAN_FILE).exists()


def test_the_plan_search_gives_up_rather_than_leave_most_of_the_model_in_float(tiny_export, tmp_path):
    import onnx

    from xscore.recipes.default_model.int8_plan import _build_int8, find_int8_plan, role_groups

    _needs_nncf()
    fp32 = _fp32_copy(tiny_export, tmp_path / "fp32")
    sets = _stdlib_tuning_set(6)
    # a bar above any int8's reach: every role is tried alone, and no plan comes of it
    plan = find_int8_plan(fp32 / "model.onnx", sets, calibration_pairs(24), max_drop=-1.0)
    assert plan.float_layers == () and plan.figures["left_in_float"] == 0
    assert not (fp32 / INT8_PLAN_FILE).exists()
    whole = quantized_matmuls(onnx.load(str(_build_int8(fp32 / "model.onnx", (), calibration_pairs(24),
                                                        tmp_path / "whole" / "model.onnx"))))
    assert plan.figures["quantized_matmuls"] == len(whole)
    if plan.figures["queries_whole_int8_moves"]:
        assert plan.figures["reached"] is False
        assert set(plan.figures["each_role_in_float_on_moved_queries"]) == set(role_groups(whole))
        tried = sum(len(role_groups(whole)[step["role"]]) for step in plan.figures["steps"])
        assert tried <= len(whole) / 2
