"""The offline default model: data plumbing, metrics, a tiny training run, the shipped model."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from xscore.recipes.default_model import (
    ARTIFACT_DIR,
    Recipe,
    base_model_dir,
    evaluate_ranking,
    materialize_default,
)
from xscore.recipes.default_model import data as D
from xscore.recipes.default_model.ranking_metrics import (
    dcg_at,
    ndcg_at,
    ranked_relevance,
    reciprocal_rank_at,
)

# A slice in the exact Translation-en format: siblings from one source (gnuchess*), a
# passage shared by two packages, a summary too short to be a query, and unrelated packages.
TRANSLATION = """\
Package: gnuchess
Description-md5: 00000000000000000000000000000001
Description-en: chess engine that plays against the user in a terminal
 GNU Chess is a chess-playing program. It can be used to play chess against
 the user on a terminal or, more commonly, as a chess engine for a graphical
 chessboard program such as XBoard. It supports the standard notation.
 .
 This is the engine itself.

Package: gnuchess-book
Description-md5: 00000000000000000000000000000002
Description-en: opening book for the gnuchess chess engine
 GNU Chess is a chess-playing program. It can be used to play chess against
 the user on a terminal or, more commonly, as a chess engine for a graphical
 chessboard program such as XBoard.
 .
 This package contains the opening book used by the engine at the start of games.

Package: gnuchess-doc
Description-md5: 00000000000000000000000000000003
Description-en: documentation for the gnuchess chess engine
 GNU Chess is a chess-playing program. It can be used to play chess against
 the user on a terminal or, more commonly, as a chess engine for a graphical
 chessboard program such as XBoard.
 .
 This package contains the manual and the frequently asked questions in HTML.

Package: gnuchess-copy
Description-md5: 00000000000000000000000000000004
Description-en: exact copy of another package description
 GNU Chess is a chess-playing program. It can be used to play chess against
 the user on a terminal or, more commonly, as a chess engine for a graphical
 chessboard program such as XBoard. It supports the standard notation.
 .
 This is the engine itself.

Package: tiny
Description-md5: 00000000000000000000000000000005
Description-en: too short
 This package has a summary of two words, which is not a usable query for the
 recipe, so it must be dropped by the loader before anything else happens here.

Package: sourdough
Description-md5: 00000000000000000000000000000006
Description-en: recipes and timers for baking bread at home
 Sourdough helps home bakers plan bread: it keeps recipes for loaves, computes
 hydration and flour ratios, and runs timers for the rise, the folds and the
 bake itself, with reminders when the dough needs attention.

Package: tideplot
Description-md5: 00000000000000000000000000000007
Description-en: plot ocean tide predictions for harbours
 Tideplot draws tide height curves for harbours from harmonic constituents,
 showing high and low water times for the coming days, with the moon phase,
 in a window or as a PNG file for printing or a web page.

Package: wavemeter
Description-md5: 00000000000000000000000000000008
Description-en: measure the frequency of audio signals from a microphone
 Wavemeter listens to the sound card and shows the dominant frequency of the
 signal with a tuner display for musical instruments, plus a spectrum view and
 a recording mode that writes the measurements to a CSV file for later study.
"""

PACKAGES = """\
Package: gnuchess
Version: 6.2.9-1

Package: gnuchess-book
Source: gnuchess (6.2.9-1)
Version: 1.02-3

