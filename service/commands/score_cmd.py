"""`xscore score --query TEXT DOC...`: one-shot scoring, JSON to stdout."""

from __future__ import annotations

import argparse
import json
import sys

from xscore.service.commands.options import add_engine_options, add_length_options, engine_options, env, length_policy
from xscore.service.models.registry import ModelSpec, default_spec, load_model
from xscore.service.serving.blocking import BlockingScorer


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("score", help="score one query against documents (JSON out)")
    parser.add_argument("--model", default=env("MODEL"),
                        help="NAME=SOURCE or SOURCE; default: the default model (env XSCORE_MODEL)")
    parser.add_argument("--query", required=True, help="the query text")
    parser.add_argument("documents", nargs="*", help="documents; read one per line from stdin if none")
    parser.add_argument("--raw", action="store_true", help="return logits instead of activated scores")
    parser.add_argument("--no-truncate", dest="truncate", action="store_false",
                        help="fail on over-long pairs instead of truncating them")
    parser.add_argument("--top-k", type=int, default=None, help="keep the best K")
    parser.add_argument("--instruction", default=None,
                        help="the task for a causal-LM reranker's prompt (default: its own); cross-encoders ignore it")
    add_engine_options(parser)
    add_length_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    documents = args.documents or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    spec = ModelSpec.parse(args.model) if args.model else default_spec()
    model = load_model(spec, variant=args.variant, device=args.device, engine=args.engine,
                       options=engine_options(args), max_length=args.max_length)
    with BlockingScorer(model) as scorer:
        result = scorer.score(args.query, documents, top_k=args.top_k, raw=args.raw, truncate=args.truncate,
                              instruction=args.instruction, lengths=length_policy(args, args.long_documents))
    output = {
        "model": spec.name,
        "variant": model.manifest.variant,
        "scores": [{"index": entry.index, "rank": entry.rank, "score": entry.score, "text": documents[entry.index]}
                   for entry in result.scores],
        "truncated": result.usage.truncated,
    }
    if result.usage.windows:
        output["windows"] = result.usage.windows
    print(json.dumps(output, indent=2, ensure_ascii=False))
    return 0
