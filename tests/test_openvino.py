"""The OpenVINO backend and CPU variants: same scores as onnxruntime, gates, selection, fallback."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scoring import score_pairs
from texts import mixed_documents

from xscore.api.errors import ErrorCode, XscoreError
from xscore.service.models import hardware
from xscore.service.models.engines import EngineOptions, create_engine
from xscore.service.models.engines.openvino import openvino_available
from xscore.service.models.export import export, export_each
from xscore.service.models.fidelity import measure
from xscore.service.models.model import LoadedModel
from xscore.service.models.probes import probe_pairs
from xscore.service.models.registry import ModelSpec, load_model
from xscore.service.models.tokenization import PairTokenizer, pad_batch
from xscore.service.models.variants import BY_NAME, build_nncf_int8

pytestmark = pytest.mark.skipif(not openvino_available(), reason="OpenVINO is not installed here")
needs_bf16 = pytest.mark.skipif(BY_NAME["bf16"].unavailable() is not None, reason="no bf16 on this CPU")


def _scores(export_result, engine: str, queries, documents) -> np.ndarray:
    model = LoadedModel.load("m", export_result.path,
                              create_engine(export_result.path, export_result.manifest, engine=engine, device="cpu"))
    assert model.engine.name == engine
    return score_pairs(model, queries, documents, raw=True).scores


@pytest.mark.parametrize("which", ["tiny", "minilm"])
def test_both_backends_give_the_same_fp32_scores_within_1e_4(which, tiny_export, minilm_exports):
    fp32 = tiny_export if which == "tiny" else minilm_exports["fp32"]
    queries, documents = zip(*probe_pairs())
    documents = list(documents) + mixed_documents(40, seed=5)
    queries = list(queries) + ["ranking service latency"] * 40
    openvino = _scores(fp32, "openvino", queries, documents)
    onnxruntime = _scores(fp32, "onnxruntime", queries, documents)
    assert np.max(np.abs(openvino - onnxruntime)) <= 1e-4


def test_auto_engine_on_an_x86_cpu_is_openvino_at_f32_for_fp32(tiny_export):
    engine = create_engine(tiny_export.path, tiny_export.manifest)
    assert (engine.name, engine.device, engine.precision) == ("openvino", "cpu", "fp32")
    assert engine.max_batch_tokens == 2048 and engine.parallelism == 1


@pytest.mark.parametrize("variant", ["int8", pytest.param("bf16", marks=needs_bf16)])
def test_lossy_variants_score_within_their_recorded_fidelity(variant, minilm_exports):
    result = minilm_exports[variant]
    parity = result.manifest.parity
    assert parity["spearman"] >= BY_NAME[variant].gate.min_spearman and parity["pairs"] >= 50
    assert result.manifest.extra["engine"] == "openvino"
    assert result.manifest.extra["fidelity_engine"] == "openvino"
    queries, documents = zip(*probe_pairs())
    reference = _scores(minilm_exports["fp32"], "openvino", queries, documents)
    served = _scores(result, "openvino", queries, documents)  # served batching, not the export's
    fidelity = measure(reference, served)
    assert fidelity.spearman >= BY_NAME[variant].gate.min_spearman
    assert fidelity.max_abs_diff <= 2 * parity["max_abs_diff"] + 1e-3


def test_int8_is_nncf_static_so_a_score_does_not_move_with_its_batch_mates(minilm_exports):
    int8 = minilm_exports["int8"]
    assert int8.manifest.extra["quantizer"].startswith("nncf")
    model = LoadedModel.load("m", int8.path, create_engine(int8.path, int8.manifest))
    documents = mixed_documents(24, seed=6)
    together = score_pairs(model, ["cross encoder"] * 24, documents, raw=True).scores
    alone = [score_pairs(model, ["cross encoder"], [d], raw=True).scores[0] for d in documents[:3]]
    np.testing.assert_allclose(alone, together[:3], atol=0.05)  # bf16 accumulation only


def test_the_gate_refuses_an_int8_build_calibrated_on_one_pair(minilm_model_dir, tmp_path):
    one_pair = BY_NAME["int8"].with_build(
        "int8-one-pair", lambda fp32_onnx, output, calibration: build_nncf_int8(fp32_onnx, output, [("a", "a")]))
    with pytest.raises(XscoreError, match=r"variant int8-one-pair .* refused: Spearman"):
        export(str(minilm_model_dir), [one_pair], root=tmp_path, progress=False)


def test_variant_auto_skips_a_refused_variant_with_a_log_line(tiny_model_dir, cache_dir, caplog):
    # the 2-layer random tiny model quantizes badly (its int8 is refused): auto moves on
    with caplog.at_level(logging.INFO):
        model = load_model(ModelSpec("tiny", str(tiny_model_dir)), progress=False)
    assert "variant auto for tiny: int8 refused: variant int8" in caplog.text
    assert model.manifest.variant in ("bf16", "fp32")
    assert f"variant auto for tiny: serving {model.manifest.variant} on {model.engine.name}" in caplog.text


def _run(script: str, cache: Path) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "XSCORE_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)


def test_openvino_missing_falls_back_to_onnxruntime_with_a_log_line(tiny_export, cache_dir):
    script = (
        "import sys, logging; sys.modules['openvino'] = None; logging.basicConfig(level=logging.INFO)\n"
        "from xscore.service.models.registry import ModelSpec, load_model\n"
        f"model = load_model(ModelSpec('tiny', {str(tiny_export.path)!r}), engine='openvino', progress=False)\n"
        "from xscore.service.serving.blocking import BlockingScorer\n"
        "print(model.engine.name, BlockingScorer(model).score_pairs(['q'], ['d']).scores[0])\n"
    )
    done = _run(script, cache_dir)
    assert done.returncode == 0, done.stderr
    assert "OpenVINO is not installed or cannot be imported; using onnxruntime" in done.stderr
    name, score = done.stdout.split()
    assert name == "onnxruntime" and 0.0 < float(score) < 1.0


def test_without_nncf_int8_is_built_by_onnxruntime_and_served_by_it(minilm_model_dir, tmp_path):
    script = (
        "import sys, json; sys.modules['nncf'] = None\n"
        "from xscore.service.models.export import export\n"
        "from xscore.service.models.engines import create_engine\n"
        # the probe bar only: onnxruntime's dynamic int8 does not keep this model's ranking
        "import dataclasses; from xscore.service.models.fidelity import Gate\n"
        "from xscore.service.models.variants import BY_NAME\n"
        "row = dataclasses.replace(BY_NAME['int8'], gate=Gate(min_spearman=0.97))\n"
        f"r = export({str(minilm_model_dir)!r}, [row], root=__import__('pathlib').Path({str(tmp_path)!r}), "
        "progress=False)['int8']\n"
        "print(json.dumps([r.manifest.extra, create_engine(r.path, r.manifest).name]))\n"
    )
    done = _run(script, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "nncf/openvino not available: building int8 with onnxruntime dynamic quantization" in done.stderr
    extra, engine = json.loads(done.stdout.strip().splitlines()[-1])
    assert extra["quantizer"].startswith("onnxruntime-dynamic") and engine == "onnxruntime"


def test_bf16_on_a_cpu_without_it_is_refused_clearly_and_auto_moves_on(minilm_exports, tmp_path):
    fp32 = minilm_exports["fp32"]
    script = (
        "import logging; logging.basicConfig(level=logging.INFO)\n"
        "from xscore.service.models import hardware; hardware.cpu_flags = lambda: frozenset()\n"
        "from xscore.service.models.variants import BY_NAME\n"
        "print(BY_NAME['bf16'].unavailable())\n"
        "from xscore.service.models.engines import create_engine\n"
        "from xscore.service.models.manifest import Manifest\n"
        f"m = Manifest.read(__import__('pathlib').Path({str(fp32.path)!r}) / 'manifest.json'); m.precision = 'bf16'\n"
        f"create_engine(__import__('pathlib').Path({str(fp32.path)!r}), m)\n"
    )
    done = _run(script, tmp_path)
    assert "bf16 needs an x86 CPU with AVX512_BF16 or AMX" in done.stdout
    assert "the bf16 variant needs a CPU with AVX512_BF16 or AMX" in done.stderr
    assert "Traceback" in done.stderr and "XscoreError" in done.stderr  # a clear refusal, not a crash inside OpenVINO


@pytest.mark.parametrize("variant", ["int8", pytest.param("bf16", marks=needs_bf16)])
def test_serving_an_exported_lossy_variant_imports_neither_torch_nor_nncf(variant, minilm_exports, tmp_path):
    path = minilm_exports[variant].path
    script = (
        "import sys; sys.modules['torch'] = None; sys.modules['nncf'] = None; sys.modules['optimum'] = None\n"
        "from xscore.service.models.registry import ModelSpec, load_model\n"
        f"model = load_model(ModelSpec('m', {str(path)!r}), progress=False)\n"
        "from xscore.service.serving.blocking import BlockingScorer\n"
        "print(model.engine.name, model.engine.precision, BlockingScorer(model).score_pairs(['q'], ['d']).scores[0])\n"
        "assert not any(name.split('.')[0] in ('torch', 'nncf') and sys.modules[name] is not None "
        "for name in sys.modules)\n"
    )
    done = _run(script, tmp_path)
    assert done.returncode == 0, done.stderr
    name, precision, score = done.stdout.split()
    assert (name, precision) == ("openvino", variant) and 0.0 < float(score) < 1.0


def test_throughput_hint_with_two_streams_gives_the_latency_scores(minilm_exports):
    fp32 = minilm_exports["fp32"]
    latency = LoadedModel.load("m", fp32.path, create_engine(fp32.path, fp32.manifest))
    engine = create_engine(fp32.path, fp32.manifest, options=EngineOptions(threads=2, streams=2))
    assert engine.hint == "THROUGHPUT" and engine.parallelism >= 2
    throughput = LoadedModel.load("m", fp32.path, engine)
    documents = mixed_documents(48, seed=7)
    a = score_pairs(latency, ["q"] * 48, documents, raw=True, max_tokens=1024).scores
    b = score_pairs(throughput, ["q"] * 48, documents, raw=True, max_tokens=1024).scores
    assert np.max(np.abs(a - b)) <= 1e-4


def test_an_engine_on_streams_serves_only_if_it_scores_as_one_stream_does(minilm_model_dir, cache_dir):
    from xscore.service.models.engines import STREAMS_MAX_LOGIT_DIFFERENCE

    results, refusals = export_each(str(minilm_model_dir), ["int8w"], root=cache_dir, progress=False)
    outcome = results.get("int8w")
    if outcome is None:
        pytest.skip(f"int8w refused here: {refusals['int8w'].message}")
    single = create_engine(outcome.path, outcome.manifest, device="cpu", options=EngineOptions(threads=2, streams=1))
    try:
        streams = create_engine(outcome.path, outcome.manifest, device="cpu",
                                options=EngineOptions(threads=2, streams=2))
    except XscoreError as refused:  # what OpenVINO's int8w does on THROUGHPUT streams of the default model
        assert refused.code is ErrorCode.MODEL_ERROR and "unlike one stream" in refused.message
        assert refused.details["logit_difference"] > STREAMS_MAX_LOGIT_DIFFERENCE
        return
    assert streams.parallelism == 2
    documents = mixed_documents(24, seed=3)
    a = score_pairs(LoadedModel.load("m", outcome.path, single), ["q"] * 24, documents, raw=True).scores
    b = score_pairs(LoadedModel.load("m", outcome.path, streams), ["q"] * 24, documents, raw=True).scores
    assert np.max(np.abs(a - b)) <= STREAMS_MAX_LOGIT_DIFFERENCE


def test_a_streams_check_is_kept_beside_the_export_and_its_figure_is_what_a_restart_judges(minilm_exports,
                                                                                         tmp_path):
    import shutil

    from xscore.service.models.engines import STREAMS_CHECK_FILE, STREAMS_MAX_LOGIT_DIFFERENCE

    fp32 = minilm_exports["fp32"]
    directory = shutil.copytree(fp32.path, tmp_path / "fp32")
    (directory / STREAMS_CHECK_FILE).unlink(missing_ok=True)
    two_streams = EngineOptions(threads=2, streams=2)
    made = create_engine(directory, fp32.manifest, engine="openvino", device="cpu", options=two_streams)
    assert made.parallelism == 2
    kept = json.loads((directory / STREAMS_CHECK_FILE).read_text())
    assert len(kept) == 1 and 0.0 <= next(iter(kept.values())) <= STREAMS_MAX_LOGIT_DIFFERENCE
    # a restart takes the kept figure instead of measuring again: one that says the streams disagree
    # refuses the engine, with that figure
    (directory / STREAMS_CHECK_FILE).write_text(json.dumps({key: 1e6 for key in kept}))
    with pytest.raises(XscoreError) as refused:
        create_engine(directory, fp32.manifest, engine="openvino", device="cpu", options=two_streams)
    assert refused.value.details["logit_difference"] == 1e6
    # under other options the engine is checked afresh, and that figure kept beside the first
    create_engine(directory, fp32.manifest, engine="openvino", device="cpu",
                  options=EngineOptions(threads=2, streams=2, max_batch_tokens=1024))
    assert len(json.loads((directory / STREAMS_CHECK_FILE).read_text())) == 2


def test_int8w_runs_at_the_group_size_its_build_chose_and_records_what_it_tried(minilm_model_dir, minilm_exports,
                                                                               cache_dir):
    from xscore.service.models.engines import GROUP_SIZE_FACT
    from xscore.service.models.variants import GROUP_SIZES, choose_group_size

    results, refusals = export_each(str(minilm_model_dir), ["int8w"], root=cache_dir, progress=False)
    outcome = results.get("int8w")
    extra = outcome.manifest.extra if outcome else None
    if extra is None:  # refused by the gate: the build's choice is still in the refusal's record
        pytest.skip(f"int8w refused here: {refusals['int8w'].message}")
    chosen = int(extra[GROUP_SIZE_FACT])
    tried = [int(entry.split(":")[0]) for entry in extra["group_sizes_tried"].split("; ")]
    # largest first, stopping at the first that kept the ranking (or the smallest, when none did)
    assert chosen in GROUP_SIZES and tried == list(GROUP_SIZES[: GROUP_SIZES.index(chosen) + 1])
    assert create_engine(outcome.path, outcome.manifest, device="cpu").quantization_group_size == chosen
    forced = create_engine(outcome.path, outcome.manifest, device="cpu",
                           options=EngineOptions(quantization_group_size=64))
    assert forced.quantization_group_size == 64  # an operator's option overrides the build's choice

    fp32 = minilm_exports["fp32"]
    group, figures = choose_group_size(fp32.path / fp32.manifest.model_file,
                                       outcome.path / outcome.manifest.model_file)
    assert group == chosen and figures == extra["group_sizes_tried"]  # deterministic on one machine


def test_no_group_size_keeping_the_ranking_falls_back_to_the_finest(minilm_exports, monkeypatch, tmp_path):
    from xscore.service.models import variants

    monkeypatch.setattr(variants, "GROUP_MIN_SPEARMAN", 1.01)  # a bar nothing lossy can reach
    fp32 = minilm_exports["fp32"]
    output = tmp_path / "model.onnx"
    for name in fp32.path.iterdir():
        if name.suffix != ".onnx" and name.is_file():
            (tmp_path / name.name).write_bytes(name.read_bytes())
    extra = variants.build_nncf_weight_int8(fp32.path / fp32.manifest.model_file, output, [])
    assert extra["quantization_group_size"] == str(min(variants.GROUP_SIZES))
    assert [entry.split(":")[0] for entry in extra["group_sizes_tried"].split("; ")] == \
        [str(size) for size in variants.GROUP_SIZES]


_FEED_DISTINCT_SHAPES = """
import random, sys
import numpy as np
from xscore.service.models.engines.openvino import OpenVinoEngine
from xscore.service.models.tokenization import EncodedBatch

