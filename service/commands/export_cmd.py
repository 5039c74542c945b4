"""`xscore export SOURCE`: export, optimize and quantize a model into the cache, print parity."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from xscore.service.commands.options import env
from xscore.service.models import variants
from xscore.service.models.export import export


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="export a model to ONNX variants, with parity checks")
    parser.add_argument("source", help="hub id (org/name) or local model directory")
    parser.add_argument("--variant", action="append", choices=variants.NAMES,
                        help="variant to build (repeatable; default fp32)")
    parser.add_argument("--revision", help="hub revision (branch, tag or commit)")
    parser.add_argument("--output", type=Path, default=None,
                        help="cache directory (default $XSCORE_CACHE or ~/.cache/xscore)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    output = args.output or (Path(env("CACHE")) if env("CACHE") else None)
    results = export(args.source, args.variant or ["fp32"], root=output, revision=args.revision)
    report = {
        variant: {
            "path": str(result.path),
            "reused": result.reused,
            "export_seconds": result.manifest.export_seconds,
            "parity": result.manifest.parity,
        }
        for variant, result in results.items()
    }
    print(json.dumps(report, indent=2))
    return 0
