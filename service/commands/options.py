"""Flags shared by several subcommands; each mirrors an XSCORE_* environment variable."""

from __future__ import annotations

import argparse
import os

from xscore.service.models.engines import DEVICES, ENGINES, EngineOptions
from xscore.service.models.registry import VARIANT_CHOICES


def env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"XSCORE_{name}", default)


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=DEVICES, default=env("DEVICE", "auto"),
                        help="where to run (env XSCORE_DEVICE)")
    parser.add_argument("--engine", choices=ENGINES, default=env("ENGINE", "auto"),
                        help="inference runtime (env XSCORE_ENGINE)")
    parser.add_argument("--variant", choices=VARIANT_CHOICES, default=env("VARIANT", "auto"),
                        help="exported variant to serve (env XSCORE_VARIANT)")
    parser.add_argument("--threads", type=int, default=int(env("THREADS", "0") or 0) or None,
                        help="CPU threads per engine; default: physical cores (env XSCORE_THREADS)")
    parser.add_argument("--streams", type=int, default=int(env("STREAMS", "1") or 1),
                        help="OpenVINO streams: 1 = LATENCY mode (default, measured best on an idle "
                             "2-core CPU); N > 1 = THROUGHPUT mode, N batches in flight (env XSCORE_STREAMS)")
    parser.add_argument("--max-length", type=int, default=int(env("MAX_LENGTH", "0") or 0) or None,
                        help="cap on tokens per pair; default: the model's own (env XSCORE_MAX_LENGTH)")


def engine_options(args: argparse.Namespace) -> EngineOptions:
    return EngineOptions(threads=args.threads, streams=args.streams)
