"""General-English text for the default model: WordNet 3.0, from Debian's `wordnet-base` package.

A common English word's definition is the passage that answers "what is a <word>"; the
passages that merely mention the word (the act of crossing a *river* by wading) are the lexical
traps a cross-encoder should see through and BM25 cannot. Only words with one sense (one synset
across every part of speech) and seen in WordNet's sense-tagged corpus (a tag count of at least
one: words people actually use) become queries, so every query has exactly one right answer.

A fresh machine gets the package from its Debian mirror (`apt-get download`, no root needed);
the version is pinned and the data files' hashes go into the model card. WordNet's license
permits use, copy, modification and distribution with its notice (recorded in the card).
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections import defaultdict
from pathlib import Path

from xscore.recipes.default_model.data import Doc

PACKAGE = "wordnet-base"
VERSION = "1:3.0-37"
LICENSE = ("WordNet 3.0 license (Princeton University): use, copy, modify and distribute for any "
           "purpose without fee, with its copyright notice and disclaimer")
PARTS = {"noun": "n", "verb": "v", "adj": "a", "adv": "r"}
MIN_DEFINITION_WORDS = 5
# A word of several senses asks for its first one only when people mean that one: of its
# sense-tagged occurrences (every part of speech), at least this share and this many are of it.
DOMINANT_SHARE = 0.75
DOMINANT_MIN_TAGS = 2
_SENSE_TYPES = {"1": "n", "2": "v", "3": "a", "4": "r", "5": "a"}  # a sense key's synset type
# The question forms of a "what is it" query; one per word, chosen by a content hash.
TEMPLATES = ("what is {a} {word}", "what does {word} mean", "meaning of {word}", "define {word}",
             "{word} definition", "what is meant by {word}")
_VERB_TEMPLATES = ("what does it mean to {word}", "meaning of the verb {word}", "define {word}",
                   "what does {word} mean")
_MODIFIER_TEMPLATES = ("what does {word} mean", "meaning of {word}", "define {word}",
                       "what is meant by {word}")


def fetch_wordnet(data_dir: Path) -> Path:
    """The WordNet database directory, extracted from the pinned Debian package into data_dir."""
    target = data_dir / "wordnet"
    database = target / "usr" / "share" / "wordnet"
    if (database / "data.noun").is_file():
        return database
    data_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", f"{PACKAGE}={VERSION}"], cwd=data_dir, check=True,
                   stdout=subprocess.DEVNULL)
    deb = next(data_dir.glob(f"{PACKAGE}_*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(deb), str(target)], check=True)
    return database


def data_hashes(database: Path) -> dict[str, str]:
    return {f"data.{part}": hashlib.sha256((database / f"data.{part}").read_bytes()).hexdigest()
            for part in PARTS}


def parse_data_line(line: str) -> tuple[str, list[str], str, list[str]] | None:
    """(synset offset + part, its words, its definition, its examples) from a data.* line."""
    if line.startswith(" ") or "|" not in line:
        return None  # the license header
    head, _, gloss = line.partition("|")
    fields = head.split()
    offset, part, count = fields[0], fields[2], int(fields[3], 16)
    words = [fields[4 + 2 * n] for n in range(count)]
    pieces = [piece.strip() for piece in gloss.strip().split(";")]
    definition = "; ".join(piece for piece in pieces if not piece.startswith('"'))
    examples = [piece.strip('"') for piece in pieces if piece.startswith('"')]
    return f"{offset}{part}", words, definition, examples


def _word(raw: str) -> str:
    # adjectives carry a syntactic marker: "galore(ip)"
    return re.sub(r"\([a-z]+\)$", "", raw).replace("_", " ")


def _tag_counts(database: Path) -> dict[str, int]:
    """A lemma's sense-tagged corpus count, summed over its parts of speech (index.* files)."""
    counts: dict[str, int] = defaultdict(int)
    for part in PARTS:
        for line in (database / f"index.{part}").read_text(encoding="utf-8").splitlines():
            if line.startswith(" "):
                continue
            fields = line.split()
            pointers = int(fields[3])
            counts[fields[0]] += int(fields[5 + pointers])
    return counts


def _read_synsets(database: Path) -> tuple[dict[str, set[str]], dict[str, tuple[str, str, list[str]]], set[str]]:
    """(word -> its synsets, synset -> (part, definition, examples), the words that are names)."""
    synsets_of: dict[str, set[str]] = defaultdict(set)
    entries: dict[str, tuple[str, str, list[str]]] = {}
    named: set[str] = set()
    for name, part in PARTS.items():
        for line in (database / f"data.{name}").read_text(encoding="utf-8").splitlines():
            parsed = parse_data_line(line)
            if parsed is None:
                continue
            synset, words, definition, examples = parsed
            entries[synset] = (part, definition, examples)
            for word in words:
                synsets_of[_word(word).lower()].add(synset)
                if not word.islower():
                    named.add(_word(word).lower())  # a name (Lysander, Paris): not a word to define
    return synsets_of, entries, named


