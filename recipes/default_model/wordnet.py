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


def load_wordnet_docs(database: Path, tagged: bool = True) -> list[Doc]:
    """One Doc per common one-sense word: group and package are the word, the summary is a question
    asking what it is, the passage its definition. With tagged=False, the one-sense words the
    sense-tagged corpus never saw instead: rarer words, never trained on (the validation text)."""
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
    counts = _tag_counts(database)
    docs = []
    for word, synsets in sorted(synsets_of.items()):
        if len(synsets) != 1 or word in named or not re.fullmatch(r"[a-z][a-z '-]*[a-z]", word):
            continue
        if (counts.get(word.replace(" ", "_"), 0) >= 1) != tagged:
            continue
        part, definition, _examples = entries[next(iter(synsets))]
        if len(definition.split()) < MIN_DEFINITION_WORDS:
            continue
        # the definition alone: the examples use the word itself, which would make the right
        # answer a lexical match like the traps
        passage = definition[0].upper() + definition[1:] + "."
        docs.append(Doc(f"wordnet:{word}", f"wordnet:{word}", _question(word, part), passage))
    return docs


def _question(word: str, part: str) -> str:
    templates = {"v": _VERB_TEMPLATES, "a": _MODIFIER_TEMPLATES, "s": _MODIFIER_TEMPLATES,
                 "r": _MODIFIER_TEMPLATES}.get(part, TEMPLATES)
    pick = int(hashlib.sha256(word.encode()).hexdigest()[:8], 16) % len(templates)
    article = "an" if word[0] in "aeiou" else "a"
    return templates[pick].format(word=word, a=article)

