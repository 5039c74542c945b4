"""Stage one of the default model's recipe: the body distilled from a teacher's cosines (body.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from xscore.recipes.default_model import base_model_dir
from xscore.recipes.default_model import body as B
from xscore.recipes.default_model.data import Doc

# The teacher's meanings: each word in a text adds to its axis; rows L2-normalised.
AXES = {"water": 0, "river": 0, "stream": 0, "boat": 0, "iron": 1, "metal": 1, "anvil": 1, "hammer": 1,
        "flower": 2, "plant": 2, "bulb": 2, "seed": 2, "song": 3, "music": 3, "tune": 3, "sing": 3}
WORDS = [("creek", "A small stream of water."), ("canoe", "A light boat moved on a river."),
         ("ford", "A shallow place in a river or stream."), ("raft", "A flat boat that floats on water."),
         ("anvil", "A heavy iron block a smith hammers metal on."), ("ingot", "A block of metal, iron or gold."),
         ("forge", "A furnace where iron and metal are hammered."), ("rivet", "A metal pin of iron."),
         ("tulip", "A spring flower grown from a bulb."), ("fern", "A green plant without flower or seed."),
         ("acorn", "The seed of the oak, a plant."), ("crocus", "A small flower from a bulb."),
         ("anthem", "A song of praise, music to sing."), ("ditty", "A short simple song or tune."),
         ("chorus", "A group who sing music together."), ("hymn", "A religious song, a tune to sing.")]


def _teacher(texts):
    rows = np.zeros((len(texts), 4), dtype=np.float32)
    for n, text in enumerate(texts):
        for word in text.lower().replace(".", "").replace(",", "").split():
            if word in AXES:
                rows[n, AXES[word]] += 1
    rows[:, :] += 0.05  # no all-zero row
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _pairs() -> list[tuple[str, str]]:
    return [(f"what is a {word}", definition) for word, definition in WORDS]


EXTRA = ["Water that falls from clouds as rain.", "A tool of iron for driving nails.",
         "A plant that climbs a wall.", "Music played on a small drum."]


def test_body_texts_are_the_training_words_and_other_definitions_never_a_banned_one(tmp_path: Path) -> None:
    database = tmp_path / "wordnet"
    database.mkdir()
    # one synset per line, as data.* files hold them: offset, lex file, part, word count, words, pointers | gloss
    lines = ["00000001 05 n 01 creek 0 000 | a small stream of water; \"we waded the creek\"",
             "00000002 05 n 01 brook 0 000 | a natural stream of water smaller than a river",
             "00000003 05 n 01 ingot 0 000 | a block of metal cast in a mould",
             "00000004 05 n 01 held 0 000 | the definition of a word held out for evaluation",
             "00000005 05 n 01 tiny 0 000 | too short"]
    for name in ("noun", "verb", "adj", "adv"):
        (database / f"data.{name}").write_text("\n".join(lines) + "\n" if name == "noun" else "")
    training = [Doc("wordnet:creek", "wordnet:creek", "what is a creek", "A small stream of water.")]
    banned = [Doc("wordnet:held", "wordnet:held", "what is held", "The definition of a word held out for evaluation.")]
    pairs, extra = B.body_texts(database, training, banned, extra_count=10)
    assert pairs == [("what is a creek", "A small stream of water.")]
    # the training definition and the banned one are not extra text; a gloss under five words is none
    assert sorted(extra) == ["A block of metal cast in a mould.", "A natural stream of water smaller than a river."]
    again = B.body_texts(database, training, banned, extra_count=1)
    assert again[1] == extra[:1]  # seeded: the same order every time


def test_distilling_the_body_moves_its_cosines_towards_the_teachers_and_is_deterministic(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")  # the recipe's extra
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer

    pairs = _pairs()

    def error(model) -> float:
        tokenizer = AutoTokenizer.from_pretrained(base_model_dir())
        with torch.no_grad():
            questions = B._pooled(model, tokenizer, [q for q, _ in pairs])
            passages = B._pooled(model, tokenizer, [p for _, p in pairs])
        target = torch.from_numpy(_teacher([q for q, _ in pairs]) @ _teacher([p for _, p in pairs]).T)
        return float(((questions @ passages.T - target) ** 2).mean())

    first = B.distil_body(base_model_dir(), pairs, EXTRA, _teacher, epochs=6, learning_rate=2e-4, threads=2,
                          dest=tmp_path / "first", progress=False)
    second = B.distil_body(base_model_dir(), pairs, EXTRA, _teacher, epochs=6, learning_rate=2e-4, threads=2,
                           dest=tmp_path / "second", progress=False)
    trained, again = load_file(first / B.WEIGHTS_FILE), load_file(second / B.WEIGHTS_FILE)
    assert trained.keys() == again.keys() and all(torch.equal(trained[k], again[k]) for k in trained)
    base = load_file(base_model_dir() / B.WEIGHTS_FILE)
    assert all(torch.equal(trained[k], base[k]) for k in trained if k.startswith("embeddings."))
    assert not torch.equal(trained["encoder.layer.5.output.dense.weight"], base["encoder.layer.5.output.dense.weight"])
    assert (first / "config.json").is_file() and (first / "tokenizer.json").is_file()
    figures = (first / B.FIGURES_FILE).read_text()
    assert '"steps": 6' in figures and '"training_words": 16' in figures
    before = error(AutoModel.from_pretrained(base_model_dir()).eval())
    after = error(AutoModel.from_pretrained(first).eval())
    assert after < 0.8 * before, (before, after)