def _is_definable(word: str, named: set[str]) -> bool:
    return word not in named and re.fullmatch(r"[a-z][a-z '-]*[a-z]", word) is not None


def _passage(definition: str) -> str:
    # the definition alone: the examples use the word itself, which would make the right answer
    # a lexical match like the traps
    return definition[0].upper() + definition[1:] + "."


def load_wordnet_docs(database: Path, tagged: bool = True) -> list[Doc]:
    """One Doc per common one-sense word: group and package are the word, the summary is a question
    asking what it is, the passage its definition. With tagged=False, the one-sense words the
    sense-tagged corpus never saw instead: rarer words, never trained on (the validation text)."""
    synsets_of, entries, named = _read_synsets(database)
    counts = _tag_counts(database)
    docs = []
    for word, synsets in sorted(synsets_of.items()):
        if len(synsets) != 1 or not _is_definable(word, named):
            continue
        if (counts.get(word.replace(" ", "_"), 0) >= 1) != tagged:
            continue
        part, definition, _examples = entries[next(iter(synsets))]
        if len(definition.split()) < MIN_DEFINITION_WORDS:
            continue
        docs.append(Doc(f"wordnet:{word}", f"wordnet:{word}", _question(word, part), _passage(definition)))
    return docs


def definitions(database: Path) -> list[str]:
    """Every synset's definition as a passage (of MIN_DEFINITION_WORDS words or more), whatever
    its words: text for teaching the body word meanings (`body.py`), not queries."""
    _, entries, _ = _read_synsets(database)
    return [_passage(definition) for _part, definition, _examples in entries.values()
            if len(definition.split()) >= MIN_DEFINITION_WORDS]


def load_dominant_sense_docs(database: Path) -> tuple[list[Doc], dict[str, frozenset[str]]]:
    """One Doc per word of several senses whose first sense is the one people mean (the sense
    tags, `cntlist.rev`: DOMINANT_SHARE of its tagged uses and DOMINANT_MIN_TAGS of them): the
    question asks what it is, the passage that sense's definition. Beside them, for each Doc's
    group, the definitions of its other senses: right answers too, never to be its negatives."""
    synsets_of, entries, named = _read_synsets(database)
    first_sense = _first_senses(database)
    tags: dict[str, dict[tuple[str, int], int]] = defaultdict(lambda: defaultdict(int))
    for line in (database / "cntlist.rev").read_text(encoding="utf-8").splitlines():
        key, sense, count = line.split()
        lemma, _, lex = key.partition("%")
        tags[lemma][(_SENSE_TYPES[lex[0]], int(sense))] += int(count)
    docs: list[Doc] = []
    other_senses: dict[str, frozenset[str]] = {}
    for word, synsets in sorted(synsets_of.items()):
        lemma = word.replace(" ", "_")
        if len(synsets) < 2 or not _is_definable(word, named) or lemma not in tags:
            continue
        uses = tags[lemma]
        (part, sense), top = max(sorted(uses.items()), key=lambda item: item[1])
        if sense != 1 or top < DOMINANT_MIN_TAGS or top < DOMINANT_SHARE * sum(uses.values()):
            continue
        synset = first_sense.get((lemma, part), "")
        if part == "a" and synset not in synsets:
            synset = synset[:-1] + "s"  # an adjective satellite's synset
        if synset not in synsets:
            continue
        definition = entries[synset][1]
        if len(definition.split()) < MIN_DEFINITION_WORDS:
            continue
        group = f"wordnet:{word}"
        docs.append(Doc(group, group, _question(word, part), _passage(definition)))
        other_senses[group] = frozenset(_passage(entries[s][1]) for s in synsets if s != synset)
    return docs, other_senses


def _first_senses(database: Path) -> dict[tuple[str, str], str]:
    """(lemma, part) -> the synset of its first (most frequent) sense, from the index.* files,
    which list a lemma's synsets in the order of their tag counts."""
    first: dict[tuple[str, str], str] = {}
    for name, part in PARTS.items():
        for line in (database / f"index.{name}").read_text(encoding="utf-8").splitlines():
            if line.startswith(" "):
                continue
            fields = line.split()
            synset_count, pointers = int(fields[2]), int(fields[3])
            offsets = fields[6 + pointers:6 + pointers + synset_count]
            first[(fields[0], part)] = f"{offsets[0]}{part}"
    return first


def headword(doc: Doc) -> str:
    """The word a WordNet Doc defines: what its negatives are mined with, since the question's own
    words ("what", "does", "mean") are not BM25 stopwords and match every definition that has them."""
    return doc.group.removeprefix("wordnet:")


def _question(word: str, part: str) -> str:
    templates = {"v": _VERB_TEMPLATES, "a": _MODIFIER_TEMPLATES, "s": _MODIFIER_TEMPLATES,
                 "r": _MODIFIER_TEMPLATES}.get(part, TEMPLATES)
    pick = int(hashlib.sha256(word.encode()).hexdigest()[:8], 16) % len(templates)
    article = "an" if word[0] in "aeiou" else "a"
    return templates[pick].format(word=word, a=article)

