"""The default model as served: assembled, torch-free, from the artifact shipped beside this module.

`materialize_default(dest)` writes a full Hugging Face model directory from the trained weights in
`artifact/` and the base model's embeddings, config and tokenizer in `base/` (all-MiniLM-L6-v2's,
vendored by the recipe so that serving needs neither torch nor the package they came from). The
recipe that trains and evaluates it lives in `xscore.recipes.default_model`; serving needs only this.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from xscore.service.models.int8_plan import INT8_PLAN_FILE
from xscore.service.models.ranking import OWN_RANKING_FILE

ARTIFACT_DIR = Path(__file__).resolve().parent / "artifact"
BASE_DIR = Path(__file__).resolve().parent / "base"
BASE_EMBEDDINGS_FILE = "embeddings.safetensors"
BASE_MANIFEST_FILE = "base.json"
BASE_TEXT_FILES = ("config.json", "vocab.txt", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json")
DEFAULT_MODEL_NAME = "xscore-default-minilm-l6-debian"
WEIGHTS_FILE = "weights.safetensors"
CARD_FILE = "default_model.json"
EVAL_FILE = "eval_set.jsonl.gz"
SERVING_MAX_LENGTH = 512
_TOKENIZER_FILES = ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json")
_STAMP = ".xscore-default.json"
_SIGMOID = "torch.nn.modules.activation.Sigmoid"



def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def shipped_export(model_dir: Path, artifact_dir: Path = ARTIFACT_DIR):
    """The torch-free exporter of a directory materialize_default wrote from these weights, or None
    for any other model (or when the artifact carries no shipped graph for them)."""
    from xscore.service.models.defaultmodel.graph import GRAPH_CARD_FILE, ShippedExport

    stamp, card = Path(model_dir) / _STAMP, artifact_dir / GRAPH_CARD_FILE
    if not (stamp.is_file() and card.is_file()):
        return None
    graph_card = json.loads(card.read_text())
    if graph_card.get("weights_sha256") != json.loads(stamp.read_text()).get("weights_sha256"):
        return None
    return ShippedExport(artifact_dir, graph_card)


def check_base(card: dict, base: Path = BASE_DIR) -> None:
    """Raise ValueError unless base/ holds the exact base files the weights were trained on."""
    manifest = json.loads((base / BASE_MANIFEST_FILE).read_text())
    if manifest["source_sha256"] != card["base_model"]["sha256"]:
        raise ValueError(f"{base} was vendored from {manifest['package']} "
                         f"{manifest['package_version']}, not the build the default model was "
                         f"trained on ({card['base_model']['package_version']})")
    for name, expected in manifest["sha256"].items():
        if sha256_file(base / name) != expected:
            raise ValueError(f"{base / name} does not match {base / BASE_MANIFEST_FILE} "
                             f"(corrupt copy?)")


def materialize_default(dest_dir: Path, artifact_dir: Path = ARTIFACT_DIR,
                        base: Path = BASE_DIR) -> Path:
    """Write a loadable model directory (config, tokenizer, model.safetensors) into dest_dir.

    Idempotent: a directory stamped with the same artifact hash is reused as is. Raises
    ValueError if the base files are not the ones the weights were trained on (their
    embeddings would not match the shipped encoder) or either copy is corrupt.
    """
    from safetensors.numpy import load_file, save_file

    dest_dir = Path(dest_dir)
    card = json.loads((artifact_dir / CARD_FILE).read_text())
    weights_sha = sha256_file(artifact_dir / WEIGHTS_FILE)
    if weights_sha != card["weights"]["sha256"]:
        raise ValueError(f"{artifact_dir / WEIGHTS_FILE} does not match its card (corrupt copy?)")
    ranking_set, int8_plan = artifact_dir / OWN_RANKING_FILE, artifact_dir / INT8_PLAN_FILE
    wanted = {"weights_sha256": weights_sha, "recipe_version": card["recipe_version"],
              "ranking_set_sha256": sha256_file(ranking_set) if ranking_set.is_file() else None,
              "int8_plan_sha256": sha256_file(int8_plan) if int8_plan.is_file() else None}
    stamp = dest_dir / _STAMP
    if stamp.exists() and json.loads(stamp.read_text()) == wanted:
        return dest_dir
    check_base(card, base)
    tensors = {f"bert.{name}": array
               for name, array in load_file(base / BASE_EMBEDDINGS_FILE).items()}
    tensors.update(load_file(artifact_dir / WEIGHTS_FILE))

    # Build beside the destination and rename, so a concurrent reader never sees half a model.
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".materialize-", dir=dest_dir.parent))
    try:
        save_file(tensors, str(staging / "model.safetensors"), metadata={"format": "pt"})
        (staging / "config.json").write_text(json.dumps(_config(base), indent=2) + "\n")
        _write_tokenizer(base, staging)
        if ranking_set.is_file():
            # the export gates lossy variants on it (the model's own labelled validation text)
            shutil.copyfile(ranking_set, staging / OWN_RANKING_FILE)
        if int8_plan.is_file():
            # the layers its static int8 keeps in float, found once by the recipe
            shutil.copyfile(int8_plan, staging / INT8_PLAN_FILE)
        (staging / _STAMP).write_text(json.dumps(wanted))
        if dest_dir.exists():
            shutil.rmtree(dest_dir)
        os.replace(staging, dest_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest_dir


def _config(base: Path) -> dict[str, object]:
    config = json.loads((base / "config.json").read_text())
    config.update({
        "_name_or_path": DEFAULT_MODEL_NAME,
        "architectures": ["BertForSequenceClassification"],
        "id2label": {"0": "LABEL_0"},
        "label2id": {"LABEL_0": 0},
        # sentence-transformers' convention for a 1-logit model; xscore reads it the same way.
        "sentence_transformers": {"activation_fn": _SIGMOID, "version": "5.7.0"},
    })
    config.pop("gradient_checkpointing", None)
    return config


def _write_tokenizer(base: Path, dest: Path) -> None:
    for name in _TOKENIZER_FILES:
        shutil.copyfile(base / name, dest / name)
    tokenizer = json.loads((base / "tokenizer.json").read_text())
    # The bi-encoder's tokenizer.json pads every input to 128 and truncates at 128: a scorer
    # using `tokenizers` directly would silently cut passages. Serve unpadded, cut at 512.
    tokenizer["padding"] = None
    tokenizer["truncation"] = {"direction": "Right", "max_length": SERVING_MAX_LENGTH,
                               "strategy": "LongestFirst", "stride": 0}
    (dest / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False))
    config = json.loads((base / "tokenizer_config.json").read_text())
    config.update({"model_max_length": SERVING_MAX_LENGTH, "name_or_path": DEFAULT_MODEL_NAME})
    (dest / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
