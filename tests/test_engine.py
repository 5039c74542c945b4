"""The engine path: batch invariance, truncation, activation, batching."""

from __future__ import annotations

import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scoring import score_pairs
from texts import mixed_documents

from xscore.service.models.activation import Activation, activation_from_config
from xscore.service.models.planner import plan_batches
from xscore.service.models.tokenization import split_lengths


def test_a_pair_scores_the_same_alone_and_inside_a_shuffled_batch_of_64(tiny_model):
    documents = mixed_documents(64, seed=1)
    query = "ranking search service"
    together = score_pairs(tiny_model, [query] * 64, documents).scores
    order = list(range(64))
    random.Random(2).shuffle(order)
    shuffled = score_pairs(tiny_model, [query] * 64, [documents[i] for i in order]).scores
    for position, index in enumerate(order):
        assert abs(shuffled[position] - together[index]) <= 1e-6
    for index in (0, 17, 63):
        alone = score_pairs(tiny_model, [query], [documents[index]]).scores[0]
        assert abs(alone - together[index]) <= 1e-6


def test_scores_do_not_depend_on_the_token_budget(minilm_model):
    documents = mixed_documents(40, seed=3)
    queries = ["cross encoder latency"] * 40
    small = score_pairs(minilm_model, queries, documents, max_tokens=256).scores
    large = score_pairs(minilm_model, queries, documents, max_tokens=16384).scores
    assert np.max(np.abs(small - large)) <= 1e-5


def test_over_long_pairs_are_flagged_and_cut_as_transformers_cuts_them(tiny_model, tiny_model_dir):
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    long_doc = "passage " * 700
    long_query = "question " * 400
    cases = [("short query", long_doc), (long_query, long_doc), (long_doc, long_query),
             ("short query", "short document")]
    pairs = tiny_model.tokenizer.encode(*zip(*cases))
    assert [pair.truncated for pair in pairs] == [True, True, True, False]
    for pair, (query, document) in zip(pairs, cases):
        expected = reference(query, document, truncation="longest_first", max_length=512)
        assert pair.ids == expected["input_ids"]
        assert pair.type_ids == expected["token_type_ids"]
    result = score_pairs(tiny_model, *zip(*cases))
    assert result.truncated == [0, 1, 2]


def test_query_over_its_cap_falls_back_to_longest_first():
    assert split_lengths(10, 600, 509, 254) == (10, 499)  # only_second
    assert split_lengths(300, 600, 509, 254) == (254, 255)  # both long: halves, odd one to the longer
    assert split_lengths(400, 100, 509, 254) == (400, 100)  # fits
    assert split_lengths(480, 100, 509, 254) == (409, 100)  # query longer: query cut


@given(st.integers(0, 2000), st.integers(0, 2000), st.integers(2, 1024))
@settings(max_examples=300, deadline=None)
def test_split_lengths_matches_transformers_longest_first(query, document, budget):
    keep_query, keep_doc = split_lengths(query, document, budget, query_cap=0)
    assert (keep_query, keep_doc) == _rust_longest_first(query, document, budget)


def _rust_longest_first(first: int, second: int, max_length: int) -> tuple[int, int]:
    """tokenizers' TruncationStrategy::LongestFirst, transcribed from its Rust source."""
    if first + second <= max_length:
        return first, second
    swap = first > second
    n_first, n_second = (second, first) if swap else (first, second)
    n_second = n_first if n_first > max_length else max(n_first, max_length - n_first)
    if n_first + n_second > max_length:
        n_first = max_length // 2
        n_second = n_first + max_length % 2
    return (n_second, n_first) if swap else (n_first, n_second)


@given(st.integers(0, 2000), st.integers(0, 2000), st.integers(2, 1024), st.integers(0, 1024))
@settings(max_examples=300, deadline=None)
def test_split_lengths_fits_and_keeps_a_short_query_whole(query, document, budget, cap):
    keep_query, keep_doc = split_lengths(query, document, budget, cap)
    assert keep_query + keep_doc <= budget and 0 <= keep_query <= query and 0 <= keep_doc <= document
    if query + document <= budget:
        assert (keep_query, keep_doc) == (query, document)
    elif query <= min(cap, budget):
        assert keep_query == query


def test_sigmoid_by_default_and_raw_returns_logits(tiny_model):
    documents = mixed_documents(5, seed=4)
    raw = score_pairs(tiny_model, ["q"] * 5, documents, raw=True).scores
    activated = score_pairs(tiny_model, ["q"] * 5, documents).scores
    np.testing.assert_allclose(activated, 1 / (1 + np.exp(-raw)), rtol=1e-6)


def test_activation_follows_the_sentence_transformers_config_rule():
    assert activation_from_config({"id2label": {"0": "LABEL_0"}}).name == "sigmoid"
    identity = {"id2label": {"0": "LABEL_0"},
                "sentence_transformers": {"activation_fn": "torch.nn.modules.linear.Identity"}}
    assert activation_from_config(identity).name == "identity"
    legacy = {"num_labels": 1, "sbert_ce_default_activation_function": "torch.nn.modules.linear.Identity"}
    assert activation_from_config(legacy).name == "identity"
    nli = activation_from_config({"id2label": {"0": "contradiction", "1": "entailment", "2": "neutral"}})
    assert (nli.name, nli.label_index) == ("softmax", 1)
    probabilities = Activation("softmax", 1).apply(np.array([[0.0, 0.0, 0.0]]))
    np.testing.assert_allclose(probabilities, [1 / 3], rtol=1e-6)


@given(st.lists(st.integers(1, 600), min_size=1, max_size=300), st.integers(64, 8192), st.integers(1, 64))
@settings(max_examples=200, deadline=None)
def test_batches_cover_every_pair_once_within_budget(lengths, budget, max_pairs):
    batches = plan_batches(lengths, budget, max_pairs)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= max_pairs
        assert len(batch) == 1 or max(lengths[i] for i in batch) * len(batch) <= budget
