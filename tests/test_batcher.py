"""The micro-batcher on a real ONNX model, without any transport."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from texts import mixed_documents

from xscore.api.errors import ErrorCode, XscoreError
from xscore.service.models.engines import EngineOptions, create_engine
from xscore.service.models.engines.openvino import openvino_available
from xscore.service.models.planner import SHORT_QUEUE_BUDGET_DIVISOR, batch_budget, select_batch
from xscore.service.models.tokenization import pad_batch
from xscore.service.serving.batcher import Batcher, BatcherConfig
from xscore.service.serving.metrics import Metrics


def run(coroutine):
    return asyncio.run(coroutine)


def logits_alone(model, query: str, documents: list[str]) -> np.ndarray:
    """Each pair run by the engine in a batch of its own: no padding, no batch-mates."""
    pairs = model.tokenizer.encode([query] * len(documents), documents)
    return np.concatenate([model.engine.run(pad_batch([pair], model.tokenizer.pad_id)) for pair in pairs])


def batcher_for(model, metrics: Metrics | None = None, config: BatcherConfig | None = None) -> Batcher:
    return Batcher(model.name, model.engine, model.tokenizer.pad_id, metrics, config)


async def submit(batcher: Batcher, model, queries: list[str], documents: list[str], deadline: float | None = None):
    """What the Scorer does with a request: admit, encode, run, release."""
    job = batcher.admit(len(documents), deadline)
    try:
        return await batcher.run(job, model.tokenizer.encode(queries, documents))
    finally:
        batcher.release(job)


@given(st.lists(st.integers(1, 512), min_size=1, max_size=60), st.data(),
       st.integers(256, 4096), st.integers(1, 64))
def test_a_batch_holds_its_pivot_stays_in_budget_and_is_a_run_of_neighbours(lengths, data, budget, max_pairs):
    pivot = data.draw(st.integers(0, len(lengths) - 1))
    batch = select_batch(lengths, pivot, budget, max_pairs)
    assert pivot in batch
    assert len(batch) <= max_pairs
    assert len(batch) == 1 or max(lengths[i] for i in batch) * len(batch) <= budget
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    start = order.index(batch[0])
    assert order[start: start + len(batch)] == batch


@given(st.integers(0, 200_000), st.integers(1, 8), st.data(), st.integers(64, 16384))
def test_a_deep_queue_gets_full_batches_a_short_one_smaller_and_idle_streams_share_it(waiting, streams, data,
                                                                                    max_tokens):
    idle = data.draw(st.integers(0, streams))
    budget = batch_budget(waiting, idle, streams, max_tokens)
    assert 1 <= budget <= max_tokens
    if idle > 1:  # what waits is spread over the idle streams, each batch at most its share
        assert budget == min(max_tokens, max(1, -(-waiting // idle)))
        return
    assert budget >= max_tokens // SHORT_QUEUE_BUDGET_DIVISOR
    if streams == 1 or waiting >= (streams + 1) * max_tokens:
        assert budget == max_tokens  # one stream, or every slot can be filled: throughput first
    # more waiting never shrinks the batch
    assert batch_budget(waiting + data.draw(st.integers(0, 50_000)), idle, streams, max_tokens) >= budget


def test_concurrent_requests_share_batches_and_score_as_if_alone(tiny_model):
    documents = mixed_documents(40, longest_words=120)
    requests = [(f"query number {n}", documents[n % 7: n % 7 + 1 + n % 5]) for n in range(24)]

    async def scenario():
        metrics = Metrics()
        batcher = batcher_for(tiny_model, metrics, BatcherConfig(max_batch_tokens=2048))
        batcher.start()
        results = await asyncio.gather(*(submit(batcher, tiny_model, [q] * len(d), d) for q, d in requests))
        await batcher.close()
        return metrics, results

    metrics, results = run(scenario())
    for (query, docs), result in zip(requests, results):
        np.testing.assert_allclose(result.logits, logits_alone(tiny_model, query, docs), atol=1e-5)
        assert result.inference_ms > 0 and result.queue_ms >= 0
    batches = metrics.value("xscore_batch_requests_count", model="tiny")
    single_request_batches = metrics.value("xscore_batch_requests_bucket", model="tiny", le="1.0")
    assert batches < len(requests)
    assert batches - single_request_batches >= 1  # some batch held pairs of several requests
    assert metrics.value("xscore_batch_pairs_sum", model="tiny") == sum(len(d) for _, d in requests)


def test_a_big_request_does_not_starve_a_small_one_behind_it(tiny_model):
    big = mixed_documents(60, longest_words=40)

    async def scenario():
        batcher = batcher_for(tiny_model, Metrics(), BatcherConfig(max_batch_tokens=512))
        big_task = asyncio.create_task(submit(batcher, tiny_model, ["big query"] * len(big), big))
        small_task = asyncio.create_task(submit(batcher, tiny_model, ["small query"], ["one short document"]))
        await asyncio.sleep(0)  # both admitted and queued before scheduling starts
        batcher.start()
        await small_task
        big_was_done = big_task.done()
        await big_task
        await batcher.close()
        return big_was_done

    assert run(scenario()) is False


def test_cancelled_and_expired_requests_never_reach_the_engine(tiny_model):
    async def scenario():
        metrics = Metrics()
        batcher = batcher_for(tiny_model, metrics)
        kept = asyncio.create_task(submit(batcher, tiny_model, ["q"] * 3, ["a", "b", "c"]))
        cancelled = asyncio.create_task(submit(batcher, tiny_model, ["q"] * 4, ["d", "e", "f", "g"]))
        expiring = asyncio.create_task(
            submit(batcher, tiny_model, ["q"] * 5, list("hijkl"), deadline=time.monotonic() + 0.05))
        await asyncio.sleep(0)
        cancelled.cancel()
        with pytest.raises(XscoreError) as expired:
            await expiring
        batcher.start()
        await kept
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        await batcher.close()
        return metrics, expired.value

    metrics, expired = run(scenario())
    assert expired.code is ErrorCode.DEADLINE_EXCEEDED
    assert metrics.value("xscore_dropped_pairs_total", model="tiny", reason="cancelled") == 4
    assert metrics.value("xscore_dropped_pairs_total", model="tiny", reason="expired") == 5
    assert metrics.value("xscore_batch_pairs_sum", model="tiny") == 3
    assert metrics.value("xscore_queue_pairs", model="tiny") == 0


def test_identical_pairs_of_concurrent_requests_in_one_batch_run_once(tiny_model):
    async def scenario():
        metrics = Metrics()
        batcher = batcher_for(tiny_model, metrics)
        first = asyncio.create_task(submit(batcher, tiny_model, ["q"] * 3, ["same", "mine", "also the same"]))
        second = asyncio.create_task(submit(batcher, tiny_model, ["q"] * 3, ["also the same", "yours", "same"]))
        await asyncio.sleep(0)  # both queued before the engine starts: one batch takes them
        batcher.start()
        answers = await asyncio.gather(first, second)
        await batcher.close()
        return metrics, answers

    metrics, (first, second) = run(scenario())
    assert metrics.value("xscore_batch_pairs_count", model="tiny") == 1
    assert metrics.value("xscore_batch_pairs_sum", model="tiny") == 4  # 6 pairs, 4 distinct
    assert metrics.value("xscore_batch_duplicate_pairs_total", model="tiny") == 2
    assert first.logits[0].tolist() == second.logits[2].tolist()
    assert first.logits[2].tolist() == second.logits[0].tolist()
    expected = logits_alone(tiny_model, "q", ["same", "mine", "also the same", "yours"])
    np.testing.assert_allclose(np.concatenate([first.logits, second.logits[1:2]]), expected, atol=1e-5)


def test_a_full_queue_fails_fast_with_a_retry_after(tiny_model):
    async def scenario():
        metrics = Metrics()
        batcher = batcher_for(tiny_model, metrics, BatcherConfig(max_queue_pairs=10))
        first = asyncio.create_task(submit(batcher, tiny_model, ["q"] * 8, ["d"] * 8))
        await asyncio.sleep(0)
        with pytest.raises(XscoreError) as refused:
            await submit(batcher, tiny_model, ["q"] * 5, ["d"] * 5)
        batcher.start()
        await first
        after = await submit(batcher, tiny_model, ["q"] * 5, ["d"] * 5)  # room again once the first is answered
        await batcher.close()
        return metrics, refused.value, after

    metrics, refused, after = run(scenario())
    assert refused.code is ErrorCode.RESOURCE_EXHAUSTED
    assert refused.retry_after_s and refused.retry_after_s > 0
    assert "8 pairs queued, limit 10" in refused.message
    assert after.logits.shape == (5, 1)
    assert metrics.value("xscore_rejected_requests_total", model="tiny") == 1


def test_closing_fails_queued_requests_as_unavailable(tiny_model):
    async def scenario():
        batcher = batcher_for(tiny_model, Metrics())
        queued = asyncio.create_task(submit(batcher, tiny_model, ["q"], ["d"]))
        await asyncio.sleep(0)
        await batcher.close()
        with pytest.raises(XscoreError) as closed:
            await queued
        return closed.value

    assert run(scenario()).code is ErrorCode.UNAVAILABLE


def test_the_scorer_answers_as_the_engine_scores_each_pair_alone(tiny_model):
    from xscore.api.schema import Item, ScoreRequest
    from xscore.service.serving.scorer import Scorer

    documents = mixed_documents(12, seed=3)
    request = ScoreRequest("tiny", "which passage ranks best", [Item(t) for t in documents], top_k=5)

    async def scenario():
        scorer = Scorer({"tiny": tiny_model}, batching=BatcherConfig(max_batch_tokens=512))
        scorer.start()
        result = await scorer.score(request)
        await scorer.close()
        return result

    result = run(scenario())
    alone = tiny_model.activation.apply(logits_alone(tiny_model, request.query, documents))
    assert [e.index for e in result.scores] == np.argsort(-alone, kind="stable")[:5].tolist()
    assert [e.score for e in result.scores] == pytest.approx(np.sort(alone)[::-1][:5].tolist(), abs=1e-5)
    assert result.usage.pairs == 12 and result.usage.tokens == sum(
        pair.length for pair in tiny_model.tokenizer.encode([request.query] * 12, documents))


def test_a_draining_scorer_refuses_new_calls_and_finishes_admitted_ones(tiny_model):
    from xscore.api.schema import Item, ScoreRequest
    from xscore.service.serving.scorer import Scorer

    async def scenario():
        scorer = Scorer({"tiny": tiny_model})
        flipped = []
        scorer.on_drain(lambda: flipped.append(scorer.ready))
        admitted = asyncio.create_task(scorer.score(ScoreRequest("tiny", "q", [Item("d")])))
        await asyncio.sleep(0)
        assert not scorer.ready  # batchers not started yet
        scorer.start()
        assert scorer.ready
        scorer.begin_drain()
        with pytest.raises(XscoreError) as refused:
            await scorer.score(ScoreRequest("tiny", "q", [Item("d")]))
        idle = await scorer.wait_idle(timeout=30)
        await scorer.close()
        return flipped, refused.value, admitted.result(), idle, scorer

    flipped, refused, admitted, idle, scorer = run(scenario())
    assert flipped == [False] and idle and scorer.in_flight == 0
    assert refused.code is ErrorCode.UNAVAILABLE
    assert admitted.usage.pairs == 1
    assert scorer.metrics.value("xscore_requests_total", model="tiny", status="UNAVAILABLE") == 1


def test_a_scheduler_that_dies_fails_every_waiting_call_and_refuses_new_ones(tiny_model):
    """A caller bug (pairs whose ids and type ids disagree) breaks batch padding inside the
    scheduler: nothing may hang on it."""
    from xscore.service.models.tokenization import EncodedPair

    async def scenario():
        metrics = Metrics()
        batcher = batcher_for(tiny_model, metrics)
        good = asyncio.create_task(submit(batcher, tiny_model, ["q"], ["a good document"]))
        broken = batcher.admit(1)
        failing = asyncio.create_task(batcher.run(broken, [EncodedPair([101, 7, 102], [0, 0, 0, 0, 0], False)]))
        await asyncio.sleep(0)
        batcher.start()
        results = await asyncio.wait_for(asyncio.gather(good, failing, return_exceptions=True), timeout=30)
        with pytest.raises(XscoreError) as refused:
            batcher.admit(1)
        running = batcher.running
        await batcher.close()
        return results, refused.value, running, metrics

    results, refused, running, metrics = run(scenario())
    assert all(isinstance(r, XscoreError) and r.code is ErrorCode.INTERNAL for r in results)
    assert refused.code is ErrorCode.UNAVAILABLE and not running
    assert metrics.value("xscore_dropped_pairs_total", model="tiny", reason="failed") == 0  # both were in the batch


@pytest.mark.skipif(not openvino_available(), reason="OpenVINO is not installed here")
@pytest.mark.parametrize("streams", [1, 2])
def test_a_lone_request_is_spread_over_idle_streams(tiny_export, tiny_model, streams):
    engine = create_engine(tiny_export.path, tiny_export.manifest, engine="openvino", device="cpu",
                           options=EngineOptions(threads=2, streams=streams))
    documents = [f"short passage number {n} about rivers" for n in range(10)]

    async def scenario():
        metrics = Metrics()
        batcher = Batcher("tiny", engine, tiny_model.tokenizer.pad_id, metrics, BatcherConfig(max_batch_tokens=2048))
        batcher.start()
        result = await submit(batcher, tiny_model, ["a query"] * 10, documents)
        await batcher.close()
        return metrics, result

    metrics, result = run(scenario())
    np.testing.assert_allclose(result.logits, logits_alone(tiny_model, "a query", documents), atol=1e-5)
    # ten short pairs fit one 2048-token batch; with two idle streams they run as two batches at once
    assert metrics.value("xscore_batch_requests_count", model="tiny") == engine.parallelism
    assert engine.parallelism == streams
    assert metrics.value("xscore_batch_pairs_sum", model="tiny") == 10
