"""Engine-only vs the gRPC service on the MiniLM-size cross-encoder, fp32.

    python -m benchmarks.service.bench_grpc [--docs 100] [--clients 1 8 32] [--open-loop-s 20]

1. engine-only: 1 query x N documents in this process, tokenized and run in the planner's
   length-sorted token-budget batches (`planner.run_planned`), sequentially: the best the
   hardware does without a service (scorer, batcher, transport) in the way;
2. service: `xscore serve` in a subprocess, closed loop with 1, 8 and 32 concurrent gRPC
   clients each sending 1 x N rerank requests; pairs/s = pairs answered / makespan;
3. overhead: one short pair, sequential calls, service p50 minus the bare in-process p50;
4. tail: open loop (Poisson arrivals, latency from the intended send time, so coordinated
   omission cannot hide queueing) of 1 x 10 requests at 70% of the measured saturation.
Writes benchmarks/results/service_grpc.{json,md}. Never run by the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from xscore.service.models.corpus import passages, queries, rerank_workload

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / ".xscore-cache" / "bench"
SHORT_QUERY, SHORT_DOCUMENT = "what does the tokenizer do", "It splits text into tokens."


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def build_model() -> Path:
    """The MiniLM-size cross-encoder, exported fp32 once into .xscore-cache/bench."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from benchmarks.models import build_minilm_cross_encoder
    from xscore.service.models.export import export

    source = WORK / "minilm"
    if not (source / "config.json").is_file():
        build_minilm_cross_encoder(source)
    return export(str(source), ["fp32"], root=WORK / "cache", progress=False)["fp32"].path


def load_model(model_dir: Path):
    from xscore.service.models.engines import create_engine
    from xscore.service.models.manifest import MANIFEST_NAME, Manifest
    from xscore.service.models.model import LoadedModel

    manifest = Manifest.read(model_dir / MANIFEST_NAME)
    return LoadedModel.load("minilm", model_dir, create_engine(model_dir, manifest, device="cpu"))


def bare_scores(model, queries: list[str], documents: list[str]):
    """Tokenize and run the engine, nothing else: the floor the service is measured against."""
    from xscore.service.models.planner import run_planned

    pairs = model.tokenizer.encode(queries, documents)
    logits = run_planned(model.engine.run, pairs, model.tokenizer.pad_id, model.engine.max_batch_tokens)
    return model.activation.apply(logits)


def engine_only(model, docs: int, repeats: int) -> float:
    """Pairs/s of sequential in-process rerank calls (the same requests the service gets)."""
    query, documents = rerank_workload(docs, seed=0)
    bare_scores(model, [query] * docs, documents)  # warm-up
    started = time.perf_counter()
    for seed in range(repeats):
        query, documents = rerank_workload(docs, seed=seed + 1)
        bare_scores(model, [query] * docs, documents)
    return repeats * docs / (time.perf_counter() - started)


def start_server(model_dir: Path) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "xscore.service.cli", "--log-level", "WARNING", "serve", "--model",
         f"minilm={model_dir}", "--grpc-port", "0", "--device", "cpu", "--score-cache-mb", "0"],
        stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    match = re.search(r"grpc=(\S+)", line)
    if not match:
        process.kill()
        raise SystemExit(f"server did not start: {line!r}")
    return process, match.group(1)


async def closed_loop(address: str, clients: int, requests_each: int, docs: int) -> dict:
    from xscore.client import AsyncScorerClient

    latencies: list[float] = []
    async with AsyncScorerClient(address, timeout=3600) as client:
        await client.score(SHORT_QUERY, [SHORT_DOCUMENT], model="minilm")  # connect

        async def one_client(number: int) -> None:
            for n in range(requests_each):
                query, documents = rerank_workload(docs, seed=1000 + number * 100 + n)
                t0 = time.perf_counter()
                await client.score(query, documents, model="minilm")
                latencies.append(time.perf_counter() - t0)

        started = time.perf_counter()
        await asyncio.gather(*(one_client(n) for n in range(clients)))
        elapsed = time.perf_counter() - started
    pairs = clients * requests_each * docs
    return {"clients": clients, "requests": clients * requests_each, "pairs": pairs, "seconds": elapsed,
            "pairs_per_s": pairs / elapsed, "p50_s": statistics.median(latencies), "max_s": max(latencies)}


