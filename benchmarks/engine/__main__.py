"""`python -m benchmarks.engine`: every engine attempt against CrossEncoder.predict, same run.

Runs on any x86 CPU: a variant this CPU cannot run is skipped and the report says why. predict is
timed twice: first in a fresh process of its own (nothing else loaded), then in this process,
interleaved round by round with the attempts. "x predict" divides by the faster of the two;
"in-process" is the median of per-round ratios, where load from other processes moves both sides
together. The report is named by the CPU class it was measured on.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import statistics
import time
from pathlib import Path

from benchmarks.engine import report
from benchmarks.engine.attempts import (
    ATTEMPTS,
    AUTO,
    Attempt,
    baseline_scorer,
    close_all,
    engine_scorer,
    gate_row,
    service_scorer,
    variants_needed,
)
from benchmarks.engine.baseline import clean_baseline
from benchmarks.engine.evaluation import Scorer, compare, reference_scores
from benchmarks.models import build_minilm_cross_encoder
from xscore.service.models.corpus import rerank_workload
from xscore.service.models.engines import EngineOptions
from xscore.service.models.export import export_each
from xscore.service.models.fidelity import Fidelity
from xscore.service.models.hardware import cpu_class, machine, physical_cores
from xscore.service.models.ranking import (
    OWN_RANKING_FILE,
    OwnRankingSet,
    RankingFidelity,
    load_ranking_set,
    ranking_set,
)
from xscore.service.models.selection import Decision, decide

log = logging.getLogger("benchmarks.engine")


def pairs_per_second(scorer: Scorer, query: str, passages: list[str]) -> float:
    started = time.perf_counter()
    scorer(query, passages)
    return len(passages) / (time.perf_counter() - started)


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.engine", description=__doc__)
    parser.add_argument("--model", type=Path, help="cross-encoder directory (default: the MiniLM-size test model)")
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("XSCORE_CACHE", ".xscore-cache")))
    parser.add_argument("--passages", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=physical_cores())
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--only", help="run only attempts whose label contains this text")
    parser.add_argument("--tag", help="suffix of the report's name (engine-<cpu class>-<tag>)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    load_before = _load()

    model_dir = args.model or _minilm(args.cache)
    attempts = [a for a in ATTEMPTS if not args.only or args.only in a.label]
    attempts = [a if a.backend == "torch" else Attempt(a.backend, a.variant, a.budget, a.hint, a.streams,
                                                       args.threads) for a in attempts]
    skipped = {}
    for attempt in attempts:
        reason = None if attempt.variant == AUTO else gate_row(attempt.variant).unavailable()
        if reason:
            skipped[attempt.label] = reason
            log.warning("skipping %s: %s", attempt.label, reason)
    attempts = [attempt for attempt in attempts if attempt.label not in skipped]

    # before this process loads any engine: predict alone in a fresh interpreter
    log.info("clean-process baseline: CrossEncoder.predict in a process of its own")
    clean = clean_baseline(model_dir, args.passages, args.rounds, args.threads)
    built, failed = export_each(str(model_dir), variants_needed(attempts), root=args.cache)
    exports = {name.removesuffix("-bench"): result for name, result in built.items()}
    # a variant that cannot be built here is reported with why, and its attempts are left out
    for name, error in failed.items():
        for attempt in attempts:
            if attempt.variant == name.removesuffix("-bench"):
                skipped[attempt.label] = f"could not be built here: {' '.join(error.message.split())[:300]}"
                log.warning("skipping %s: %s", attempt.label, error.message)
    attempts = [attempt for attempt in attempts if attempt.label not in skipped]
    decision = None
    if any(attempt.variant == AUTO for attempt in attempts):
        decision = decide(str(model_dir), name="bench", device="cpu", options=EngineOptions(threads=args.threads),
                          root=args.cache)
    baseline_attempt = Attempt("torch", "fp32", None, threads=args.threads)
    baseline = baseline_scorer(model_dir, args.threads)
    scorers: dict[Attempt, Scorer] = {attempt: _scorer(attempt, model_dir, exports, args.cache)
                                      for attempt in attempts}

    log.info("fidelity on the ranking set")
    evaluation = ranking_set()
    references = reference_scores(baseline, evaluation)
    fidelity = {baseline_attempt.fidelity_key: compare(baseline, evaluation, references)}
    for attempt, scorer in scorers.items():
        if attempt.fidelity_key not in fidelity:
            fidelity[attempt.fidelity_key] = compare(scorer, evaluation, references)
    # the model's own labelled sets, where it carries them: the export gates on those too
    own_sets = {name: (queries, given or reference_scores(baseline, queries))
                for name, (queries, given) in _own_sets(model_dir).items()}
    own: dict[tuple, dict[str, RankingFidelity]] = {}
    for attempt, scorer in scorers.items():
        if own_sets and attempt.backend != "torch" and attempt.fidelity_key not in own:
            log.info("fidelity of %s on the model's own sets", attempt.label)
            own[attempt.fidelity_key] = {name: compare(scorer, queries, refs)
                                         for name, (queries, refs) in own_sets.items()}

    query, passages = rerank_workload(args.passages)
    everyone: dict[Attempt, Scorer] = {baseline_attempt: baseline, **scorers}
    for scorer in everyone.values():
        scorer(query, passages[:32])  # warm-up: first shapes, allocations
    rates: dict[Attempt, list[float]] = {attempt: [] for attempt in everyone}
    ratios: dict[Attempt, list[float]] = {attempt: [] for attempt in everyone}
    for round_index in range(args.rounds):
        base = pairs_per_second(baseline, query, passages)
        for attempt, scorer in everyone.items():
            rate = base if attempt is baseline_attempt else pairs_per_second(scorer, query, passages)
            rates[attempt].append(rate)
            ratios[attempt].append(rate / base)
        log.info("round %d/%d done (baseline %.1f pairs/s, load %s)", round_index + 1, args.rounds, base, _load())

    in_process = statistics.median(rates[baseline_attempt])
    # ratios use the faster of the two baselines: the clean one where this process slowed predict
    faster = max(in_process, clean.get("median", 0.0))
    # onnxruntime fp32 slows less than torch when other processes load the machine, so a ratio
    # against it, measured in the same rounds, is the steadier one to compare across runs
    anchor = next((a for a in everyone if (a.backend, a.variant) == ("onnxruntime", "fp32")), None)
    rows = []
    for attempt in everyone:
        ranking = fidelity[attempt.fidelity_key]
        rows.append({
            "label": attempt.label, "backend": attempt.backend, "variant": attempt.variant,
            "served": f"{decision.variant} on {decision.engine}" if attempt.variant == AUTO and decision else None,
            "budget": attempt.budget, "hint": attempt.hint, "streams": attempt.streams,
            "threads": attempt.threads,
            "pairs_per_s": statistics.median(rates[attempt]),
            "ratio": statistics.median(rates[attempt]) / faster,
            "ratio_in_process": statistics.median(ratios[attempt]),
            "ratios_per_round": [round(r, 3) for r in ratios[attempt]],
            "ratio_vs_onnxruntime_fp32": statistics.median(
                [a / b for a, b in zip(rates[attempt], rates[anchor])]) if anchor else None,
            "fidelity": ranking.as_dict(),
            "fidelity_own": {name: figures.as_dict() for name, figures in own.get(attempt.fidelity_key, {}).items()},
            "probe_parity": exports[attempt.variant].manifest.parity if attempt.variant in exports else None,
            "gate": _gate(attempt, exports, ranking, own.get(attempt.fidelity_key, {}), decision),
            "baseline": attempt is baseline_attempt,
        })
    results = {
        "environment": {
            "workload": f"1 query x {len(passages)} stdlib passages of 60-300 tokens, tokenization included",
            "model": str(model_dir), "rounds": args.rounds,
            "evaluation": f"{len(evaluation)} queries x {len(evaluation[0].candidates)} candidates "
                          "(held-out stdlib corpus: the export's ranking set)",
            "own_sets": {name: f"{len(queries)} queries x {len(queries[0].candidates)} candidates"
                         for name, (queries, _) in own_sets.items()},
            "machine": machine(),
            "baselines": {"clean_process": clean, "in_process": in_process, "used": faster},
            "skipped": skipped,
            "auto": dataclasses.asdict(decision) if decision else None,
            "load_before": load_before, "load_after": _load(),
        },
        "attempts": rows,
    }
    close_all()
    for path in report.write(results, args.output, stem="-".join(["engine", cpu_class(), *([args.tag] if args.tag else [])])):
        log.info("wrote %s", path)
    print(report.markdown(results))
    return 0


def _gate(attempt: Attempt, exports: dict, ranking: RankingFidelity, own: dict[str, RankingFidelity],
          decision: Decision | None) -> str:
    """Whether this attempt's variant passes the gate the export judges it by, and if not, why."""
    if attempt.backend == "torch":
        return "reference"
    if attempt.variant == AUTO:
        return "passed (served by auto)" if decision else "-"
    probe = exports[attempt.variant].manifest.parity
    problems = gate_row(attempt.variant).gate.failures(Fidelity(**probe), ranking, own)
    return "passes" if not problems else "fails: " + "; ".join(problems)


def _own_sets(model_dir: Path) -> OwnRankingSet:
    path = Path(model_dir) / OWN_RANKING_FILE
    return load_ranking_set(path) if path.is_file() else {}


def _scorer(attempt: Attempt, model_dir: Path, exports: dict, cache: Path) -> Scorer:
    if attempt.backend == "torch":
        return baseline_scorer(model_dir, attempt.threads)
    if attempt.backend == "service":
        return service_scorer(attempt, exports.get(attempt.variant), model_dir, cache)
    return engine_scorer(attempt, exports[attempt.variant])


def _minilm(cache: Path) -> Path:
    directory = cache / "models" / "bench-minilm-seed0"
    if not (directory / "config.json").is_file():
        build_minilm_cross_encoder(directory)
    return directory


if __name__ == "__main__":
    raise SystemExit(main())