def rss_mib():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20

engine = OpenVinoEngine(sys.argv[1], precision="fp32")
rng, marks = random.Random(1), []
for shape in range(1, 801):
    length = rng.randint(8, 320)
    ones = np.ones((rng.randint(1, max(1, 2048 // length)), length), np.int64)
    engine.run(EncodedBatch(ones, ones, np.zeros_like(ones)))
    if shape in (200, 800):
        marks.append(rss_mib())
print(marks[1] - marks[0])
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_an_engine_fed_new_batch_shapes_levels_off_in_memory(tiny_export):
    # A fresh process, since oneDNN reads its kernel cache size once; measured on the tiny
    # model, 600 more distinct shapes grew it 11 MiB with the engine's setting and 73 MiB with
    # oneDNN's default of 1,024 kernels (2 Zen 4 cores).
    done = subprocess.run([sys.executable, "-c", _FEED_DISTINCT_SHAPES, str(tiny_export.path / "model.onnx")],
                          capture_output=True, text=True, timeout=300,
                          env={key: value for key, value in os.environ.items()
                               if key != "ONEDNN_PRIMITIVE_CACHE_CAPACITY"})
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.split()[-1]) < 30.0


_CAP_SCRIPT = """
import json, sys
from pathlib import Path
from xscore.service.models import hardware
from xscore.service.models.engines import create_engine
from xscore.service.models.manifest import Manifest
from xscore.service.models.tokenization import PairTokenizer, pad_batch
from xscore.service.models.variants import BY_NAME
path = Path(sys.argv[1])
engine = create_engine(path, Manifest.read(path / "manifest.json"), engine="openvino", device="cpu")
tokenizer = PairTokenizer.from_dir(path)
engine.run(pad_batch(tokenizer.encode(["a query"] * 2, ["one passage", "another passage"]), tokenizer.pad_id))
print(json.dumps({"class": hardware.cpu_class(), "machine": hardware.machine(), "kernels": engine.matmul_kernels(),
                  "bf16": BY_NAME["bf16"].unavailable()}))
"""


@pytest.mark.skipif(not {"avx512f", "avx_vnni"} & hardware.cpuinfo_flags(),
                    reason="this CPU has nothing above AVX2 to leave out")
def test_an_instruction_set_cap_runs_int8_on_avx2_kernels_and_names_the_class_it_made(minilm_exports, tmp_path):
    int8 = minilm_exports["int8"]
    done = subprocess.run([sys.executable, "-c", _CAP_SCRIPT, str(int8.path)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env={**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["class"] == f"avx2-on-{hardware.cpu_class()}" and seen["machine"]["isa_cap"] == "AVX2"
    assert seen["machine"]["flags"] == ["avx2", "fma"]
    # bf16 float layers do not compile under the cap (no bf16 Softmax kernel): int8 asks for f32 there
    assert seen["bf16"] is not None
    assert sum(seen["kernels"].values()) >= 6 and not any("avx512" in kernel for kernel in seen["kernels"]), seen
    uncapped = create_engine(int8.path, int8.manifest, engine="openvino", device="cpu")
    tokenizer = PairTokenizer.from_dir(int8.path)
    uncapped.run(pad_batch(tokenizer.encode(["a query"] * 2, ["one passage", "another passage"]), tokenizer.pad_id))
    uncapped = uncapped.matmul_kernels()
    assert set(uncapped) != set(seen["kernels"]), (uncapped, seen["kernels"])
