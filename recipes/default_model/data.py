"""Training and evaluation text for the default model: Debian package descriptions.

Every Debian package has a one-line summary (reads like a search query) and a long
description (reads like the passage that answers it). A fresh machine gets both from its
package index (`apt-get update -o Acquire::Languages=en`), so the recipe needs no model hub
and no dataset download. Packages built from the same source package share most of their
wording, which makes them natural hard negatives; we hold out whole source groups so that no
evaluation query, nor its siblings, is ever seen in training.

This module is torch-free: the bi-encoder used for mining is passed in as a callable.
"""

from __future__ import annotations

import hashlib
import random
import re
import subprocess
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

APT_LISTS = Path("/var/lib/apt/lists")
TRANSLATION_FILE = "Translation-en.txt"
PACKAGES_FILE = "Packages.txt"
# A fixed release keeps the recipe reproducible: point releases of a stable suite only touch a
# handful of packages, while mixing in -security/-updates would make the data drift weekly.
SUITE_PATTERN = re.compile(r"_dists_[a-z]+_main_")

MIN_SUMMARY_WORDS = 3
MIN_DESCRIPTION_WORDS = 20
MAX_PASSAGE_CHARS = 2000  # longer descriptions are mostly feature lists; 512 tokens cut them anyway

Embed = Callable[[Sequence[str]], np.ndarray]  # texts -> L2-normalised rows


@dataclass(frozen=True, slots=True)
class Doc:
    package: str
    group: str  # the source package (or the package itself): the unit of the train/eval split
    summary: str  # the query
    passage: str  # the long description


@dataclass(slots=True)
class TrainGroup:
    query: str
    positive: str
    negatives: list[str]
    teacher: list[float] = field(default_factory=list)  # bi-encoder cosine for [positive, *negatives]
    # False: only the teacher's distribution is learnt (its negatives may be right answers too)
    labelled: bool = True


@dataclass(slots=True)
class EvalQuery:
    query: str
    candidates: list[str]
    relevance: list[int]  # 1 for the query's own description, 0 otherwise


# ----------------------------------------------------------------------------- fetching


def fetch_debian_text(data_dir: Path, lists_dir: Path = APT_LISTS) -> tuple[Path, Path]:
    """Decompress the apt Translation-en and Packages indexes into data_dir, running apt if needed."""
    data_dir.mkdir(parents=True, exist_ok=True)
    translation, packages = data_dir / TRANSLATION_FILE, data_dir / PACKAGES_FILE
    if translation.exists() and packages.exists():
        return translation, packages
    if not _lists(lists_dir, "Translation-en"):
        # Most images set Acquire::Languages "none"; ask for the English descriptions explicitly.
        subprocess.run(["apt-get", "update", "-o", "Acquire::Languages=en"], check=True,
                       stdout=subprocess.DEVNULL)
    _cat_lists(_lists(lists_dir, "Translation-en"), translation)
    _cat_lists(_lists(lists_dir, "binary-amd64_Packages"), packages)
    return translation, packages


def _lists(lists_dir: Path, marker: str) -> list[Path]:
    return sorted(p for p in lists_dir.glob(f"*{marker}*")
                  if p.is_file() and SUITE_PATTERN.search(p.name))


def _cat_lists(files: list[Path], out: Path) -> None:
    if not files:
        raise FileNotFoundError(f"no apt list files to read for {out.name}; run apt-get update")
    with out.open("wb") as sink:
        for path in files:
            # apt-helper knows every compression apt uses (lz4, xz, gz, zstd).
            sink.write(subprocess.run(["/usr/lib/apt/apt-helper", "cat-file", str(path)],
                                      check=True, capture_output=True).stdout)


# ----------------------------------------------------------------------------- parsing


def parse_stanzas(text: str) -> Iterable[dict[str, str]]:
    """Deb822 stanzas; continuation lines are kept raw (leading space included) for the caller."""
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        last = ""
        for line in block.splitlines():
            if line.startswith((" ", "\t")) and last:
                fields[last] += "\n" + line
            elif ":" in line:
                last, _, value = line.partition(":")
                fields[last] = value.strip()
        if fields:
            yield fields


