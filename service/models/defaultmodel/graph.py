"""The default model's fp32 ONNX, made without torch: the shipped graph filled with its weights.

Exporting needs torch (optimum traces the PyTorch model), which the serving install does not
have. So the recipe exports the default model once and ships the graph with its weights taken
out (`artifact/graph.onnx`, each initializer named after the checkpoint tensor it is, or whose
transpose it is, in `artifact/graph.json`), together with the PyTorch model's logits on the
probe pairs, the reference its fp32 gate is measured against. `ShippedExport` puts the two back
together from the materialized model directory; the export pipeline builds and gates every
variant from that file as it would from optimum's. The suite checks that the rebuilt file scores
like optimum's export and the stored logits are the PyTorch model's.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from xscore.api.errors import model_error
from xscore.service.models.tokenization import EncodedPair

GRAPH_FILE = "graph.onnx"
GRAPH_CARD_FILE = "graph.json"
_MODEL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                "vocab.txt")


def probe_digest(pairs: Sequence[EncodedPair]) -> str:
    """A hash of the token ids (and types) of the pairs the stored reference was computed on."""
    digest = hashlib.sha256()
    for pair in pairs:
        digest.update(np.asarray(pair.ids, dtype=np.int64).tobytes())
        digest.update(np.asarray(pair.type_ids, dtype=np.int64).tobytes())
        digest.update(b"|")
    return digest.hexdigest()


class ShippedExport:
    """The exporter of the default model: the same two calls as the torch exporter."""

    def __init__(self, artifact_dir: Path, card: dict) -> None:
        """`card`: the artifact's graph.json, already checked to be for the weights being exported."""
        self._artifact_dir = artifact_dir
        self._card = card

    def export_onnx(self, model_dir: Path, output: Path, prompt: object = None) -> None:
        import onnx
        from onnx import numpy_helper
        from safetensors.numpy import load_file

        from xscore.service.models.variants import save_onnx

        model = onnx.load(str(self._artifact_dir / GRAPH_FILE))
        weights = load_file(str(model_dir / "model.safetensors"))
        for name, source in self._card["initializers"].items():
            array = weights[source["tensor"]]
            array = np.ascontiguousarray(array.T) if source["transpose"] else array
            model.graph.initializer.append(numpy_helper.from_array(array, name))
        output.mkdir(parents=True, exist_ok=True)
        save_onnx(model, output / "model.onnx")
        for name in _MODEL_FILES:
            shutil.copyfile(model_dir / name, output / name)

    def reference_logits(self, model_dir: Path, pairs: Sequence[EncodedPair],
                         prompt: object = None) -> np.ndarray:
        """The PyTorch model's logits on the probe pairs, each scored alone, as the recipe stored them."""
        reference = self._card["reference"]
        if probe_digest(pairs) != reference["probe_digest"]:
            raise model_error("the default model's stored reference logits were computed on other "
                              "probe pairs than this version's; rerun: "
                              "python -m xscore.recipes.default_model vendor-base (needs the export extra)")
        return np.asarray(reference["logits"], dtype=np.float32)
