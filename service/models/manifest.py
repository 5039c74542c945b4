"""The manifest written beside every exported variant."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"


@dataclass(slots=True)
class Manifest:
    source: str
    identity: str
    variant: str
    model_file: str
    files: list[str]
    opset: int
    max_length: int
    num_labels: int
    activation: str
    export_seconds: float
    parity: dict[str, Any]  # probe pairs against the PyTorch reference
    versions: dict[str, str]
    precision: str = "fp32"  # what the engine should compute in (bf16 variants reuse fp32 weights)
    extra: dict[str, Any] = field(default_factory=dict)
    ranking: dict[str, Any] = field(default_factory=dict)  # the ranking set against the fp32 export
    # the model's own labelled ranking sets, by name, against the reference (where it carries them)
    ranking_own: dict[str, Any] = field(default_factory=dict)
    complete: bool = True

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True))

    @classmethod
    def read(cls, path: Path) -> Manifest:
        data = json.loads(path.read_text())
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})
