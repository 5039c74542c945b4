"""`xscore models list|build-default|evaluate-default`: the export cache and the default model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from xscore.service.models import cache, variants


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
    root = args.cache or cache.cache_root()
    entries = []
    for manifest_path in sorted(root.glob("*/*/manifest.json")):
        manifest = cache.load_complete(manifest_path.parent)
        if manifest is not None:
            entries.append({"source": manifest.source, "variant": manifest.variant,
                            "path": str(manifest_path.parent), "parity": manifest.parity})
    if args.json:
        print(json.dumps(entries, indent=2))
    elif not entries:
        print(f"no exported models in {root}")
    else:
        for entry in entries:
            parity = entry["parity"]
            print(f"{entry['source']}  {entry['variant']:5}  max|diff| {parity['max_abs_diff']:.2e}  "
                  f"spearman {parity['spearman']:.4f}  {entry['path']}")
    return 0


def run_build_default(args: argparse.Namespace) -> int:
    from xscore.recipes.default_model import ARTIFACT_DIR, build_default

    print(build_default(args.dest or ARTIFACT_DIR, data_dir=args.data_dir, evaluate=not args.no_evaluate))
    return 0


def run_evaluate_default(args: argparse.Namespace) -> int:
    from xscore.recipes.default_model.__main__ import main as defaultmodel_main

    return defaultmodel_main(["evaluate", *[f"--variant={v}" for v in args.variant], *(["--json"] if args.json else [])])
