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