def short_pair_latency(model, address: str, calls: int = 300, block: int = 25) -> dict:
    """The bare in-process call and the gRPC call, in alternating blocks so machine drift hits
    both alike; a pause between blocks lets the idle side's onnxruntime threads stop spinning,
    which would otherwise steal one of the two cores from the side being timed."""
    from xscore.client import ScorerClient

    bare: list[float] = []
    service: list[float] = []
    with ScorerClient(address) as client:
        calls_by_side = ((bare, lambda: bare_scores(model, [SHORT_QUERY], [SHORT_DOCUMENT])),
                         (service, lambda: client.score(SHORT_QUERY, [SHORT_DOCUMENT], model="minilm")))
        for _, call in calls_by_side:
            for _ in range(20):
                call()
        for _ in range(calls // block):
            for times, call in calls_by_side:
                time.sleep(0.2)
                for _ in range(block):
                    t0 = time.perf_counter()
                    call()
                    times.append((time.perf_counter() - t0) * 1000)
    return {"bare_p50_ms": statistics.median(bare), "service_p50_ms": statistics.median(service),
            "service_p99_ms": percentile(service, 99),
            "overhead_ms": statistics.median(service) - statistics.median(bare)}


async def open_loop(address: str, rate: float, seconds: float, docs: int) -> dict:
    from xscore.client import AsyncScorerClient

    rng = random.Random(7)
    pool = passages(200, seed=11)
    latencies: list[float] = []
    async with AsyncScorerClient(address, timeout=600) as client:
        async def one(intended: float, n: int) -> None:
            documents = [pool[(n * docs + i) % len(pool)] for i in range(docs)]
            await client.score(queries(1, seed=n)[0], documents, model="minilm")
            latencies.append(time.perf_counter() - intended)  # from the intended send time

        tasks = []
        start = time.perf_counter()
        next_at, n = start, 0
        while next_at - start < seconds:
            delay = next_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(next_at, n)))
            n += 1
            next_at += rng.expovariate(rate)
        await asyncio.gather(*tasks)
    p50, p99 = statistics.median(latencies), percentile(latencies, 99)
    return {"rate_rps": rate, "docs": docs, "requests": len(latencies), "p50_ms": p50 * 1000,
            "p99_ms": p99 * 1000, "p99_over_p50": p99 / p50}


def report(results: dict) -> str:
    engine = results["engine_only"]["pairs_per_s"]
    lines = [
        f"# gRPC service vs engine-only (MiniLM-size cross-encoder, fp32, {results.get('engine', 'onnxruntime')} "
        "CPU)", "",
        f"{results['machine']}; 1 query x {results['docs']} documents (benchmarks/corpus.py). Engine-only is the",
        f"mean of a run before ({results['engine_only']['before']:.1f}) and after "
        f"({results['engine_only']['after']:.1f}) the service runs; the machine is shared, so expect noise.", "",
        "| path | clients | pairs | pairs/s | x engine-only | request p50 (s) |",
        "|---|---|---|---|---|---|",
        f"| engine-only (in-process tokenize + engine) | 1 | {results['engine_only']['pairs']} | {engine:.1f} | 1.00 | - |",
    ]
    for level in results["service"]:
        lines.append(f"| service (gRPC) | {level['clients']} | {level['pairs']} | {level['pairs_per_s']:.1f} | "
                     f"{level['pairs_per_s'] / engine:.2f} | {level['p50_s']:.2f} |")
    overhead = results["overhead"]
    tail = results["tail"]
    lines += [
        "", "| target | measured | met |", "|---|---|---|",
        f"| service >= 90% of engine-only at 32 clients | {results['ratio_at_32']:.1%} | "
        f"{'yes' if results['ratio_at_32'] >= 0.9 else 'no'} |",
        f"| single short pair p50 <= 1 ms above the bare call | {overhead['service_p50_ms']:.2f} ms vs "
        f"{overhead['bare_p50_ms']:.2f} ms bare: +{overhead['overhead_ms']:.2f} ms | "
        f"{'yes' if overhead['overhead_ms'] <= 1 else 'no'} |",
        f"| p99 <= 2.5x p50 at 70% of saturation (open loop, 1 x {tail['docs']}, {tail['rate_rps']:.2f} req/s, "
        f"{tail['requests']} requests) | p50 {tail['p50_ms']:.0f} ms, p99 {tail['p99_ms']:.0f} ms: "
        f"{tail['p99_over_p50']:.2f}x | {'yes' if tail['p99_over_p50'] <= 2.5 else 'no'} |",
    ]
    lines += [
        "", "Notes: 2 cores run the service, its clients and this script together. The open-loop rate is 70%",
        "of the saturation measured, in the same run, by 32 closed-loop clients sending the open loop's own",
        "request shape; latency counts from each request's intended send time (coordinated-omission safe).",
    ]
    return "\n".join(lines) + "\n"


