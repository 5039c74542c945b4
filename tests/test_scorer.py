"""The scorer façade: ids, ranks, top_k, pairings and limits, on a real ONNX model."""

from __future__ import annotations

import pytest

from xscore.api.errors import ErrorCode, XscoreError
from xscore.api.schema import Item, PairsRequest, ScoreRequest
from xscore.service.models.engines import resolve_engine
from xscore.service.serving.blocking import BlockingScorer
from xscore.service.serving.validation import Limits


@pytest.fixture(scope="module")
def blocking(tiny_model):
    with BlockingScorer({"tiny": tiny_model}, limits=Limits(max_items_per_request=8, max_text_chars=2000)) as served:
        yield served


@pytest.fixture(scope="module")
def scorer(blocking):
    return blocking.scorer


@pytest.fixture(scope="module")
def run(blocking):
    return blocking.run


def test_score_keeps_input_ids_and_ranks_descending(scorer, run):
    items = [Item("alpha document", "a"), Item("beta"), Item("gamma document here", "g")]
    result = run(scorer.score(ScoreRequest("tiny", "query", items, return_text=True)))
    assert [entry.rank for entry in result.scores] == [0, 1, 2]
    assert sorted(entry.item_id for entry in result.scores) == ["a", "g", "item-1"]
    scores = [entry.score for entry in result.scores]
    assert scores == sorted(scores, reverse=True)
    assert all(entry.text == items[entry.index].text for entry in result.scores)
    assert result.usage.pairs == 3 and result.usage.tokens > 0


def test_ties_keep_input_order_and_top_k_cuts_after_sorting(scorer, run):
    items = [Item("same"), Item("same"), Item("same")]
    result = run(scorer.score(ScoreRequest("tiny", "q", items)))
    assert [entry.index for entry in result.scores] == [0, 1, 2]
    full = run(scorer.score(ScoreRequest("tiny", "q", [Item(t) for t in ("x y", "z", "w v u")])))
    top = run(scorer.score(ScoreRequest("tiny", "q", [Item(t) for t in ("x y", "z", "w v u")], top_k=2)))
    assert [e.index for e in top.scores] == [e.index for e in full.scores][:2]


def test_pairs_one_to_one_one_to_many_and_n_to_n_keep_input_order(scorer, run):
    docs = ["first", "second doc", "third one here"]
    one_to_many = run(scorer.score_pairs(PairsRequest("tiny", ["q"], docs))).scores
    n_to_n = run(scorer.score_pairs(PairsRequest("tiny", ["q", "q", "q"], docs))).scores
    assert one_to_many == pytest.approx(n_to_n, abs=1e-6)
    single = run(scorer.score_pairs(PairsRequest("tiny", ["q"], ["second doc"]))).scores
    assert single[0] == pytest.approx(one_to_many[1], abs=1e-6)
    with pytest.raises(XscoreError, match="Input lengths must be 1:1, 1:N or N:N"):
        run(scorer.score_pairs(PairsRequest("tiny", ["a", "b"], docs)))


@pytest.mark.parametrize(
    ("request_", "code", "message"),
    [
        (ScoreRequest("nope", "q", [Item("d")]), ErrorCode.NOT_FOUND, "model 'nope' is not served"),
        (ScoreRequest("tiny", "  ", [Item("d")]), ErrorCode.UNPROCESSABLE, "query is empty"),
        (ScoreRequest("tiny", "q", []), ErrorCode.INVALID_ARGUMENT, "items is empty"),
        (ScoreRequest("tiny", "q", [Item("d")] * 9), ErrorCode.TOO_LARGE, "items has 9 entries, over the limit of 8"),
        (ScoreRequest("tiny", "q", [Item("d"), Item("x" * 2001)]), ErrorCode.TOO_LARGE, r"items\[1\].text is 2001"),
        (ScoreRequest("tiny", "q", [Item("d")], top_k=-1), ErrorCode.INVALID_ARGUMENT, "top_k must be >= 0"),
        (ScoreRequest("tiny", "q", [Item("d"), Item("w " * 600)], truncate=False), ErrorCode.UNPROCESSABLE,
         "pair 1 is"),
    ],
)
def test_bad_requests_get_precise_errors(scorer, run, request_, code, message):
    with pytest.raises(XscoreError, match=message) as caught:
        run(scorer.score(request_))
    assert caught.value.code == code


def test_model_info_reports_limits(scorer, run):
    info = scorer.get_model("tiny")
    expected_engine = resolve_engine("auto", "cpu")  # OpenVINO on an x86 CPU that has it
    assert (info.variant, info.engine, info.device, info.max_length) == ("fp32", expected_engine, "cpu", 512)
    assert info.max_items_per_request == 8 and info.ready
    with pytest.raises(XscoreError, match="not served"):
        scorer.get_model("other")
