"""`python -m benchmarks.reliability.soak`: mixed load for ten minutes; memory must stay flat.

Starts `xscore serve` (the default model as auto serves it here, score cache on as deployed) on
loopback, measures its capacity in pairs/s, then offers 70% of it as Poisson arrivals of
mixed-size requests (1-200 passages) for MINUTES, gRPC and HTTP msgpack at once. The server's
RSS is sampled every second: after the first minute (model warm-up, allocator pools) it must
grow < 5%. Writes benchmarks/results/reliability-soak-<cpu class>.{json,md,png} (RSS and
latency over time).
Loopback only; bounded in time. Never run by the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path
from typing import Any

import httpx

from benchmarks.reliability.overload import start_server
from xscore.bench import loadgen, stats
from xscore.bench.protocols import adapter
from xscore.bench.server import ServerWatch
from xscore.bench.workloads import generate
from xscore.service.models.hardware import cpu_class, machine

RESULTS = Path(__file__).resolve().parents[1] / "results"
WARM_UP_S = 60.0


async def capacity(grpc_target: str, http_target: str, clients: int = 8, warm_up_s: float = 20.0,
                   seconds: float = 60.0) -> dict[str, Any]:
    """Pairs/s the engine ran under a closed loop of mixed requests, by the server's own count
    of pairs batched. Counting the answers inside a window would not do: a mixed request takes
    about a round of ~10 s here, so a window's edges cut off a large share of them (a 10 s
    window read 0.3 and 0.8 requests/s in two runs of one server)."""
    client = adapter("xscore-grpc", grpc_target, "default", connections=clients, timeout=120)
    requests = generate("mixed", seed=9)

    async def count() -> tuple[float, float]:
        await asyncio.sleep(warm_up_s)
        before = await batched_pairs(http_target)
        await asyncio.sleep(seconds)
        return before, await batched_pairs(http_target)

    try:
        run, (before, after) = await asyncio.gather(
            loadgen.closed_loop(client, requests, clients, duration_s=seconds + 1, warmup_s=warm_up_s,
                                progress=False),
            count())
    finally:
        await client.close()
    pairs_per_s = (after - before) / seconds
    mean_pairs = requests.mean_pairs()
    return {"clients": clients, "window_s": seconds, "pairs_per_s": pairs_per_s, "mean_pairs": mean_pairs,
            "requests_per_s": pairs_per_s / mean_pairs, "errors": stats.summary(run)["errors"]}


async def batched_pairs(http_target: str) -> float:
    """The server's count of pairs it has run through the engine (`xscore_batch_pairs` sum)."""
    from prometheus_client.parser import text_string_to_metric_families

    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://{http_target}/metrics", timeout=30)
    response.raise_for_status()
    return sum(sample.value for family in text_string_to_metric_families(response.text)
               for sample in family.samples if sample.name == "xscore_batch_pairs_sum")


