"""The score cache: repeated pairs skip the engine, answers stay bit-identical, the byte bound holds."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from xscore.api.schema import LengthPolicy
from xscore.service.models.tokenization import EncodedPair
from xscore.service.serving.blocking import BlockingScorer
from xscore.service.serving.metrics import Metrics
from xscore.service.serving.score_cache import ScoreCache

DOCUMENTS = ["a cached document about search", "another one, a little longer than the first",
             "the third document", "short"]


def _engine_pairs(metrics: Metrics, model: str) -> float:
    """Pairs the engine has scored: the sum of the batch-size histogram."""
    return metrics.value("xscore_batch_pairs_sum", model=model)


def _pair(index: int) -> EncodedPair:
    return EncodedPair([101, index, index // 7, 102], [0, 0, 0, 0], False)


@pytest.fixture
def cached(tiny_model):
    metrics = Metrics()
    with BlockingScorer({"tiny": tiny_model, "other": tiny_model}, metrics=metrics,
                        score_cache=ScoreCache(1 << 20, metrics)) as served:
        yield served, metrics


def test_a_repeated_request_reaches_no_engine_and_answers_the_same_bits(cached, tiny_model):
    served, metrics = cached
    first = served.score("what is cached", DOCUMENTS, raw=True)
    scored = _engine_pairs(metrics, "tiny")
    again = served.score("what is cached", DOCUMENTS, raw=True)
    assert _engine_pairs(metrics, "tiny") == scored == len(DOCUMENTS)
    assert [(e.index, e.score) for e in again.scores] == [(e.index, e.score) for e in first.scores]
    assert first.usage.cached == 0 and again.usage.cached == len(DOCUMENTS)
    assert metrics.value("xscore_score_cache_hits_total") == len(DOCUMENTS)
    assert metrics.value("xscore_score_cache_misses_total") == len(DOCUMENTS)
    # and what an uncached scorer answers for the same request, batched the same way
    with BlockingScorer(tiny_model) as uncached:
        plain = uncached.score("what is cached", DOCUMENTS, raw=True)
    assert [(e.index, e.score) for e in plain.scores] == [(e.index, e.score) for e in first.scores]


def test_only_the_new_pairs_of_a_request_are_scored(cached):
    served, metrics = cached
    served.score_pairs(["query"], DOCUMENTS[:2])
    result = served.score_pairs(["query"], DOCUMENTS)
    assert _engine_pairs(metrics, "tiny") == 2 + 2
    assert result.usage.cached == 2


def test_identical_pairs_in_one_request_are_scored_once(cached):
    served, metrics = cached
    documents = ["same text"] * 5 + ["different text"]
    result = served.score_pairs(["query"], documents)
    assert _engine_pairs(metrics, "tiny") == 2
    assert len(set(result.scores[:5])) == 1 and result.usage.cached == 4


def test_the_model_is_part_of_the_key(cached):
    served, metrics = cached
    served.score("query", DOCUMENTS, model="tiny")
    served.score("query", DOCUMENTS, model="other")
    assert _engine_pairs(metrics, "other") == len(DOCUMENTS)


def test_chunk_windows_are_cached_one_by_one(cached):
    served, metrics = cached
    long_document = " ".join(f"word{index}" for index in range(700))
    policy = LengthPolicy(long_documents="chunk")
    first = served.score("query", [long_document], lengths=policy)
    windows = first.usage.windows[0]
    assert windows > 1 and _engine_pairs(metrics, "tiny") == windows
    again = served.score("query", [long_document], lengths=policy)
    assert again.usage.cached == windows and again.scores[0].score == first.scores[0].score
    # truncation scores the first window: already known
    truncated = served.score("query", [long_document])
    assert truncated.usage.cached == 1 and _engine_pairs(metrics, "tiny") == windows


def test_a_cache_of_zero_bytes_is_off(tiny_model):
    metrics = Metrics()
    with BlockingScorer(tiny_model, metrics=metrics, score_cache=ScoreCache(0, metrics)) as served:
        served.score("query", DOCUMENTS)
        served.score("query", DOCUMENTS)
    assert _engine_pairs(metrics, "tiny") == 2 * len(DOCUMENTS)
    assert metrics.value("xscore_score_cache_misses_total") == 0


def test_the_byte_bound_holds_under_a_flood_of_distinct_pairs():
    metrics = Metrics()
    cache = ScoreCache(64 * 1024, metrics)
    scope = ScoreCache.scope("m", "fp32", "openvino")
    row = np.array([1.5], dtype=np.float32)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for index in range(20_000):
        cache.put(ScoreCache.key(scope, _pair(index)), row)
        assert cache.bytes <= cache.max_bytes
    held = sum(stat.size_diff for stat in tracemalloc.take_snapshot().compare_to(before, "filename")
               if stat.size_diff > 0)
    tracemalloc.stop()
    assert metrics.value("xscore_score_cache_evictions_total") == 20_000 - len(cache)
    assert metrics.value("xscore_score_cache_bytes") == cache.bytes
    assert 300 < len(cache) < 1000
    # the accounting is honest: what the process holds for the cache is within its bound (and slack)
    assert held < 2 * cache.max_bytes


def test_least_recently_used_goes_first():
    scope = ScoreCache.scope("m", "fp32", "openvino")
    keys = [ScoreCache.key(scope, _pair(index)) for index in range(11)]
    probe = ScoreCache(1 << 20, Metrics())
    probe.put(keys[0], np.array([1.0], dtype=np.float32))
    cache = ScoreCache(10 * probe.bytes, Metrics())  # room for exactly ten entries
    for key in keys[:10]:
        cache.put(key, np.array([1.0], dtype=np.float32))
    assert len(cache) == 10
    assert cache.get(keys[0]) is not None  # now the most recently used
    cache.put(keys[10], np.array([2.0], dtype=np.float32))
    assert len(cache) == 10 and cache.get(keys[1]) is None
    assert cache.get(keys[0]) is not None and cache.get(keys[10]).tolist() == [2.0]


def test_keys_tell_type_ids_and_scopes_apart():
    pair = EncodedPair([101, 5, 102, 6, 102], [0, 0, 0, 1, 1], False)
    retyped = EncodedPair([101, 5, 102, 6, 102], [0, 0, 0, 0, 0], False)
    scope = ScoreCache.scope("m", "fp32", "openvino")
    assert ScoreCache.key(scope, pair) != ScoreCache.key(scope, retyped)
    assert ScoreCache.key(scope, pair) != ScoreCache.key(ScoreCache.scope("m", "int8", "openvino"), pair)
    assert ScoreCache.key(scope, pair) == ScoreCache.key(scope, EncodedPair(list(pair.ids), list(pair.type_ids), True))
