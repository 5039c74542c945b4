"""Flags shared by several subcommands; each mirrors an XSCORE_* environment variable."""

from __future__ import annotations

import argparse
import os
import sys

from xscore.api.errors import invalid
from xscore.api.schema import AGGREGATES, LONG_DOCUMENT_MODES, LengthPolicy, check_lengths
from xscore.service.models.engines import DEVICES, ENGINES, EngineOptions
from xscore.service.models.registry import VARIANT_CHOICES
from xscore.service.serving.lengths import DEFAULT_LENGTHS


def env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"XSCORE_{name}", default)


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=DEVICES, default=env("DEVICE", "auto"),
                        help="where to run (env XSCORE_DEVICE)")
    parser.add_argument("--engine", choices=ENGINES, default=env("ENGINE", "auto"),
                        help="inference runtime (env XSCORE_ENGINE)")
    parser.add_argument("--variant", choices=VARIANT_CHOICES, default=env("VARIANT", "auto"),
                        help="exported variant to serve (env XSCORE_VARIANT)")
    parser.add_argument("--threads", type=int, default=int_env("THREADS") or None,
                        help="CPU threads per engine; default: physical cores (env XSCORE_THREADS)")
    parser.add_argument("--streams", type=int, default=int_env("STREAMS") or None,
                        help="OpenVINO streams: 1 = LATENCY mode, N > 1 = THROUGHPUT mode, N batches in "
                             "flight (default: 2 where there are 2 cores or more; 1 gives the lowest "
                             "latency to a lone request) (env XSCORE_STREAMS)")
    parser.add_argument("--max-length", type=int, default=int_env("MAX_LENGTH") or None,
                        help="cap on tokens per pair; default: the model's own (env XSCORE_MAX_LENGTH)")


def engine_options(args: argparse.Namespace) -> EngineOptions:
    return EngineOptions(threads=args.threads, streams=args.streams)


def number_env(name: str, default: float | None = None) -> float | None:
    return _parsed_env(name, float, "a number", default)


def int_env(name: str, default: int | None = None) -> int | None:
    return _parsed_env(name, int, "an integer", default)


def _parsed_env(name, parse, kind: str, default):
    """A flag's default from its variable; a value that does not parse ends the command with
    argparse's status and a line naming the variable (e.g. the `tcp://...` that Kubernetes'
    service links put in XSCORE_HTTP_PORT for a Service named xscore-http)."""
    value = env(name)
    if not value:
        return default
    try:
        return parse(value)
    except ValueError:
        print(f"xscore: error: XSCORE_{name}={value!r} is not {kind}", file=sys.stderr)
        raise SystemExit(2) from None


def add_length_options(parser: argparse.ArgumentParser, *, per_model: bool = False) -> None:
    """Token caps and long-document handling: the default of every request that leaves them unset."""
    parser.add_argument("--max-tokens-per-doc", type=int, default=int_env("MAX_TOKENS_PER_DOC"),
                        help="cut each document to this many tokens first; default: no cap "
                             "(env XSCORE_MAX_TOKENS_PER_DOC)")
    parser.add_argument("--max-tokens-per-query", type=int, default=int_env("MAX_TOKENS_PER_QUERY"),
                        help="cut each query to this many tokens first; default: no cap "
                             "(env XSCORE_MAX_TOKENS_PER_QUERY)")
    per = " or NAME=MODE for one model, repeatable" if per_model else ""
    parser.add_argument("--long-documents", action="append" if per_model else "store",
                        default=None if per_model else env("LONG_DOCUMENTS"),
                        help=f"a document over the room the query leaves: {' or '.join(LONG_DOCUMENT_MODES)} "
                             f"(score overlapping windows, aggregate their scores); MODE{per}; default "
                             f"{DEFAULT_LENGTHS.long_documents} (env XSCORE_LONG_DOCUMENTS)")
    parser.add_argument("--chunk-overlap", type=int, default=int_env("CHUNK_OVERLAP"),
                        help=f"tokens neighbouring windows share; default {DEFAULT_LENGTHS.chunk_overlap} "
                             "(env XSCORE_CHUNK_OVERLAP)")
    parser.add_argument("--aggregate", choices=AGGREGATES, default=env("AGGREGATE"),
                        help=f"a chunked document's score from its windows'; default {DEFAULT_LENGTHS.aggregate} "
                             "(env XSCORE_AGGREGATE)")
    parser.add_argument("--max-chunks-per-doc", type=int, default=int_env("MAX_CHUNKS_PER_DOC"),
                        help=f"windows scored per document, the rest is cut; default "
                             f"{DEFAULT_LENGTHS.max_chunks_per_doc} (env XSCORE_MAX_CHUNKS_PER_DOC)")


def length_policy(args: argparse.Namespace, mode: str | None) -> LengthPolicy:
    """The length flags as a policy, with `mode` for long documents (None: the server default)."""
    return check_lengths(LengthPolicy(
        max_tokens_per_doc=args.max_tokens_per_doc, max_tokens_per_query=args.max_tokens_per_query,
        long_documents=mode, chunk_overlap=args.chunk_overlap, aggregate=args.aggregate,
        max_chunks_per_doc=args.max_chunks_per_doc))


def model_length_policies(args: argparse.Namespace, names: list[str]) -> dict[str, LengthPolicy]:
    """Each served model's default policy: `--long-documents MODE` for all, `NAME=MODE` for one."""
    given = args.long_documents or [mode for mode in (env("LONG_DOCUMENTS") or "").split(",") if mode]
    shared: str | None = None
    own: dict[str, str] = {}
    for entry in given:
        name, sep, mode = entry.rpartition("=")
        if not sep:
            shared = mode
        elif name not in names:
            raise invalid(f"--long-documents {entry}: no served model is named {name!r} "
                          f"(served: {', '.join(names)})", field="long_documents")
        else:
            own[name] = mode
    return {name: length_policy(args, own.get(name, shared)) for name in names}
