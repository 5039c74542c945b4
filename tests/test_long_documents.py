"""Token caps and long documents: windows on token boundaries, their aggregation, and the bounds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xscore.api.errors import ErrorCode, XscoreError
from xscore.api.schema import LengthPolicy
from xscore.service.models.engines import create_engine
from xscore.service.models.model import LoadedModel
from xscore.service.models.tokenization import PairTokenizer, pad_batch, window_spans
from xscore.service.serving.blocking import BlockingScorer
from xscore.service.serving.lengths import aggregate

MAX_LENGTH = 64  # small windows, so a few hundred tokens make several
CHUNK = LengthPolicy(long_documents="chunk", chunk_overlap=8)


@given(length=st.integers(0, 3000), size=st.integers(1, 600), data=st.data())
@settings(max_examples=300, deadline=None, derandomize=True)
def test_windows_cover_the_document_with_the_stated_overlap(length, size, data):
    overlap = data.draw(st.integers(0, size - 1))
    spans = window_spans(length, size, overlap)
    assert spans[0][0] == 0 and spans[-1][1] == length
    assert all(stop - start <= size for start, stop in spans)
    for (start, stop), (next_start, _) in zip(spans, spans[1:]):
        assert stop - start == size  # every window but the last is full
        assert next_start == start + size - overlap
        assert stop - next_start == overlap  # neighbours share exactly `overlap` tokens
    if len(spans) > 1:
        assert spans[-2][1] < length  # no window is there that the one before already covered
    covered = np.zeros(length, dtype=bool)
    for start, stop in spans:
        covered[start:stop] = True
    assert covered.all()


def test_window_spans_refuse_an_overlap_as_wide_as_the_window():
    with pytest.raises(ValueError):
        window_spans(100, 10, 10)


def test_aggregate_rules():
    window_scores = np.array([0.1, 0.9, 0.5, 0.3, 0.7], dtype=np.float32)
    counts = [3, 1, 1]
    assert aggregate(window_scores, counts, "max").tolist() == pytest.approx([0.9, 0.3, 0.7])
    assert aggregate(window_scores, counts, "mean").tolist() == pytest.approx([0.5, 0.3, 0.7])
    assert aggregate(window_scores, counts, "first").tolist() == pytest.approx([0.1, 0.3, 0.7])
    assert aggregate(window_scores[:3], [1, 1, 1], "mean").tolist() == pytest.approx([0.1, 0.9, 0.5])


@pytest.fixture(scope="module")
def short_model(tiny_export) -> LoadedModel:
    engine = create_engine(tiny_export.path, tiny_export.manifest, device="cpu")
    return LoadedModel.load("short", tiny_export.path, engine, max_length=MAX_LENGTH)


@pytest.fixture(scope="module")
def tokenizer(short_model) -> PairTokenizer:
    return short_model.tokenizer


@pytest.fixture(scope="module")
def scorer(short_model):
    with BlockingScorer(short_model) as served:
        yield served


def _ids(tokenizer: PairTokenizer, text: str) -> list[int]:
    return tokenizer._tokenizer.encode(text, add_special_tokens=False).ids


LONG = " ".join(f"word{index} is here" for index in range(120))  # several hundred tokens


def test_chunk_windows_are_the_query_then_consecutive_document_slices(tokenizer):
    query = "where is word seven"
    query_ids, doc_ids = _ids(tokenizer, query), _ids(tokenizer, LONG)
    [document] = tokenizer.encode_documents([query], [LONG], lengths=CHUNK)
    cls, sep = document.windows[0].ids[0], document.windows[0].ids[-1]
    room = tokenizer.content_budget - len(query_ids)
    assert len(document.windows) == len(window_spans(len(doc_ids), room, 8)) > 3
    for window, (start, stop) in zip(document.windows, window_spans(len(doc_ids), room, 8)):
        assert window.length <= MAX_LENGTH
        assert window.ids == [cls, *query_ids, sep, *doc_ids[start:stop], sep]
        assert window.type_ids == [0] * (len(query_ids) + 2) + [1] * (stop - start + 1)
    assert not document.truncated  # every token is in some window
    # the first window is exactly the pair truncation would have scored
    assert document.windows[0].ids == tokenizer.encode([query], [LONG])[0].ids


def test_a_document_that_fits_takes_one_window_in_chunk_mode(tokenizer):
    [document] = tokenizer.encode_documents(["query"], ["a short document"], lengths=CHUNK)
    assert len(document.windows) == 1 and not document.truncated
    assert document.windows[0].ids == tokenizer.encode(["query"], ["a short document"])[0].ids


def test_a_long_query_is_cut_per_pair_not_once_for_the_request(tokenizer):
    """Pairs of one request share the query's encoding; cutting it for one pair (longest_first)
    must not change what the next pair sees."""
    query = " ".join(f"q{index}" for index in range(20))  # over half the budget
    documents = [" ".join(f"d{index}" for index in range(30)), " ".join(f"e{index}" for index in range(12))]
    together = tokenizer.encode([query, query], documents)
    alone = [tokenizer.encode([query], [document])[0] for document in documents]
    assert [pair.ids for pair in together] == [pair.ids for pair in alone]


def test_token_caps_cut_each_side_first(tokenizer):
    query, document = "one two three four five six", "alpha beta gamma delta epsilon zeta eta theta"
    capped = tokenizer.encode_documents([query, query], [document, "tiny"], truncate=False,
                                        lengths=LengthPolicy(max_tokens_per_doc=3, max_tokens_per_query=2))
    query_ids, doc_ids = _ids(tokenizer, query), _ids(tokenizer, document)
    first = capped[0].windows[0]
    assert first.ids[1:3] == query_ids[:2] and first.ids[4:7] == doc_ids[:3] and first.length == 2 + 3 + 3
    assert capped[0].truncated and capped[1].truncated  # the query was capped in both
    uncapped_doc = tokenizer.encode_documents(["q"], ["tiny"], lengths=LengthPolicy(max_tokens_per_doc=3))[0]
    assert not uncapped_doc.truncated


def test_max_chunks_bounds_the_windows_and_says_so(tokenizer, scorer):
    policy = LengthPolicy(long_documents="chunk", chunk_overlap=8, max_chunks_per_doc=2)
    [document] = tokenizer.encode_documents(["query"], [LONG], lengths=policy)
    assert len(document.windows) == 2 and document.truncated
    result = scorer.score("query", [LONG, "short"], lengths=policy)
    assert result.usage.windows == [2, 1] and result.usage.truncated == [0]
    with pytest.raises(XscoreError) as refused:
        scorer.score("query", [LONG], truncate=False, lengths=policy)
    assert refused.value.code is ErrorCode.UNPROCESSABLE
    assert refused.value.details["field"] == "max_chunks_per_doc"
    assert "max_chunks_per_doc 2" in refused.value.message


def test_chunking_turns_an_over_long_pair_into_windows_even_without_truncation(scorer):
    result = scorer.score("query", [LONG], truncate=False, lengths=CHUNK)
    assert result.usage.windows[0] > 3 and result.usage.truncated == []
    with pytest.raises(XscoreError) as refused:  # chunking off: the precise error stays
        scorer.score("query", [LONG], truncate=False)
    assert refused.value.code is ErrorCode.UNPROCESSABLE and "max_length 64" in refused.value.message


def test_an_overlap_as_wide_as_a_window_is_refused_with_the_room(scorer):
    with pytest.raises(XscoreError) as refused:
        scorer.score("query", [LONG], lengths=LengthPolicy(long_documents="chunk", chunk_overlap=100))
    assert refused.value.code is ErrorCode.UNPROCESSABLE
    assert refused.value.details["field"] == "chunk_overlap" and refused.value.details["window_tokens"] < 64


@pytest.mark.parametrize(("policy", "field"), [
    (LengthPolicy(max_tokens_per_doc=0), "max_tokens_per_doc"),
    (LengthPolicy(max_tokens_per_query=-3), "max_tokens_per_query"),
    (LengthPolicy(chunk_overlap=-1), "chunk_overlap"),
    (LengthPolicy(max_chunks_per_doc=0), "max_chunks_per_doc"),
    (LengthPolicy(long_documents="split"), "long_documents"),
    (LengthPolicy(aggregate="median"), "aggregate"),
])
def test_out_of_range_policies_are_refused_naming_the_field(scorer, policy, field):
    with pytest.raises(XscoreError) as refused:
        scorer.score("query", ["document"], lengths=policy)
    assert refused.value.code is ErrorCode.INVALID_ARGUMENT and refused.value.details["field"] == field
    assert field in refused.value.message


def _window_logits(model: LoadedModel, query: str, text: str) -> np.ndarray:
    [document] = model.tokenizer.encode_documents([query], [text], lengths=CHUNK)
    return np.array([model.engine.run(pad_batch([window], model.tokenizer.pad_id))[0, 0]
                     for window in document.windows])


@pytest.mark.parametrize("rule", ["max", "mean", "first"])
def test_a_documents_score_is_its_windows_aggregate(short_model, scorer, rule):
    expected = {"max": np.max, "mean": np.mean, "first": lambda logits: logits[0]}[rule]
    windows = _window_logits(short_model, "where is word seven", LONG)
    result = scorer.score_pairs(["where is word seven"], [LONG, "short one"], raw=True,
                                lengths=LengthPolicy(long_documents="chunk", chunk_overlap=8, aggregate=rule))
    assert result.scores[0] == pytest.approx(float(expected(windows)), abs=1e-4)
    assert result.usage.windows == [len(windows), 1]
    truncated = scorer.score_pairs(["where is word seven"], [LONG, "short one"], raw=True)
    assert truncated.usage.windows == [] and truncated.usage.truncated == [0]
    assert result.scores[1] == pytest.approx(truncated.scores[1], abs=1e-5)
    if rule == "first":  # the first window is the truncated pair
        assert result.scores[0] == pytest.approx(truncated.scores[0], abs=1e-5)


def test_a_models_default_policy_applies_and_a_request_overrides_it(short_model):
    with BlockingScorer(short_model, lengths={"short": CHUNK}) as served:
        chunked = served.score("query", [LONG])
        truncated = served.score("query", [LONG], lengths=LengthPolicy(long_documents="truncate"))
    assert chunked.usage.windows[0] > 3
    assert truncated.usage.windows == [] and truncated.usage.truncated == [0]
