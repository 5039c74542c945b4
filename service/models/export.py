"""Export: model source -> optimum ONNX -> variants, each parity-checked, into the cache.

Only this module (and the reference it builds) needs torch; it is imported lazily so that the
serving install, which has no torch, can still load anything already in the cache.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from xscore.api.errors import model_error
from xscore.service.models import cache
from xscore.service.models.activation import activation_from_config
from xscore.service.models.calibration import calibration_pairs
from xscore.service.models.engines import create_engine
from xscore.service.models.engines.base import Engine
from xscore.service.models.engines.onnxruntime import cuda_available
from xscore.service.models.engines.openvino import (
    inference_precision,
    nncf_available,
    openvino_available,
)
from xscore.service.models.fidelity import GATES, Fidelity, measure
from xscore.service.models.hardware import has_bf16, is_x86_64
from xscore.service.models.manifest import MANIFEST_NAME, Manifest
from xscore.service.models.planner import run_planned
from xscore.service.models.probes import probe_pairs
from xscore.service.models.sources import ModelSource, read_config, resolve_source
from xscore.service.models.tokenization import EncodedBatch, EncodedPair, PairTokenizer, pad_batch

log = logging.getLogger(__name__)

OPSET = 18
ONNX_NAME = "model.onnx"
_SIDE_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
               "vocab.txt", "sentencepiece.bpe.model", "spm.model", "merges.txt", "vocab.json")


@dataclass(frozen=True, slots=True)
class ExportResult:
    variant: str
    path: Path
    manifest: Manifest
    reused: bool


class VariantBuilder:
    """How to turn the fp32 ONNX file into one variant's model file (a plug-in point)."""

    name: str
    precision: str
    device = "cpu"  # where the variant is served, so where its fidelity is measured

    def available(self) -> str | None:
        """None when this machine can build and run the variant, else why not."""
        return None

    def build(self, fp32_onnx: Path, output: Path, calibration: Sequence[tuple[str, str]]) -> dict[str, str]:
        """Write the variant's model file; return facts for the manifest's `extra` (e.g. the
        engine it must be served by)."""
        raise NotImplementedError


class Fp32Builder(VariantBuilder):
    name, precision = "fp32", "fp32"

    def build(self, fp32_onnx: Path, output: Path, calibration: Sequence[tuple[str, str]]) -> dict[str, str]:
        shutil.copyfile(fp32_onnx, output)
        return {}


class Bf16Builder(VariantBuilder):
    """The fp32 file run at OpenVINO's bf16 inference precision: no second set of weights."""

    name, precision = "bf16", "bf16"

    def available(self) -> str | None:
        if not (is_x86_64() and has_bf16()):
            return "bf16 needs an x86 CPU with AVX512_BF16 or AMX, and this one has neither"
        if not openvino_available():
            return "bf16 runs on OpenVINO, which is not installed here (pip install openvino)"
        return None

    def build(self, fp32_onnx: Path, output: Path, calibration: Sequence[tuple[str, str]]) -> dict[str, str]:
        shutil.copyfile(fp32_onnx, output)
        return {"engine": "openvino", "inference_precision": "bf16"}


class OrtDynamicInt8Builder(VariantBuilder):
    """onnxruntime dynamic int8 with per-channel weights (per-tensor ranked clearly worse)."""

    name, precision = "int8", "int8"

    def build(self, fp32_onnx: Path, output: Path, calibration: Sequence[tuple[str, str]]) -> dict[str, str]:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(fp32_onnx, output, weight_type=QuantType.QInt8, per_channel=True)
        # its DynamicQuantizeLinear scales are set per batch: served by the runtime it was made for
        return {"engine": "onnxruntime", "quantizer": "onnxruntime-dynamic-per-channel"}


class NncfInt8Builder(VariantBuilder):
    """NNCF post-training static int8 of the ONNX model (the measured winner, anchors.md):
    transformer preset, SmoothQuant and fast bias correction at their defaults, calibrated on
    realistic unpadded pairs. Falls back to onnxruntime dynamic int8 where NNCF is missing."""

    name, precision = "int8", "int8"

    def __init__(self, fallback: VariantBuilder | None = None) -> None:
        self._fallback = fallback or OrtDynamicInt8Builder()

    def build(self, fp32_onnx: Path, output: Path, calibration: Sequence[tuple[str, str]]) -> dict[str, str]:
        if not nncf_available():
            log.warning("nncf/openvino not available: building int8 with onnxruntime dynamic quantization "
                        "(slower; pip install nncf openvino for the fast CPU path)")
            return self._fallback.build(fp32_onnx, output, calibration)
        import nncf
        import onnx

        model = onnx.load(str(fp32_onnx))
        input_names = [node.name for node in model.graph.input]
        tokenizer = PairTokenizer.from_dir(fp32_onnx.parent)
        encoded = tokenizer.encode(*zip(*calibration), truncate=True)
        # batch 1, unpadded: activation ranges seen on real tokens only
        items = [{name: getattr(pad_batch([pair], tokenizer.pad_id), name) for name in input_names}
                 for pair in encoded]
        # nncf draws its progress bars on stdout; stdout is for results (`xscore score` JSON, the
        # `xscore listening` line that scripts wait for), so they go to stderr like ours
        with contextlib.redirect_stdout(sys.stderr):
            quantized = nncf.quantize(model, nncf.Dataset(items), preset=nncf.QuantizationPreset.MIXED,
                                      model_type=nncf.ModelType.TRANSFORMER, subset_size=len(items))
        onnx.save(quantized, str(output))
        return {"engine": "openvino", "quantizer": f"nncf-{nncf.__version__} transformer mixed smoothquant",
                "calibration_pairs": str(len(items)), "inference_precision": inference_precision("int8")}


