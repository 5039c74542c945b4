"""Export: model source -> optimum ONNX -> variants, each parity-checked, into the cache.

Only this module (and the reference it builds) needs torch; it is imported lazily so that the
serving install, which has no torch, can still load anything already in the cache.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from xscore.api.errors import XscoreError, model_error
from xscore.service.models import cache
from xscore.service.models.activation import Activation, activation_from_config
from xscore.service.models.calibration import calibration_pairs
from xscore.service.models.engines import (
    ENGINE_KINDS,
    create_engine,
    resolve_device,
    resolve_engine,
)
from xscore.service.models.engines.base import Engine
from xscore.service.models.fidelity import Fidelity, measure
from xscore.service.models.int8_plan import INT8_PLAN_FILE
from xscore.service.models.manifest import MANIFEST_NAME, Manifest
from xscore.service.models.planner import run_planned
from xscore.service.models.probes import probe_pairs
from xscore.service.models.prompts import CONFIG_KEY as PROMPT_CONFIG_KEY
from xscore.service.models.prompts import PromptProfile, prompt_profile
from xscore.service.models.ranking import RANKING_SET_SHAPE, OwnRankingCheck, RankingCheck, own_ranking_check
from xscore.service.models.sources import (
    ModelSource,
    is_sequence_classifier,
    read_config,
    resolve_source,
)
from xscore.service.models.tokenization import EncodedBatch, EncodedPair, PairTokenizer, pad_batch
from xscore.service.models.traceable import traceable
from xscore.service.models.variants import Variant, variant_named

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


def export(spec: str, variants: Sequence[str | Variant] = ("fp32",), *, root: Path | None = None,
           revision: str | None = None, progress: bool = True) -> dict[str, ExportResult]:
    """Export `spec` into the cache (or reuse what is there) for each variant (a name from the
    variant table, or a `Variant` row of the caller's own), keyed by variant name. A variant that
    cannot be built or fails its gate raises, with the figures."""
    results, refusals = export_each(spec, variants, root=root, revision=revision, progress=progress)
    if refusals:
        raise next(iter(refusals.values()))
    return results


def export_each(spec: str, variants: Sequence[str | Variant], *, root: Path | None = None,
                revision: str | None = None,
                progress: bool = True) -> tuple[dict[str, ExportResult], dict[str, XscoreError]]:
    """Like `export`, but every variant is tried: (the built or reused ones, the refused ones with
    why). A refusal is recorded in the cache, so the same model, recipe and libraries are not
    rebuilt to fail the same gate again."""
    rows = [variant_named(name) for name in variants]
    root = root or cache.cache_root()
    source = resolve_source(spec, revision)
    source_config = read_config(source.local_dir)  # refuses what is not a scorer before any work
    versions = cache.library_versions()
    results: dict[str, ExportResult] = {}
    refusals: dict[str, XscoreError] = {}
    missing = []
    for row in rows:
        entry = cache.entry_dir(root, source, row.name, versions)
        manifest = cache.load_complete(entry)
        if manifest is not None:
            results[row.name] = ExportResult(row.name, entry, manifest, reused=True)
            continue
        refusal = cache.load_refusal(entry)
        if refusal is not None:
            refusals[row.name] = model_error(f"{refusal['message']} (recorded in {cache.refusal_path(entry)}; "
                                             "delete that file to build it again)", **refusal.get("details", {}))
            continue
        reason = row.unavailable()
        if reason:
            refusals[row.name] = model_error(f"cannot build variant {row.name}: {reason}")
            continue
        missing.append(row)
    if missing:
        built, refused = _build(source, source_config, missing, root, versions, progress)
        results.update(built)
        refusals.update(refused)
    return results, refusals


def find_exported(spec: str, variant: str, *, root: Path | None = None) -> Path | None:
    """A cached export usable without torch: same versions first, else any complete entry."""
    root = root or cache.cache_root()
    source = resolve_source(spec)
    entry = cache.entry_dir(root, source, variant, cache.library_versions())
    if cache.load_complete(entry) is not None:
        return entry
    return cache.any_complete(root, source, variant)


def _build(source: ModelSource, source_config: dict, rows: list[Variant], root: Path,
           versions: dict[str, str], progress: bool) -> tuple[dict[str, ExportResult], dict[str, XscoreError]]:
    exporter = _exporter_for(source)
    steps = ["export ONNX", "reference scores"] + [f"{row.name}: build + parity" for row in rows]
    destination = cache.model_dir(root, source)
    bar = tqdm(total=len(steps), desc=f"export {source.spec} into {destination}", unit="step",
               disable=not progress)
    results: dict[str, ExportResult] = {}
    refusals: dict[str, XscoreError] = {}
    started = time.perf_counter()
    destination.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".staging-", dir=destination) as staging_name:
        staging = Path(staging_name)
        bar.set_postfix_str(steps[0])
        prompt = None if is_sequence_classifier(source_config) else prompt_profile(source.local_dir, source_config)
        exporter.export_onnx(source.local_dir, staging, prompt)
        if (source.local_dir / INT8_PLAN_FILE).is_file():
            # the int8 builder reads it beside the graph it quantizes
            shutil.copyfile(source.local_dir / INT8_PLAN_FILE, staging / INT8_PLAN_FILE)
        bar.update()
        tokenizer = PairTokenizer.from_dir(staging)
        pairs = tokenizer.encode(*zip(*probe_pairs()), truncate=True)
        bar.set_postfix_str(steps[1])
        reference = exporter.reference_logits(source.local_dir, pairs, prompt)
        bar.update()
        config = read_config(staging)
        activation = activation_from_config(config)
        ranked = any(row.gate.ranked for row in rows)
        ranking = RankingCheck(staging / ONNX_NAME, tokenizer, activation) if ranked else None
        own = _own_ranking_check(source, staging / ONNX_NAME, tokenizer, activation) if ranked else None
        context = _BuildContext(source, staging, tokenizer, pairs, reference, config, activation, ranking, own,
                                versions, started)
        for row, step in zip(rows, steps[2:]):
            bar.set_postfix_str(step)
            try:
                results[row.name] = _build_entry(row, cache.entry_dir(root, source, row.name, versions), context)
            except XscoreError as refusal:
                refusals[row.name] = refusal  # recorded in the cache; `--variant auto` moves on
            bar.update()
    bar.close()
    return results, refusals


@dataclass(frozen=True, slots=True)
class _BuildContext:
    """What every variant of one export shares: the fp32 ONNX, probe pairs and references."""

    source: ModelSource
    staging: Path
    tokenizer: PairTokenizer
    pairs: list[EncodedPair]
    reference: np.ndarray
    config: dict
    activation: Activation
    ranking: RankingCheck | None
    own: OwnRankingCheck | None  # the model's own labelled ranking set, where it carries one
    versions: dict[str, str]
    started: float


def _build_entry(row: Variant, entry: Path, context: _BuildContext) -> ExportResult:
    """One variant built, measured and gated into its cache entry, or a recorded refusal raised."""
    source, activation = context.source, context.activation
    with cache.building(entry) as scratch:
        for name in _SIDE_FILES:
            if (context.staging / name).is_file():
                shutil.copyfile(context.staging / name, scratch / name)
        try:
            extra, engine = _build_variant(row, context.staging / ONNX_NAME, scratch)
            scores = run_planned(engine.run, context.pairs, context.tokenizer.pad_id, PARITY_BATCH_TOKENS)
            ranked = context.ranking.measure(engine) if context.ranking is not None and row.gate.ranked else None
            fidelity = measure(activation.raw(context.reference), activation.raw(scores))
            # the model's own set costs the most pairs: only a variant the other bars pass is run on it
            own = context.own.measure(engine) if context.own is not None and row.gate.ranked \
                and not row.gate.failures(fidelity, ranked) else {}
        except Exception as exc:
            # any failure of one variant (a quantizer that cannot read the graph, no engine that
            # loads it) refuses that variant
            reason = exc.message if isinstance(exc, XscoreError) else f"{type(exc).__name__}: {exc}"
            refusal = model_error(f"variant {row.name} of {source.spec} could not be built: {reason}")
            cache.record_refusal(entry, refusal.message, refusal.details)
            raise refusal from exc
        problems = row.gate.failures(fidelity, ranked, own)
        own_figures = {name: figures.as_dict() for name, figures in own.items()}
        if problems:
            refusal = model_error(
                f"variant {row.name} of {source.spec} refused: {'; '.join(problems)} "
                f"(probe pairs: {fidelity.pairs} against the PyTorch reference; ranking set: "
                f"{RANKING_SET_SHAPE} against the fp32 export)",
                parity=fidelity.as_dict(), ranking=ranked.as_dict() if ranked else {}, ranking_own=own_figures,
            )
            cache.record_refusal(entry, refusal.message, refusal.details)
            raise refusal
        manifest = _manifest(source, row.name, row.precision, scratch, context.tokenizer, context.config,
                             activation.name, fidelity, context.versions, time.perf_counter() - context.started)
        manifest.extra = extra
        manifest.ranking = ranked.as_dict() if ranked else {}
        manifest.ranking_own = own_figures
        manifest.write(scratch / MANIFEST_NAME)
    return ExportResult(row.name, entry, manifest, reused=False)


def _own_ranking_check(source: ModelSource, fp32_onnx: Path, tokenizer: PairTokenizer,
                       activation: Activation) -> OwnRankingCheck | None:
    try:
        return own_ranking_check(source.local_dir, fp32_onnx, tokenizer, activation)
    except (ValueError, KeyError, OSError) as exc:
        raise model_error(f"{source.spec}: its own ranking set cannot be read: {exc}") from exc


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


def _build_variant(row: Variant, fp32_onnx: Path, scratch: Path) -> tuple[dict[str, str], Engine]:
    """Build the variant into scratch and load it on the engine that will serve it, at the
    precision it will run in: its figures are measured there."""
    extra = row.build(fp32_onnx, scratch / ONNX_NAME, calibration_pairs())
    engine = _serving_engine(scratch, row, extra)
    if row.precision not in ENGINE_KINDS[engine.name].precisions:
        # e.g. bf16 handed to onnxruntime because OpenVINO cannot load the graph: it would be
        # fp32 under another name
        raise model_error(f"{engine.name} serves this model, and it cannot compute in {row.precision}")
    if engine.name != resolve_engine(extra.get("engine", "auto"), resolve_device(row.device), row.precision):
        # the first choice could not load this graph: serve it where it was measured
        extra = {**extra, "engine": engine.name}
    return {**extra, "fidelity_engine": engine.name}, engine


def _serving_engine(directory: Path, row: Variant, extra: dict[str, str]) -> Engine:
    probe = Manifest(source="", identity="", variant=row.name, model_file=ONNX_NAME, files=[], opset=OPSET,
                     max_length=0, num_labels=1, activation="", export_seconds=0.0, parity={}, versions={},
                     precision=row.precision, extra=extra)
    return create_engine(directory, probe, engine=extra.get("engine", "auto"), device=row.device)


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
        logging.getLogger("optimum.exporters.onnx.base").addFilter(_AdviceFilter())
        self._auto_model = AutoModelForSequenceClassification

    def export_onnx(self, model_dir: Path, output: Path, prompt: PromptProfile | None = None) -> None:
        if prompt is not None:
            # a causal-LM reranker becomes the sequence classifier it is at its last position
            with tempfile.TemporaryDirectory(prefix="xscore-classifier-") as scratch:
                self._as_classifier(model_dir, prompt, Path(scratch))
                self.export_onnx(Path(scratch), output)
            config = json.loads((output / "config.json").read_text())
            config[PROMPT_CONFIG_KEY] = prompt.as_dict()
            (output / "config.json").write_text(json.dumps(config, indent=2) + "\n")
            return
        model_type = json.loads((model_dir / "config.json").read_text()).get("model_type")
        try:
            with traceable(model_type):
                self._main_export(str(model_dir), output, task="text-classification", opset=OPSET,
                                  do_validation=False, library_name="transformers")
        except Exception as exc:
            raise model_error(f"optimum could not export {model_dir}: {exc}") from exc
        if not (output / "tokenizer.json").is_file():
            raise model_error(f"{model_dir} has no fast tokenizer (tokenizer.json could not be made)")

    def _answer_tokens(self, tokenizer, prompt: PromptProfile, model_dir: Path) -> tuple[int, int | None]:
        """The ids of the profile's yes and no tokens (no: None when the score is the yes logit alone)."""
        ids: list[int | None] = []
        for token in (prompt.yes_token, prompt.no_token):
            if token is None:
                ids.append(None)
                continue
            found = tokenizer.convert_tokens_to_ids(token)
            if found is None or found == tokenizer.unk_token_id:
                raise model_error(f"{model_dir}: the answer token {token!r} of prompt profile {prompt.name} "
                                  "is not one token of this tokenizer")
            ids.append(found)
        assert ids[0] is not None
        return ids[0], ids[1]

    def _as_classifier(self, model_dir: Path, prompt: PromptProfile, destination: Path) -> None:
        """The same body with a 1-logit head `W[yes] - W[no]` (or `W[yes]`): its logit at the last
        non-pad token is logit_yes - logit_no (or logit_yes) of the language model, and the
        vocabulary is never computed."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        if tokenizer.pad_token_id is None:
            raise model_error(f"{model_dir}: the tokenizer declares no pad token, so batches cannot be padded")
        yes, no = self._answer_tokens(tokenizer, prompt, model_dir)
        causal = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=self._torch.float32).eval()
        settings = causal.config.to_dict()
        settings.update(num_labels=1, id2label={0: "yes"}, label2id={"yes": 0}, pad_token_id=tokenizer.pad_token_id,
                        architectures=[name.replace("ForCausalLM", "ForSequenceClassification")
                                       for name in settings.get("architectures") or []])
        classifier = self._auto_model.from_config(type(causal.config).from_dict(settings), dtype=self._torch.float32)
        body = getattr(classifier, classifier.base_model_prefix)
        body.load_state_dict(getattr(causal, causal.base_model_prefix).state_dict())
        answers = causal.get_output_embeddings().weight.detach()
        with self._torch.no_grad():
            head = answers[yes] if no is None else answers[yes] - answers[no]
            classifier.score.weight.copy_(head.unsqueeze(0))
        classifier.save_pretrained(destination)
        tokenizer.save_pretrained(destination)

    def reference_logits(self, model_dir: Path, pairs: Sequence[EncodedPair],
                         prompt: PromptProfile | None = None) -> np.ndarray:
        """Each pair scored alone by the PyTorch model (no padding, no batch-mates). The variant is
        scored in mixed-length batches, so a score that depends on its batch-mates (a wrong pad
        id, a pooling that reads padding) fails the gate instead of passing on both sides. A
        causal-LM reranker is scored as its own model: logit_yes - logit_no (or logit_yes) at the
        last token."""
        if prompt is not None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=self._torch.float32).eval()
            yes, no = self._answer_tokens(AutoTokenizer.from_pretrained(str(model_dir)), prompt, model_dir)

            def run(batch: EncodedBatch) -> np.ndarray:
                last = model(input_ids=self._torch.from_numpy(batch.input_ids)).logits[:, -1]
                score = last[:, yes] if no is None else last[:, yes] - last[:, no]
                return score.float().numpy()[:, None]
        else:
            model = self._auto_model.from_pretrained(str(model_dir), dtype=self._torch.float32).eval()
            wants_types = "token_type_ids" in model.forward.__code__.co_varnames

            def run(batch: EncodedBatch) -> np.ndarray:
                inputs = {"input_ids": self._torch.from_numpy(batch.input_ids),
                          "attention_mask": self._torch.from_numpy(batch.attention_mask)}
                if wants_types:
                    inputs["token_type_ids"] = self._torch.from_numpy(batch.token_type_ids)
                return model(**inputs).logits.float().numpy()

        with self._torch.inference_mode():
            return np.concatenate([run(pad_batch([pair], pad_id=0)) for pair in pairs])


class _AdviceFilter(logging.Filter):
    """optimum advises installing accelerate for a check xscore does not need (it never ties the
    exported weights); in a first start's log that reads like an instruction to the user."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "requires accelerate" not in record.getMessage()


def _exporter_for(source: ModelSource):
    """The default model ships its graph and reference (no torch needed); anything else is traced."""
    from xscore.service.models.defaultmodel import shipped_export

    return shipped_export(source.local_dir) or _require_exporter()


def _require_exporter() -> _Exporter:
    try:
        return _Exporter()
    except ImportError as exc:
        raise model_error(
            f"exporting a model needs the export extra ({exc.name} is missing): "
            "pip install 'xscore[export]'; or point --model at an already exported directory"
        ) from exc

