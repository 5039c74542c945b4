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


def _cap_note(cpu: dict[str, Any]) -> list[str]:
    if not cpu.get("isa_cap"):
        return []
    return [f"**Instruction-set cap**: run with ONEDNN_MAX_CPU_ISA={cpu['isa_cap']} on a CPU that has "
            f"{', '.join(cpu['cpu_flags'])}. OpenVINO's oneDNN kernels (int8 and bf16 matmuls, attention "
            "subgraphs) ran as on a CPU of the capped class; onnxruntime, torch and some of OpenVINO's own "
            "kernels (its fp32 matmuls, LayerNorm) read the CPU themselves and used all of it. So the "
            "int8 rows show the capped class's kernels, the fp32 and onnxruntime rows are faster than such a "
            "CPU would be, and no figure here is one of a real machine of that class.", ""]


def markdown(results: dict[str, Any]) -> str:
    env = results["environment"]
    cpu = env["machine"]
    baselines = env["baselines"]
    clean = baselines["clean_process"]
    clean_text = f"{clean['median']:.1f} pairs/s" if "median" in clean else f"could not run ({clean.get('error')})"
    lines = [
        f"# Engine benchmark: {cpu['class']}",
        "",
        f"Machine: {cpu['cpu']}, {cpu['cores']} cores, class **{cpu['class']}** (flags: {', '.join(cpu['flags'])}); "
        f"load average before {env['load_before']}, after {env['load_after']}.",
        "",
        *_cap_note(cpu),
        f"{env['workload']}; {env['model']}; {env['rounds']} rounds, attempts interleaved with the "
        "in-process baseline. Fidelity against the torch fp32 reference on "
        f"{env['evaluation']}; the gate column applies the export's bars to it.",
        "",
        f"Baselines (CrossEncoder.predict, torch fp32): clean process {clean_text}, in this process "
        f"{baselines['in_process']:.1f} pairs/s. \"x predict\" divides by the faster, "
        f"{baselines['used']:.1f} pairs/s; \"in-process\" is the median of per-round ratios.",
        "",
    ]
    if env.get("auto"):
        auto = env["auto"]
        lines += [f"`--variant auto` here serves **{auto['variant']} on {auto['engine']}**: {auto['reason']}.", ""]
    for label, reason in env.get("skipped", {}).items():
        lines.append(f"- skipped {label}: {reason}")
    if env.get("skipped"):
        lines.append("")
    lines += [
        "| attempt | pairs/s | x predict | in-process | x ORT fp32 | Spearman mean (min) | NDCG@10 ratio "
        "| top-10 agreement | max abs diff (logit) | gate |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["attempts"]:
        fidelity = row["fidelity"]
        label = row["label"] + (f" ({row['served']})" if row.get("served") else "")
        lines.append(
            f"| {label} | {row['pairs_per_s']:.1f} | {row['ratio']:.2f} | {row['ratio_in_process']:.2f} "
            f"| {_optional(row.get('ratio_vs_onnxruntime_fp32'))} "
            f"| {fidelity['spearman_mean']:.4f} ({fidelity['spearman_min']:.4f}) "
            f"| {100 * fidelity['ndcg10_ratio']:.2f}% | {fidelity['top10_agreement']:.3f} "
            f"| {fidelity['max_abs_diff']:.3g} | {row['gate']} |"
        )
    own_sets = env.get("own_sets") or {}
    if own_sets:
        lines += ["", "The model's own labelled sets (" + "; ".join(f"{name}: {shape}" for name, shape in own_sets.items())
                  + "): mean NDCG@10 against the labels as a share of the torch reference's (net, and in "
                  "brackets kept on the queries ranked worse, which the gate judges), and per-query Spearman "
                  "against it.", "",
                  "| attempt | " + " | ".join(f"{name} NDCG@10 | {name} Spearman mean (min)" for name in own_sets) + " |",
                  "|---|" + "---|---|" * len(own_sets)]
        for row in results["attempts"]:
            own = row.get("fidelity_own") or {}
            if own:
                lines.append(f"| {row['label']} | " + " | ".join(
                    f"{100 * own[name]['ndcg10_ratio']:.2f}% ({100 * own[name]['unfallen_share']:.2f}%) "
                    f"| {own[name]['spearman_mean']:.4f} "
                    f"({own[name]['spearman_min']:.4f})" for name in own_sets) + " |")
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
    axes.set_xlabel("pairs/s ratio vs sentence-transformers CrossEncoder.predict (torch fp32), "
                    f"{results['environment']['machine']['class']}")
    for y, value in enumerate(ratios[::-1]):
        axes.text(value, y, f" {value:.2f}x", va="center", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
