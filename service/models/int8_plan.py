"""A model's int8 plan: the matmuls its static int8 leaves in float, chosen where the model is made.

Static int8 of a whole cross-encoder can keep the order of every query and still lose answers
against a task's labels (the default model's did: `variants.build_nncf_int8`). Finding the
matmuls that cost the most means building and scoring many int8 graphs on labelled text, which
takes the better part of an hour on 2 cores, too long for a first start, so a model carries the
result (`INT8_PLAN_FILE` in its directory) and the export applies it as an ignored scope. The
ranking gates judge the int8 it builds like any other.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xscore.api.errors import model_error

INT8_PLAN_FILE = "int8_plan.json"


@dataclass(frozen=True, slots=True)
class Int8Plan:
    float_layers: tuple[str, ...]  # node names in the exported (folded) ONNX graph
    how: str  # how they were chosen, for the manifest and `xscore models list`
    figures: Mapping[str, Any] = field(default_factory=dict)  # what the search measured

    def as_dict(self) -> dict[str, Any]:
        return {"float_layers": list(self.float_layers), "how": self.how, "figures": dict(self.figures)}


def save_int8_plan(plan: Int8Plan, path: Path) -> Path:
    path.write_text(json.dumps(plan.as_dict(), indent=2) + "\n")
    return path


def load_int8_plan(model_dir: Path) -> Int8Plan | None:
    """The plan `model_dir` carries, None when it carries none; a model error when it is malformed
    (a plan that cannot be read must not quietly become a whole-model int8)."""
    path = Path(model_dir) / INT8_PLAN_FILE
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
        layers = raw["float_layers"]
        if not isinstance(layers, list) or not all(isinstance(name, str) and name for name in layers):
            raise ValueError("float_layers must be a list of node names")
        return Int8Plan(tuple(layers), str(raw.get("how", "")), dict(raw.get("figures") or {}))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise model_error(f"{path} cannot be read as an int8 plan: {exc}") from exc


def quantized_matmuls(model: Any) -> set[str]:
    """MatMul / Gemm nodes that take a dequantized input: the ones static int8 runs in int8."""
    dequantized = {output for node in model.graph.node if node.op_type == "DequantizeLinear"
                   for output in node.output}
    return {node.name for node in model.graph.node
            if node.op_type in ("MatMul", "Gemm") and dequantized.intersection(node.input)}


__all__ = ["INT8_PLAN_FILE", "Int8Plan", "load_int8_plan", "quantized_matmuls", "save_int8_plan"]
