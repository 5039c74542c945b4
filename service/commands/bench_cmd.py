"""`xscore bench`: load-test a rerank endpoint (xscore's or a peer's), closed or open loop."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xscore.api.errors import invalid
from xscore.bench import loadgen, report, stats
from xscore.bench.protocols import PROTOCOLS, adapter
from xscore.bench.server import ServerWatch
from xscore.bench.workloads import KINDS, Request, Workload, from_jsonl, generate
from xscore.service.models.hardware import cpu_class, machine

log = logging.getLogger(__name__)


def _levels(text: str, kind: type, name: str) -> list:
    try:
        levels = [kind(value) for value in text.split(",") if value.strip()]
    except ValueError:
        raise invalid(f"--{name} takes numbers separated by commas, got {text!r}", field=name) from None
    if not levels or any(level <= 0 for level in levels):
        raise invalid(f"--{name} needs positive numbers, got {text!r}", field=name)
    return levels


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench", help="load-test a rerank endpoint: xscore (gRPC, msgpack, JSON) or a peer's API",
        description="Closed loop (--clients) or open loop (--rate, Poisson arrivals, latency from the intended "
                    "send time) against TARGET, one run per level; writes results.json, report.md and plots.")
    parser.add_argument("--target", required=True,
                        help="http(s)://HOST:PORT for the HTTP protocols, HOST:PORT for xscore-grpc")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="xscore-msgpack")
    parser.add_argument("--model", default="default", help="model name to ask for (default: default)")
    parser.add_argument("--workload", choices=tuple(KINDS), default="rerank-100",
                        help="generated requests: 1 query x 10/100/500 passages of 60-300 tokens, one short pair, "
                             "or mixed sizes (default rerank-100)")
    parser.add_argument("--requests-file", type=Path,
                        help='your own requests instead: JSONL, {"query": ..., "documents": [...]} a line')
    parser.add_argument("--seed", type=int, default=0)
    loop = parser.add_mutually_exclusive_group()
    loop.add_argument("--clients", default=None, help="closed loop: concurrent clients, e.g. 1,8,32 (default 8)")
    loop.add_argument("--rate", default=None, help="open loop: requests/s offered, e.g. 5,10,20")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds measured per run (default 20)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds sent first and left out (default 3)")
    parser.add_argument("--max-requests", type=int, default=None, help="at most this many measured requests per run (after the warm-up)")
    parser.add_argument("--max-in-flight", type=int, default=1024,
                        help="open loop: requests in flight at most; past it a send counts as 'client saturated'")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds a request may take (default 60)")
    parser.add_argument("--token", default=None, help="bearer token for a guarded server")
    parser.add_argument("--server-pid", type=int, default=None,
                        help="a local server's process id: its CPU and peak RSS are sampled during each run")
    parser.add_argument("--output", type=Path, default=None,
                        help="report folder (default ./xscore-bench-<cpu class>-<date>-<time>)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


async def _runs(args: argparse.Namespace, requests: Sequence[Request]) -> tuple[list[loadgen.Run], list[dict[str, Any]]]:
    open_loop = args.rate is not None
    levels = _levels(args.rate, float, "rate") if open_loop else _levels(args.clients or "8", int, "clients")
    runs, summaries = [], []
    for level in levels:
        connections = args.max_in_flight if open_loop else int(level)
        client = adapter(args.protocol, args.target, args.model, connections=connections, timeout=args.timeout,
                         token=args.token)
        watching = ServerWatch(args.server_pid) if args.server_pid else contextlib.nullcontext()
        with watching as watch:
            try:
                result = await _one_run(args, client, requests, level, open_loop)
            finally:
                await client.close()
        summary = stats.summary(result)
        if watch is not None:
            summary["server"] = watch.figures()
        log.info("%s %g: %d answered of %d, %.1f pairs/s, p50 %.1f ms, p99 %.1f ms, errors %s", result.mode,
                 level, summary["answered"], summary["requests"], summary["pairs_per_s"],
                 summary["latency_ms"]["p50"], summary["latency_ms"]["p99"], summary["errors"] or "none")
        if not summary["answered"] and not summary["errors"]:
            log.warning("%s %g: no answer arrived within the %g s window; a request takes longer than that at this "
                        "load here, so raise --duration", result.mode, level, args.duration)
        runs.append(result)
        summaries.append(summary)
    return runs, summaries


async def _one_run(args: argparse.Namespace, client, requests: Sequence[Request], level: float, open_loop: bool) -> loadgen.Run:
    if open_loop:
        return await loadgen.open_loop(client, requests, level, duration_s=args.duration, warmup_s=args.warmup,
                                       max_requests=args.max_requests, max_in_flight=args.max_in_flight,
                                       seed=args.seed, progress=not args.quiet)
    return await loadgen.closed_loop(client, requests, int(level), duration_s=args.duration, warmup_s=args.warmup,
                                     max_requests=args.max_requests, progress=not args.quiet)


def run(args: argparse.Namespace) -> int:
    if args.duration <= 0 or args.warmup < 0:
        raise invalid("--duration must be > 0 and --warmup >= 0", field="duration")
    requests = from_jsonl(args.requests_file) if args.requests_file else generate(args.workload, args.seed)
    runs, summaries = asyncio.run(_runs(args, requests))
    now = datetime.datetime.now()
    output = args.output or Path(f"xscore-bench-{cpu_class()}-{now:%Y%m%d-%H%M%S}")
    setup = {
        "target": args.target, "protocol": args.protocol, "model": args.model,
        "workload": str(args.requests_file) if args.requests_file else args.workload, "seed": args.seed,
        "distinct_requests": len(requests) if args.requests_file else None,
        "pairs_per_request": requests.mean_pairs() if isinstance(requests, Workload)
        else sum(r.pairs for r in requests) / len(requests),
        "warmup_s": args.warmup, "duration_s": args.duration, "max_requests": args.max_requests,
        "machine": machine(), "date": now.isoformat(timespec="seconds"),
    }
    result = {"setup": setup, "runs": summaries}
    report.write(result, runs, output)
    print(report.markdown(result))
    print(f"wrote {output}/results.json and report.md" + (f" and {len(result['plots'])} plots" if result["plots"]
                                                          else " (no plots: install the bench extra for matplotlib)"))
    failed = sum(row["answered"] == 0 for row in summaries)
    return 1 if failed == len(summaries) else 0
