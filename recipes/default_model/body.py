"""Stage one of the recipe (when `Recipe.body_distill_epochs` is set): the bi-encoder's body is
taught all-mpnet-base-v2's sense of words before the cross-encoder is trained from it.

Recipe 6 gave the cross-encoder all-mpnet-base-v2 (`teacher.py`) as the teacher of its WordNet
groups, and the student took almost none of what that teacher knows: an 8-candidate group says
little about a word, and the held-out words are never in a group at all. Here the body learns as a
bi-encoder, densely: in each batch, 32 training words (8 of them and, for each, the 3 whose
definitions the teacher finds nearest) ask their questions against their own 32 definitions and
32 other WordNet definitions, and the body's cosines are pulled towards the teacher's over every
pair (a KL over each question's row at temperature 0.05, and a squared error over the question and
definition cosine matrices). Its embeddings stay frozen, as the cross-encoder's do, so the shipped
artifact still takes them from the base package.

Text: the training side only. The questions and definitions of the WordNet training words (common
and rare) and definitions of other synsets; never a held-out word's definition, nor any of the
one-sense words the sense-tagged corpus never saw (the validation pool and the rest of them; the
rare training words excepted).
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from xscore.recipes.default_model.data import Doc, Embed
from xscore.recipes.default_model.evaluate import mean_pooled
from xscore.recipes.default_model.train import warmup_then_linear_decay
from xscore.recipes.default_model.wordnet import definitions

WEIGHTS_FILE = "model.safetensors"
FIGURES_FILE = "body.json"
ANCHORS_PER_BATCH = 8
NEIGHBOURS_PER_ANCHOR = 3  # the teacher's nearest training definitions, never a word twice in an epoch
NEIGHBOUR_POOL = 12  # candidates an anchor's neighbours are taken from
EXTRA_PER_BATCH = 32
TEMPERATURE = 0.05
SQUARED_ERROR_WEIGHT = 10.0
MAX_LENGTH = 128
WEIGHT_DECAY = 0.01
WARMUP_FRACTION = 0.1
# The seeds of the run this stage was first measured by; kept so that a rebuild makes that body.
TORCH_SEED = 0
ORDER_SEED = 0
EXTRA_SEED = 1


def body_texts(database: Path, training: Sequence[Doc], banned: Sequence[Doc],
               extra_count: int) -> tuple[list[tuple[str, str]], list[str]]:
    """(question, definition) of each training word in order, and `extra_count` definitions of
    other synsets (seeded), none a banned doc's definition nor a training one."""
    pairs = [(doc.summary, doc.passage) for doc in training]
    excluded = {doc.passage for doc in banned} | {passage for _, passage in pairs}
    extra = sorted(set(definitions(database)) - excluded)
    random.Random(EXTRA_SEED).shuffle(extra)
    return pairs, extra[:extra_count]


def body_key(pairs: Sequence[tuple[str, str]], extra: Sequence[str], settings: dict[str, object]) -> str:
    """What a distilled body depends on, hashed: its text and its settings (base and teacher hashes
    among them). A body in the data cache under this key is that body."""
    digest = hashlib.sha256(json.dumps([list(map(list, pairs)), list(extra), settings], sort_keys=True).encode())
    return digest.hexdigest()[:16]


