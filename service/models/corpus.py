"""Real English text every machine with Python has: the standard library's docstrings.

A fresh machine needs no download for any of the text the exporter and the benchmarks use. The
docstrings are split once, by a fixed rule, into two disjoint parts: the int8 calibration draws
from the first, and the ranking set the lossy variants are gated on (and the benchmarks'
evaluation) from the second, so a quantizer is never judged on text it was calibrated on.
"""

from __future__ import annotations

import importlib
import inspect
import random
from functools import cache

_MODULES = ("argparse", "asyncio", "collections", "concurrent.futures", "csv", "dataclasses", "datetime",
            "decimal", "email", "functools", "http.client", "http.server", "inspect", "json", "logging",
            "multiprocessing", "os", "pathlib", "pickle", "random", "re", "shutil", "socket", "sqlite3",
            "statistics", "string", "subprocess", "tarfile", "tempfile", "textwrap", "threading", "typing",
            "unittest", "urllib.request", "uuid", "xml.etree.ElementTree", "zipfile")

# every HELD_OUT_EVERY-th docstring (in the fixed order) is held out of calibration
HELD_OUT_EVERY = 4


@cache
def docstrings() -> tuple[tuple[str, str], ...]:
    """(summary line, whole docstring) for public stdlib objects, in a fixed order."""
    seen: set[str] = set()
    found = []
    for module_name in _MODULES:
        module = importlib.import_module(module_name)
        for name, obj in sorted(vars(module).items()):
            # a submodule is an attribute only once something imported it: skipped, so the
            # corpus does not depend on what else the process has loaded
            if name.startswith("_") or inspect.ismodule(obj):
                continue
            doc = inspect.getdoc(obj)
            if not doc or doc in seen:
                continue
            seen.add(doc)
            summary = doc.strip().splitlines()[0].strip()
            found.append((summary, " ".join(doc.split())))
    return tuple(found)


def calibration_docstrings() -> tuple[tuple[str, str], ...]:
    return tuple(entry for index, entry in enumerate(docstrings()) if index % HELD_OUT_EVERY)


def held_out_docstrings() -> tuple[tuple[str, str], ...]:
    return tuple(entry for index, entry in enumerate(docstrings()) if not index % HELD_OUT_EVERY)


def passages(count: int, seed: int = 0, min_words: int = 45, max_words: int = 170,
             held_out: bool = False) -> list[str]:
    """`count` passages of about 60-300 tokens (45-170 words), drawn deterministically."""
    source = held_out_docstrings() if held_out else docstrings()
    pool = [text for _, text in source if min_words <= len(text.split())]
    rng = random.Random(seed)
    chosen = []
    for _ in range(count):
        words = rng.choice(pool).split()
        chosen.append(" ".join(words[: rng.randint(min_words, max_words)]))
    return chosen


def queries(count: int, seed: int = 0) -> list[str]:
    pool = [summary for summary, _ in docstrings() if 4 <= len(summary.split()) <= 20]
    rng = random.Random(seed + 7919)
    return [rng.choice(pool) for _ in range(count)]


def rerank_workload(documents: int = 128, seed: int = 0) -> tuple[str, list[str]]:
    """One query and its candidate passages: the shape of a reranking request."""
    return queries(1, seed)[0], passages(documents, seed)


__all__ = ["calibration_docstrings", "docstrings", "held_out_docstrings", "passages", "queries",
           "rerank_workload"]
