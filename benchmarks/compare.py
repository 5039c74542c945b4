"""`python -m benchmarks.compare`: xscore against the servers users would otherwise run, one run.

On one model and one machine, one system at a time (so none competes with another for the
cores), each with the same seeded workload through `xscore bench`'s load generator:

- xscore serve (its `--variant auto` choice here, no score cache) over gRPC, HTTP msgpack and JSON;
- xscore engine-only: the same variant through an in-process Scorer, no transport;
- the naive service (`benchmarks/baselines/naive_server.py`: sentence-transformers `CrossEncoder`
  behind a web app, one request at a time, as teams write it first);
- sentence-transformers in-process: `CrossEncoder.predict` (torch fp32) in a fresh process, its
  own `backend="openvino"` (optimum-intel, from `--st-openvino-venv` or this environment) and that
  backend's static int8 export (`export_static_quantized_openvino_model`), with each one's mean
  per-request Spearman against torch fp32;
- infinity-emb's `/rerank` (torch engine) from its own virtualenv (`--infinity-venv`, made by
  `benchmarks/baselines/make_infinity_venv.sh`).

A baseline that cannot start is reported with the reason, never dropped. Writes results.json,
report.md and a bar chart to benchmarks/results/compare-<cpu class>-<date>[-quick][-N]/ (-2, -3
for a later run of the day, so none is written over), with a tail sweep: xscore's gRPC latency
under Poisson arrivals at shares of its measured saturation, and its plots. `--quick` (4 clients
of 1 x 10, no tail sweep) took 2.1 minutes on 2 cores of the AVX-512 VNNI + BF16 class; the full
run took 28 there (32 clients; each system warmed up for one round of all clients and measured for
two, at least 5 + 20 s, at most 90 + 180 s; the tail at 50/70/90% for 40 s each).
The tests run its parts on a tiny model, never the comparison itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from xscore.bench import loadgen, queueing, stats
from xscore.bench.report import ms
from xscore.bench.report import plots as report_plots
from xscore.bench.protocols import Adapter, adapter
from xscore.bench.server import ServerWatch
from xscore.bench.workloads import generate
from xscore.service.models.hardware import cpu_class, machine

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def started(command: list[str], pattern: str, log: Path, env: dict[str, str] | None = None,
            timeout_s: float = 600) -> tuple[subprocess.Popen, re.Match]:
    """Start a server, its output going to `log`, and wait for a line matching `pattern`."""
    handle = log.open("w")
    process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, **(env or {})})
    handle.close()
    limit = time.monotonic() + timeout_s
    while time.monotonic() < limit and process.poll() is None:
        match = re.search(pattern, log.read_text())
        if match:
            return process, match
        time.sleep(0.2)
    stop(process)
    raise RuntimeError("did not start: " + _reason(log.read_text()))


def wait_http(url: str, process: subprocess.Popen, timeout_s: float = 600) -> None:
    import httpx

    limit = time.monotonic() + timeout_s
    while time.monotonic() < limit and process.poll() is None:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(1)
    raise RuntimeError(f"{url} did not answer (the server exited or {timeout_s:.0f} s passed)")


def with_client(protocol: str, target: str, model: str, connections: int, work: Callable[[Adapter], Awaitable[T]]
                ) -> T:
    """`work` on a fresh client of the protocol, on a loop of its own; the client closed after."""

    async def go() -> T:
        client = adapter(protocol, target, model, connections=connections, timeout=600)
        try:
            return await work(client)
        finally:
            await client.close()

    return asyncio.run(go())


def load(protocol: str, target: str, model: str, args: argparse.Namespace, pid: int | None) -> dict[str, Any]:
    """A closed loop of `args.clients`, its warm-up and window stretched to a slow system's pace:
    one request alone first gives its latency L, and a round of all clients takes up to clients x L
    on a server that serves one request at a time, so the warm-up lasts one such round and the
    window two (within the caps), or a slow server would be measured on its first answers only."""
    requests = generate(args.workload, args.seed)

    async def work(client: Adapter) -> tuple[loadgen.Run, dict | None, float]:
        alone = await loadgen.closed_loop(client, requests, 1, duration_s=600, max_requests=1, progress=False)
        latency = max(sample.latency for sample in alone.samples)
        round_s = args.clients * latency
        warmup = min(max(args.warmup, round_s), args.max_warmup)
        duration = min(max(args.duration, 2 * round_s), args.max_duration)
        with ServerWatch(pid) if pid else contextlib.nullcontext() as watch:
            run = await loadgen.closed_loop(client, requests, args.clients, duration_s=duration, warmup_s=warmup)
        return run, watch.figures() if watch else None, latency

    run, server, latency = with_client(protocol, target, model, args.clients, work)
    summary = {**stats.summary(run), "alone_ms": latency * 1000, "warmup_s": run.warmup_s}
    if server:
        summary["server"] = server
    return summary


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


TAIL_WORKLOAD = "rerank-10"


def tail(target: str, args: argparse.Namespace, pid: int, model: str = "bench") -> dict[str, Any]:
    """Latency against offered load over gRPC: saturation is what `args.clients` closed-loop
    clients get from 1 x 10 requests; then Poisson arrivals at shares of it, latency from each
    request's intended send time. Each phase has requests of its own (none repeated)."""

    async def work(client: Adapter) -> tuple[dict[str, Any], list[loadgen.Run]]:
        saturated = await loadgen.closed_loop(client, generate(TAIL_WORKLOAD, args.seed + 100), args.clients,
                                              duration_s=args.tail_s, warmup_s=args.warmup)
        capacity = stats.summary(saturated)
        runs = []
        for number, share in enumerate(args.tail_shares):
            runs.append(await loadgen.open_loop(
                client, generate(TAIL_WORKLOAD, args.seed + 101 + number), share * capacity["requests_per_s"],
                duration_s=args.tail_s, warmup_s=args.warmup, seed=args.seed + number, max_in_flight=4096))
        return capacity, runs

    with ServerWatch(pid):
        capacity, runs = with_client("xscore-grpc", target, model, args.clients, work)
    summaries = [stats.summary(run) for run in runs]
    plots = report_plots(runs, summaries, args.output)
    return {"workload": TAIL_WORKLOAD, "saturation": capacity,
            "loads": [{"share": share, **summary, "ideal_queue": ideal_queue(share)}
                      for share, summary in zip(args.tail_shares, summaries)],
            "plots": plots}


