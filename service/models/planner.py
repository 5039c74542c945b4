"""Batch planning: length-sorted batches closed by a padded-token budget and a pair cap.

`select_batch` is the one rule; the micro-batcher applies it to its queue one batch at a time,
and `plan_batches` applies it until every pair of a fixed set has a batch (`run_planned`: the
export's parity runs), so both pad the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from xscore.service.models.tokenization import EncodedBatch, EncodedPair, pad_batch


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
