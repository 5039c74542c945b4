"""Real English text every machine with Python has: the standard library's docstrings.

The int8 exporter calibrates on (query, passage) pairs built from it, so a fresh machine needs no
download; the benchmarks draw their rerank workloads from the same source.
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


@cache
def docstrings() -> tuple[tuple[str, str], ...]:
    """(summary line, whole docstring) for public stdlib objects, in a fixed order."""
    seen: set[str] = set()
    found = []
    for module_name in _MODULES:
        module = importlib.import_module(module_name)
        for name, obj in sorted(vars(module).items()):
            if name.startswith("_"):
                continue
            doc = inspect.getdoc(obj)
            if not doc or doc in seen:
                continue
            seen.add(doc)
            summary = doc.strip().splitlines()[0].strip()
            found.append((summary, " ".join(doc.split())))
    return tuple(found)


def calibration_pairs(count: int = 300, seed: int = 12345) -> list[tuple[str, str]]:
    """Rerank-shaped pairs for int8 calibration: a summary line with its own docstring (relevant)
    or another one (not), passages cut to 20-250 words so lengths spread like retrieved chunks.

    The seed differs from the benchmarks' so calibration never sees an evaluation pair verbatim.
    """
    pool = [(summary, text) for summary, text in docstrings() if len(text.split()) >= 20
            and 3 <= len(summary.split()) <= 20]
    rng = random.Random(seed)
    pairs = []
    for index in range(count):
        summary, text = rng.choice(pool)
        if index % 2:
            text = rng.choice(pool)[1]
        words = text.split()
        pairs.append((summary, " ".join(words[: rng.randint(20, 250)])))
    return pairs
