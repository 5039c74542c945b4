"""Real English text: the Python standard library's docstrings, as a committed snapshot.

A fresh machine needs no download for any of the text the exporter and the benchmarks use. The
docstrings are split once, by a fixed rule, into two disjoint parts: the int8 calibration draws
from the first, and the ranking set the lossy variants are gated on (and the benchmarks'
evaluation) from the second, so a quantizer is never judged on text it was calibrated on.
"""

from __future__ import annotations

import gzip
import importlib
import inspect
import json
import random
import sys
from functools import cache
from pathlib import Path

_MODULES = ("argparse", "asyncio", "collections", "concurrent.futures", "csv", "dataclasses", "datetime",
            "decimal", "email", "functools", "http.client", "http.server", "inspect", "json", "logging",
            "multiprocessing", "os", "pathlib", "pickle", "random", "re", "shutil", "socket", "sqlite3",
            "statistics", "string", "subprocess", "tarfile", "tempfile", "textwrap", "threading", "typing",
            "unittest", "urllib.request", "uuid", "xml.etree.ElementTree", "zipfile")

# every HELD_OUT_EVERY-th docstring (in the fixed order) is held out of calibration
HELD_OUT_EVERY = 4


DATA_FILE = Path(__file__).with_name("stdlib_docstrings.json.gz")


@cache
def docstrings() -> tuple[tuple[str, str], ...]:
    """(summary line, whole docstring) for public stdlib objects, in a fixed order.

    Read from the committed snapshot, not from the running interpreter: docstrings change
    between Python releases, and libraries replace some stdlib names at import (torch wraps
    `inspect.getfile`), so collecting them live would move the gate set and the calibration
    with the Python version and with what the process imported first."""
    with gzip.open(DATA_FILE, "rt", encoding="utf-8") as data:
        return tuple((summary, text) for summary, text in json.load(data))


def collect() -> list[tuple[str, str]]:
    """The snapshot's contents, from this interpreter (run in a fresh one: `python -m
    xscore.service.models.corpus`)."""
    seen: set[str] = set()
    found = []
    for module_name in _MODULES:
        module = importlib.import_module(module_name)
        # a module's public names, not its attributes: a submodule, or a name a module's
        # `__getattr__` imports lazily (concurrent.futures' executors), is an attribute only once
        # something has touched it
        names = getattr(module, "__all__", None) or [name for name in vars(module) if not name.startswith("_")]
        for name in sorted(names):
            obj = getattr(module, name, None)
            if name.startswith("_") or obj is None or inspect.ismodule(obj):
                continue
            doc = inspect.getdoc(obj)
            if not doc or doc in seen:
                continue
            seen.add(doc)
            summary = doc.strip().splitlines()[0].strip()
            found.append((summary, " ".join(doc.split())))
    return found


def calibration_docstrings() -> tuple[tuple[str, str], ...]:
    return tuple(entry for index, entry in enumerate(docstrings()) if index % HELD_OUT_EVERY)


def held_out_docstrings() -> tuple[tuple[str, str], ...]:
    return tuple(entry for index, entry in enumerate(docstrings()) if not index % HELD_OUT_EVERY)


PARTS = {"all": docstrings, "held_out": held_out_docstrings, "calibration": calibration_docstrings}


def passages(count: int, seed: int = 0, min_words: int = 45, max_words: int = 170,
             part: str = "all") -> list[str]:
    """`count` passages of about 60-300 tokens (45-170 words), drawn deterministically from one
    part of the corpus: "all", "held_out" (the ranking gate's) or "calibration" (never gated on)."""
    pool = _passage_pool(part, min_words)
    rng = random.Random(seed)
    chosen = []
    for _ in range(count):
        words = rng.choice(pool).split()
        chosen.append(" ".join(words[: rng.randint(min_words, max_words)]))
    return chosen


@cache
def _passage_pool(part: str, min_words: int) -> tuple[str, ...]:
    return tuple(text for _, text in PARTS[part]() if min_words <= len(text.split()))


@cache
def _query_pool() -> tuple[str, ...]:
    return tuple(summary for summary, _ in docstrings() if 4 <= len(summary.split()) <= 20)


def queries(count: int, seed: int = 0) -> list[str]:
    pool = _query_pool()
    rng = random.Random(seed + 7919)
    return [rng.choice(pool) for _ in range(count)]


def rerank_workload(documents: int = 128, seed: int = 0) -> tuple[str, list[str]]:
    """One query and its candidate passages: the shape of a reranking request."""
    return queries(1, seed)[0], passages(documents, seed)


def main() -> int:
    """Rewrite the snapshot from this interpreter (changes calibration and gates: bump the
    cache's RECIPE_VERSION with it)."""
    found = collect()
    with gzip.GzipFile(DATA_FILE, "wb", mtime=0) as raw:
        raw.write(json.dumps(found, ensure_ascii=False, indent=0).encode("utf-8"))
    print(f"wrote {len(found)} docstrings from Python {sys.version.split()[0]} to {DATA_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["calibration_docstrings", "docstrings", "held_out_docstrings", "passages", "queries",
           "rerank_workload"]