def parse_description(raw: str) -> tuple[str, str]:
    """Split a Description-en value into (summary, long description as plain paragraphs)."""
    summary, _, body = raw.partition("\n")
    paragraphs: list[list[str]] = [[]]
    for line in body.splitlines():
        stripped = line.strip()
        if stripped == ".":  # Debian's paragraph separator
            paragraphs.append([])
        elif stripped:
            paragraphs[-1].append(stripped)
    text = "\n".join(" ".join(p) for p in paragraphs if p)
    return summary.strip(), text


def parse_sources(packages_text: str) -> dict[str, str]:
    """Binary package -> source package ('Source: foo (1.2-3)' means foo)."""
    sources: dict[str, str] = {}
    for fields in parse_stanzas(packages_text):
        name = fields.get("Package")
        if name:
            sources[name] = fields.get("Source", name).split(" ", 1)[0] or name
    return sources


def load_docs(translation_text: str, sources: dict[str, str]) -> list[Doc]:
    """Usable (summary, passage) pairs, one per distinct passage, sorted by package name."""
    docs: dict[str, Doc] = {}
    seen_passages: set[str] = set()
    for fields in parse_stanzas(translation_text):
        name, raw = fields.get("Package"), fields.get("Description-en")
        if not name or not raw or name in docs:
            continue
        summary, passage = parse_description(raw)
        if len(summary.split()) < MIN_SUMMARY_WORDS or len(passage.split()) < MIN_DESCRIPTION_WORDS:
            continue
        passage = passage[:MAX_PASSAGE_CHARS]
        # Two packages with one passage would make one of them a "negative" identical to the
        # positive: keep only the first (the file is sorted by name, so this is deterministic).
        if passage in seen_passages:
            continue
        seen_passages.add(passage)
        docs[name] = Doc(name, sources.get(name, name), summary, passage)
    return sorted(docs.values(), key=lambda d: d.package)


# ----------------------------------------------------------------------------- splitting


def is_heldout(group: str, eval_percent: float) -> bool:
    # A content hash, not Python's salted hash(): the split must be the same on every machine.
    bucket = int(hashlib.sha256(group.encode()).hexdigest()[:8], 16) % 10_000
    return bucket < eval_percent * 100


def split_docs(docs: Sequence[Doc], eval_percent: float) -> tuple[list[Doc], list[Doc]]:
    train = [d for d in docs if not is_heldout(d.group, eval_percent)]
    heldout = [d for d in docs if is_heldout(d.group, eval_percent)]
    return train, heldout


def without_heldout_passages(train: Sequence[Doc], heldout: Sequence[Doc]) -> list[Doc]:
    """train minus the docs whose passage is also a held-out doc's: WordNet synonyms share one
    definition, so a trained synonym would teach the answer of a held-out query."""
    banned = {d.passage for d in heldout}
    return [d for d in train if d.passage not in banned]


def name_stem(package: str) -> str:
    # lib prefixes and -dev/-doc suffixes aside, siblings usually share the first name token.
    return re.split(r"[-.+0-9]", package.removeprefix("lib").removeprefix("python3-"), maxsplit=1)[0]


def sibling_index(docs: Sequence[Doc]) -> dict[str, list[int]]:
    index: dict[str, list[int]] = defaultdict(list)
    for i, doc in enumerate(docs):
        index["g:" + doc.group].append(i)
        stem = name_stem(doc.package)
        if len(stem) >= 3:
            index["s:" + stem].append(i)
    return index


def siblings(i: int, docs: Sequence[Doc], index: dict[str, list[int]]) -> list[int]:
    doc = docs[i]
    found = index.get("g:" + doc.group, []) + index.get("s:" + name_stem(doc.package), [])
    return list(dict.fromkeys(j for j in found if j != i))


# ----------------------------------------------------------------------------- BM25


