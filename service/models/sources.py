"""Resolving a model source (hub id or local directory) to a local directory."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from xscore.api.errors import model_error
from xscore.service.models.prompts import PROFILES, PROMPT_FILE, prompt_profile

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_HUB_FILES = ["*.json", "*.safetensors", "*.bin", "*.txt", "*.model", "tokenizer*"]


@dataclass(frozen=True, slots=True)
class ModelSource:
    spec: str  # what the user gave
    local_dir: Path
    identity: str  # hub id@commit, or the content hash of a local directory
    hub_id: str | None = None
    revision: str | None = None

    @property
    def slug(self) -> str:
        base = self.hub_id or self.local_dir.name
        return re.sub(r"[^A-Za-z0-9._-]+", "--", base).strip("-") or "model"


def resolve_source(spec: str, revision: str | None = None) -> ModelSource:
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise model_error(f"{spec} is a file; give the model's directory (with config.json)")
        return ModelSource(spec, path.resolve(), f"dir:{directory_hash(path)}")
    if _HUB_ID.match(spec):
        local_dir = _download(spec, revision)
        return ModelSource(spec, local_dir, f"hub:{spec}@{local_dir.name}", spec, revision)
    raise model_error(f"model {spec!r} is neither an existing directory nor a hub id like org/name")


def read_config(model_dir: Path) -> dict:
    """config.json of a sequence-classification model, or a clear error saying what it is."""
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise model_error(f"{model_dir} is not a model directory: it has no config.json")
    try:
        config = json.loads(config_path.read_text())
    except ValueError as exc:
        raise model_error(f"{config_path} is corrupt: {exc}") from exc
    if not isinstance(config, dict):
        raise model_error(f"{config_path} is corrupt: expected a JSON object")
    if not is_sequence_classifier(config) and prompt_profile(model_dir, config) is None:
        known = ", ".join(sorted(name for profile in PROFILES for name in profile.architectures))
        raise model_error(
            f"{model_dir} is not a sequence classifier (architectures: {config.get('architectures') or 'none'}); "
            "xscore serves cross-encoders such as BertForSequenceClassification, and causal-LM rerankers "
            f"with a prompt profile (known: {known}; others: add {PROMPT_FILE} to the model directory)"
        )
    return config


def is_sequence_classifier(config: dict) -> bool:
    return any(str(name).endswith("ForSequenceClassification") for name in config.get("architectures") or [])


def directory_hash(path: Path) -> str:
    """Content hash of a model directory: file names, sizes and bytes."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and ".git" not in p.parts):
        digest.update(str(file.relative_to(path)).encode())
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:24]


def _download(hub_id: str, revision: str | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return Path(snapshot_download(hub_id, revision=revision, allow_patterns=_HUB_FILES))
    except (RepositoryNotFoundError, GatedRepoError) as exc:
        raise model_error(f"{hub_id} was not found on the Hugging Face Hub (or is gated): {exc}") from exc
    except RevisionNotFoundError as exc:
        raise model_error(f"{hub_id} has no revision {revision!r}") from exc
    except (LocalEntryNotFoundError, OSError) as exc:
        raise model_error(
            f"cannot download {hub_id}: the Hugging Face Hub is unreachable from here ({type(exc).__name__}). "
            "Download the model on a machine with internet access (e.g. `huggingface-cli download "
            f"{hub_id} --local-dir ./model`), copy the directory here and pass its path instead"
        ) from exc
