"""Python stand-ins for TorchScript helpers that do not export as graphs every engine runs.

transformers scripts a few model helpers with `torch.jit.script`; exported, a scripted `if`
becomes an ONNX `If` node, and where its branches return tensors of different rank, OpenVINO's
CPU plugin refuses the whole graph. Traced instead of scripted, the `if` is decided once at
export time, which is right wherever the condition is fixed by the architecture.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator


def _deberta_v2_build_rpos(module) -> Callable:
    def build_rpos(query_layer, key_layer, relative_pos, position_buckets: int, max_relative_positions: int):
        # a cross-encoder only runs self-attention: keys and queries are the same length
        if key_layer.size(-2) != query_layer.size(-2):
            return module.build_relative_position(key_layer, key_layer, bucket_size=position_buckets,
                                                  max_position=max_relative_positions)
        return relative_pos

    return build_rpos


# model_type -> (module, {helper: factory of its Python stand-in})
_STAND_INS: dict[str, tuple[str, dict[str, Callable]]] = {
    "deberta-v2": ("transformers.models.deberta_v2.modeling_deberta_v2", {"build_rpos": _deberta_v2_build_rpos}),
}


@contextlib.contextmanager
def traceable(model_type: str | None) -> Iterator[None]:
    """Swap the model type's scripted helpers for Python ones while it is exported."""
    if model_type not in _STAND_INS:
        yield
        return
    module_name, stand_ins = _STAND_INS[model_type]
    module = importlib.import_module(module_name)
    originals = {name: getattr(module, name) for name in stand_ins}
    try:
        for name, make in stand_ins.items():
            setattr(module, name, make(module))
        yield
    finally:
        for name, original in originals.items():
            setattr(module, name, original)