def ideal_queue(share: float) -> dict[str, float]:
    """p99 / p50 of one server of identical requests at this load, in the two orders a batcher sits
    between: what Poisson arrivals alone spread, whatever the server does."""
    if not 0.0 < share < 1.0:
        return {}
    return {spread.discipline: round(spread.ratio, 3)
            for spread in (queueing.first_come_first_served(share), queueing.processor_sharing(share))}


def prime(target: str, args: argparse.Namespace) -> None:
    """A fresh server compiles a kernel for each batch shape it meets first: a few seconds of load,
    left out of every figure, so the transport measured first is not charged for them."""

    with_client("xscore-grpc", target, "bench", args.clients, lambda client: loadgen.closed_loop(
        client, generate(args.workload, args.seed + 200), args.clients, duration_s=2 * args.warmup, progress=False))


def xscore_rows(model_dir: Path, args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    process, match = started([sys.executable, "-m", "xscore.service.cli", "--log-level", "WARNING", "serve",
                              "--model", f"bench={model_dir}", "--grpc-port", "0", "--http-port", "0",
                              "--device", "cpu", "--score-cache-mb", "0"], r"grpc=(\S+) http=(\S+)",
                             args.output / "xscore.log")
    try:
        prime(match.group(1), args)
        rows = []
        for protocol, target in (("xscore-grpc", match.group(1)), ("xscore-msgpack", f"http://{match.group(2)}"),
                                 ("xscore-json", f"http://{match.group(2)}")):
            rows.append({"system": "xscore serve", "protocol": protocol, **load(protocol, target, "bench", args,
                                                                                process.pid)})
        return rows, tail(match.group(1), args, process.pid) if args.tail_shares else None
    finally:
        stop(process)


def engine_only(model_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The variant xscore serves, through a Scorer in this process: no transport, same requests."""
    from xscore.service.models.registry import ModelSpec, load_model
    from xscore.service.serving.blocking import BlockingScorer

    model = load_model(ModelSpec("bench", str(model_dir)), device="cpu", progress=False)
    requests = generate(args.workload, args.seed)
    with BlockingScorer(model) as scorer:
        scorer.score(requests[0].query, list(requests[0].documents))
        rates = []
        for request in requests[: max(3, int(args.duration // 2))]:
            begun = time.perf_counter()
            scorer.score(request.query, list(request.documents))
            rates.append(request.pairs / (time.perf_counter() - begun))
    return {"system": f"xscore engine-only ({model.manifest.variant} on {model.engine.name})", "protocol": "in-process",
            "pairs_per_s": statistics.median(rates)}


# Runs in any Python with sentence-transformers (a peer's own virtualenv too): the requests come on stdin.
_PREDICT = """
import json, os, shutil, statistics, sys, tempfile, time
from sentence_transformers import CrossEncoder
model_dir, backend, timed, calibration = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
requests = json.load(sys.stdin)
if backend == "openvino-int8":
    # sentence-transformers' own static int8 export (optimum-intel): calibrated on single texts,
    # as its recipe does, from the workload's later requests (the timed ones come first)
    from optimum.intel import OVQuantizationConfig
    from sentence_transformers.backend import export_static_quantized_openvino_model
    work = tempfile.mkdtemp()
    shutil.copytree(model_dir, work + "/model")
    os.makedirs(work + "/calibration")
    texts = [query + " " + document for query, documents in requests[timed:] or requests for document in documents]
    with open(work + "/calibration/train.jsonl", "w") as out:
        out.writelines(json.dumps({"sentence": text}) + "\\n" for text in texts)
    export_static_quantized_openvino_model(
        CrossEncoder(work + "/model", device="cpu", backend="openvino"),
        OVQuantizationConfig(num_samples=min(calibration, len(texts))),
        work + "/model", dataset_name=work + "/calibration", dataset_config_name="default",
        dataset_split="train", column_name="sentence")
    model = CrossEncoder(work + "/model", device="cpu", backend="openvino",
                         model_kwargs={"file_name": "openvino/openvino_model_qint8_quantized.xml"})
else:
    model = CrossEncoder(model_dir, device="cpu", **({} if backend == "torch" else {"backend": backend}))
model.predict([(requests[0][0], d) for d in requests[0][1]], batch_size=32)
rates = []
for query, documents in requests[:timed]:
    begun = time.perf_counter()
    model.predict([(query, d) for d in documents], batch_size=32)
    rates.append(len(documents) / (time.perf_counter() - begun))
result = {"pairs_per_s": statistics.median(rates)}
if backend != "torch":
    # after timing: how this backend's order of each timed request compares with torch fp32's
    from scipy.stats import spearmanr
    reference = CrossEncoder(model_dir, device="cpu")
    result["spearman_vs_torch"] = statistics.mean(
        float(spearmanr(reference.predict([(q, d) for d in docs]), model.predict([(q, d) for d in docs]))[0])
        for q, docs in requests[:timed])
if backend == "openvino-int8":
    shutil.rmtree(work, ignore_errors=True)
print(json.dumps(result))
"""


def predict_row(model_dir: Path, args: argparse.Namespace, backend: str, python: str = sys.executable
                ) -> dict[str, Any]:
    """CrossEncoder.predict in a fresh process of its own (batch 32, the library's default)."""
    requests = [[request.query, list(request.documents)] for request in generate(args.workload, args.seed)[:16]]
    done = subprocess.run([python, "-c", _PREDICT, str(model_dir), backend, str(args.timed_requests),
                           str(args.calibration_texts)],
                          input=json.dumps(requests),
                          capture_output=True, text=True, timeout=1800)
    system = f"sentence-transformers CrossEncoder.predict ({'torch fp32' if backend == 'torch' else backend})"
    if done.returncode != 0:
        return {"system": system, "protocol": "in-process", "unavailable": _reason(done.stderr)}
    return {"system": system, "protocol": "in-process", **json.loads(done.stdout.strip().splitlines()[-1])}


def naive_row(model_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    try:
        process, _ = started([sys.executable, "-m", "benchmarks.baselines.naive_server", str(model_dir), str(port)],
                             r"listening http=(\S+)", args.output / "naive.log", env={"PYTHONPATH": str(ROOT)})
    except RuntimeError as exc:
        return {"system": "naive service (CrossEncoder, one request at a time)", "protocol": "cohere",
                "unavailable": str(exc)}
    try:
        return {"system": "naive service (CrossEncoder, one request at a time)", "protocol": "cohere",
                **load("cohere", f"http://127.0.0.1:{port}", "bench", args, process.pid)}
    finally:
        stop(process)


def infinity_row(model_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    system = "infinity-emb /rerank (torch engine)"
    executable = args.infinity_venv / "bin" / "infinity_emb" if args.infinity_venv else None
    if executable is None or not executable.exists():
        return {"system": system, "protocol": "infinity",
                "unavailable": "no infinity virtualenv (make one with benchmarks/baselines/make_infinity_venv.sh "
                               "and pass --infinity-venv)"}
    port = free_port()
    log = args.output / "infinity.log"
    with log.open("w") as handle:
        process = subprocess.Popen([str(executable), "v2", "--model-id", str(model_dir), "--served-model-name",
                                    "bench", "--port", str(port), "--engine", "torch", "--device", "cpu"],
                                   stdout=handle, stderr=subprocess.STDOUT, text=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", process, timeout_s=600)
        return {"system": system, "protocol": "infinity",
                **load("infinity", f"http://127.0.0.1:{port}", "bench", args, process.pid)}
    except RuntimeError as exc:
        return {"system": system, "protocol": "infinity", "unavailable": f"{exc}: {_reason(log.read_text())}"}
    finally:
        stop(process)


def _reason(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][-300:] if lines else "no output"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__)
    parser.add_argument("--model", type=Path, help="cross-encoder directory (default: the default model)")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workload", default=None, help="rerank-100 (rerank-10 with --quick)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--max-warmup", type=float, default=90.0, help="seconds at most a slow system warms up")
    parser.add_argument("--max-duration", type=float, default=180.0, help="seconds at most a system is measured")
    parser.add_argument("--quick", action="store_true",
                        help="4 clients of 1 x 10 requests, 6 s a system after 2 s of warm-up, slow systems capped "
                             "at 10 + 20 s, 3 requests timed in process, 32 calibration texts for the peer's int8, "
                             "no tail sweep (a few seconds of Poisson arrivals give no p99)")
    parser.add_argument("--tail-s", type=float, default=40.0, help="seconds measured per load of the tail sweep")
    parser.add_argument("--tail-shares", type=lambda text: [float(x) for x in text.split(",")],
                        default=[0.5, 0.7, 0.9], help="offered loads of the tail sweep, as shares of saturation")
    parser.add_argument("--timed-requests", type=int, default=6,
                        help="requests timed per in-process sentence-transformers backend")
    parser.add_argument("--calibration-texts", type=int, default=300,
                        help="texts sentence-transformers' int8 export calibrates on (its default is 300)")
    parser.add_argument("--infinity-venv", type=Path, default=peer_venv("infinity"),
                        help="infinity-emb's virtualenv (benchmarks/baselines/make_infinity_venv.sh; default: "
                             "where that script puts it, if it is there)")
    parser.add_argument("--st-openvino-venv", type=Path, default=peer_venv("st-openvino"),
                        help="a virtualenv with sentence-transformers[openvino] "
                             "(benchmarks/baselines/make_st_openvino_venv.sh; default: where that script puts it, "
                             "if it is there) for its OpenVINO backend")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        # a slow system's warm-up and window scale with the clients (one round, two rounds)
        args.clients, args.duration, args.warmup, args.max_warmup, args.max_duration = 4, 6.0, 2.0, 10.0, 20.0
        args.tail_shares, args.timed_requests, args.calibration_texts = [], 3, 32
    args.workload = args.workload or ("rerank-10" if args.quick else "rerank-100")
    if args.model is None:
        from xscore.service.models.registry import default_spec

        args.model = Path(default_spec().source)
    now = datetime.datetime.now()
    # a quick run of the day must not overwrite that day's full report
    args.output = args.output or unused_report_dir(
        RESULTS / f"compare-{cpu_class()}-{now:%Y%m%d}{'-quick' if args.quick else ''}")
    args.output.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    rows, tail_figures = xscore_rows(args.model, args)
    xscore_took_s = time.perf_counter() - began  # its three transports and the tail sweep
    openvino_python = args.st_openvino_venv / "bin" / "python" if args.st_openvino_venv else None
    python = str(openvino_python) if openvino_python and openvino_python.exists() else sys.executable
    for measure in (lambda: engine_only(args.model, args), lambda: naive_row(args.model, args),
                    lambda: predict_row(args.model, args, "torch"),
                    lambda: predict_row(args.model, args, "openvino", python),
                    lambda: predict_row(args.model, args, "openvino-int8", python),
                    lambda: infinity_row(args.model, args)):
        started_at = time.perf_counter()
        rows.append({**measure(), "took_s": time.perf_counter() - started_at})
    result = {"machine": machine(), "model": str(args.model), "clients": args.clients, "workload": args.workload,
              "duration_s": args.duration, "warmup_s": args.warmup, "date": now.isoformat(timespec="seconds"),
              "took_s": time.perf_counter() - began, "xscore_took_s": xscore_took_s, "rows": rows,
              "tail": tail_figures}
    output = args.output
    (output / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    chart = bar_chart(rows, output / "pairs_per_s.png")
    (output / "report.md").write_text(markdown(result, chart))
    print(markdown(result, chart))
    return 0


def peer_venv(name: str, root: Path = ROOT) -> Path | None:
    """The virtualenv `benchmarks/baselines/make_<name>_venv.sh` makes by default, where it exists."""
    directory = root / ".peers" / name
    return directory if (directory / "bin" / "python").exists() else None


def unused_report_dir(directory: Path) -> Path:
    """`directory`, or `directory-2`, `-3`, ... when a report is already there: a second run of
    the day keeps the first one's figures instead of writing over them."""
    candidate, number = directory, 1
    while (candidate / "results.json").exists():
        number += 1
        candidate = directory.with_name(f"{directory.name}-{number}")
    return candidate


def bar_chart(rows: list[dict[str, Any]], path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    measured = [row for row in rows if "pairs_per_s" in row]
    figure, axes = plt.subplots(figsize=(10, 0.5 * len(measured) + 1.5))
    labels = [f"{row['system']} [{row['protocol']}]" for row in measured]
    axes.barh(labels[::-1], [row["pairs_per_s"] for row in measured][::-1], color="#4a7fb5")
    axes.set_xlabel("pairs/s")
    axes.set_title("same model, machine and load, one system at a time", fontsize=9, loc="left")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path.name


def markdown(result: dict[str, Any], chart: str | None) -> str:
    host, rows = result["machine"], result["rows"]
    best = max((row["pairs_per_s"] for row in rows if row.get("system") == "xscore serve"), default=None)
    lines = [
        f"# xscore against the alternatives ({host['class']})",
        "",
        f"Machine: {host['cpu']}, {host['cores']} cores, class **{host['class']}** (load and server share them). "
        f"Model `{result['model']}`; {result['clients']} clients, closed loop, workload {result['workload']}; "
        f"at least {result['duration_s']:g} s a system after at least {result['warmup_s']:g} s of warm-up (a slow "
        f"system gets one round of all clients to warm up and two measured); the run took "
        f"{result['took_s'] / 60:.1f} minutes.",
        "",
        "| system | protocol | pairs/s | p50 ms | p99 ms | one request alone, ms | xscore (best transport) / this "
        "| server CPU, peak RSS |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if "unavailable" in row:
            lines.append(f"| {row['system']} | {row['protocol']} | unavailable: {row['unavailable']} | | | | | |")
            continue
        latency = row.get("latency_ms", {})
        server = row.get("server")
        ratio = f"{best / row['pairs_per_s']:.2f}x" if best and row["pairs_per_s"] else "-"
        host_figures = f"{server['cpu_percent_mean']:.0f}%, {server['peak_rss_mib']:.0f} MiB" if server else "-"
        lines.append(f"| {row['system']} | {row['protocol']} | {row['pairs_per_s']:.1f} | "
                     f"{ms(latency.get('p50'), 0)} | {ms(latency.get('p99'), 0)} | {ms(row.get('alone_ms'), 0)} | "
                     f"{ratio} | {host_figures} |")
    lines += tail_markdown(result.get("tail"))
    orders = [f"{row['system']}: {row['spearman_vs_torch']:.4f}" for row in rows if "spearman_vs_torch" in row]
    if orders:
        lines += ["", "Mean per-request Spearman against torch fp32 `predict` on the timed requests: "
                  + "; ".join(orders) + "."]
    if chart:
        lines += ["", f"![pairs/s]({chart})"]
    return "\n".join(lines) + "\n"


def tail_markdown(tail_figures: dict[str, Any] | None) -> list[str]:
    if not tail_figures:
        return []
    capacity = tail_figures["saturation"]
    lines = ["", f"Latency against offered load, xscore over gRPC, 1 x 10 requests: saturation "
             f"{capacity['requests_per_s']:.2f} requests/s ({capacity['pairs_per_s']:.1f} pairs/s) by the closed loop; "
             "then Poisson arrivals at shares of it, latency from each request's intended send time. The ideal "
             "queue is one server of identical requests at the same load (M/D/1, simulated): the spread the "
             "arrivals alone make, first come first served / processor sharing.", "",
             "| offered | requests/s | requests | answered | p50 ms | p90 ms | p99 ms | p99 / p50 | ideal queue |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in tail_figures["loads"]:
        latency = row["latency_ms"]
        spread = latency["p99"] / latency["p50"] if latency["p50"] else float("nan")
        ideal = " / ".join(f"{ratio:.2f}x" for ratio in row.get("ideal_queue", {}).values()) or "-"
        lines.append(f"| {row['share']:.0%} | {row['level']:.2f} | {row['requests']} | {row['answered']} | "
                     f"{ms(latency['p50'], 0)} | {ms(latency['p90'], 0)} | {ms(latency['p99'], 0)} | {spread:.2f}x | "
                     f"{ideal} |")
    if tail_figures.get("plots"):
        lines += ["", *(f"![{name}]({name})" for name in tail_figures["plots"])]
    return lines


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