Package: gnuchess-doc
Source: gnuchess
Version: 6.2.9-1
"""


@pytest.fixture(scope="module")
def docs() -> list[D.Doc]:
    return D.load_docs(TRANSLATION, D.parse_sources(PACKAGES))


# ----------------------------------------------------------------------------- data


def test_description_splits_into_summary_and_plain_paragraphs() -> None:
    summary, text = D.parse_description("a summary line\n first line\n second line\n .\n next one")
    assert summary == "a summary line"
    assert text == "first line second line\nnext one"


def test_sources_strip_versions_and_default_to_the_package() -> None:
    assert D.parse_sources(PACKAGES) == {
        "gnuchess": "gnuchess", "gnuchess-book": "gnuchess", "gnuchess-doc": "gnuchess"}


def test_loader_drops_short_summaries_and_duplicate_passages(docs: list[D.Doc]) -> None:
    names = [d.package for d in docs]
    assert names == ["gnuchess", "gnuchess-book", "gnuchess-doc", "sourdough", "tideplot", "wavemeter"]
    assert docs[1].group == "gnuchess" and docs[3].group == "sourdough"
    assert docs[0].summary == "chess engine that plays against the user in a terminal"
    assert docs[0].passage.endswith("\nThis is the engine itself.")


def test_split_keeps_source_groups_whole_and_is_reproducible(docs: list[D.Doc]) -> None:
    many = [dataclasses.replace(d, group=f"{d.group}{i}") for i in range(40) for d in docs]
    train, heldout = D.split_docs(many, eval_percent=30)
    assert 0 < len(heldout) < len(many) and len(train) + len(heldout) == len(many)
    assert not {d.group for d in train} & {d.group for d in heldout}
    assert (train, heldout) == D.split_docs(many, eval_percent=30)


def test_siblings_come_from_the_source_group(docs: list[D.Doc]) -> None:
    index = D.sibling_index(docs)
    assert sorted(docs[j].package for j in D.siblings(0, docs, index)) == ["gnuchess-book", "gnuchess-doc"]
    assert D.siblings(3, docs, index) == []


def test_train_groups_hold_the_positive_once_and_distinct_negatives(docs: list[D.Doc]) -> None:
    groups = D.make_train_groups(docs, n_queries=len(docs), n_negatives=3, seed=7)
    assert len(groups) == len(docs)
    for group in groups:
        assert len(group.negatives) == 3 == len(set(group.negatives))
        assert group.positive not in group.negatives
    chess = next(g for g in groups if g.query.startswith("chess engine"))
    assert {docs[1].passage, docs[2].passage} & set(chess.negatives)  # a sibling is a negative
    assert groups == D.make_train_groups(docs, n_queries=len(docs), n_negatives=3, seed=7)


def test_eval_set_has_exactly_one_relevant_candidate_per_query(docs: list[D.Doc]) -> None:
    eval_set = D.make_eval_set(docs[:3], docs, n_queries=3, n_candidates=5, seed=7)
    assert len(eval_set) == 3
    for item in eval_set:
        assert sum(item.relevance) == 1 and len(item.candidates) == 5
        own = next(d for d in docs if d.summary == item.query)
        assert item.candidates[item.relevance.index(1)] == own.passage


# ----------------------------------------------------------------------------- metrics


def test_reciprocal_rank_is_one_over_the_first_relevant_rank_within_k() -> None:
    assert reciprocal_rank_at([0, 1, 0], 10) == 0.5
    assert reciprocal_rank_at([0, 0, 1], 2) == 0.0
    assert reciprocal_rank_at([1, 1], 10) == 1.0
    assert reciprocal_rank_at([0, 0], 10) == 0.0


def test_ndcg_matches_hand_computed_values() -> None:
    assert ndcg_at([0, 1, 0], 10) == pytest.approx(1 / math.log2(3))
    # Two relevant at ranks 1 and 3: (1 + 1/2) / (1 + 1/log2 3).
    assert ndcg_at([1, 0, 1], 10) == pytest.approx(1.5 / (1 + 1 / math.log2(3)))
    # Graded gain 2^rel - 1: a grade-2 item at rank 2 behind a grade-1 item.
    assert dcg_at([1, 2], 10) == pytest.approx(1 + 3 / math.log2(3))
    assert ndcg_at([1, 2], 10) == pytest.approx((1 + 3 / math.log2(3)) / (3 + 1 / math.log2(3)))
    assert ndcg_at([0, 0, 0], 10) == 0.0
    assert ndcg_at([0, 0, 1], 2) == 0.0


def test_ties_keep_input_order() -> None:
    assert ranked_relevance([0.5, 0.5, 0.9], [1, 0, 0]) == [0, 1, 0]
    with pytest.raises(ValueError):
        ranked_relevance([1.0], [1, 0])


def test_evaluate_ranking_gives_one_for_an_oracle_and_input_order_for_a_constant(docs) -> None:
    eval_set = D.make_eval_set(docs[:3], docs, n_queries=3, n_candidates=5, seed=7)
    truth = {(item.query, c): float(r) for item in eval_set
             for c, r in zip(item.candidates, item.relevance, strict=True)}
    oracle = evaluate_ranking(eval_set, lambda pairs: np.array([truth[p] for p in pairs]))
    assert oracle["mrr@10"] == 1.0 and oracle["ndcg@10"] == 1.0
    constant = evaluate_ranking(eval_set, lambda pairs: np.zeros(len(pairs)))
    expected = np.mean([1 / (item.relevance.index(1) + 1) for item in eval_set])
    assert constant["mrr@10"] == pytest.approx(expected)


# ----------------------------------------------------------------------------- training


def test_a_few_training_steps_move_only_shipped_weights_and_are_deterministic(docs) -> None:
    pytest.importorskip("torch")  # the recipe's extra, not the serving install
    from xscore.recipes.default_model.train import shipped_state, train_cross_encoder

    groups = D.make_train_groups(docs, n_queries=4, n_negatives=3, seed=3)
    recipe = dataclasses.replace(Recipe(), groups_per_step=2, max_length=32, learning_rate=1e-4)
    first = shipped_state(train_cross_encoder(base_model_dir(), groups, recipe, progress=False))
    second = shipped_state(train_cross_encoder(base_model_dir(), groups, recipe, progress=False))
    assert first.keys() == second.keys()
    assert "classifier.weight" in first and "bert.encoder.layer.5.output.dense.weight" in first
    assert not any(name.startswith("bert.embeddings.") for name in first)
    assert all(np.array_equal(first[name], second[name]) for name in first)
    # and training did move them: the encoder is no longer the base model's
    from safetensors.numpy import load_file

    base = load_file(base_model_dir() / "model.safetensors")
    name = "bert.encoder.layer.5.output.dense.weight"
    start = base.get(name, base.get(name.removeprefix("bert.")))
    assert start is not None and start.shape == first[name].shape
    assert np.abs(first[name] - start).max() > 1e-6


# ----------------------------------------------------------------------------- shipped model

QUERIES = [
    ("how do I bake sourdough bread at home",
     "Mix flour, water and a sourdough starter, let the dough rise overnight, shape the loaf "
     "and bake it in a hot oven until the crust is brown.",
     ["The tide rises twice a day because of the gravitational pull of the moon and the sun.",
      "A compiler translates source code into machine instructions before the program runs.",
      "The football season ended with a narrow win for the home team in the final match."]),
    ("command line tool to compress files",
     "gzip reduces the size of files using Lempel-Ziv coding; it is run from the shell and "
     "replaces each file with a compressed .gz version.",
     ["A graphical photo viewer with slideshow support and basic colour correction.",
      "Library of sourdough recipes with timers for rising and baking bread.",
      "Fonts covering Latin, Greek and Cyrillic scripts for desktop publishing."]),
    ("what causes ocean tides",
     "Tides are caused by the gravitational pull of the moon and, to a lesser degree, the sun "
     "acting on the rotating Earth's oceans.",
     ["gzip reduces the size of files using Lempel-Ziv coding.",
      "A chess engine that can play against the user on a terminal.",
      "Mix flour, water and yeast, knead, and bake the bread in a hot oven."]),
    ("python library for parsing JSON",
     "This module parses JSON documents into Python dictionaries and lists, and serialises "
     "Python objects back to JSON text.",
     ["An email client with a threaded message view and spam filtering.",
      "Tides are caused by the gravitational pull of the moon.",
      "Drivers and firmware for wireless network cards."]),
]


@pytest.fixture(scope="module")
def default_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return materialize_default(tmp_path_factory.mktemp("default") / "model")


def test_materialized_default_is_a_sigmoid_one_label_model_with_unpadded_tokenizer(default_dir) -> None:
    config = json.loads((default_dir / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["id2label"] == {"0": "LABEL_0"}
    assert config["sentence_transformers"]["activation_fn"].endswith("Sigmoid")
    tokenizer = json.loads((default_dir / "tokenizer.json").read_text())
    assert tokenizer["padding"] is None and tokenizer["truncation"]["max_length"] == 512
    card = json.loads((ARTIFACT_DIR / "default_model.json").read_text())
    assert (ARTIFACT_DIR / card["weights"]["file"]).stat().st_size <= 50 * 1024 * 1024
    assert materialize_default(default_dir) == default_dir  # stamped: reused, not rebuilt


def test_materialized_default_ranks_the_relevant_passage_first(default_dir) -> None:
    CrossEncoder = pytest.importorskip("sentence_transformers").CrossEncoder

    model = CrossEncoder(str(default_dir), device="cpu")
    for query, relevant, others in QUERIES:
        scores = model.predict([(query, p) for p in [relevant, *others]])
        assert 0.0 < float(np.min(scores)) and float(np.max(scores)) < 1.0  # sigmoid applied
        assert int(np.argmax(scores)) == 0, (query, scores)