def remeasure_overhead() -> None:
    results = json.loads((RESULTS / "service_grpc.json").read_text())
    model = load_model(build_model())
    process, address = start_server(Path(results["model"]))
    try:
        results["overhead"] = short_pair_latency(model, address)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    (RESULTS / "service_grpc.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "service_grpc.md").write_text(report(results))
    print(report(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=100)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--engine-repeats", type=int, default=3)
    parser.add_argument("--open-loop-s", type=float, default=20.0)
    parser.add_argument("--open-loop-docs", type=int, default=10)
    parser.add_argument("--overhead-only", action="store_true",
                        help="re-measure only the short-pair overhead into the existing results")
    args = parser.parse_args()
    if args.overhead_only:
        remeasure_overhead()
        return

    model_dir = build_model()
    results: dict = {"docs": args.docs, "model": str(model_dir),
                     "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs"}
    model = load_model(model_dir)
    results["engine"] = model.engine.name
    print("engine-only ...", flush=True)
    before = engine_only(model, args.docs, args.engine_repeats)
    process, address = start_server(model_dir)
    try:
        results["service"] = []
        for clients in args.clients:
            print(f"service, {clients} clients ...", flush=True)
            each = 2 if clients == 1 else 1
            results["service"].append(asyncio.run(closed_loop(address, clients, each, args.docs)))
        print("engine-only again (server idle) ...", flush=True)
        after = engine_only(model, args.docs, args.engine_repeats)
        results["engine_only"] = {"pairs_per_s": (before + after) / 2, "before": before, "after": after,
                                  "pairs": 2 * args.engine_repeats * args.docs,
                                  "max_batch_tokens": model.engine.max_batch_tokens}
        print("short-pair overhead ...", flush=True)
        results["overhead"] = short_pair_latency(model, address)
        # saturation for the open loop's own request shape: small requests cost more per pair
        print(f"saturation at 1 x {args.open_loop_docs} ...", flush=True)
        small = asyncio.run(closed_loop(address, 32, 4, args.open_loop_docs))
        results["tail_saturation"] = small
        rate = 0.7 * small["pairs_per_s"] / args.open_loop_docs
        print(f"open loop at {rate:.2f} req/s ...", flush=True)
        results["tail"] = asyncio.run(open_loop(address, rate, args.open_loop_s, args.open_loop_docs))
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
    at_32 = next((level for level in results["service"] if level["clients"] == 32), results["service"][-1])
    results["ratio_at_32"] = at_32["pairs_per_s"] / results["engine_only"]["pairs_per_s"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "service_grpc.json").write_text(json.dumps(results, indent=2) + "\n")
    markdown = report(results)
    (RESULTS / "service_grpc.md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
