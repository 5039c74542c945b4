"""The default model's general-English data (WordNet), the everyday questions and the training order."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from xscore.recipes.default_model import Recipe
from xscore.recipes.default_model.data import TrainGroup
from xscore.recipes.default_model.evaluate import bm25_scorer, evaluate_ranking, load_everyday_set
from xscore.recipes.default_model.train import _batched_order
from xscore.recipes.default_model.wordnet import load_wordnet_docs, parse_data_line

# Lines in WordNet 3.0's data.* format: offset, lexicographer file, part, word count (hex),
# words with lex ids, pointers, then "| gloss" (definition; "examples").
DATA_NOUN = """\
  1 This software and database is being provided to you, the LICENSEE, by Princeton University
09411430 17 n 01 river 0 002 @ 09448361 n 0000 ~ 09258617 n 0000 | a large natural stream of water (larger than a creek); "the river was navigable for 50 miles"
00297657 04 n 02 ford 0 fording 0 001 @ 00297532 n 0000 | the act of crossing a stream or river by wading or in a car or on a horse
08420278 14 n 01 bank 0 000 | a financial institution that accepts deposits and channels the money into lending activities
09213565 17 n 01 bank 1 000 | sloping land (especially the slope beside a body of water)
09999990 18 n 01 Lysander 0 000 | a Spartan naval commander who won the final battle of the war
09999991 17 n 01 rill 0 000 | a small stream of water flowing through land
"""
INDEX_NOUN = """\
  1 This software and database is being provided to you, the LICENSEE, by Princeton University
