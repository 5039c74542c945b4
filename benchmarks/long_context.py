"""`python -m benchmarks.long_context`: memory and time of a real-size long-context model.

Builds a random-weight XLM-RoBERTa with `BAAI/bge-reranker-v2-m3`'s shape (24 layers, hidden
1024, 16 heads, 250,002 tokens, 8,194 positions: 568M parameters, 2.3 GB in fp32, so its ONNX
weights go to external data), exports fp32 with `xscore export`, then serves one pair of about
8,000 tokens with `xscore score`; with `--int8`, then builds the int8 variant from that export
(constant folding, NNCF calibration, the gates) with `xscore export --variant int8`. Each step runs
in a process of its own and reports its peak RSS (getrusage of the child) and wall time. Writes
benchmarks/results/long_context.{json,md}. Several minutes (int8: more) and ~15 GB of memory on 2
cores; never run by the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.families import unigram_tokenizer
from benchmarks.family_matrix import cpu_class

RESULTS = Path(__file__).resolve().parent / "results"


def build(destination: Path, layers: int) -> Path:
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    specials = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
    tokenizer = unigram_tokenizer(specials, "<s> $A </s>", "<s> $A </s> </s> $B </s>", 8192,
                                  ("input_ids", "attention_mask"), bos_token="<s>", eos_token="</s>",
                                  unk_token="<unk>", pad_token="<pad>", cls_token="<s>", sep_token="</s>",
                                  mask_token="<mask>")
    torch.manual_seed(0)
    config = XLMRobertaConfig(vocab_size=250002, hidden_size=1024, num_hidden_layers=layers, num_attention_heads=16,
                              intermediate_size=4096, max_position_embeddings=8194, num_labels=1,
                              pad_token_id=tokenizer.pad_token_id)
    model = XLMRobertaForSequenceClassification(config).eval()
    destination.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(destination)
    tokenizer.save_pretrained(destination)
    return destination


# Runs one command as its only child, so the peak RSS it reports is that command's alone.
_MEASURE = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
            "sys.stderr.write(done.stderr[-2000:]); "
            "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def timed(command: list[str], env: dict[str, str]) -> dict:
    """Run `command`: its exit status, wall time and peak RSS (KiB from getrusage, in GiB)."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _MEASURE, *command], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    returncode, peak_kib = (int(value) for value in done.stdout.split()[-2:])
    return {"command": " ".join(command[4:])[:200], "returncode": returncode, "seconds": round(seconds, 1),
            "peak_rss_gib": round(peak_kib / 1024**2, 2), "stderr_tail": done.stderr[-1500:]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.long_context", description=__doc__)
    parser.add_argument("--layers", type=int, default=24, help="encoder layers (24 = bge-reranker-v2-m3)")
    parser.add_argument("--words", type=int, default=7600, help="document words (one token each here)")
    parser.add_argument("--int8", action="store_true", help="also build the int8 variant and report its memory")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    xscore = [sys.executable, "-m", "xscore.service.cli", "--log-level", "WARNING"]
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        model_dir = build(root / "model", args.layers)
        env = {**os.environ, "XSCORE_CACHE": str(root / "cache")}
        export = timed([*xscore, "export", str(model_dir), "--variant", "fp32"], env)
        files = sorted(path.name for path in (root / "cache").rglob("*") if path.is_file() and "onnx" in path.name)
        document = " ".join(["word"] * args.words)
        serve = timed([*xscore, "score", "--model", f"m={model_dir}", "--variant", "fp32", "--raw",
                       "--query", "what is this", document], env)
        # a refusal by the gate (random weights) is an outcome too: its memory is what is measured
        int8 = timed([*xscore, "export", str(model_dir), "--variant", "int8"], env) if args.int8 else None
    report = {"machine": f"{platform.machine()}, {cpu_class()}, {os.cpu_count()} cores", "layers": args.layers,
              "document_words": args.words, "onnx_files": files, "export": export, "serve_one_pair": serve,
              **({"export_int8": int8} if int8 else {})}
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "long_context.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# Long-context model: memory and time", "",
             f"Random-weight XLM-RoBERTa, bge-reranker-v2-m3's shape ({args.layers} layers, hidden 1024, 8,194 "
             f"positions); {report['machine']}. ONNX files: {', '.join(files) or 'none'}.", "",
             "| step | exit | wall s | peak RSS GiB |", "|---|---|---|---|",
             f"| `xscore export --variant fp32` | {export['returncode']} | {export['seconds']} | {export['peak_rss_gib']} |",
             f"| `xscore score`, one pair of ~{args.words + 6} tokens | {serve['returncode']} | {serve['seconds']} | "
             f"{serve['peak_rss_gib']} |"]
    if int8:
        outcome = "refused by its gate" if "refused" in int8["stderr_tail"] else f"exit {int8['returncode']}"
        lines.append(f"| `xscore export --variant int8` (from the fp32 export; {outcome}) | {int8['returncode']} | "
                     f"{int8['seconds']} | {int8['peak_rss_gib']} |")
    (args.output / "long_context.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