class Fp16Builder(VariantBuilder):
    name, precision = "fp16", "fp16"
    device = "cuda"

    def available(self) -> str | None:
        return None if cuda_available() else "fp16 needs a CUDA GPU, and none is available here"

    def build(self, fp32_onnx: Path, output: Path, calibration: Sequence[tuple[str, str]]) -> dict[str, str]:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = convert_float_to_float16(onnx.load(str(fp32_onnx)), keep_io_types=True)
        onnx.save(model, str(output))
        return {"engine": "onnxruntime"}


BUILDERS: dict[str, VariantBuilder] = {
    builder.name: builder for builder in (Fp32Builder(), Bf16Builder(), NncfInt8Builder(), Fp16Builder())
}


def register_variant(builder: VariantBuilder) -> None:
    BUILDERS[builder.name] = builder


def export(spec: str, variants: Sequence[str] = ("fp32",), *, root: Path | None = None,
           revision: str | None = None, progress: bool = True) -> dict[str, ExportResult]:
    """Export `spec` into the cache (or reuse what is there) for each variant."""
    unknown = [variant for variant in variants if variant not in BUILDERS]
    if unknown:
        raise model_error(f"unknown variant(s) {unknown}; choose from {sorted(BUILDERS)}")
    root = root or cache.cache_root()
    source = resolve_source(spec, revision)
    read_config(source.local_dir)
    versions = cache.library_versions()
    results: dict[str, ExportResult] = {}
    missing = []
    for variant in variants:
        entry = cache.entry_dir(root, source, variant, versions)
        manifest = cache.load_complete(entry)
        if manifest is not None:
            results[variant] = ExportResult(variant, entry, manifest, reused=True)
            continue
        refusal = cache.load_refusal(entry)
        if refusal is not None:
            # the same model, recipe and libraries fail the same gate: say so instead of rebuilding
            raise model_error(f"{refusal['message']} (recorded in {cache.refusal_path(entry)}; "
                              "delete that file to build it again)", **refusal.get("details", {}))
        missing.append(variant)
    if missing:
        results.update(_build(source, missing, root, versions, progress))
    return results


def find_exported(spec: str, variant: str, *, root: Path | None = None) -> Path | None:
    """A cached export usable without torch: same versions first, else any complete entry."""
    root = root or cache.cache_root()
    source = resolve_source(spec)
    entry = cache.entry_dir(root, source, variant, cache.library_versions())
    if cache.load_complete(entry) is not None:
        return entry
    return cache.any_complete(root, source, variant)