class Bm25:
    """bm25s over a passage list; returns candidate indices (the lexical hard negatives)."""

    def __init__(self, passages: Sequence[str]) -> None:
        import bm25s

        self._bm25s = bm25s
        self._retriever = bm25s.BM25()
        self._retriever.index(bm25s.tokenize(list(passages), stopwords="en", show_progress=False),
                              show_progress=False)
        self._size = len(passages)

    def top(self, queries: Sequence[str], k: int) -> np.ndarray:
        ids, _ = self._retrieve(queries, k)
        return ids

    def hits(self, queries: Sequence[str], k: int) -> list[list[int]]:
        """Up to k passages per query that share a term with it, best first: a query whose terms
        the passages lack gets fewer (`top` fills its k with passages scored 0)."""
        ids, scores = self._retrieve(queries, k)
        return [[int(j) for j, score in zip(row, row_scores) if score > 0] for row, row_scores in zip(ids, scores)]

    def _retrieve(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        tokens = self._bm25s.tokenize(list(queries), stopwords="en", show_progress=False)
        ids, scores = self._retriever.retrieve(tokens, k=min(k, self._size), show_progress=False, n_threads=1)
        return np.asarray(ids), np.asarray(scores)

    def scores(self, query: str) -> np.ndarray:
        """BM25 of one query against every indexed passage (zeros if no query term survives)."""
        tokens = self._bm25s.tokenize([query], stopwords="en", return_ids=False,
                                      show_progress=False)[0]
        known = [t for t in tokens if t in self._retriever.vocab_dict]
        if not known:
            return np.zeros(self._size, dtype=np.float32)
        return np.asarray(self._retriever.get_scores(known), dtype=np.float32)


def _interleave(*lists: Iterable[int]) -> list[int]:
    out: list[int] = []
    for group in zip(*lists, strict=False):
        out.extend(group)
    return list(dict.fromkeys(out))


# ----------------------------------------------------------------------------- train groups

_SPARE_HITS = 8


def make_train_groups(docs: Sequence[Doc], n_queries: int, n_negatives: int, seed: int,
                      embed: Embed | None = None, dense: Embed | None = None,
                      also_right: Mapping[str, frozenset[str]] | None = None,
                      mine_with: Callable[[Doc], str] | None = None) -> list[TrainGroup]:
    """One group per sampled query: its passage plus siblings and BM25 negatives.

    Half the negatives are siblings where a package has them (they teach the fine
    distinctions: '-data', '-doc', '-dev'), the rest BM25 top hits (lexical traps). With
    `dense`, half are instead the bi-encoder's nearest passages (semantic near-misses: the
    definition of a neighbouring word), interleaved with the BM25 hits. With `embed`, the
    bi-encoder's cosines are attached as a soft distillation target. With `also_right`, a
    negative is never the query's own passage (synonyms share a definition) nor one of
    `also_right[doc.group]` (the other senses of a word); without it, never the query's own doc
    (recipe 4 as it was built). With `mine_with`, BM25 mines with that text of each query's doc
    (a WordNet word alone, without its question's "what does ... mean") and keeps only passages
    that share a term with it; random passages fill the rest. Without it, the query itself (recipes
    up to 7).
    """
    rng = random.Random(seed)
    picked = sorted(rng.sample(range(len(docs)), min(n_queries, len(docs))))
    index = sibling_index(docs)
    bm25 = Bm25([d.passage for d in docs])
    # spare hits for the ones that are right answers after all
    spare = _SPARE_HITS if also_right is not None else 0
    if mine_with is None:
        hits = bm25.top([docs[i].summary for i in picked], k=n_negatives + 1 + spare)
    else:
        hits = bm25.hits([mine_with(docs[i]) for i in picked], k=n_negatives + 1 + spare)
    near = _nearest(dense, docs, picked, n_negatives + 1) if dense is not None else None
    groups: list[TrainGroup] = []
    for row, i in enumerate(picked):
        wrong = _wrong_answers(docs, i, also_right)
        sib = [j for j in siblings(i, docs, index) if wrong(j)]
        rng.shuffle(sib)
        lexical = [int(j) for j in hits[row] if wrong(int(j))]
        if near is not None:
            lexical = _interleave([j for j in near[row] if wrong(j)], lexical)
        chosen = list(dict.fromkeys(sib[: n_negatives // 2] + lexical))[:n_negatives]
        while len(chosen) < n_negatives:  # pad with random passages (rare: tiny corpora)
            j = rng.randrange(len(docs))
            if wrong(j) and j not in chosen:
                chosen.append(j)
        groups.append(TrainGroup(docs[i].summary, docs[i].passage,
                                 [docs[j].passage for j in chosen]))
    if embed is not None:
        attach_teacher(groups, embed)
    return groups


def _wrong_answers(docs: Sequence[Doc], i: int,
                   also_right: Mapping[str, frozenset[str]] | None) -> Callable[[int], bool]:
    """Whether docs[j] may be a negative of docs[i]'s query."""
    if also_right is None:
        return lambda j: j != i
    right = {docs[i].passage, *also_right.get(docs[i].group, ())}
    return lambda j: docs[j].passage not in right


def make_neighbour_groups(docs: Sequence[Doc], n_queries: int, n_negatives: int, seed: int, embed: Embed,
                          also_right: Mapping[str, frozenset[str]] | None = None,
                          teacher: Embed | None = None) -> list[TrainGroup]:
    """One unlabelled group per sampled query: its passage and the bi-encoder's nearest other
    passages, with the teacher's cosines (the bi-encoder's where no teacher is given) as the only
    target. Near neighbours are often right answers too (a neighbouring word's definition), so no
    label says they are wrong; what the student learns from them is how the teacher orders close
    meanings, which BM25's traps never show it."""
    rng = random.Random(seed)
    picked = sorted(rng.sample(range(len(docs)), min(n_queries, len(docs))))
    near = _nearest(embed, docs, picked, n_negatives + 1 + _SPARE_HITS)
    groups = []
    for row, i in enumerate(picked):
        wrong = _wrong_answers(docs, i, also_right or {})  # by passage: synonyms share one
        others = [j for j in near[row] if wrong(j)][:n_negatives]
        groups.append(TrainGroup(docs[i].summary, docs[i].passage, [docs[j].passage for j in others],
                                 labelled=False))
    attach_teacher(groups, teacher or embed)
    return groups


def _nearest(embed: Embed, docs: Sequence[Doc], picked: Sequence[int], k: int) -> list[list[int]]:
    """For each picked query, the k passages of docs nearest to it by the bi-encoder."""
    pool = embed([d.passage for d in docs])
    sims = embed([docs[i].summary for i in picked]) @ pool.T
    return [[int(j) for j in np.argsort(-row, kind="stable")[:k]] for row in sims]


def attach_teacher(groups: list[TrainGroup], embed: Embed) -> None:
    queries = embed([g.query for g in groups])
    passages = embed([p for g in groups for p in [g.positive, *g.negatives]])
    width = 1 + len(groups[0].negatives)
    for row, group in enumerate(groups):
        block = passages[row * width:(row + 1) * width]
        group.teacher = [float(x) for x in block @ queries[row]]


# ----------------------------------------------------------------------------- eval set


def make_eval_set(heldout: Sequence[Doc], corpus: Sequence[Doc], n_queries: int,
                  n_candidates: int, seed: int, embed: Embed | None = None) -> list[EvalQuery]:
    """Held-out queries, each with its passage among hard candidates from three miners.

    BM25 mines the whole corpus (train passages included: their text is fair as a distractor
    and no held-out query has been trained on). The bi-encoder mines the held-out passages
    (embedding the whole corpus would cost minutes on 2 cores). Siblings come first. Mixing
    miners keeps any one baseline from being handicapped by its own negatives.
    """
    rng = random.Random(seed + 1)
    picked = sorted(rng.sample(range(len(heldout)), min(n_queries, len(heldout))))
    queries = [heldout[i].summary for i in picked]
    position = {d.passage: n for n, d in enumerate(corpus)}
    lexical = Bm25([d.passage for d in corpus]).top(queries, k=n_candidates)
    if embed is not None:
        pool = embed([d.passage for d in heldout])
        sims = embed(queries) @ pool.T
        dense = [[position[heldout[int(j)].passage] for j in np.argsort(-row, kind="stable")[:n_candidates]]
                 for row in sims]
    else:
        dense = [[] for _ in picked]
    index = sibling_index(corpus)
    out: list[EvalQuery] = []
    for row, i in enumerate(picked):
        target = position[heldout[i].passage]
        sib = siblings(target, corpus, index)[: n_candidates // 4]
        mined = _interleave([int(j) for j in lexical[row]], dense[row]) if dense[row] \
            else [int(j) for j in lexical[row]]
        ids = list(dict.fromkeys(j for j in [*sib, *mined] if j != target))[: n_candidates - 1]
        ids.insert(rng.randrange(len(ids) + 1), target)  # no position bias for ties
        out.append(EvalQuery(queries[row], [corpus[j].passage for j in ids],
                             [int(j == target) for j in ids]))
    return out