def distil_body(base_dir: Path, pairs: Sequence[tuple[str, str]], extra: Sequence[str], teacher: Embed,
                epochs: float, learning_rate: float, threads: int, dest: Path, progress: bool = True) -> Path:
    """Train base_dir's encoder layers (embeddings frozen) towards the teacher's cosines and write the
    body as a model directory (the base's config and tokenizer beside the new weights) into dest."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModel, AutoTokenizer

    started = time.perf_counter()
    texts = sorted({text for pair in pairs for text in pair} | set(extra))
    index = {text: row for row, text in enumerate(texts)}
    targets = torch.from_numpy(np.ascontiguousarray(teacher(texts), dtype=np.float32))
    teacher_seconds = time.perf_counter() - started
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(TORCH_SEED)
    try:
        tokenizer = AutoTokenizer.from_pretrained(base_dir)
        model = AutoModel.from_pretrained(base_dir)
        for parameter in model.embeddings.parameters():
            parameter.requires_grad = False
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                      lr=learning_rate, weight_decay=WEIGHT_DECAY)
        definitions_seen = targets[[index[passage] for _, passage in pairs]]
        steps = _epochs_of_batches(definitions_seen, epochs, random.Random(ORDER_SEED))
        schedule = warmup_then_linear_decay(optimizer, len(steps), WARMUP_FRACTION)
        model.train()
        bar = tqdm(steps, desc="distil body", disable=not progress)
        for step, words in enumerate(bar):
            others = [extra[(step * EXTRA_PER_BATCH + k) % len(extra)] for k in range(EXTRA_PER_BATCH)]
            questions = [pairs[w][0] for w in words]
            passages = [pairs[w][1] for w in words] + others
            loss = _loss(model, tokenizer, questions, passages,
                         targets[[index[t] for t in questions]], targets[[index[t] for t in passages]])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    finally:
        torch.set_num_threads(previous_threads)
        torch.use_deterministic_algorithms(False)
    dest.mkdir(parents=True, exist_ok=True)
    for file in base_dir.iterdir():
        if file.is_file() and file.name != WEIGHTS_FILE:
            shutil.copy(file, dest / file.name)
    save_file({name: tensor.contiguous() for name, tensor in model.state_dict().items()
               if not name.endswith("position_ids")}, str(dest / WEIGHTS_FILE), metadata={"format": "pt"})
    figures = {"steps": len(steps), "texts": len(texts), "training_words": len(pairs), "extra_definitions": len(extra),
               "teacher_seconds": round(teacher_seconds, 1),
               "seconds": round(time.perf_counter() - started, 1)}
    (dest / FIGURES_FILE).write_text(json.dumps(figures, indent=2) + "\n")
    return dest


def _epochs_of_batches(definitions_seen, epochs: float, rng: random.Random) -> list[list[int]]:
    """The training words of each step: whole epochs of batches, then the first part of one more."""
    steps: list[list[int]] = []
    for epoch in range(int(np.ceil(epochs))):
        batches = _neighbour_batches(definitions_seen, rng)
        if epoch + 1 > epochs:
            batches = batches[:int(len(batches) * (epochs - epoch))]
        steps += batches
    return steps


def _neighbour_batches(definitions_seen, rng: random.Random) -> list[list[int]]:
    """One epoch: every training word once, each beside the teacher's nearest unused definitions,
    so a batch holds close meanings the body must tell apart, not only unrelated ones."""
    import torch

    order = list(range(len(definitions_seen)))
    rng.shuffle(order)
    used: set[int] = set()
    groups = []
    for anchor in order:
        if anchor in used:
            continue
        nearest = torch.topk(definitions_seen @ definitions_seen[anchor], NEIGHBOUR_POOL).indices
        near = [int(j) for j in nearest if int(j) not in used and int(j) != anchor][:NEIGHBOURS_PER_ANCHOR]
        group = [anchor, *near]
        used.update(group)
        groups.append(group)
    rng.shuffle(groups)
    return [sum(groups[start:start + ANCHORS_PER_BATCH], []) for start in range(0, len(groups), ANCHORS_PER_BATCH)]


def _loss(model, tokenizer, questions: list[str], passages: list[str], teacher_questions, teacher_passages):
    import torch
    import torch.nn.functional as F

    student_questions = _pooled(model, tokenizer, questions)
    student_passages = _pooled(model, tokenizer, passages)
    asked, asked_target = student_questions @ student_passages.T, teacher_questions @ teacher_passages.T
    among, among_target = student_passages @ student_passages.T, teacher_passages @ teacher_passages.T
    rows = F.kl_div(torch.log_softmax(asked / TEMPERATURE, -1), torch.softmax(asked_target / TEMPERATURE, -1),
                    reduction="batchmean")
    squared = ((asked - asked_target) ** 2).mean() + ((among - among_target) ** 2).mean()
    return rows + SQUARED_ERROR_WEIGHT * squared


def _pooled(model, tokenizer, texts: list[str]):
    batch = tokenizer(texts, truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="pt")
    return mean_pooled(model(**batch).last_hidden_state, batch["attention_mask"])
