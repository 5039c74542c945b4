"""`xscore models list|build-default|evaluate-default`: the export cache and the default model."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from xscore.service.models import cache, variants
from xscore.service.models.selection import engine_label


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="manage models")
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="list exported models in the cache")
    listing.add_argument("--cache", type=Path, default=None, help="cache directory")
    listing.add_argument("--json", action="store_true", help="JSON output")
    listing.set_defaults(func=run_list)
    build = actions.add_parser("build-default", help="rerun the default model's recipe (apt data, training)")
    build.add_argument("--dest", type=Path, default=None,
                       help="where weights, eval set and card go (default: the shipped artifact directory)")
    build.add_argument("--data-dir", type=Path, default=None,
                       help="cache for the Debian indexes (default: $XSCORE_CACHE/defaultmodel-data)")
    build.add_argument("--no-evaluate", action="store_true", help="skip the held-out evaluation")
    build.set_defaults(func=run_build_default)
    evaluate = actions.add_parser("evaluate-default", help="MRR@10 / NDCG@10 of the default model vs baselines")
    evaluate.add_argument("--variant", action="append", default=[], choices=variants.NAMES,
                          help="also rank with this exported variant on its serving engine (repeatable)")
    evaluate.add_argument("--json", action="store_true", help="JSON output")
    evaluate.set_defaults(func=run_evaluate_default)


def run_list(args: argparse.Namespace) -> int:
    """Every export in the cache with its fidelity, and per machine class what `auto` measured,
    serves and why."""
    from xscore.service.models.engines import GROUP_SIZE_FACT
    from xscore.service.models.selection import Decision

    root = args.cache or cache.cache_root()
    models: dict[str, dict] = {}
    for model_dir in sorted(path for path in root.glob("*") if path.is_dir()):
        entries = []
        for manifest_path in sorted(model_dir.glob("*/manifest.json")):
            manifest = cache.load_complete(manifest_path.parent)
            if manifest is not None:
                entries.append({"source": manifest.source, "variant": manifest.variant,
                                "path": str(manifest_path.parent), "parity": manifest.parity,
                                "ranking": manifest.ranking, "ranking_own": manifest.ranking_own,
                                "quantization_group_size": manifest.extra.get(GROUP_SIZE_FACT)})
        # a decision whose served export is gone (other library versions, a cleaned cache) is
        # history, not what auto serves: the next start decides again
        decisions = [decision for path in sorted(model_dir.glob("auto-*.json"), key=lambda p: p.stat().st_mtime)
                     if (decision := Decision.read(path)) is not None
                     and cache.load_complete(Path(decision.directory)) is not None]
        if entries or decisions:
            source = entries[0]["source"] if entries else decisions[0].model
            models[str(model_dir)] = {"source": source, "variants": entries,
                                      "auto": [dataclasses.asdict(decision) for decision in decisions]}
    if args.json:
        print(json.dumps(list(models.values()), indent=2))
    elif not models:
        print(f"no exported models in {root}")
    else:
        for model in models.values():
            print(_describe(model))
    return 0


def _describe(model: dict) -> str:
    lines = [model["source"]]
    for entry in model["variants"]:
        parity, ranking = entry["parity"], entry["ranking"]
        figures = f"probe max|diff| {parity['max_abs_diff']:.2e}  Spearman {parity['spearman']:.4f}"
        if ranking:
            figures += (f"  ranking Spearman {ranking['spearman_mean']:.4f} (min {ranking['spearman_min']:.4f})"
                        f"  NDCG@10 {100 * ranking['ndcg10_ratio']:.2f}%")
        for name, own in (entry.get("ranking_own") or {}).items():
            figures += f"  {name} NDCG@10 {100 * own['ndcg10_ratio']:.2f}%"
            if "unfallen_share" in own:  # exports gated before it was measured lack it
                figures += f" (kept where worse {100 * own['unfallen_share']:.2f}%)"
        if entry.get("quantization_group_size"):
            figures += f"  groups of {entry['quantization_group_size']}"
        lines.append(f"  {entry['variant']:5}  {figures}  {entry['path']}")
    for decision in model["auto"]:
        machine = decision["machine"]
        served = engine_label(decision["variant"], decision["engine"], decision.get("streams", 1))
        lines.append(f"  auto on {machine['cpu']} ({machine['class']}, {machine['cores']} cores, {decision['device']}): "
                     f"serves {served}: {decision['reason']}")
        for trial in decision["trials"]:
            speed = f"{trial['pairs_per_s']:8.1f} pairs/s" if trial["pairs_per_s"] else f"{trial['status']:>15}"
            label = engine_label(trial["variant"], trial["engine"], trial.get("streams", 1))
            chosen = "*" if label == served and trial["status"] == "measured" else " "
            reason = f"  {trial['reason']}" if trial["reason"] else ""
            lines.append(f"   {chosen} {label:32} {speed}{reason}")
    return "\n".join(lines)


def run_build_default(args: argparse.Namespace) -> int:
    from xscore.recipes.default_model import ARTIFACT_DIR, build_default

    print(build_default(args.dest or ARTIFACT_DIR, data_dir=args.data_dir, evaluate=not args.no_evaluate))
    return 0


def run_evaluate_default(args: argparse.Namespace) -> int:
    from xscore.recipes.default_model.__main__ import main as defaultmodel_main

    return defaultmodel_main(["evaluate", *[f"--variant={v}" for v in args.variant], *(["--json"] if args.json else [])])
