"""`python -m benchmarks.long_documents`: chunk vs truncate on long documents, cache on vs off.

Two workloads through the Scorer and its micro-batcher (a `BlockingScorer`, the path `xscore
serve` takes below its transports), each in interleaved rounds so both sides meet the same load:

- long documents: 1 query x 20 documents of 2,000 tokens (stdlib docstrings run together), scored
  with `long_documents="truncate"` and with `"chunk"` (default overlap and aggregate);
- repeats: 40 rerank requests of 1 query x 20 passages of 60-300 tokens, where each request after
  the first repeats an earlier one with probability 0.5 (seeded), with the score cache on and off
  (each round starts with an empty cache).

Reports documents/s (pairs answered), p50 latency per request and, for chunking, windows scored.
Writes benchmarks/results/long_documents-<cpu class>.{json,md}; never run by the tests.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import statistics
import time
from pathlib import Path

from tqdm import tqdm

from xscore.api.schema import LengthPolicy
from xscore.service.models.corpus import docstrings, rerank_workload
from xscore.service.models.hardware import cpu_class, machine
from xscore.service.models.model import LoadedModel
from xscore.service.models.registry import ModelSpec, default_spec, load_model
from xscore.service.serving.blocking import BlockingScorer
from xscore.service.serving.metrics import Metrics
from xscore.service.serving.score_cache import DEFAULT_MAX_MB, ScoreCache

RESULTS = Path(__file__).resolve().parent / "results"
log = logging.getLogger("benchmarks.long_documents")


def long_documents(model: LoadedModel, count: int, tokens: int) -> list[str]:
    """`count` documents of `tokens` tokens each, from consecutive stdlib docstrings."""
    texts = [text for _, text in docstrings()]
    encode = model.tokenizer._tokenizer.encode
    out, position = [], 0
    for _ in range(count):
        words: list[str] = []
        while len(encode(" ".join(words), add_special_tokens=False).ids) < tokens:
            words.extend(texts[position % len(texts)].split())
            position += 1
        ids = encode(" ".join(words), add_special_tokens=False).ids[:tokens]
        out.append(model.tokenizer._tokenizer.decode(ids))
    return out


def repeat_sequence(requests: int, passages: int, seed: int) -> list[tuple[str, list[str]]]:
    rng = random.Random(seed)
    sequence: list[tuple[str, list[str]]] = []
    for index in range(requests):
        if sequence and rng.random() < 0.5:
            sequence.append(rng.choice(sequence))
        else:
            sequence.append(rerank_workload(passages, seed=1000 + index))
    return sequence


def _timed(call) -> tuple[float, object]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.long_documents", description=__doc__)
    parser.add_argument("--model", help="NAME=SOURCE or SOURCE (default: the default model)")
    parser.add_argument("--variant", default="auto")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--documents", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    spec = ModelSpec.parse(args.model) if args.model else default_spec()
    model = load_model(spec, variant=args.variant, device="cpu", progress=False)
    query = "how do I read a file line by line and decode its text"
    documents = long_documents(model, args.documents, args.tokens)
    sequence = repeat_sequence(40, 20, seed=7)
    repeats = sum(1 for index, request in enumerate(sequence) if request in sequence[:index])
    modes = {"truncate": LengthPolicy(long_documents="truncate"), "chunk": LengthPolicy(long_documents="chunk")}
    long_runs: dict[str, list[float]] = {mode: [] for mode in modes}
    windows: dict[str, int] = {}
    repeat_runs: dict[str, list[float]] = {"cache off": [], "cache on": []}
    repeat_seconds: dict[str, list[float]] = {"cache off": [], "cache on": []}
    with BlockingScorer(model) as plain:
        plain.score(query, documents[:2], lengths=modes["chunk"])  # warm-up
        for _ in tqdm(range(args.rounds), desc="rounds", unit="round"):
            for mode, policy in modes.items():
                seconds, result = _timed(lambda: plain.score(query, documents, lengths=policy))
                long_runs[mode].append(seconds)
                windows[mode] = sum(result.usage.windows) if result.usage.windows else len(documents)
            for label in repeat_runs:
                metrics = Metrics()
                cache = ScoreCache(DEFAULT_MAX_MB * 1024 * 1024 if label == "cache on" else 0, metrics)
                with BlockingScorer(model, metrics=metrics, score_cache=cache) as served:
                    for request_query, passages in sequence:
                        seconds, _ = _timed(lambda: served.score(request_query, passages))
                        repeat_runs[label].append(seconds)
                    repeat_seconds[label].append(sum(repeat_runs[label][-len(sequence):]))
    result = {
        "machine": machine(), "model": spec.name, "variant": model.manifest.variant, "engine": model.engine.name,
        "rounds": args.rounds, "documents": args.documents, "tokens_per_document": args.tokens,
        "max_length": model.tokenizer.max_length,
        "long": {mode: {"documents_per_s": args.documents / statistics.median(runs),
                        "p50_ms": statistics.median(runs) * 1000, "windows": windows[mode]}
                 for mode, runs in long_runs.items()},
        "repeats": {"requests": len(sequence), "repeated": repeats, **{
            label: {"pairs_per_s": 20 * len(sequence) / statistics.median(repeat_seconds[label]),
                    "p50_ms": statistics.median(runs) * 1000}
            for label, runs in repeat_runs.items()}},
    }
    args.output.mkdir(parents=True, exist_ok=True)
    stem = args.output / f"long_documents-{cpu_class()}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    stem.with_suffix(".md").write_text(_markdown(result))
    log.info("wrote %s.{json,md}", stem)
    print(_markdown(result))
    return 0


def _markdown(result: dict) -> str:
    host = result["machine"]
    long, repeats = result["long"], result["repeats"]
    lines = [
        f"# Long documents and the score cache: {host['class']}",
        "",
        f"Machine: {host['cpu']}, {host['cores']} cores, class **{host['class']}**. Model {result['model']} "
        f"({result['variant']} on {result['engine']}, max_length {result['max_length']}), through a Scorer and its "
        f"micro-batcher, {result['rounds']} interleaved rounds, medians.",
        "",
        f"**Long documents**: 1 query x {result['documents']} documents of {result['tokens_per_document']} tokens.",
        "",
        "| mode | documents/s | p50 latency (ms) | windows scored | windows/s |",
        "|---|---|---|---|---|",
        *(f"| {mode} | {row['documents_per_s']:.2f} | {row['p50_ms']:.0f} | {row['windows']} | "
          f"{row['windows'] / row['p50_ms'] * 1000:.1f} |" for mode, row in long.items()),
        "",
        f"chunk / truncate: {long['chunk']['documents_per_s'] / long['truncate']['documents_per_s']:.2f}x "
        f"documents/s for {long['chunk']['windows'] / long['truncate']['windows']:.1f}x the windows.",
        "",
        f"**Repeats**: {repeats['requests']} requests of 1 query x 20 passages of 60-300 tokens, "
        f"{repeats['repeated']} of them repeats of an earlier one.",
        "",
        "| score cache | pairs/s | p50 latency (ms) |",
        "|---|---|---|",
        *(f"| {label} | {repeats[label]['pairs_per_s']:.1f} | {repeats[label]['p50_ms']:.1f} |"
          for label in ("cache off", "cache on")),
        "",
        f"cache on / off: {repeats['cache on']['pairs_per_s'] / repeats['cache off']['pairs_per_s']:.2f}x pairs/s.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
