"""The default model's int8 plan: which matmuls static int8 leaves in float, found by NNCF's
accuracy control on validation text the export's gate never sees.

Whole-model static int8 kept every stdlib query's order and still lost labelled WordNet answers
(99.13% of fp32's NDCG@10 on the model's own set, where the gate asks 99.5%). Accuracy control
quantizes the whole graph, ranks each quantized layer by what reverting it alone wins back on a
subset of the tuning queries, and reverts the costliest one at a time until the metric is within
`MAX_DROP` of the fp32 graph's. The metric is the worse of the two sets' mean NDCG@10 against the
labels, as a share of the fp32 graph's on the same queries, so neither set can pay for the other.

Tuning queries are validation text (never trained on, never an evaluation query) that is not in
the ranking set the export gates on: the gate then judges the planned int8 on queries the search
never saw. The fp32 graph is the shipped one (`ShippedExport`), so the node names in the plan are
the ones every export of these weights has.

Run on recipe 7 (AVX-512 VNNI + BF16 class, 343 s on 2 cores): whole-model int8 kept 99.91% of
the fp32 graph's NDCG@10 on the worse of the two 150-query tuning sets, so nothing was reverted
and no plan is shipped. The same int8 keeps 99.13% on the gate's 160 WordNet queries and 99.24%
on the 300 held-out WordNet evaluation queries (45 of them move, 26 down): at 150 queries the
tuning text does not see the loss; 300 queries a set at a 0.2% bar read 99.95% (600 s) and
reverted nothing either. The gate's WordNet queries come from the same pool as the tuning ones,
so int8's loss sits in a few queries that one sample holds and another does not, and a mean over
many queries dilutes it; a metric that counts the queries whose answer falls is the next try.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from xscore.recipes.default_model.data import Embed, EvalQuery
from xscore.recipes.default_model.train import Recipe
from xscore.service.models.int8_plan import INT8_PLAN_FILE, Int8Plan, quantized_matmuls, save_int8_plan

TUNING_QUERIES = 150  # per set, beyond the gate's
MAX_DROP = 0.003  # relative: within the gate's 0.5% with room for queries the search never saw
RANKING_SUBSET = 60  # queries each layer's ranking score is measured on
BATCH_TOKENS = 4096


def tuning_sets(recipe: Recipe, embed: Embed, gate_queries: set[str], queries: int = TUNING_QUERIES,
                data_dir: Path | None = None, artifact_dir: Path | None = None) -> dict[str, list[EvalQuery]]:
    """`queries` validation queries a set that the gate's ranking set does not hold, cut to its
    `CANDIDATES` candidates as it is."""
    from xscore.recipes.default_model.ranking_set import DEBIAN_QUERIES, WORDNET_QUERIES, trimmed
    from xscore.recipes.default_model.validation import validation_sets

    drawn = max(DEBIAN_QUERIES, WORDNET_QUERIES) + 2 * queries
    sets = validation_sets(recipe, embed, drawn, data_dir, artifact_dir)
    return {name: [trimmed(item) for item in items if item.query not in gate_queries][:queries]
            for name, items in sets.items()}


class _Tuning:
    """The tuning queries encoded once, the fp32 graph's NDCG@10 on each, and the metric NNCF
    calls with a graph and query indices."""

    def __init__(self, fp32_onnx: Path, sets: Mapping[str, Sequence[EvalQuery]]) -> None:
        from xscore.service.models.tokenization import PairTokenizer

        self.tokenizer = PairTokenizer.from_dir(fp32_onnx.parent)
        self.items = [(name, item) for name, items in sets.items() for item in items]
        self._pairs = [self.tokenizer.encode([item.query] * len(item.candidates), list(item.candidates))
                       for _, item in self.items]
        self._reference = self._ndcgs(self._engine_at(fp32_onnx, "fp32"), range(len(self.items)))

    def _engine_at(self, path: Path, precision: str):
        from xscore.service.models.engines.openvino import OpenVinoEngine

        return OpenVinoEngine(path, precision=precision)

    def _ndcgs(self, engine, indices: Sequence[int]) -> list[float]:
        from xscore.service.models.planner import run_planned
        from xscore.service.models.ranking import ndcg_at_10

        out = []
        for index in indices:
            gains = np.asarray(self.items[index][1].relevance, np.float64)
            scores = run_planned(engine.run, self._pairs[index], self.tokenizer.pad_id, BATCH_TOKENS)
            out.append(ndcg_at_10(gains, scores[:, 0].astype(np.float64)) / (ndcg_at_10(gains, gains) or 1.0))
        return out

    def metric(self, model, indices) -> tuple[float, list[float]]:
        """(the worse set's NDCG@10 as a share of the fp32 graph's, each query's NDCG@10); the
        graph runs as the export serves it: OpenVINO, int8 where it is quantized."""
        import onnx

        indices = list(indices)
        quantized = any(node.op_type == "QuantizeLinear" for node in model.graph.node)
        with tempfile.TemporaryDirectory(prefix=".int8-plan-") as scratch:
            path = Path(scratch) / "model.onnx"
            onnx.save(model, str(path))
            ndcgs = self._ndcgs(self._engine_at(path, "int8" if quantized else "fp32"), indices)
        shares = []
        for name in dict.fromkeys(self.items[index][0] for index in indices):
            mine = [i for i, index in enumerate(indices) if self.items[index][0] == name]
            reference = sum(self._reference[indices[i]] for i in mine)
            shares.append(sum(ndcgs[i] for i in mine) / reference if reference else 1.0)
        return min(shares), ndcgs


def find_int8_plan(fp32_onnx: Path, sets: Mapping[str, Sequence[EvalQuery]],
                   calibration: Sequence[tuple[str, str]], max_drop: float = MAX_DROP) -> Int8Plan:
    """Accuracy control over the fp32 graph at `fp32_onnx` (with its tokenizer beside it): the
    matmuls it reverted to float, and the figures of the search."""
    import nncf
    import onnx
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    from xscore.service.models.hardware import cpu_class
    from xscore.service.models.variants import (
        calibration_inputs,
        folded_for_nncf,
        load_for_nncf,
        nncf_output_on_stderr,
    )

    started = time.perf_counter()
    tuning = _Tuning(fp32_onnx, sets)
    with tempfile.TemporaryDirectory(prefix=".int8-plan-") as scratch, \
            folded_for_nncf(fp32_onnx, Path(scratch)) as folded:
        model, _ = load_for_nncf(folded)
        items = calibration_inputs(model, tuning.tokenizer, calibration)
        with nncf_output_on_stderr():
            planned = nncf.quantize_with_accuracy_control(
                model, nncf.Dataset(items), nncf.Dataset(list(range(len(tuning.items)))), tuning.metric,
                max_drop=max_drop, drop_type=nncf.DropType.RELATIVE, preset=nncf.QuantizationPreset.MIXED,
                model_type=nncf.ModelType.TRANSFORMER, subset_size=len(items),
                advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
                    ranking_subset_size=RANKING_SUBSET, intermediate_model_dir=scratch))
        whole = onnx.load(str(Path(scratch) / "intermediate_model.onnx"))
        before, _ = tuning.metric(whole, range(len(tuning.items)))
        after, _ = tuning.metric(planned, range(len(tuning.items)))
        quantized, kept = quantized_matmuls(whole), quantized_matmuls(planned)
    reverted = sorted(quantized - kept)
    figures = {"tuning_queries": {name: len(items) for name, items in sets.items()},
               "metric": "the worse set's mean NDCG@10 against the labels, as a share of the fp32 graph's",
               "whole_int8": round(before, 5), "planned_int8": round(after, 5), "max_drop": max_drop,
               "quantized_matmuls": len(quantized), "left_in_float": len(reverted),
               "calibration_pairs": len(items), "seconds": round(time.perf_counter() - started, 1),
               "cpu_class": cpu_class(), "nncf": nncf.__version__}
    how = (f"NNCF {nncf.__version__} accuracy control (static int8, transformer preset) on "
           f"{sum(len(items) for items in sets.values())} labelled validation queries the gate never sees: "
           f"layers reverted to float until the worse set kept {100 * (1 - max_drop):g}% of fp32's NDCG@10")
    return Int8Plan(tuple(reverted), how, figures)


def make_int8_plan(artifact_dir: Path, recipe: Recipe, embed: Embed, data_dir: Path | None = None,
                   queries: int = TUNING_QUERIES, max_drop: float = MAX_DROP) -> tuple[Int8Plan, Path | None]:
    """The plan of the weights in artifact_dir and, where it leaves any layer in float, the file it
    was written to beside them (`INT8_PLAN_FILE`, recorded in their card). A plan that leaves
    nothing in float is not written: the whole-model int8 is what the export builds anyway."""
    import json

    from xscore.service.models.calibration import calibration_pairs
    from xscore.service.models.defaultmodel import CARD_FILE, materialize_default, sha256_file, shipped_export
    from xscore.service.models.ranking import OWN_RANKING_FILE, load_ranking_set

    artifact_dir = Path(artifact_dir)
    gate = load_ranking_set(artifact_dir / OWN_RANKING_FILE)
    gate_queries = {query.text for queries_, _ in gate.values() for query in queries_}
    sets = tuning_sets(recipe, embed, gate_queries, queries, data_dir, artifact_dir)
    with tempfile.TemporaryDirectory(prefix=".int8-plan-") as scratch:
        model_dir = materialize_default(Path(scratch) / "model", artifact_dir=artifact_dir)
        exporter = shipped_export(model_dir, artifact_dir)
        if exporter is None:
            raise ValueError(f"{artifact_dir} ships no graph for its weights: run vendor-base first")
        exporter.export_onnx(model_dir, Path(scratch) / "export")
        plan = find_int8_plan(Path(scratch) / "export" / "model.onnx", sets, calibration_pairs(), max_drop)
    if not plan.float_layers:
        return plan, None
    path = save_int8_plan(plan, artifact_dir / INT8_PLAN_FILE)
    card_path = artifact_dir / CARD_FILE
    card = json.loads(card_path.read_text())
    card["int8_plan"] = {"file": path.name, "sha256": sha256_file(path), "how": plan.how,
                         "float_layers": list(plan.float_layers)}
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return plan, path
