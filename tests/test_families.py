"""Every architecture family, exported and served through the batcher, scores as transformers
scores each pair alone (mixed-length batches included): logits within 1e-4."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from scoring import score_pairs

from benchmarks.families import FAMILY_NAMES, Family, families
from xscore.service.models.engines import create_engine
from xscore.service.models.export import export
from xscore.service.models.model import LoadedModel


@pytest.fixture(scope="module")
def family_table() -> dict[str, Family]:
    return {family.name: family for family in families()}


def mixed_pairs() -> tuple[list[str], list[str]]:
    """Two queries over documents of 3 to ~250 words: every batch the planner forms pads."""
    from xscore.service.models.corpus import docstrings

    texts = [text for _, text in docstrings()]
    documents = [" ".join(texts[index].split()[:length])
                 for index, length in zip(range(40, 52), (3, 250, 12, 80, 5, 160, 30, 220, 8, 120, 60, 2))]
    queries = ["how do I read a file line by line"] * 6 + ["spawn a process and wait"] * 6
    return queries, documents


def reference_logits(model_dir: Path, queries: list[str], documents: list[str]) -> np.ndarray:
    """transformers, one pair at a time (what CrossEncoder.predict computes before its activation)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir)).eval()
    scores = []
    with torch.inference_mode():
        for query, document in zip(queries, documents):
            inputs = tokenizer(query, document, truncation=True, max_length=512, return_tensors="pt")
            scores.append(float(model(**inputs).logits[0, 0]))
    return np.array(scores)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_each_family_serves_as_transformers_scores_each_pair_alone(name, family_table, tmp_path_factory, cache_dir):
    model_dir = family_table[name].build(tmp_path_factory.mktemp("families") / name)
    exported = export(str(model_dir), ["fp32"], root=cache_dir, progress=False)["fp32"]
    engine = create_engine(exported.path, exported.manifest, device="cpu")
    model = LoadedModel.load(name, exported.path, engine)
    queries, documents = mixed_pairs()
    reference = reference_logits(model_dir, queries, documents)
    assert reference.std() > 0.5, "the random head must spread the logits, or the comparison says nothing"
    served = score_pairs(model, queries, documents, raw=True, max_tokens=1024).scores
    np.testing.assert_allclose(served, reference, atol=1e-4)
    assert exported.manifest.parity["max_abs_diff"] <= 1e-4


def test_a_decoder_classifier_pads_with_the_pad_token_its_config_declares(family_table, tmp_path_factory, cache_dir):
    """Its pooling reads the last non-pad token from the ids: padded with another id (the old
    guess, 0), a score changes with its batch-mates."""
    model_dir = family_table["qwen3-seq-cls"].build(tmp_path_factory.mktemp("families") / "qwen3-pad")
    exported = export(str(model_dir), ["fp32"], root=cache_dir, progress=False)["fp32"]
    model = LoadedModel.load("qwen3", exported.path, create_engine(exported.path, exported.manifest, device="cpu"))
    assert model.tokenizer.pad_id == 2 != 0
    queries, documents = mixed_pairs()
    right = score_pairs(model, queries, documents, raw=True, max_tokens=1024).scores
    model.tokenizer.pad_id = 0
    guessed = score_pairs(model, queries, documents, raw=True, max_tokens=1024).scores
    np.testing.assert_allclose(right, reference_logits(model_dir, queries, documents), atol=1e-4)
    assert np.abs(guessed - right).max() > 0.1


def test_deberta_exports_a_graph_that_every_engine_runs(family_table, tmp_path_factory, caplog):
    """transformers scripts DeBERTa's relative-position helper; exported as is, its `If` has
    branches of different rank and OpenVINO refuses the graph. The export traces it instead."""
    import logging

    from xscore.service.models.engines.openvino import openvino_available
    from xscore.service.models.hardware import is_x86_64
    from xscore.service.models.registry import ModelSpec, load_model

    model_dir = family_table["deberta-v3"].build(tmp_path_factory.mktemp("families") / "deberta-auto")
    with caplog.at_level(logging.INFO):
        model = load_model(ModelSpec("deberta", str(model_dir)), device="cpu", progress=False)
    assert "variant auto for deberta: serving" in caplog.text
    if openvino_available() and is_x86_64():
        # auto serves whichever engine measured faster; OpenVINO must have loaded and run it
        assert re.search(r"deberta: fp32 on openvino( \(\d+ streams\))? measured", caplog.text)
        assert "cannot load" not in caplog.text
    queries, documents = mixed_pairs()
    served = score_pairs(model, queries, documents, raw=True).scores
    assert np.all(np.isfinite(served))


