"""The default model's int8 plan: which matmuls static int8 leaves in float, searched on
validation text the export's gate never sees.

Whole-model static int8 kept every stdlib query's order and still lost labelled WordNet answers
(99.13% of fp32's NDCG@10 on the model's own set, where the gate asks 99.5%). The search builds
the export's own static int8 (`variants.build_nncf_int8`, the plan as an ignored scope) with one
role of matmuls in float at a time (a role is the same matmul in every layer: `role_groups`),
scores each on the tuning queries whole int8 moved, then leaves roles in float in that order,
building and scoring on every tuning query each time, until the queries int8 ranks worse lost at
most `MAX_DROP` of fp32's NDCG@10 on the worse set (`unfallen_share`: a query ranked better does
not pay for one ranked worse), or gives up once half the matmuls would be float.

Tuning queries are validation text (never trained on, never an evaluation query) that is not in
the ranking set the export gates on. The fp32 graph is the shipped one (`ShippedExport`), so the
node names in the plan are the ones every export of these weights has.

Recipe 7, AVX-512 VNNI + BF16 class (`benchmarks/results/int8_plan_search-*-recipe7*.json`):
- NNCF's accuracy control on the mean NDCG@10 share (150 + 150 and 300 + 300 queries) found whole
  int8 within 0.1% and reverted nothing: gains on some queries hid losses on others.
- With the metric above, NNCF's accuracy control made things worse: its reverting, done on the
  quantized ONNX graph, read a 3.2% drop with no matmul reverted against whole int8's 1.5%.
  Hence candidates built as the export builds them.
- This search (25 minutes): whole int8 kept 98.88% on WordNet (20 of 300 queries ranked worse;
  bf16 99.96%, 2 worse). The FFN down-projections in float 99.23%, both FFN matmuls 99.01%;
  0.4% was reached only with 42 of 44 matmuls in float. The loss is spread over the graph, so no
  plan ships, and bf16 stays what auto serves on this class.
"""

from __future__ import annotations

import logging
import re
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from xscore.recipes.default_model.data import Embed, EvalQuery
from xscore.recipes.default_model.train import Recipe
from xscore.service.models.int8_plan import INT8_PLAN_FILE, Int8Plan, quantized_matmuls, save_int8_plan
from xscore.service.models.ranking import unfallen_share

log = logging.getLogger(__name__)

TUNING_QUERIES = 300  # per set, beyond the gate's
MAX_DROP = 0.004  # what falls may cost: within the gate's net 0.5%, with room for queries the search never saw
BATCH_TOKENS = 4096
# Beyond half its matmuls in float, an int8 is mostly the float variant it falls back to (bf16
# here), slower and no better: the search gives up there rather than ship it.
MAX_FLOAT_SHARE = 0.5
METRIC = ("the worse set's NDCG@10 against the labels that no query lost: 1 - (sum of each query's fall "
          "below the fp32 graph) / (sum of the fp32 graph's)")


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


