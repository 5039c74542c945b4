"""Export: parity gates, cache reuse, atomic entries."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from scoring import score_pairs

from xscore.api.errors import XscoreError
from xscore.service.models import cache
from xscore.service.models.export import export
from xscore.service.models.manifest import MANIFEST_NAME, Manifest
from xscore.service.models.probes import probe_pairs
from xscore.service.models.variants import BY_NAME, build_fp16


def test_probe_set_covers_every_kind_of_input():
    pairs = probe_pairs()
    text = " ".join(q + " " + d for q, d in pairs)
    assert len(pairs) >= 50
    assert any("\u3040" <= ch <= "\u30ff" for ch in text)  # Japanese
    assert any("\u4e00" <= ch <= "\u9fff" for ch in text)  # CJK ideographs
    assert any(ord(ch) >= 0x1F300 for ch in text)  # emoji
    assert "def fib" in text and "SELECT" in text  # code
    assert max(len(q) + len(d) for q, d in pairs) > 5000  # over-long


def test_fp32_export_matches_torch_within_1e_4(minilm_exports):
    manifest = minilm_exports["fp32"].manifest
    assert manifest.parity["max_abs_diff"] <= 1e-4
    assert manifest.parity["pairs"] >= 50
    assert manifest.max_length == 512 and manifest.num_labels == 1 and manifest.activation == "sigmoid"


def test_int8_agreement_is_recorded_and_within_its_bar(minilm_exports):
    parity = minilm_exports["int8"].manifest.parity
    assert parity["spearman"] >= BY_NAME["int8"].gate.min_spearman
    assert parity["top10_agreement"] >= 0.8
    assert parity["max_abs_diff"] < 0.05


def test_scores_from_the_loaded_model_match_torch_on_the_probe_set(minilm_model, minilm_model_dir):
    import torch
    from transformers import AutoModelForSequenceClassification

    from xscore.service.models.tokenization import pad_batch

    queries, documents = zip(*probe_pairs())
    ours = score_pairs(minilm_model, queries, documents, raw=True).scores
    reference_model = AutoModelForSequenceClassification.from_pretrained(minilm_model_dir).eval()
    pairs = minilm_model.tokenizer.encode(queries, documents)
    with torch.inference_mode():
        reference = np.concatenate([
            reference_model(**{k: torch.from_numpy(getattr(pad_batch(pairs[i:i + 8], 0), k))
                               for k in ("input_ids", "attention_mask", "token_type_ids")}).logits[:, 0].numpy()
            for i in range(0, len(pairs), 8)
        ])
    assert np.max(np.abs(ours - reference)) <= 1e-4


def test_second_export_reuses_the_cache_entry(tiny_model_dir, tiny_export, cache_dir):
    again = export(str(tiny_model_dir), ["fp32"], root=cache_dir, progress=False)["fp32"]
    assert again.reused and again.path == tiny_export.path


def test_half_written_entry_is_rebuilt_not_reused(tiny_model_dir, tmp_path):
    first = export(str(tiny_model_dir), ["fp32"], root=tmp_path, progress=False)["fp32"]
    manifest = Manifest.read(first.path / MANIFEST_NAME)
    (first.path / manifest.model_file).unlink()  # as if the copy stopped half way
    assert cache.load_complete(first.path) is None
    rebuilt = export(str(tiny_model_dir), ["fp32"], root=tmp_path, progress=False)["fp32"]
    assert not rebuilt.reused and (rebuilt.path / manifest.model_file).is_file()


def test_refused_variant_leaves_no_entry_and_no_scratch(tiny_model_dir, tmp_path):
    # a real lossy build (fp16 weights) that claims to be fp32: the gate must refuse it
    lossy = BY_NAME["fp32"].with_build("lossy", build_fp16)
    with pytest.raises(XscoreError, match=r"variant lossy .* refused: max \|diff\|"):
        export(str(tiny_model_dir), ["fp32", lossy], root=tmp_path, progress=False)
    model_dirs = list(tmp_path.iterdir())
    assert len(model_dirs) == 1
    leftovers = sorted(p.name for p in model_dirs[0].iterdir())
    # the fp32 entry landed; of lossy only the record of its refusal, and no scratch dirs
    assert [name.split("-")[0] for name in leftovers] == ["fp32", "lossy"]
    assert leftovers[1].endswith(".refused.json")
    # asked again, it is refused from the record, without building (no torch work, same figures)
    with pytest.raises(XscoreError, match=r"variant lossy .* refused: .*recorded in .*refused.json") as caught:
        export(str(tiny_model_dir), [lossy], root=tmp_path, progress=False)
    assert caught.value.details["parity"]["max_abs_diff"] > 1e-4


def test_manifest_records_source_versions_and_timing(tiny_export, tiny_model_dir):
    manifest = tiny_export.manifest
    assert manifest.source == str(tiny_model_dir)
    assert manifest.identity.startswith("dir:")
    assert manifest.export_seconds > 0
    assert manifest.versions["onnxruntime-gpu"] != "absent" and manifest.versions["torch"] != "absent"
    assert set(manifest.files) >= {"model.onnx", "tokenizer.json", "config.json"}


def test_changed_model_weights_get_a_new_cache_entry(tiny_model_dir, tmp_path):
    import shutil

    copy = Path(shutil.copytree(tiny_model_dir, tmp_path / "copy"))
    first = export(str(copy), ["fp32"], root=tmp_path / "cache", progress=False)["fp32"]
    config = copy / "config.json"
    config.write_text(config.read_text() + "\n")  # same model, different bytes: a new identity
    second = export(str(copy), ["fp32"], root=tmp_path / "cache", progress=False)["fp32"]
    assert first.path != second.path and not second.reused


def _with_external_data(tiny_export, source: Path) -> Path:
    """source, made to hold the tiny export with every weight in external data (model.onnx_data),
    as a model over 2 GB is; the tokenizer and config files beside it."""
    import onnx

    source.mkdir()
    for path in tiny_export.path.iterdir():
        if path.name != "model.onnx":
            shutil.copyfile(path, source / path.name)
    onnx.save(onnx.load(str(tiny_export.path / "model.onnx")), str(source / "model.onnx"),
              save_as_external_data=True, all_tensors_to_one_file=True, location="model.onnx_data", size_threshold=0)
    return source


def test_a_model_with_external_data_is_copied_whole_and_scores_the_same(tiny_export, tiny_model, tmp_path):
    """Models over 2 GB (bge-reranker-v2-m3) keep their weights in external data beside
    model.onnx; a variant must carry them, and both engines must read them."""
    from xscore.service.models.engines import create_engine
    from xscore.service.models.model import LoadedModel
    from xscore.service.models.variants import build_copy, external_data_files

    source, built = _with_external_data(tiny_export, tmp_path / "source"), tmp_path / "built"
    built.mkdir()
    for path in source.iterdir():
        if not path.name.startswith("model.onnx"):
            shutil.copyfile(path, built / path.name)
    assert external_data_files(source / "model.onnx") == ["model.onnx_data"]
    build_copy(source / "model.onnx", built / "model.onnx", [])
    (source / "model.onnx_data").unlink()  # the copy must not lean on the source's data
    documents = ["first document", "a second, longer document about ranking", "third"]
    expected = score_pairs(tiny_model, ["q"] * 3, documents, raw=True).scores
    for engine in ("onnxruntime", "openvino"):
        model = LoadedModel.load("ext", built, create_engine(built, tiny_export.manifest, engine=engine, device="cpu"))
        np.testing.assert_allclose(score_pairs(model, ["q"] * 3, documents, raw=True).scores, expected, atol=1e-5)


def test_the_graph_nncf_quantizes_is_folded_and_scores_as_the_fp32_one_external_data_included(tiny_export, tmp_path):
    """int8 and int8w are built from a constant-folded copy of the fp32 graph, made in a scratch
    directory (a model over 2 GB keeps its weights in external data there too) and removed after."""
    import onnx
    import onnxruntime as ort

    from xscore.service.models.variants import external_data_files, folded_for_nncf

    source = _with_external_data(tiny_export, tmp_path / "source")
    ids = np.array([[101, 2054, 2003, 102, 1037, 3231, 102]], dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}

    def run(path: Path) -> np.ndarray:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {port.name: feeds[port.name] for port in session.get_inputs()})[0]

    expected = run(source / "model.onnx")
    with folded_for_nncf(source / "model.onnx", tmp_path) as folded:
        scratch = folded.parent
        assert scratch.parent == tmp_path and external_data_files(folded) == ["model.onnx_data"]
        graph = onnx.load(str(folded))
        assert not any(node.op_type in ("Identity", "Constant") for node in graph.graph.node)
        np.testing.assert_allclose(run(folded), expected, atol=1e-6)
    assert not scratch.exists() and sorted(path.name for path in tmp_path.iterdir()) == ["source"]


def test_int8w_builds_from_a_graph_whose_weights_are_external_data(tiny_export, tmp_path):
    """NNCF runs a graph from a serialized copy, which protobuf cannot make over 2 GB: a graph
    with external data goes to NNCF with its weights left in their file (the bge-reranker-v2-m3
    shape, loaded whole, failed to build). The tiny model stands in, its weights made external."""
    import onnx

    from xscore.service.models.engines.openvino import OpenVinoEngine, nncf_available
    from xscore.service.models.tokenization import EncodedBatch
    from xscore.service.models.variants import build_nncf_weight_int8

    if not nncf_available():
        pytest.skip("int8w is built by nncf")
    source, built = _with_external_data(tiny_export, tmp_path / "source"), tmp_path / "built"
    built.mkdir()
    facts = build_nncf_weight_int8(source / "model.onnx", built / "model.onnx", [])
    assert facts["engine"] == "openvino" and sorted(path.name for path in built.iterdir()) == ["model.onnx"]
    graph = onnx.load(str(built / "model.onnx"))
    assert any(tensor.data_type == onnx.TensorProto.UINT8 for tensor in graph.graph.initializer)
    ids = np.array([[101, 2054, 2003, 102, 1037, 3231, 102]], dtype=np.int64)
    ones = np.ones_like(ids)
    logits = OpenVinoEngine(built / "model.onnx", precision="int8").run(EncodedBatch(ids, ones, np.zeros_like(ids)))
    assert logits.shape[0] == 1 and np.all(np.isfinite(logits))
