"""Pure batch planning: length-sorted, closed by a padded-token budget and a pair cap.

Shared by one-shot scoring and the service's micro-batcher so both pad the same way.
"""

from __future__ import annotations

from collections.abc import Sequence


def plan_batches(lengths: Sequence[int], max_tokens: int, max_pairs: int = 256) -> list[list[int]]:
    """Group indices into batches whose padded size (longest * count) stays within max_tokens.

    Indices are visited shortest first, so each batch pads to a near neighbour's length. A
    single pair longer than the budget still gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda index: (lengths[index], index))
    batches: list[list[int]] = []
    current: list[int] = []
    for index in order:
        # sorted ascending, so this pair is the longest of the batch if it joins
        if current and (lengths[index] * (len(current) + 1) > max_tokens or len(current) >= max_pairs):
            batches.append(current)
            current = []
        current.append(index)
    if current:
        batches.append(current)
    return batches


def select_batch(lengths: Sequence[int], pivot: int, max_tokens: int, max_pairs: int = 256) -> list[int]:
    """One batch from a window of candidate pairs, grown around the most urgent one.

    `pivot` (the pair whose turn it is) always goes in; the batch then grows by whichever
    neighbour in length order adds the least padding, while the padded size (longest * count)
    stays within `max_tokens` and the count within `max_pairs`. Returns indices into `lengths`,
    shortest first.
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
