"""`xscore serve`: load models and serve them over gRPC and HTTP (or HTTP only, with --upstream)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
from pathlib import Path

from xscore.api.errors import invalid
from xscore.api.tls import TlsFiles
from xscore.service.commands.options import (
    add_engine_options,
    add_length_options,
    engine_options,
    env,
    int_env,
    model_length_policies,
    number_env,
)
from xscore.service.models.registry import ModelSpec, default_spec
from xscore.service.serving.batcher import BatcherConfig
from xscore.service.serving.runtime import DRAIN_TIMEOUT_S, Runtime, ServeConfig, load_models
from xscore.service.serving.score_cache import DEFAULT_MAX_MB
from xscore.service.serving.validation import Limits


def _auth_token(args: argparse.Namespace) -> str | None:
    if args.auth_token_file is None:
        return args.auth_token
    if args.auth_token:
        raise invalid("give --auth-token or --auth-token-file, not both", field="auth_token")
    try:
        token = args.auth_token_file.read_text().strip()
    except OSError as exc:
        raise invalid(f"cannot read --auth-token-file {args.auth_token_file}: {exc.strerror}",
                      field="auth_token_file") from None
    if not token:
        raise invalid(f"--auth-token-file {args.auth_token_file} is empty", field="auth_token_file")
    return token


def _path_env(name: str) -> Path | None:
    value = env(name)
    return Path(value) if value else None


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="serve models over gRPC and HTTP (health, reflection, metrics)")
    parser.add_argument("--model", action="append", default=None,
                        help="NAME=SOURCE or SOURCE, repeatable; default: the default model as 'default' "
                             "(env XSCORE_MODEL, comma-separated)")
    parser.add_argument("--host", default=env("HOST", "127.0.0.1"), help="bind address (env XSCORE_HOST)")
    parser.add_argument("--grpc-port", type=int, default=int_env("GRPC_PORT", 50051),
                        help="gRPC port, 0 = a free one (env XSCORE_GRPC_PORT)")
    parser.add_argument("--http-port", type=int, default=int_env("HTTP_PORT", 8080),
                        help="HTTP port, 0 = a free one (env XSCORE_HTTP_PORT)")
    parser.add_argument("--upstream", default=env("UPSTREAM"),
                        help="the remote scorer(s) of the HTTP gateway: HOST:PORT, several comma-separated, or a "
                             "dns:/// name (a headless Service); calls go round-robin over every address "
                             "(env XSCORE_UPSTREAM)")
    parser.add_argument("--cors-origin", action="append", default=None,
                        help="origin allowed to call the HTTP API from a browser, repeatable; '*' for any; "
                             "default: CORS off (env XSCORE_CORS_ORIGINS, comma-separated)")
    parser.add_argument("--auth-token", default=env("AUTH_TOKEN"),
                        help="require 'Bearer TOKEN' authorization on HTTP and gRPC (probes, metrics, docs, "
                             "health and reflection stay open); with --upstream, sent to the remote scorer "
                             "(env XSCORE_AUTH_TOKEN)")
    parser.add_argument("--auth-token-file", type=Path, default=_path_env("AUTH_TOKEN_FILE"),
                        help="read the token from this file instead, so it stays out of process lists "
                             "(env XSCORE_AUTH_TOKEN_FILE)")
    parser.add_argument("--tls-cert", type=Path, default=_path_env("TLS_CERT"),
                        help="PEM certificate chain: serve gRPC and HTTP over TLS (env XSCORE_TLS_CERT)")
    parser.add_argument("--tls-key", type=Path, default=_path_env("TLS_KEY"),
                        help="PEM private key of --tls-cert (env XSCORE_TLS_KEY)")
    parser.add_argument("--tls-client-ca", type=Path, default=_path_env("TLS_CLIENT_CA"),
                        help="require client certificates signed by this CA (mutual TLS; env XSCORE_TLS_CLIENT_CA)")
    parser.add_argument("--upstream-ca", type=Path, default=_path_env("UPSTREAM_CA"),
                        help="reach --upstream over TLS, verified with this CA; the gateway presents --tls-cert "
                             "to an upstream that wants a client certificate (env XSCORE_UPSTREAM_CA)")
    parser.add_argument("--max-batch-tokens", type=int, default=int_env("MAX_BATCH_TOKENS", None),
                        help="padded tokens per engine batch; default: the engine's measured best")
    parser.add_argument("--max-batch-pairs", type=int, default=int_env("MAX_BATCH_PAIRS", 256),
                        help="pairs per engine batch (env XSCORE_MAX_BATCH_PAIRS)")
    parser.add_argument("--max-queue-pairs", type=int, default=int_env("MAX_QUEUE_PAIRS", 4096),
                        help="pairs queued per model before RESOURCE_EXHAUSTED (env XSCORE_MAX_QUEUE_PAIRS)")
    parser.add_argument("--max-items", type=int, default=int_env("MAX_ITEMS", 1000),
                        help="items (or documents) per request (env XSCORE_MAX_ITEMS)")
    parser.add_argument("--max-text-chars", type=int, default=int_env("MAX_TEXT_CHARS", 100_000),
                        help="characters per query or document (env XSCORE_MAX_TEXT_CHARS)")
    parser.add_argument("--drain-timeout", type=float, default=number_env("DRAIN_TIMEOUT", DRAIN_TIMEOUT_S),
                        help="seconds to finish in-flight calls after SIGTERM (env XSCORE_DRAIN_TIMEOUT)")
    parser.add_argument("--score-cache-mb", type=float, default=number_env("SCORE_CACHE_MB", DEFAULT_MAX_MB),
                        help="memory for scores of pairs already seen (same model, variant and tokens); a hit "
                             f"skips the engine; 0 turns it off; default {DEFAULT_MAX_MB} (env XSCORE_SCORE_CACHE_MB)")
    add_engine_options(parser)
    add_length_options(parser, per_model=True)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.score_cache_mb < 0:
        raise invalid(f"--score-cache-mb must be >= 0, got {args.score_cache_mb:g}", field="score_cache_mb")
    config = ServeConfig(
        host=args.host,
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        upstream=args.upstream,
        cors_origins=tuple(args.cors_origin or [o for o in (env("CORS_ORIGINS") or "").split(",") if o]),
        auth_token=_auth_token(args),
        tls=TlsFiles(args.tls_cert, args.tls_key, args.tls_client_ca) if args.tls_cert or args.tls_key else None,
        upstream_tls=TlsFiles(args.tls_cert, args.tls_key, args.upstream_ca) if args.upstream_ca else None,
        drain_timeout_s=args.drain_timeout,
        limits=Limits(max_items_per_request=args.max_items, max_text_chars=args.max_text_chars),
        batcher=BatcherConfig(max_batch_tokens=args.max_batch_tokens, max_batch_pairs=args.max_batch_pairs,
                              max_queue_pairs=args.max_queue_pairs),
        score_cache_bytes=int(args.score_cache_mb * 1024 * 1024),
    )
    if args.upstream:
        if args.model:
            raise invalid("--upstream serves a remote scorer's models; drop --model", field="model")
        return asyncio.run(Runtime({}, config).serve())
    given = args.model or [spec for spec in (env("MODEL") or "").split(",") if spec]
    specs = [ModelSpec.parse(spec) for spec in given] or [default_spec()]
    lengths = model_length_policies(args, [spec.name for spec in specs])  # refused before any model loads
    models = load_models(specs, variant=args.variant, device=args.device, engine=args.engine,
                         options=engine_options(args), max_length=args.max_length)
    return asyncio.run(Runtime(models, dataclasses.replace(config, lengths=lengths)).serve())
