"""From a `--model` spec to a loaded LoadedModel: parse, resolve, export if needed, load."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from xscore.api.errors import XscoreError, model_error
from xscore.service.models import cache, variants
from xscore.service.models.engines import (
    EngineOptions,
    create_engine,
    resolve_device,
    resolve_engine,
)
from xscore.service.models.export import export, find_exported
from xscore.service.models.manifest import MANIFEST_NAME, Manifest
from xscore.service.models.model import LoadedModel

log = logging.getLogger(__name__)

DEFAULT_NAME = "default"
VARIANT_CHOICES = ("auto", *variants.NAMES)
_NAME = re.compile(r"^[A-Za-z0-9][\w.\-/]*$")


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    source: str

    @classmethod
    def parse(cls, spec: str) -> ModelSpec:
        """`NAME=SOURCE` or `SOURCE` (the name is then the hub id or the directory's name)."""
        name, sep, source = spec.partition("=")
        if not sep:
            source = spec
            name = spec if not Path(spec).expanduser().exists() else Path(spec).expanduser().resolve().name
        if not source:
            raise model_error(f"model spec {spec!r} has an empty source")
        if not _NAME.match(name):
            raise model_error(f"model name {name!r} may only hold letters, digits and . _ - /")
        return cls(name, source)


def default_spec() -> ModelSpec:
    """The trained default cross-encoder, assembled (torch-free) from the shipped artifact."""
    from xscore.service.models.defaultmodel import materialize_default

    return ModelSpec(DEFAULT_NAME, str(materialize_default(cache.cache_root() / "models" / "default")))


def load_model(spec: ModelSpec, *, variant: str = "auto", device: str = "auto", engine: str = "auto",
               options: EngineOptions = EngineOptions(), max_length: int | None = None,
               progress: bool = True) -> LoadedModel:
    """Export `spec` if needed (the fastest variant that builds and passes its gate, for `auto`)
    and load it on its engine."""
    if variant not in VARIANT_CHOICES:
        raise model_error(f"unknown variant {variant!r}; choose from {', '.join(VARIANT_CHOICES)}")
    directory = _auto_dir(spec, device, engine, progress) if variant == "auto" else \
        _exported_dir(spec.source, variant, progress)
    manifest = Manifest.read(directory / MANIFEST_NAME)
    model_engine = create_engine(directory, manifest, engine=engine, device=device, options=options)
    model = LoadedModel.load(spec.name, directory, model_engine, max_length)
    log.info("loaded %s (%s, %s on %s) from %s", spec.name, manifest.variant, model_engine.name,
             model_engine.device, directory)
    return model


def auto_order(device: str, engine: str = "auto") -> tuple[str, ...]:
    """`--variant auto`'s candidates here, fastest first (from the variant table)."""
    resolved = resolve_device(device)
    return variants.auto_order(resolved, resolve_engine(engine, resolved))


def _auto_dir(spec: ModelSpec, device: str, engine: str, progress: bool) -> Path:
    """The fastest variant that can be built here and passed its gate; each skip is logged."""
    if (Path(spec.source).expanduser() / MANIFEST_NAME).is_file():
        return _exported_dir(spec.source, "fp32", progress)  # an exported directory is what it is
    order = auto_order(device, engine)
    skipped: list[str] = []
    for candidate in order:
        reason = variants.BY_NAME[candidate].unavailable()
        if reason is None:
            try:
                directory = _exported_dir(spec.source, candidate, progress)
            except XscoreError as exc:
                if candidate == order[-1]:
                    raise
                reason = exc.message
            else:
                log.info("variant auto for %s: serving %s (order %s%s)", spec.name, candidate, " > ".join(order),
                         "; skipped " + "; ".join(skipped) if skipped else "")
                return directory
        log.warning("variant auto for %s: skipping %s: %s", spec.name, candidate, reason)
        skipped.append(f"{candidate}: {reason}")
    raise model_error(f"no variant of {spec.source} can be served here: {'; '.join(skipped)}")


def _exported_dir(source: str, variant: str, progress: bool) -> Path:
    path = Path(source).expanduser()
    if (path / MANIFEST_NAME).is_file():
        if cache.load_complete(path) is None:
            raise model_error(f"{path} holds an incomplete or corrupt export; export it again")
        return path
    found = find_exported(source, variant)
    if found is not None:
        return found
    return export(source, [variant], progress=progress)[variant].path
