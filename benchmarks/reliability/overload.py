"""`python -m benchmarks.reliability.overload`: open-loop load at 4x capacity against gRPC and HTTP.

Starts `xscore serve` (the default model as auto serves it here, no score cache, a bounded
queue) on loopback, measures its capacity with a closed loop, then offers FACTOR x that rate as
Poisson arrivals for SECONDS on each transport, then checks that it recovers at once. Passes when:
refusals are only 429 / RESOURCE_EXHAUSTED and each says when to retry; every request not
refused is answered; the answered throughput is >= 90% of capacity; peak RSS is reported; and a
lone request right after is as fast as before. Loopback only; every loop bounded. Writes
benchmarks/results/reliability-overload-<cpu class>.{json,md}. Minutes; never run by the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from xscore.bench import loadgen, stats
from xscore.bench.protocols import adapter
from xscore.bench.server import ServerWatch
from xscore.bench.workloads import generate
from xscore.service.models.hardware import cpu_class, machine

RESULTS = Path(__file__).resolve().parents[1] / "results"
REFUSALS = {"xscore-grpc": "grpc RESOURCE_EXHAUSTED", "xscore-msgpack": "http 429"}


def start_server(queue_pairs: int, score_cache: bool = False) -> tuple[subprocess.Popen, str, str]:
    """`xscore serve` of the default model on loopback; the score cache at its default or off."""
    cache = [] if score_cache else ["--score-cache-mb", "0"]
    process = subprocess.Popen(
        [sys.executable, "-m", "xscore.service.cli", "--log-level", "WARNING", "serve", "--grpc-port", "0",
         "--http-port", "0", "--device", "cpu", *cache, "--max-queue-pairs", str(queue_pairs)],
        stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    match = re.search(r"grpc=(\S+) http=(\S+)", line)
    if not match:
        process.kill()
        raise SystemExit(f"xscore serve did not start: {line!r}")
    return process, match.group(1), match.group(2)


async def closed(protocol: str, target: str, clients: int, seconds: float, requests) -> dict[str, Any]:
    client = adapter(protocol, target, "default", connections=clients)
    try:
        return stats.summary(await loadgen.closed_loop(client, requests, clients, duration_s=seconds, warmup_s=2,
                                                       progress=False))
    finally:
        await client.close()


async def overload(protocol: str, target: str, rate: float, seconds: float, requests, pid: int) -> dict[str, Any]:
    client = adapter(protocol, target, "default", connections=256, timeout=120)
    try:
        with ServerWatch(pid) as watch:
            run = await loadgen.open_loop(client, requests, rate, duration_s=seconds, warmup_s=2, max_in_flight=4096,
                                          seed=11)
        return {**stats.summary(run), "server": watch.figures()}
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reliability.overload", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--factor", type=float, default=4.0)
    parser.add_argument("--queue-pairs", type=int, default=256)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    process, grpc_target, http_target = start_server(args.queue_pairs)
    try:
        before = asyncio.run(closed("xscore-grpc", grpc_target, 1, 5, generate("rerank-10", seed=3)))
        capacity = asyncio.run(closed("xscore-grpc", grpc_target, 8, 10, generate("rerank-10", seed=4)))
        rate = args.factor * capacity["requests_per_s"]
        transports = {}
        for number, (protocol, target) in enumerate((("xscore-grpc", grpc_target),
                                                      ("xscore-msgpack", f"http://{http_target}"))):
            print(f"{protocol}: {rate:.1f} requests/s offered for {args.seconds:g} s "
                  f"({args.factor:g}x the measured {capacity['requests_per_s']:.1f})", flush=True)
            loaded = asyncio.run(overload(protocol, target, rate, args.seconds, generate("rerank-10", seed=10 + number),
                                          process.pid))
            after = asyncio.run(closed(protocol, target, 1, 5, generate("rerank-10", seed=20 + number)))
            transports[protocol] = {"overload": loaded, "after": after}
    finally:
        process.terminate()
        process.wait(60)
    checks = {}
    for protocol, figures in transports.items():
        loaded = figures["overload"]
        refused = loaded["errors"].get(REFUSALS[protocol], 0)
        checks[protocol] = {
            "only refusals that say when to retry": set(loaded["errors"]) <= {REFUSALS[protocol]},
            "every request not refused answered": loaded["answered"] + refused == loaded["requests"],
            "answered throughput >= 90% of capacity": loaded["pairs_per_s"] >= 0.9 * capacity["pairs_per_s"],
            "recovers at once (lone request p50 within 1.5x of before)":
                figures["after"]["latency_ms"]["p50"] <= 1.5 * before["latency_ms"]["p50"],
        }
    result = {"machine": machine(), "seconds": args.seconds, "factor": args.factor, "queue_pairs": args.queue_pairs,
              "capacity": capacity, "before": before, "transports": transports, "checks": checks}
    args.output.mkdir(parents=True, exist_ok=True)
    stem = args.output / f"reliability-overload-{cpu_class()}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0 if all(all(check.values()) for check in checks.values()) else 1


def markdown(result: dict[str, Any]) -> str:
    host, capacity = result["machine"], result["capacity"]
    lines = [
        f"# Overload: {result['factor']:g}x capacity, {result['seconds']:g} s a transport ({host['class']})",
        "",
        f"Machine: {host['cpu']}, {host['cores']} cores (server and load share them), class **{host['class']}**. "
        f"`xscore serve` of the default model, no score cache, queue bound {result['queue_pairs']} pairs; "
        "requests of 1 query x 10 passages of 60-300 tokens.",
        "",
        f"Capacity (closed loop, 8 gRPC clients): {capacity['pairs_per_s']:.1f} pairs/s, "
        f"{capacity['requests_per_s']:.2f} requests/s. A lone request before: p50 {result['before']['latency_ms']['p50']:.0f} ms.",
        "",
        "| transport | offered | requests | answered | refused | other errors | answered pairs/s (x capacity) "
        "| p50 / p99 ms of the answered | server peak RSS MiB | lone request after, p50 ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for protocol, figures in result["transports"].items():
        loaded, after = figures["overload"], figures["after"]
        refused = loaded["errors"].get(REFUSALS[protocol], 0)
        others = {kind: count for kind, count in loaded["errors"].items() if kind != REFUSALS[protocol]}
        lines.append(
            f"| {protocol} | {loaded['level']:.1f} req/s | {loaded['requests']} | {loaded['answered']} | "
            f"{refused} ({REFUSALS[protocol]}) | {others or 'none'} | {loaded['pairs_per_s']:.1f} "
            f"({loaded['pairs_per_s'] / capacity['pairs_per_s']:.2f}x) | {loaded['latency_ms']['p50']:.0f} / "
            f"{loaded['latency_ms']['p99']:.0f} | {loaded['server']['peak_rss_mib']:.0f} | "
            f"{after['latency_ms']['p50']:.0f} |")
    lines += ["", "| transport | check | holds |", "|---|---|---|"]
    for protocol, checks in result["checks"].items():
        lines += [f"| {protocol} | {name} | {'yes' if held else '**no**'} |" for name, held in checks.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