river n 1 2 @ ~ 1 3 09411430
ford n 1 1 @ 1 1 00297657
fording n 1 1 @ 1 1 00297657
bank n 2 0 2 5 08420278 09213565
lysander n 1 0 1 1 09999990
rill n 1 0 1 0 09999991
"""


@pytest.fixture()
def wordnet_dir(tmp_path: Path) -> Path:
    (tmp_path / "data.noun").write_text(DATA_NOUN)
    (tmp_path / "index.noun").write_text(INDEX_NOUN)
    for part in ("verb", "adj", "adv"):
        (tmp_path / f"data.{part}").write_text("")
        (tmp_path / f"index.{part}").write_text("")
    return tmp_path


def test_a_data_line_gives_its_words_definition_and_examples() -> None:
    synset, words, definition, examples = parse_data_line(DATA_NOUN.splitlines()[1])
    assert synset == "09411430n" and words == ["river"]
    assert definition == "a large natural stream of water (larger than a creek)"
    assert examples == ["the river was navigable for 50 miles"]
    assert parse_data_line(DATA_NOUN.splitlines()[0]) is None  # the license header


def test_only_common_one_sense_words_become_questions_answered_by_their_definition(wordnet_dir) -> None:
    docs = {doc.group: doc for doc in load_wordnet_docs(wordnet_dir)}
    # bank has two senses, Lysander is a name, rill was never sense-tagged
    assert set(docs) == {"wordnet:river", "wordnet:ford", "wordnet:fording"}
    river = docs["wordnet:river"]
    assert "river" in river.summary and river.summary != "river"
    # the definition alone: the example would repeat the word, as the traps do
    assert river.passage == "A large natural stream of water (larger than a creek)."
    assert load_wordnet_docs(wordnet_dir) == list(docs.values())  # deterministic, sorted


def test_a_trained_synonym_never_carries_a_held_out_words_definition(wordnet_dir) -> None:
    from xscore.recipes.default_model.data import split_docs, without_heldout_passages

    docs = load_wordnet_docs(wordnet_dir)  # ford and fording: one synset, one definition
    fording = next(doc for doc in docs if doc.group == "wordnet:fording")
    river = next(doc for doc in docs if doc.group == "wordnet:river")
    train = [doc for doc in docs if doc is not fording]
    assert without_heldout_passages(train, [fording]) == [river]
    assert without_heldout_passages(train, []) == train
    # the build's own split: whatever it holds out, no train doc keeps a held-out definition
    for percent in (30.0, 50.0, 70.0):
        kept, heldout = split_docs(docs, percent)
        assert not {d.passage for d in without_heldout_passages(kept, heldout)} & {d.passage for d in heldout}


def test_the_trained_body_moves_back_towards_the_bi_encoder_and_the_head_stays_as_trained(tmp_path) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    from xscore.recipes.default_model.train import interpolate_with_base

    base = {"encoder.layer.0.weight": np.full((2, 3), 1.0, np.float32), "pooler.dense.bias": np.zeros(3, np.float32),
            "embeddings.word_embeddings.weight": np.ones((4, 3), np.float32)}
    save_file(base, str(tmp_path / "model.safetensors"))
    trained = {"bert.encoder.layer.0.weight": np.full((2, 3), 3.0, np.float32),
               "bert.pooler.dense.bias": np.full(3, 2.0, np.float32),
               "classifier.weight": np.full((1, 3), 5.0, np.float32)}
    moved = interpolate_with_base(trained, tmp_path, 0.6)
    assert set(moved) == set(trained)  # nothing of the base's (its embeddings) is added
    np.testing.assert_allclose(moved["bert.encoder.layer.0.weight"], 0.6 * 3.0 + 0.4 * 1.0)
    np.testing.assert_allclose(moved["bert.pooler.dense.bias"], 1.2)
    np.testing.assert_array_equal(moved["classifier.weight"], trained["classifier.weight"])
    assert moved["bert.encoder.layer.0.weight"].dtype == np.float32
    assert all(np.array_equal(interpolate_with_base(trained, tmp_path, 1.0)[name], trained[name]) for name in trained)
    with pytest.raises(ValueError, match="bert.pooler.dense.bias"):
        interpolate_with_base({**trained, "bert.pooler.dense.bias": np.zeros(4, np.float32)}, tmp_path, 0.6)


def test_the_trained_body_comes_back_from_the_shipped_weights_for_another_weight_to_be_tried(tmp_path) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    from xscore.recipes.default_model.train import interpolate_with_base, undo_interpolation

    rng = np.random.default_rng(0)
    base = {"encoder.layer.0.weight": rng.normal(size=(4, 3)).astype(np.float32)}
    save_file(base, str(tmp_path / "model.safetensors"))
    trained = {"bert.encoder.layer.0.weight": rng.normal(size=(4, 3)).astype(np.float32),
               "classifier.weight": rng.normal(size=(1, 3)).astype(np.float32)}
    shipped = interpolate_with_base(trained, tmp_path, 0.7)
    assert not np.allclose(shipped["bert.encoder.layer.0.weight"], trained["bert.encoder.layer.0.weight"])
    back = undo_interpolation(shipped, tmp_path, 0.7)
    np.testing.assert_allclose(back["bert.encoder.layer.0.weight"], trained["bert.encoder.layer.0.weight"], atol=1e-6)
    np.testing.assert_array_equal(back["classifier.weight"], trained["classifier.weight"])
    with pytest.raises(ValueError, match="cannot be undone"):
        undo_interpolation(shipped, tmp_path, 0.0)


def test_validation_text_is_neither_trained_on_nor_evaluated(wordnet_dir) -> None:
    from xscore.recipes.default_model.data import Doc
    from xscore.recipes.default_model.validation import validation_pools

    common = load_wordnet_docs(wordnet_dir)
    rare = load_wordnet_docs(wordnet_dir, tagged=False)
    assert [doc.group for doc in rare] == ["wordnet:rill"]  # one sense, never sense-tagged
    synonym = Doc("wordnet:fordings", "wordnet:fordings", "define fordings", common[0].passage)
    heldout = [Doc(f"p{n}", f"p{n}", f"summary {n}", f"passage {n}") for n in range(6)]
    debian, words = validation_pools(heldout, {"summary 1", "summary 4"}, common, [*rare, synonym], 10, seed=0)
    assert [doc.summary for doc in debian] == ["summary 0", "summary 2", "summary 3", "summary 5"]
    assert words == rare  # the rare synonym of a common word is out: its definition was trained on
    _, sample = validation_pools(heldout, set(), [], heldout, 3, seed=0)
    assert len(sample) == 3 and sample == validation_pools(heldout, set(), [], heldout, 3, seed=0)[1]


def test_rare_training_words_avoid_the_validation_pool_and_every_common_definition() -> None:
    from xscore.recipes.default_model.data import Doc
    from xscore.recipes.default_model.validation import RARE_WORD_POOL, rare_training_words, validation_pools

    def word(n: int, passage: str | None = None) -> Doc:
        return Doc(f"wordnet:w{n}", f"wordnet:w{n}", f"define w{n}", passage or f"definition number {n}")

    common = [word(n) for n in range(5)]
    rare = [word(n) for n in range(5, 5 + RARE_WORD_POOL + 40)]
    # a rare synonym of every tenth rare word, and one of a common word
    rare += [word(100_000 + n, doc.passage) for n, doc in enumerate(rare[::10])] + [word(99_999, common[0].passage)]
    _, pool = validation_pools([], set(), common, rare, RARE_WORD_POOL, seed=7 + 20)
    trained = rare_training_words(common, rare, 10_000, seed=7)
    passages = {doc.passage for doc in trained}
    assert trained and not passages & {doc.passage for doc in [*pool, *common]}
    assert trained == rare_training_words(common, rare, 10_000, seed=7)
    assert rare_training_words(common, rare, 5, seed=7) == rare_training_words(common, rare, 5, seed=7)
    assert len(rare_training_words(common, rare, 5, seed=7)) == 5


def test_the_chosen_weight_has_the_largest_worst_margin_over_the_bi_encoder() -> None:
    from xscore.recipes.default_model.validation import choose, report

    def row(debian: float, wordnet: float) -> dict:
        return {"debian": {"mrr@10": debian}, "wordnet": {"mrr@10": wordnet}}

    rows = {"bi-encoder": row(0.60, 0.50), "0.6": row(0.62, 0.53), "0.8": row(0.70, 0.51), "1": row(0.75, 0.45)}
    assert choose(rows) == 0.6  # 0.8 has the best mean, but only +0.01 on WordNet
    rows["0.7"] = row(0.66, 0.53)
    assert choose(rows) == 0.7  # the same worst margin as 0.6 and the larger mean
    table = report(rows, 0.7, 0.7)
    assert "| 0.7 (chosen) (shipped) | 0.6600 (+0.0600) | 0.5300 (+0.0300) | +0.0300 |" in table


def test_the_everyday_questions_set_lexical_traps_that_bm25_falls_into() -> None:
    items = load_everyday_set()
    assert len(items) == 24 and all(sum(item.relevance) == 1 and len(item.candidates) == 5 for item in items)
    positions = {item.relevance.index(1) for item in items}
    assert len(positions) > 1  # the answer is not always in one place
    assert evaluate_ranking(items, bm25_scorer(items))["top1"] <= 0.25


def test_a_training_step_holds_groups_of_one_length_class_in_a_seeded_order() -> None:
    short = [TrainGroup(f"q{n}", "A short definition.", ["x"]) for n in range(6)]
    long = [TrainGroup(f"p{n}", "A package description. " * 30, ["y"]) for n in range(5)]
    groups = [*short, *long]
    recipe = dataclasses.replace(Recipe(), groups_per_step=2)
    order = _batched_order(groups, recipe)
    steps = [order[start:start + 2] for start in range(0, len(order), 2)]
    assert len(steps) == 5  # 3 short steps, 2 long: the odd long group waits for no partner
    for step in steps:
        assert len({len(groups[index].positive) < 400 for index in step}) == 1
    assert order == _batched_order(groups, recipe)
    assert order != _batched_order(groups, dataclasses.replace(recipe, seed=recipe.seed + 1))


def test_the_shipped_default_answers_everyday_questions_as_often_as_its_bi_encoder_and_as_its_card_says() -> None:
    pytest.importorskip("torch")  # the recipe's extra: the bi-encoder and the torch reference
    import json

    from xscore.recipes.default_model import ARTIFACT_DIR, evaluate_default

    measured = evaluate_default(eval_sets={"everyday": load_everyday_set()},
                                systems=("bi-encoder", "cross-encoder"), progress=False)["everyday"]
    cross, bi = measured["cross-encoder torch fp32"], measured["bi-encoder all-MiniLM-L6-v2 (cosine)"]
    assert cross["top1"] >= bi["top1"], measured
    card = json.loads((ARTIFACT_DIR / "default_model.json").read_text())["metrics"]["everyday"]
    assert cross["mrr@10"] == pytest.approx(card["cross-encoder torch fp32"]["mrr@10"], abs=1e-6)


def test_dense_negatives_are_the_embeddings_nearest_passages_beside_the_bm25_traps() -> None:
    import numpy as np

    from xscore.recipes.default_model.data import Doc, make_train_groups

    # definitions that share no word with their neighbours' queries, so BM25 cannot find them,
    # and one that only mentions the word (the trap BM25 finds)
    docs = [Doc(f"wordnet:{word}", f"wordnet:{word}", f"what is a {word}", passage) for word, passage in [
        ("anvil", "A heavy block of iron for forging."), ("hammer", "A hand tool with a heavy head for striking."),
        ("tulip", "A spring flower grown from a bulb."), ("river", "A large natural stream of water."),
        ("creek", "A natural stream smaller than a brook."), ("lake", "A body of fresh water surrounded by land."),
        ("ford", "The act of crossing a river by wading.")]]
    topics = {"river": 0, "creek": 0, "lake": 0, "stream": 0, "water": 0, "anvil": 1, "hammer": 1,
              "iron": 1, "tool": 1, "forging": 1, "striking": 1, "flower": 2, "tulip": 2, "bulb": 2,
              "crossing": 3, "wading": 3, "act": 3}

    def embed(texts):  # a topic embedding: what a bi-encoder knows that BM25 does not
        rows = np.zeros((len(texts), 4), dtype=np.float32)
        for n, text in enumerate(texts):
            for word in text.lower().replace(".", "").split():
                if word in topics:
                    rows[n, topics[word]] += 1
        return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-9)

    near_misses = {"A natural stream smaller than a brook.", "A body of fresh water surrounded by land."}
    groups = {group.query: group for group in make_train_groups(docs, len(docs), 2, seed=3, dense=embed)}
    river = groups["what is a river"]
    assert river.positive == "A large natural stream of water."
    trap = "The act of crossing a river by wading."
    # the nearest first, then the BM25 hit: the passage that only mentions the word
    assert river.negatives[0] in near_misses and river.negatives[1] == trap
    lexical_only = {group.query: group for group in make_train_groups(docs, len(docs), 2, seed=3)}
    assert lexical_only["what is a river"].negatives[0] == trap


def test_the_shipped_card_was_made_by_the_recipe_as_it_stands() -> None:
    import json

    from xscore.recipes.default_model import ARTIFACT_DIR

    card = json.loads((ARTIFACT_DIR / "default_model.json").read_text())
    assert card["recipe"] == dataclasses.asdict(Recipe()), "change the recipe and rebuild, or neither"
    assert card["recipe_version"] == Recipe().version
    assert set(card["metrics"]) == {"debian", "wordnet", "everyday"}
