"""Batch planning: length-sorted batches closed by a padded-token budget and a pair cap.

`batch_budget` sizes the micro-batcher's next batch from what waits.

`select_batch` is the one rule; the micro-batcher applies it to its queue one batch at a time,
and `plan_batches` applies it until every pair of a fixed set has a batch (`run_planned`: the
export's parity runs), so both pad the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from xscore.service.models.tokenization import EncodedBatch, EncodedPair, pad_batch


# A short queue's batches are no smaller than the engine's budget over this: through `xscore serve`
# (default model, int8 on 2 OpenVINO streams, 2 avx512-vnni-bf16 cores) 1,024-token batches answered
# 1 x 10 requests under Poisson load sooner than 4,096-token ones, at the same closed-loop
# saturation of 1 x 10 requests, but 32 clients of 1 x 100 got 20% fewer pairs/s from them.
SHORT_QUEUE_BUDGET_DIVISOR = 4


def batch_budget(waiting_tokens: int, idle_streams: int, streams: int, max_tokens: int) -> int:
    """The padded-token budget of the next batch, from the tokens waiting to be batched.

    - More than one stream idle: the waiting tokens spread over them, so a lone 10-pair request on
      2 streams runs as two batches of 5 on both cores at once, not as one batch on one stream
      while the other idles.
    - Otherwise a share of the waiting tokens per batch slot (the streams and the batch formed
      ahead), between a quarter of `max_tokens` and all of it. A deep queue gets full batches
      (throughput); a short one smaller batches, so a request is not held behind one long batch
      and its pairs go to every stream as it frees up. One stream runs them one after another
      whatever their size, so it always gets `max_tokens`.
    """
    if idle_streams > 1:
        return min(max_tokens, max(1, -(-waiting_tokens // idle_streams)))
    if streams == 1:
        return max_tokens
    floor = max(1, max_tokens // SHORT_QUEUE_BUDGET_DIVISOR)
    return min(max_tokens, max(floor, -(-waiting_tokens // (streams + 1))))


def select_batch(lengths: Sequence[int], pivot: int, max_tokens: int, max_pairs: int = 256) -> list[int]:
    """One batch from a window of candidate pairs, grown around the most urgent one.

    `pivot` (the pair whose turn it is) always goes in; the batch then grows by whichever
    neighbour in length order adds the least padding, while the padded size (longest * count)
    stays within `max_tokens` and the count within `max_pairs`. A single pair longer than the
    budget still gets a batch of its own. Returns indices into `lengths`, shortest first.
    """
    order = sorted(range(len(lengths)), key=lambda index: (lengths[index], index))
    low = high = order.index(pivot)
    longest = lengths[pivot]
    count = 1
    while count < max_pairs:
        # the shorter neighbour pads up to the current longest; the longer one raises it for all
        shorter_waste = longest - lengths[order[low - 1]] if low > 0 else None
        longer = lengths[order[high + 1]] if high + 1 < len(order) else None
        take_shorter = shorter_waste is not None and longest * (count + 1) <= max_tokens
        take_longer = longer is not None and longer * (count + 1) <= max_tokens
        if take_shorter and take_longer:
            take_longer = (longer - longest) * count < shorter_waste
            take_shorter = not take_longer
        if take_shorter:
            low -= 1
        elif take_longer:
            high += 1
            longest = longer
        else:
            break
        count += 1
    return order[low: high + 1]


def plan_batches(lengths: Sequence[int], max_tokens: int, max_pairs: int = 256) -> list[list[int]]:
    """Every index in some batch: `select_batch` pivoted on the shortest pair left, until none is."""
    remaining = sorted(range(len(lengths)), key=lambda index: (lengths[index], index))
    batches: list[list[int]] = []
    while remaining:
        # grown from the shortest, a batch is a run of the next pairs up: max_pairs of them suffice
        window = remaining[:max_pairs]
        chosen = select_batch([lengths[index] for index in window], 0, max_tokens, max_pairs)
        batches.append([window[position] for position in chosen])
        remaining = remaining[len(chosen):]
    return batches


def run_planned(run: Callable[[EncodedBatch], np.ndarray], pairs: Sequence[EncodedPair], pad_id: int,
                max_tokens: int) -> np.ndarray:
    """Logits of a fixed set of pairs in input order, `run` once per planned batch (one thread).

    The export's parity checks and the engine-only benchmark baseline use this; everything that
    serves goes through the micro-batcher."""
    out: np.ndarray | None = None
    for batch in plan_batches([pair.length for pair in pairs], max_tokens):
        logits = run(pad_batch([pairs[index] for index in batch], pad_id))
        if out is None:
            out = np.zeros((len(pairs), logits.shape[1]), dtype=np.float32)
        out[batch] = logits
    if out is None:
        raise ValueError("no pairs to run")
    return out
