"""A loaded model: what the Scorer needs to serve one exported variant."""

from __future__ import annotations

import json
from pathlib import Path

from xscore.service.models.activation import Activation, activation_from_config
from xscore.service.models.engines.base import Engine
from xscore.service.models.manifest import MANIFEST_NAME, Manifest
from xscore.service.models.tokenization import PairTokenizer


class LoadedModel:
    """The tokenizer, the engine running the variant, and the activation its logits get."""

    def __init__(self, name: str, directory: Path, manifest: Manifest, tokenizer: PairTokenizer,
                 engine: Engine, activation: Activation) -> None:
        self.name = name
        self.directory = directory
        self.manifest = manifest
        self.tokenizer = tokenizer
        self.engine = engine
        self.activation = activation

    @classmethod
    def load(cls, name: str, directory: Path, engine: Engine, max_length: int | None = None) -> LoadedModel:
        manifest = Manifest.read(directory / MANIFEST_NAME)
        config = json.loads((directory / "config.json").read_text())
        tokenizer = PairTokenizer.from_dir(directory, max_length)
        return cls(name, directory, manifest, tokenizer, engine, activation_from_config(config))
