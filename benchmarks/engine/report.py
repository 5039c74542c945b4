"""Writes the engine benchmark's JSON, Markdown table and (with matplotlib) bar chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write(results: dict[str, Any], directory: Path, stem: str = "engine") -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = [directory / f"{stem}.json", directory / f"{stem}.md"]
    written[0].write_text(json.dumps(results, indent=2) + "\n")
    written[1].write_text(markdown(results))
    chart = _chart(results, directory / f"{stem}.png")
    return written + ([chart] if chart else [])


def markdown(results: dict[str, Any]) -> str:
    env = results["environment"]
    lines = [
        "# Engine benchmark",
        "",
        f"{env['workload']}; {env['model']}; ratios are medians of per-round ratios against the "
        f"baseline measured in the same round ({env['rounds']} rounds, attempts interleaved). "
        f"Fidelity against the torch fp32 reference on {env['evaluation']}.",
        f"Machine: {env['machine']}; load average before {env['load_before']}, after {env['load_after']}.",
        "",
        "| backend | variant | batching | threads/streams | pairs/s | x predict | x ORT fp32 | Spearman mean (min) "
        "| NDCG@10 ratio | top-10 agreement | max abs diff (logit) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["attempts"]:
        fidelity = row["fidelity"]
        batching = "batches of 32, sorted" if row["budget"] is None else f"{row['budget']} tokens, sorted"
        shape = f"{row['hint']} {row['streams']} stream(s), {row['threads']} threads" \
            if row["backend"] == "openvino" else f"{row['threads']} threads"
        lines.append(
            f"| {row['backend']} | {row['variant']} | {batching} | {shape} | {row['pairs_per_s']:.1f} "
            f"| {row['ratio']:.2f} | {_optional(row.get('ratio_vs_onnxruntime_fp32'))} | {fidelity['spearman_mean']:.4f} ({fidelity['spearman_min']:.4f}) "
            f"| {100 * fidelity['ndcg10_ratio']:.2f}% | {fidelity['top10_agreement']:.3f} "
            f"| {fidelity['max_abs_diff']:.3g} |"
        )
    return "\n".join(lines) + "\n"


def _optional(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _chart(results: dict[str, Any], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = results["attempts"]
    labels = [row["label"] for row in rows]
    ratios = [row["ratio"] for row in rows]
    figure, axes = plt.subplots(figsize=(9, 0.4 * len(rows) + 1.2))
    axes.barh(labels[::-1], ratios[::-1], color="#4a7fb5")
    axes.axvline(1.0, color="grey", linewidth=0.8)
    axes.set_xlabel("pairs/s ratio vs sentence-transformers CrossEncoder.predict (torch fp32)")
    for y, value in enumerate(ratios[::-1]):
        axes.text(value, y, f" {value:.2f}x", va="center", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
