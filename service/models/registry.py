"""From a `--model` spec to a loaded LoadedModel: parse, resolve, export if needed, load."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from xscore.api.errors import XscoreError, model_error
from xscore.service.models import cache, selection, variants
from xscore.service.models.engines import EngineOptions, create_engine, serving_options
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
        if _names_a_directory(source if sep else spec) and not Path(source if sep else spec).expanduser().exists():
            raise model_error(f"model directory {source if sep else spec} does not exist")
        if not sep:
            source = spec
            name = spec if not Path(spec).expanduser().exists() else Path(spec).expanduser().resolve().name
        if not source:
            raise model_error(f"model spec {spec!r} has an empty source")
        if not _NAME.match(name):
            raise model_error(f"model name {name!r} may only hold letters, digits and . _ - /")
        return cls(name, source)


def _names_a_directory(source: str) -> bool:
    """A path, not a hub id (`org/name`): absolute, home- or dot-relative, or deeper than one slash."""
    return source.startswith(("/", "~", "./", "../")) or source in (".", "..") or source.count("/") > 1


def default_spec() -> ModelSpec:
    """The trained default cross-encoder, assembled (torch-free) from the shipped artifact."""
    from xscore.service.models.defaultmodel import materialize_default

    return ModelSpec(DEFAULT_NAME, str(materialize_default(cache.cache_root() / "models" / "default")))


def load_model(spec: ModelSpec, *, variant: str = "auto", device: str = "auto", engine: str = "auto",
               options: EngineOptions = EngineOptions(), max_length: int | None = None,
               progress: bool = True) -> LoadedModel:
    """Export `spec` if needed and load it on its engine. `auto` serves the fastest (variant,
    engine) measured here among those that pass their gates (`selection.decide`)."""
    if variant not in VARIANT_CHOICES:
        raise model_error(f"unknown variant {variant!r}; choose from {', '.join(VARIANT_CHOICES)}")
    options = serving_options(options)
    exported_dir = (Path(spec.source).expanduser() / MANIFEST_NAME).is_file()
    if variant == "auto" and not exported_dir:
        decision = selection.decide(spec.source, name=spec.name, device=device, engine=engine, options=options,
                                    progress=progress)
        directory = Path(decision.directory)
        engine = decision.engine if engine == "auto" else engine
        log.info("variant auto for %s: serving %s: %s", spec.name, decision.label, decision.reason)
    else:
        # an exported directory is what it is
        directory = _exported_dir(spec.source, "fp32" if variant == "auto" else variant, progress)
    manifest = Manifest.read(directory / MANIFEST_NAME)
    model_engine = create_engine(directory, manifest, engine=engine, device=device, options=options)
    model = LoadedModel.load(spec.name, directory, model_engine, max_length)
    log.info("loaded %s (%s, %s on %s) from %s", spec.name, manifest.variant, model_engine.name,
             model_engine.device, directory)
    return model


def _exported_dir(source: str, variant: str, progress: bool) -> Path:
    path = Path(source).expanduser()
    if (path / MANIFEST_NAME).is_file():
        if cache.load_complete(path) is None:
            raise model_error(f"{path} holds an incomplete or corrupt export; export it again")
        return path
    found = find_exported(source, variant)
    elsewhere = cache.gated_elsewhere(Manifest.read(found / MANIFEST_NAME), variant) if found is not None else None
    if found is not None and elsewhere is None:
        return found
    try:
        return export(source, [variant], progress=progress)[variant].path
    except XscoreError as exc:
        if elsewhere is None:
            raise
        raise model_error(f"{elsewhere}; {exc.message}") from exc
