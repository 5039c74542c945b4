"""results.json, a Markdown report and PNG plots (when matplotlib is installed) for a bench run."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from xscore.bench.loadgen import Run


def ms(value: float | None, digits: int = 1) -> str:
    """A latency in milliseconds, or "-" where none was measured (None or NaN)."""
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _repeats(distinct: int | None) -> str:
    return "no request sent twice" if distinct is None else f"{distinct} distinct requests, sent in turn"


def markdown(result: dict[str, Any]) -> str:
    setup = result["setup"]
    watched = any("server" in row for row in result["runs"])
    server_head = " server CPU % (mean / max) | server peak RSS MiB |" if watched else ""
    lines = [
        f"# xscore bench: {setup['protocol']} at {setup['target']}",
        "",
        f"Model `{setup['model']}`, workload {setup['workload']} ({_repeats(setup['distinct_requests'])}, "
        f"{setup['pairs_per_request']:.0f} documents each on average), warm-up {setup['warmup_s']:g} s excluded, "
        f"{setup['duration_s']:g} s measured per run; client machine: {setup['machine']['cpu']} "
        f"({setup['machine']['class']}, {setup['machine']['cores']} cores). Latency runs from the intended send "
        "time.",
        "",
        "| mode | clients or req/s | requests | answered | pairs/s | requests/s | p50 ms | p90 ms | p99 ms | max ms "
        f"| errors |{server_head}",
        "|---|---|---|---|---|---|---|---|---|---|---|" + ("---|---|" if watched else ""),
    ]
    for row in result["runs"]:
        latency = row["latency_ms"]
        errors = ", ".join(f"{kind}: {count}" for kind, count in sorted(row["errors"].items())) or "-"
        server = ""
        if watched:
            figures = row.get("server")
            server = (f" {figures['cpu_percent_mean']:.0f} / {figures['cpu_percent_max']:.0f} | "
                      f"{figures['peak_rss_mib']:.0f} |") if figures else " - | - |"
        lines.append(f"| {row['mode']} | {row['level']:g} | {row['requests']} | {row['answered']} | "
                     f"{row['pairs_per_s']:.1f} | {row['requests_per_s']:.2f} | {ms(latency['p50'])} | "
                     f"{ms(latency['p90'])} | {ms(latency['p99'])} | {ms(latency['max'])} | {errors} |{server}")
    if result.get("plots"):
        lines += ["", *(f"![{name}]({name})" for name in result["plots"])]
    return "\n".join(lines) + "\n"


def plots(runs: list[Run], summaries: list[dict[str, Any]], output: Path) -> list[str]:
    """Latency CDF of every run; throughput against concurrency (closed); latency against offered
    load (open). Nothing without matplotlib (the bench extra), and the report says so."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for run in runs:
        latencies = sorted(sample.latency * 1000 for sample in run.measured() if sample.error is None)
        if latencies:
            axes.plot(latencies, [(index + 1) / len(latencies) for index in range(len(latencies))],
                      label=f"{run.mode} {run.level:g}")
    axes.set_xscale("log")
    axes.set_xlabel("latency (ms, from the intended send time)")
    axes.set_ylabel("share of requests answered")
    axes.grid(True, which="both", alpha=0.3)
    if axes.lines:  # a run without answers draws nothing to label
        axes.legend()
    figure.tight_layout()
    figure.savefig(output / "latency_cdf.png", dpi=110)
    plt.close(figure)
    written.append("latency_cdf.png")
    for mode, name, xlabel in (("closed", "throughput_vs_concurrency.png", "concurrent clients"),
                               ("open", "latency_vs_offered_load.png", "offered load (requests/s)")):
        rows = [row for row in summaries if row["mode"] == mode]
        if len(rows) < 2:
            continue
        figure, axes = plt.subplots(figsize=(7, 4.5))
        levels = [row["level"] for row in rows]
        if mode == "closed":
            axes.plot(levels, [row["pairs_per_s"] for row in rows], marker="o")
            axes.set_ylabel("pairs/s")
        else:
            for q in ("p50", "p99"):
                axes.plot(levels, [row["latency_ms"][q] for row in rows], marker="o", label=q)
            axes.set_ylabel("latency (ms)")
            axes.legend()
        axes.set_xlabel(xlabel)
        axes.grid(True, alpha=0.3)
        figure.tight_layout()
        figure.savefig(output / name, dpi=110)
        plt.close(figure)
        written.append(name)
    return written


def write(result: dict[str, Any], runs: list[Run], output: Path) -> None:
    output.mkdir(parents=True, exist_ok=True)
    result["plots"] = plots(runs, result["runs"], output)
    (output / "results.json").write_text(json.dumps(_json(result), indent=2, allow_nan=False) + "\n")
    (output / "report.md").write_text(markdown(result))


def _json(value: Any) -> Any:
    """NaN (no answered request to measure) as null, so the file is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json(item) for item in value]
    return value
