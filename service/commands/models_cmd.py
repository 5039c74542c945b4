"""`xscore models list`: what is in the export cache."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .. import cache


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="manage models")
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="list exported models in the cache")
    listing.add_argument("--cache", type=Path, default=None, help="cache directory")
    listing.add_argument("--json", action="store_true", help="JSON output")
    listing.set_defaults(func=run_list)


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