def _build(source: ModelSource, variants: list[str], root: Path, versions: dict[str, str],
           progress: bool) -> dict[str, ExportResult]:
    for variant in variants:
        reason = BUILDERS[variant].available()
        if reason:
            raise model_error(f"cannot build variant {variant}: {reason}")
    exporter = _require_exporter()
    steps = ["export ONNX", "reference scores"] + [f"{v}: build + parity" for v in variants]
    bar = tqdm(total=len(steps), desc=f"export {source.spec}", unit="step", disable=not progress)
    results: dict[str, ExportResult] = {}
    started = time.perf_counter()
    staging_parent = cache.model_dir(root, source)
    staging_parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".staging-", dir=staging_parent) as staging_name:
        staging = Path(staging_name)
        bar.set_postfix_str(steps[0])
        exporter.export_onnx(source.local_dir, staging)
        bar.update()
        tokenizer = PairTokenizer.from_dir(staging)
        pairs = tokenizer.encode(*zip(*probe_pairs()), truncate=True)
        bar.set_postfix_str(steps[1])
        reference = exporter.reference_logits(source.local_dir, pairs, tokenizer.pad_id)
        bar.update()
        config = read_config(staging)
        activation = activation_from_config(config)
        for variant, step in zip(variants, steps[2:]):
            bar.set_postfix_str(step)
            entry = cache.entry_dir(root, source, variant, versions)
            builder = BUILDERS[variant]
            with cache.building(entry) as scratch:
                for name in _SIDE_FILES:
                    if (staging / name).is_file():
                        shutil.copyfile(staging / name, scratch / name)
                extra = builder.build(staging / ONNX_NAME, scratch / ONNX_NAME, calibration_pairs())
                # scored by the engine that will serve it, at the precision it will run in
                engine = _serving_engine(scratch, builder, extra)
                extra = {**extra, "fidelity_engine": engine.name}
                scores = run_planned(engine.run, pairs, tokenizer.pad_id, PARITY_BATCH_TOKENS)
                del engine
                fidelity = measure(activation.raw(reference), activation.raw(scores))
                problems = GATES[variant].failures(fidelity)
                if problems:
                    refusal = model_error(
                        f"variant {variant} of {source.spec} refused: {'; '.join(problems)} "
                        f"against the PyTorch reference on {fidelity.pairs} probe pairs",
                        parity=fidelity.as_dict(),
                    )
                    cache.record_refusal(entry, refusal.message, refusal.details)
                    raise refusal
                manifest = _manifest(source, variant, builder.precision, scratch, tokenizer, config,
                                     activation.name, fidelity, versions, time.perf_counter() - started)
                manifest.extra = extra
                manifest.write(scratch / MANIFEST_NAME)
            results[variant] = ExportResult(variant, entry, manifest, reused=False)
            bar.update()
    bar.close()
    return results


def _manifest(source: ModelSource, variant: str, precision: str, directory: Path, tokenizer: PairTokenizer,
              config: dict, activation: str, fidelity: Fidelity, versions: dict[str, str],
              seconds: float) -> Manifest:
    files = sorted(p.name for p in directory.iterdir() if p.is_file() and p.name != MANIFEST_NAME)
    return Manifest(
        source=source.spec,
        identity=source.identity,
        variant=variant,
        model_file=ONNX_NAME,
        files=files,
        opset=OPSET,
        max_length=tokenizer.max_length,
        num_labels=len(config.get("id2label") or {0: 0}),
        activation=activation,
        export_seconds=round(seconds, 2),
        parity=fidelity.as_dict(),
        versions=versions,
        precision=precision,
    )


def _serving_engine(directory: Path, builder: VariantBuilder, extra: dict[str, str]) -> Engine:
    probe = Manifest(source="", identity="", variant=builder.name, model_file=ONNX_NAME, files=[], opset=OPSET,
                     max_length=0, num_labels=1, activation="", export_seconds=0.0, parity={}, versions={},
                     precision=builder.precision, extra=extra)
    return create_engine(directory, probe, engine=extra.get("engine", "auto"), device=builder.device)


# Probe pairs run in the planner's batches under a budget both torch and every engine run comfortably.
PARITY_BATCH_TOKENS = 4096


class _Exporter:
    """The torch-side half of export, behind one object so the import happens once, lazily."""

    def __init__(self) -> None:
        import torch
        from optimum.exporters.onnx import main_export
        from transformers import AutoModelForSequenceClassification

        self._torch = torch
        self._main_export = main_export
        self._auto_model = AutoModelForSequenceClassification

    def export_onnx(self, model_dir: Path, output: Path) -> None:
        try:
            self._main_export(str(model_dir), output, task="text-classification", opset=OPSET,
                              do_validation=False, library_name="transformers")
        except Exception as exc:
            raise model_error(f"optimum could not export {model_dir}: {exc}") from exc
        if not (output / "tokenizer.json").is_file():
            raise model_error(f"{model_dir} has no fast tokenizer (tokenizer.json could not be made)")

    def reference_logits(self, model_dir: Path, pairs: Sequence[EncodedPair], pad_id: int) -> np.ndarray:
        model = self._auto_model.from_pretrained(str(model_dir), torch_dtype=self._torch.float32).eval()
        wants_types = "token_type_ids" in model.forward.__code__.co_varnames

        def run(batch: EncodedBatch) -> np.ndarray:
            inputs = {"input_ids": self._torch.from_numpy(batch.input_ids),
                      "attention_mask": self._torch.from_numpy(batch.attention_mask)}
            if wants_types:
                inputs["token_type_ids"] = self._torch.from_numpy(batch.token_type_ids)
            return model(**inputs).logits.float().numpy()

        with self._torch.inference_mode():
            return run_planned(run, pairs, pad_id, PARITY_BATCH_TOKENS)


def _require_exporter() -> _Exporter:
    try:
        return _Exporter()
    except ImportError as exc:
        raise model_error(
            f"exporting a model needs the export extra ({exc.name} is missing): "
            "pip install 'xscore[export]'; or point --model at an already exported directory"
        ) from exc