def test_deberta_int8_and_int8w_build_and_only_their_gates_decide(family_table, tmp_path_factory, cache_dir):
    """NNCF finds weights only as initializers; DeBERTa reaches its shared attention projections
    through an Identity, and both NNCF builds failed on the graph ("could not be built"). Built
    from the constant-folded graph, each builds: a refusal is its gate's, with the figures."""
    from xscore.service.models.engines.openvino import nncf_available
    from xscore.service.models.export import export_each

    if not nncf_available():
        pytest.skip("int8 and int8w are built by nncf")
    model_dir = family_table["deberta-v3"].build(tmp_path_factory.mktemp("families") / "deberta-int8")
    built, refused = export_each(str(model_dir), ["int8", "int8w"], root=cache_dir, progress=False)
    assert set(built) | set(refused) == {"int8", "int8w"}
    for error in refused.values():
        assert "could not be built" not in error.message and "Spearman" in error.message, error.message
    for result in built.values():
        assert result.manifest.parity["spearman"] >= 0.97 and result.manifest.extra["engine"] == "openvino"
    queries, documents = mixed_pairs()
    for result in built.values():
        model = LoadedModel.load("deberta", result.path, create_engine(result.path, result.manifest, device="cpu"))
        assert np.all(np.isfinite(score_pairs(model, queries, documents, raw=True).scores))


def test_an_engine_that_cannot_load_a_graph_hands_it_to_the_next(family_table, tmp_path_factory, cache_dir, caplog):
    """DeBERTa exported without the traced helper is a graph OpenVINO refuses: onnxruntime runs it."""
    import logging
    import shutil

    from optimum.exporters.onnx import main_export

    from xscore.service.models.engines.openvino import openvino_available
    from xscore.service.models.hardware import is_x86_64

    if not (openvino_available() and is_x86_64()):
        pytest.skip("OpenVINO runs on x86 CPUs only; there is no first engine to fail here")
    model_dir = family_table["deberta-v3"].build(tmp_path_factory.mktemp("families") / "deberta-scripted")
    exported = export(str(model_dir), ["fp32"], root=cache_dir, progress=False)["fp32"]
    scripted = tmp_path_factory.mktemp("scripted")
    main_export(str(model_dir), scripted, task="text-classification", opset=18, do_validation=False,
                library_name="transformers")
    shutil.copyfile(exported.path / "manifest.json", scripted / "manifest.json")
    with caplog.at_level(logging.WARNING):
        engine = create_engine(scripted, exported.manifest, device="cpu")
    assert engine.name == "onnxruntime"
    assert "OpenVINO cannot load" in caplog.text and "trying onnxruntime" in caplog.text
    queries, documents = mixed_pairs()
    fallback = score_pairs(LoadedModel.load("scripted", scripted, engine), queries, documents, raw=True).scores
    np.testing.assert_allclose(fallback, reference_logits(model_dir, queries, documents), atol=1e-4)


def test_long_context_models_default_to_a_bounded_max_length_that_max_length_raises(family_table, tmp_path_factory):
    import json

    from xscore.service.models.tokenization import DECODER_DEFAULT_MAX_LENGTH, PairTokenizer

    model_dir = family_table["qwen3-seq-cls"].build(tmp_path_factory.mktemp("families") / "qwen3-long")
    for name, key in (("config.json", "max_position_embeddings"), ("tokenizer_config.json", "model_max_length")):
        declared = json.loads((model_dir / name).read_text())
        declared[key] = 32768
        (model_dir / name).write_text(json.dumps(declared))
    assert PairTokenizer.from_dir(model_dir).max_length == DECODER_DEFAULT_MAX_LENGTH == 4096
    assert PairTokenizer.from_dir(model_dir, 16384).max_length == 16384
    assert PairTokenizer.from_dir(model_dir, 65536).max_length == 32768  # never past the model's own limit
