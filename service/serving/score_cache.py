"""The score cache: an in-process LRU from a pair's exact token ids to its logits, bounded in bytes.

RAG pipelines score the same (query, passage) pairs again and again (retries, pagination, several
pipelines behind one reranker). A hit answers from memory and never reaches the batcher. The key
is a 128-bit digest of the model's name, variant and engine and of the pair's token and type ids,
so two texts that tokenize alike share an entry and a change of model, variant or engine never
does. One cache serves every model of a process; the bound holds over all of them.

A cached answer is the one the engine gave the first time, bit for bit. For variants whose score
of a pair does not depend on its batch-mates (fp32, bf16, static int8, int8w) that is also what
scoring it again would give, up to the last bits that a different padded length can move; for
onnxruntime's dynamic int8 (activation scales set per batch) the cache pins the first answer.
"""

from __future__ import annotations

import hashlib
import sys
from array import array
from collections import OrderedDict

import numpy as np

from xscore.service.models.tokenization import EncodedPair
from xscore.service.serving.metrics import Metrics

# What one entry costs beyond its key and value objects: the OrderedDict's slot and link node.
ENTRY_OVERHEAD_BYTES = 100
DEFAULT_MAX_MB = 64


class ScoreCache:
    """LRU of logits rows by pair key; `max_bytes` 0 turns it off (every lookup misses, nothing is kept).

    Used from the serving event loop only, so it takes no lock.
    """

    def __init__(self, max_bytes: int, metrics: Metrics | None = None) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self.metrics = metrics or Metrics()
        self._entries: OrderedDict[bytes, bytes] = OrderedDict()  # key -> float32 logits row
        self.bytes = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def scope(model: str, variant: str, engine: str) -> bytes:
        return f"{model}\0{variant}\0{engine}\0".encode()

    @staticmethod
    def key(scope: bytes, pair: EncodedPair) -> bytes:
        digest = hashlib.blake2b(scope, digest_size=16)
        digest.update(array("q", pair.ids).tobytes())
        digest.update(array("q", pair.type_ids).tobytes())
        return digest.digest()

    def get(self, key: bytes) -> np.ndarray | None:
        if not self.enabled:
            return None
        found = self._entries.get(key)
        if found is None:
            self.metrics.cache_misses.inc()
            return None
        self._entries.move_to_end(key)
        self.metrics.cache_hits.inc()
        return np.frombuffer(found, dtype=np.float32)

    def put(self, key: bytes, logits: np.ndarray) -> None:
        if not self.enabled or key in self._entries:
            return
        value = np.asarray(logits, dtype=np.float32).tobytes()
        cost = _cost(key, value)
        if cost > self.max_bytes:
            return
        self._entries[key] = value
        self.bytes += cost
        while self.bytes > self.max_bytes:
            old_key, old_value = self._entries.popitem(last=False)
            self.bytes -= _cost(old_key, old_value)
            self.metrics.cache_evictions.inc()
        self.metrics.cache_bytes.set(self.bytes)
        self.metrics.cache_entries.set(len(self._entries))


def _cost(key: bytes, value: bytes) -> int:
    return sys.getsizeof(key) + sys.getsizeof(value) + ENTRY_OVERHEAD_BYTES