async def soak(targets: dict[str, str], rate: float, seconds: float, pid: int) -> tuple[dict, ServerWatch]:
    clients = {protocol: adapter(protocol, target, "default", connections=256, timeout=120)
               for protocol, target in targets.items()}
    try:
        with ServerWatch(pid, interval_s=1.0) as watch:
            runs = await asyncio.gather(*(
                loadgen.open_loop(client, generate("mixed", seed=5 + index), rate / len(clients),
                                  duration_s=seconds, seed=index, max_in_flight=4096)
                for index, client in enumerate(clients.values())))
        return dict(zip(clients, runs)), watch
    finally:
        for client in clients.values():
            await client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reliability.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--load", type=float, default=0.7, help="share of the measured capacity offered")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    process, grpc_target, http_target = start_server(4096, score_cache=True)
    try:
        measured = asyncio.run(capacity(grpc_target, http_target))
        rate = args.load * measured["requests_per_s"]
        runs, watch = asyncio.run(soak({"xscore-grpc": grpc_target, "xscore-msgpack": f"http://{http_target}"},
                                          rate, args.minutes * 60, process.pid))
    finally:
        process.terminate()
        process.wait(60)
    settled = [rss for at, _, rss in watch.series if at >= WARM_UP_S]
    growth = (settled[-1] - settled[0]) / settled[0] if len(settled) > 1 else float("nan")
    summaries = {protocol: stats.summary(run) for protocol, run in runs.items()}
    result = {"machine": machine(), "minutes": args.minutes, "load": args.load, "capacity": measured,
              "rate": rate, "transports": summaries, "rss_after_warm_up_mib": settled[0] / 2**20 if settled else None,
              "rss_end_mib": settled[-1] / 2**20 if settled else None, "rss_growth": growth,
              "peak_rss_mib": watch.figures()["peak_rss_mib"], "holds": bool(growth < 0.05)}
    args.output.mkdir(parents=True, exist_ok=True)
    stem = args.output / f"reliability-soak-{cpu_class()}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    plot(runs, watch, stem.with_suffix(".png"))
    stem.with_suffix(".md").write_text(markdown(result, stem.with_suffix(".png").name))
    print(markdown(result, stem.with_suffix(".png").name))
    return 0 if result["holds"] else 1


def plot(runs: dict[str, loadgen.Run], watch: ServerWatch, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (memory, latency) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    memory.plot([at for at, _, _ in watch.series], [rss / 2**20 for _, _, rss in watch.series])
    memory.axvline(WARM_UP_S, color="grey", linestyle=":")
    memory.set_ylabel("server RSS (MiB)")
    for protocol, run in runs.items():
        answered = [sample for sample in run.samples if sample.error is None]
        buckets: dict[int, list[float]] = {}
        for sample in answered:
            buckets.setdefault(int(sample.intended // 10), []).append(sample.latency * 1000)
        keys = sorted(buckets)
        latency.plot([key * 10 + 5 for key in keys], [stats.percentile(buckets[key], 50) for key in keys],
                     label=f"{protocol} p50")
        latency.plot([key * 10 + 5 for key in keys], [stats.percentile(buckets[key], 99) for key in keys],
                     linestyle="--", label=f"{protocol} p99")
    latency.set_yscale("log")
    latency.set_ylabel("latency per 10 s (ms)")
    latency.set_xlabel("seconds")
    latency.legend()
    for axes in (memory, latency):
        axes.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def markdown(result: dict[str, Any], picture: str) -> str:
    host = result["machine"]
    lines = [
        f"# Soak: {result['minutes']:g} minutes at {result['load']:.0%} of capacity ({host['class']})",
        "",
        f"Machine: {host['cpu']}, {host['cores']} cores (server and load share them). `xscore serve` of the default "
        f"model, score cache on; mixed requests of 1-200 passages, gRPC and HTTP msgpack at once, "
        f"{result['rate']:.2f} requests/s in all. Capacity: {result['capacity']['pairs_per_s']:.1f} pairs/s "
        f"batched by the server under {result['capacity']['clients']} closed-loop clients over "
        f"{result['capacity']['window_s']:g} s, {result['capacity']['requests_per_s']:.2f} requests/s of "
        f"{result['capacity']['mean_pairs']:.0f} pairs on average.",
        "",
        f"Server RSS after the first minute {result['rss_after_warm_up_mib']:.0f} MiB, at the end "
        f"{result['rss_end_mib']:.0f} MiB: growth **{result['rss_growth']:+.1%}** "
        f"({'holds' if result['holds'] else 'fails'} the < 5% bar); peak {result['peak_rss_mib']:.0f} MiB.",
        "",
        "| transport | requests | answered | errors | pairs/s | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for protocol, row in result["transports"].items():
        lines.append(f"| {protocol} | {row['requests']} | {row['answered']} | {row['errors'] or 'none'} | "
                     f"{row['pairs_per_s']:.1f} | {row['latency_ms']['p50']:.0f} | {row['latency_ms']['p99']:.0f} |")
    lines += ["", f"![RSS and latency over time]({picture})", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
