"""The export cache: one directory per (model, variant, library versions), written atomically.

Layout: `<root>/<slug>-<identity hash>/<variant>-<versions hash>/` holding `model.onnx`, the
tokenizer and config files, and `manifest.json`. An entry is built in a temporary directory and
renamed into place, so a half-written entry is never seen; only an entry whose manifest says
complete and whose files all exist is reused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from xscore.service.models.hardware import cpu_class
from xscore.service.models.manifest import MANIFEST_NAME, Manifest
from xscore.service.models.sources import ModelSource

# Bump when the export recipe changes in a way that changes the artifacts.
RECIPE_VERSION = "6"  # 3: calibration on its own part of a committed corpus; ranking-set gates; 4-5: int8w group
# size; 6: own sets judged on the queries a variant ranks worse
_VERSIONED = ("xscore", "optimum", "optimum-onnx", "transformers", "torch", "onnx", "onnxruntime-gpu", "nncf")


def cache_root() -> Path:
    return Path(os.environ.get("XSCORE_CACHE") or Path.home() / ".cache" / "xscore").expanduser()


def library_versions() -> dict[str, str]:
    """What an entry's artifacts and figures depend on: the recipe, the libraries, and the CPU
    class its fidelity was measured on (int8 kernels round differently with and without VNNI, so
    a gate passed on one class says nothing about another)."""
    versions = {"recipe": RECIPE_VERSION, "cpu": cpu_class()}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def _short_hash(text: str, length: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def fingerprint(facts: dict, length: int = 12) -> str:
    """A short, stable name for what a kept figure depends on (key order does not matter)."""
    return _short_hash(json.dumps(facts, sort_keys=True), length)


def write_json_atomically(path: Path, data: object, indent: int = 2) -> None:
    """Write `data` as a whole file or not at all: two processes writing at once each write a whole
    file and the last rename wins; a failed write leaves no scratch file behind and raises (OSError
    from the file system, TypeError for a value JSON cannot hold)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False)
    try:
        with scratch:
            scratch.write(json.dumps(data, indent=indent, sort_keys=True) + "\n")
        Path(scratch.name).replace(path)
    except BaseException:
        Path(scratch.name).unlink(missing_ok=True)
        raise


def model_dir(root: Path, source: ModelSource) -> Path:
    return root / f"{source.slug}-{_short_hash(source.identity, 12)}"


def entry_dir(root: Path, source: ModelSource, variant: str, versions: dict[str, str]) -> Path:
    fingerprint = ",".join(f"{key}={value}" for key, value in sorted(versions.items()))
    return model_dir(root, source) / f"{variant}-{_short_hash(fingerprint, 10)}"


def load_complete(entry: Path) -> Manifest | None:
    """The manifest of a complete entry, or None for a missing, partial or corrupt one."""
    try:
        manifest = Manifest.read(entry / MANIFEST_NAME)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not manifest.complete or not all((entry / name).is_file() for name in manifest.files):
        return None
    return manifest


def any_complete(root: Path, source: ModelSource, variant: str) -> Path | None:
    """A complete entry for this model and variant built by other library versions."""
    parent = model_dir(root, source)
    if not parent.is_dir():
        return None
    for candidate in sorted(parent.glob(f"{variant}-*"), key=lambda p: p.stat().st_mtime, reverse=True):
        if load_complete(candidate) is not None:
            return candidate
    return None


def gated_elsewhere(manifest: Manifest, variant: str) -> str | None:
    """Why the lossy `variant` in this entry does not hold here (its gate ran on another CPU
    class), or None. fp32 is exact on every class."""
    measured_on = manifest.versions.get("cpu")
    if manifest.precision == "fp32" or measured_on == cpu_class():
        return None
    return (f"variant {variant} was gated on CPU class {measured_on}, not this one ({cpu_class()}); "
            "export it here to serve it")


def refusal_path(entry: Path) -> Path:
    return entry.with_name(entry.name + ".refused.json")


def record_refusal(entry: Path, message: str, details: dict) -> None:
    """Remember that this entry's variant failed its fidelity gate, so it is not rebuilt each load."""
    write_json_atomically(refusal_path(entry), {"message": message, "details": details})


def load_refusal(entry: Path) -> dict | None:
    try:
        refusal = json.loads(refusal_path(entry).read_text())
    except (OSError, ValueError):
        return None
    return refusal if isinstance(refusal, dict) and "message" in refusal else None


@contextlib.contextmanager
def building(entry: Path) -> Iterator[Path]:
    """A scratch directory that becomes `entry` only if the block finishes without error."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{entry.name}.tmp-", dir=entry.parent))
    try:
        yield scratch
        try:
            os.rename(scratch, entry)
        except OSError:
            # Another process finished the same entry first: theirs is as good as ours.
            if load_complete(entry) is None:
                shutil.rmtree(entry, ignore_errors=True)
                os.rename(scratch, entry)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