def role_groups(layers: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Quantized matmuls grouped by their role across the encoder's layers: every layer's FFN
    down-projection is one group ("/bert/encoder/layer.*/output/dense/MatMul"). No single matmul
    carries static int8's loss (earlier recipes' trials), so a role is what a plan leaves in float."""
    groups: dict[str, list[str]] = defaultdict(list)
    for name in sorted(layers):
        groups[re.sub(r"layer\.\d+", "layer.*", name)].append(name)
    return {role: tuple(names) for role, names in groups.items()}


class _Tuning:
    """The tuning queries encoded once, the fp32 graph's NDCG@10 on each, and the metric of a
    graph on any of them, run as the export serves it: OpenVINO, int8 where it is quantized."""

    def __init__(self, fp32_onnx: Path, sets: Mapping[str, Sequence[EvalQuery]]) -> None:
        from xscore.service.models.tokenization import PairTokenizer

        self.tokenizer = PairTokenizer.from_dir(fp32_onnx.parent)
        self.items = [(name, item) for name, items in sets.items() for item in items]
        self._pairs = [self.tokenizer.encode([item.query] * len(item.candidates), list(item.candidates))
                       for _, item in self.items]
        self.reference = self._ndcgs(fp32_onnx, "fp32", range(len(self.items)))

    def _ndcgs(self, path: Path, precision: str, indices: Sequence[int]) -> list[float]:
        from xscore.service.models.engines.openvino import OpenVinoEngine
        from xscore.service.models.planner import run_planned
        from xscore.service.models.ranking import ndcg_at_10

        engine = OpenVinoEngine(path, precision=precision)
        out = []
        for index in indices:
            gains = np.asarray(self.items[index][1].relevance, np.float64)
            scores = run_planned(engine.run, self._pairs[index], self.tokenizer.pad_id, BATCH_TOKENS)
            out.append(ndcg_at_10(gains, scores[:, 0].astype(np.float64)) / (ndcg_at_10(gains, gains) or 1.0))
        return out

    def metric(self, int8_onnx: Path, indices: Sequence[int]) -> tuple[float, list[float]]:
        """(the worse set's share of fp32's NDCG@10 that no query lost, each query's NDCG@10): a
        query that int8 ranks better does not pay for one it ranks worse."""
        indices = list(indices)
        ndcgs = self._ndcgs(int8_onnx, "int8", indices)
        return self.worse_share(indices, ndcgs), ndcgs

    def worse_share(self, indices: Sequence[int], ndcgs: Sequence[float]) -> float:
        """The worse set's unfallen share of per-query NDCG@10 already measured on `indices`."""
        shares = []
        for name in dict.fromkeys(self.items[index][0] for index in indices):
            mine = [i for i, index in enumerate(indices) if self.items[index][0] == name]
            shares.append(unfallen_share([self.reference[indices[i]] for i in mine], [ndcgs[i] for i in mine]))
        return min(shares)


def _build_int8(fp32_onnx: Path, float_layers: Sequence[str], calibration: Sequence[tuple[str, str]],
                output: Path) -> Path:
    """The export's static int8 of `fp32_onnx` with `float_layers` as its plan, at `output`."""
    from xscore.service.models.variants import build_nncf_int8

    plan_path = fp32_onnx.parent / INT8_PLAN_FILE
    carried = plan_path.read_bytes() if plan_path.is_file() else None  # the graph's own plan, put back after
    save_int8_plan(Int8Plan(tuple(float_layers), "a candidate of the search"), plan_path)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        build_nncf_int8(fp32_onnx, output, calibration)
    finally:
        if carried is None:
            plan_path.unlink()
        else:
            plan_path.write_bytes(carried)
    return output


def find_int8_plan(fp32_onnx: Path, sets: Mapping[str, Sequence[EvalQuery]],
                   calibration: Sequence[tuple[str, str]], max_drop: float = MAX_DROP) -> Int8Plan:
    """The roles static int8 leaves in float for the fp32 graph at `fp32_onnx` (its tokenizer
    beside it), each candidate built as the export builds it; no layers when whole-model int8
    already keeps the bar, or when no order of roles reaches it (the figures say which)."""
    import nncf
    import onnx

    from xscore.service.models.hardware import cpu_class

    started = time.perf_counter()
    tuning = _Tuning(fp32_onnx, sets)
    everything = range(len(tuning.items))
    with tempfile.TemporaryDirectory(prefix=".int8-plan-") as scratch:
        def build(layers: Sequence[str], name: str) -> Path:
            return _build_int8(fp32_onnx, layers, calibration, Path(scratch) / name / "model.onnx")

        whole_path = build((), "whole")
        whole, whole_ndcgs = tuning.metric(whole_path, everything)
        roles = role_groups(quantized_matmuls(onnx.load(str(whole_path))))
        moved = [index for index in everything if whole_ndcgs[index] != tuning.reference[index]]
        figures: dict[str, Any] = {
            "tuning_queries": {name: len(items) for name, items in sets.items()}, "metric": METRIC,
            "whole_int8": round(whole, 5), "max_drop": max_drop, "quantized_matmuls": sum(map(len, roles.values())),
            "queries_whole_int8_moves": len(moved), "calibration_pairs": len(calibration)}
        chosen: list[str] = []
        if whole < 1 - max_drop and moved:
            alone = {}
            for number, (role, names) in enumerate(tqdm(roles.items(), desc="int8 plan: each role in float",
                                                        unit="role"), 1):
                alone[role] = tuning.metric(build(names, f"role-{number}"), moved)[0]
            figures["each_role_in_float_on_moved_queries"] = {role: round(share, 5) for role, share in alone.items()}
            figures["whole_int8_on_moved_queries"] = round(
                tuning.worse_share(moved, [whole_ndcgs[index] for index in moved]), 5)
            steps = []
            for role in sorted(alone, key=alone.__getitem__, reverse=True):
                if alone[role] <= figures["whole_int8_on_moved_queries"]:
                    break
                if len(chosen) + len(roles[role]) > MAX_FLOAT_SHARE * figures["quantized_matmuls"]:
                    break
                chosen.extend(roles[role])
                share, _ = tuning.metric(build(chosen, f"step-{len(steps)}"), everything)
                steps.append({"role": role, "worse_set": round(share, 5)})
                log.info("int8 plan: %s in float too -> %.5f of fp32's NDCG@10 kept", role, share)
                if share >= 1 - max_drop:
                    break
            figures["steps"] = steps
            if not steps or steps[-1]["worse_set"] < 1 - max_drop:
                chosen = []
                figures["reached"] = False
    figures.update({"left_in_float": len(chosen), "seconds": round(time.perf_counter() - started, 1),
                    "cpu_class": cpu_class(), "nncf": nncf.__version__})
    how = (f"NNCF {nncf.__version__} static int8 (the export's) with one role of matmuls after another left in "
           f"float, in the order each alone won most back, until the queries int8 ranks worse lost at most "
           f"{100 * max_drop:g}% of fp32's NDCG@10 on the worse of "
           f"{' and '.join(f'{len(items)} {name}' for name, items in sets.items())} labelled validation queries "
           f"the gate never sees")
    return Int8Plan(tuple(chosen), how, figures)


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
