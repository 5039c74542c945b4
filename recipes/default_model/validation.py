"""Choosing the recipe's interpolation weight on validation text, never on the evaluation sets.

The weight (`Recipe.base_interpolation`: how far the trained body moves back towards the
bi-encoder) is the one number of the recipe set after training. Validation text of the same
forms as the evaluation sets, disjoint from them and from training:
- Debian: held-out source groups (never trained on) whose summaries are not evaluation queries:
  the held-out split holds about 1,800 packages and the evaluation asks 300 of them.
- WordNet: one-sense words the sense-tagged corpus never saw. Training and evaluation use only
  the tagged (common) words, so these are never trained on; their definitions must be no common
  word's (synonyms share a definition). They are rarer words than the evaluation's: a harder set
  of the same form, which can rank the weights differently, so the choice is a validation figure
  and the evaluation figures stay the ones to quote.
The everyday questions (24, hand-written) have no validation counterpart.

`choose` keeps the weight whose worst margin over the bi-encoder is largest: the recipe's target
is a margin on every set, not on their mean.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from xscore.recipes.default_model.data import Doc, Embed, EvalQuery, make_eval_set
from xscore.recipes.default_model.evaluate import ScorePairs
from xscore.recipes.default_model.train import Recipe

BI_ENCODER = "bi-encoder"
RARE_WORD_POOL = 3000  # passages the WordNet validation queries and their dense distractors come from
METRIC = "mrr@10"


def validation_pools(heldout: Sequence[Doc], evaluated_queries: set[str], common_words: Sequence[Doc],
                     rare_words: Sequence[Doc], pool: int, seed: int) -> tuple[list[Doc], list[Doc]]:
    """(Debian held-out docs whose summary is no evaluation query, a seeded sample of `pool` rare
    words whose definition is no common word's), each in a fixed order."""
    debian = [doc for doc in heldout if doc.summary not in evaluated_queries]
    known = {doc.passage for doc in common_words}
    return debian, _seeded_sample([doc for doc in rare_words if doc.passage not in known], pool, seed)


def _seeded_sample(docs: Sequence[Doc], count: int, seed: int) -> list[Doc]:
    """`count` of docs (all where fewer), drawn with seed, in their own order."""
    picked = random.Random(seed).sample(range(len(docs)), min(count, len(docs)))
    return [docs[i] for i in sorted(picked)]


def rare_training_words(common_words: Sequence[Doc], rare_words: Sequence[Doc], count: int,
                        seed: int) -> list[Doc]:
    """A seeded sample of `count` rare words to train on: none from the validation pool
    (`validation_pools` with the same seed), none sharing a definition with a pool word or with
    any common word (a synonym of an evaluated word would teach its answer), in a fixed order."""
    _, pool = validation_pools([], set(), common_words, rare_words, RARE_WORD_POOL, seed + 20)
    banned = {doc.passage for doc in pool} | {doc.passage for doc in common_words}
    return _seeded_sample([doc for doc in rare_words if doc.passage not in banned], count, seed + 30)


def dominant_sense_training_words(common_words: Sequence[Doc], rare_words: Sequence[Doc],
                                  dominant: Sequence[Doc], count: int, seed: int) -> list[Doc]:
    """A seeded sample of `count` first senses of many-sense words to train on, none sharing a
    definition with a validation pool word (`validation_pools` with the same seed), in a fixed order."""
    _, pool = validation_pools([], set(), common_words, rare_words, RARE_WORD_POOL, seed + 20)
    banned = {doc.passage for doc in pool}
    return _seeded_sample([doc for doc in dominant if doc.passage not in banned], count, seed + 40)


def validation_sets(recipe: Recipe, embed: Embed, queries: int, data_dir: Path | None = None,
                    artifact_dir: Path | None = None) -> dict[str, list[EvalQuery]]:
    """The Debian and WordNet validation sets: `queries` each, `recipe.eval_candidates` candidates
    mined as the evaluation sets' are (BM25 over the corpus, the bi-encoder over the pool)."""
    from xscore.recipes.default_model import ARTIFACT_DIR, _data_cache, shipped_eval_sets
    from xscore.recipes.default_model.data import fetch_debian_text, load_docs, parse_sources, split_docs
    from xscore.recipes.default_model.wordnet import fetch_wordnet, load_wordnet_docs

    cache = data_dir or _data_cache()
    translation, packages = fetch_debian_text(cache)
    docs = load_docs(translation.read_text(encoding="utf-8"), parse_sources(packages.read_text(encoding="utf-8")))
    _, heldout = split_docs(docs, recipe.eval_percent)
    evaluated = {item.query for items in shipped_eval_sets(artifact_dir or ARTIFACT_DIR).values() for item in items}
    database = fetch_wordnet(cache)
    words = load_wordnet_docs(database)
    debian, rare = validation_pools(heldout, evaluated, words, load_wordnet_docs(database, tagged=False),
                                    RARE_WORD_POOL, recipe.seed + 20)
    # seeds of their own: the evaluation sets' seed would draw the same positions again
    return {"debian": make_eval_set(debian, docs, queries, recipe.eval_candidates, recipe.seed + 10, embed=embed),
            "wordnet": make_eval_set(rare, [*words, *rare], queries, recipe.eval_candidates, recipe.seed + 10,
                                     embed=embed)}


def sweep(trained: Mapping[str, np.ndarray], base_dir: Path, alphas: Sequence[float],
          sets: Mapping[str, Sequence[EvalQuery]], bi_encoder: ScorePairs,
          progress: bool = True) -> dict[str, dict[str, dict[str, float]]]:
    """{str(alpha) or "bi-encoder": {set: metrics}}: the torch model at each interpolation weight,
    and the bi-encoder the margins are taken over."""
    import torch

    from xscore.recipes.default_model import materialize_default
    from xscore.recipes.default_model.evaluate import TorchCrossEncoder, evaluate_ranking
    from xscore.recipes.default_model.train import interpolate_with_base

    rows = {BI_ENCODER: {name: evaluate_ranking(items, bi_encoder, desc=f"{name}: bi-encoder" if progress else None)
                         for name, items in sets.items()}}
    with tempfile.TemporaryDirectory() as scratch:
        cross = TorchCrossEncoder(materialize_default(Path(scratch) / "model"))
        for alpha in alphas:
            state = interpolate_with_base(dict(trained), base_dir, alpha)
            loaded = cross.model.load_state_dict({name: torch.from_numpy(np.ascontiguousarray(tensor))
                                                  for name, tensor in state.items()}, strict=False)
            if loaded.unexpected_keys:
                raise ValueError(f"weights the model does not have: {loaded.unexpected_keys[:5]}")
            rows[f"{alpha:g}"] = {
                name: evaluate_ranking(items, cross.score_pairs, desc=f"{name}: alpha {alpha:g}" if progress else None)
                for name, items in sets.items()}
    return rows


def margins(rows: Mapping[str, Mapping[str, Mapping[str, float]]]) -> dict[str, dict[str, float]]:
    """{alpha: {set: metric - the bi-encoder's}}."""
    bi = rows[BI_ENCODER]
    return {alpha: {name: figures[METRIC] - bi[name][METRIC] for name, figures in sets.items()}
            for alpha, sets in rows.items() if alpha != BI_ENCODER}


def choose(rows: Mapping[str, Mapping[str, Mapping[str, float]]]) -> float:
    """The weight whose smallest margin over the bi-encoder is largest (ties: the larger mean)."""
    by_alpha = margins(rows)
    best = max(by_alpha, key=lambda alpha: (min(by_alpha[alpha].values()),
                                            sum(by_alpha[alpha].values()) / len(by_alpha[alpha])))
    return float(best)


def report(rows: Mapping[str, Mapping[str, Mapping[str, float]]], chosen: float, shipped: float) -> str:
    names = list(rows[BI_ENCODER])
    by_alpha = margins(rows)
    lines = ["| weight | " + " | ".join(f"{name} {METRIC.upper()} (margin)" for name in names) + " | worst margin |",
             "|---|" + "---|" * (len(names) + 1),
             "| bi-encoder | " + " | ".join(f"{rows[BI_ENCODER][name][METRIC]:.4f}" for name in names) + " | - |"]
    for alpha, sets in by_alpha.items():
        mark = " (chosen)" if float(alpha) == chosen else ""
        mark += " (shipped)" if float(alpha) == shipped else ""
        lines.append(f"| {alpha}{mark} | " + " | ".join(f"{rows[alpha][name][METRIC]:.4f} ({sets[name]:+.4f})"
                                                       for name in names) + f" | {min(sets.values()):+.4f} |")
    return "\n".join(lines)


def plot(rows: Mapping[str, Mapping[str, Mapping[str, float]]], chosen: float, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    alphas = [alpha for alpha in rows if alpha != BI_ENCODER]
    figure, axes = plt.subplots(figsize=(7, 4))
    for number, name in enumerate(rows[BI_ENCODER]):
        color = f"C{number}"
        axes.plot([float(a) for a in alphas], [rows[a][name][METRIC] for a in alphas], "o-", color=color,
                  label=f"{name} (validation)")
        axes.axhline(rows[BI_ENCODER][name][METRIC], color=color, linestyle=":", label=f"{name}: bi-encoder")
    axes.axvline(chosen, color="grey", linewidth=0.8)
    axes.set_xlabel("interpolation weight (1 = as trained, 0 = the body it was trained from)")
    axes.set_ylabel(METRIC.upper())
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
