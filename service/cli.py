"""The `xscore` console script: a table of subcommands, each in its own module."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from xscore.api.errors import XscoreError
from xscore.service.commands import bench_cmd, export_cmd, models_cmd, score_cmd, serve_cmd

# Each module has `register(subparsers)`, which adds its parser with `func` set to its runner.
COMMANDS = [export_cmd, score_cmd, serve_cmd, models_cmd, bench_cmd]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xscore", description="Cross-encoder scoring service.")
    parser.add_argument("--log-level", default=os.environ.get("XSCORE_LOG_LEVEL", "INFO"),
                        help="logging level (env XSCORE_LOG_LEVEL)")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except XscoreError as exc:
        print(f"xscore: error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
