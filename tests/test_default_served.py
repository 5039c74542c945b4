"""The offline default model, served: `xscore serve` with no --model ranks like a reranker should."""

from __future__ import annotations

import math

import pytest
from servers import RunningServer

from xscore.client import ScorerClient
from xscore.service.models.registry import DEFAULT_NAME, default_spec, load_model

# (query, the obviously relevant document, distractors): written by hand, not from the training data
CASES = [
    ("how do I compress a folder into a zip archive",
     "Use the zip command with -r to recursively add a directory and its files to a compressed archive.",
     ["The weather forecast predicts rain tomorrow afternoon.", "A library for drawing charts in the terminal."]),
    ("web server for static files",
     "A small, fast HTTP server that serves static files from a directory over the web.",
     ["A collection of fonts for rendering Chinese characters.", "Tools for managing disk partitions."]),
    ("python library to parse json",
     "This Python module decodes and encodes JSON documents, with a fast C extension for parsing.",
     ["Firmware for wireless network cards.", "A game where you build cities and manage traffic."]),
    ("spell checker for english documents",
     "Checks the spelling of words in English text files and suggests corrections for misspellings.",
     ["A kernel module for USB webcams.", "Client library for the PostgreSQL database."]),
    ("backup tool with encryption",
     "Creates encrypted, deduplicated backups of your files to local disks or remote servers.",
     ["An image viewer for the desktop.", "Documentation for the Perl programming language."]),
]


@pytest.fixture(scope="module")
def served_default(cache_dir):
    spec = default_spec()
    assert spec.name == DEFAULT_NAME
    model = load_model(spec, variant="fp32", device="cpu", progress=False)
    running = RunningServer({DEFAULT_NAME: model})
    yield running
    running.stop()


def test_default_is_the_trained_model_with_a_sigmoid(served_default):
    with ScorerClient(served_default.address) as client:
        info = client.get_model(DEFAULT_NAME)
        documents = ["Encrypted, deduplicated backups of your files.", "An image viewer."]
        activated = client.score_pairs(["backup tool"], documents, model=DEFAULT_NAME).scores
        raw = client.score_pairs(["backup tool"], documents, model=DEFAULT_NAME, raw_scores=True).scores
    assert info.variant == "fp32" and info.ready and info.max_length == 512
    assert activated == pytest.approx([1 / (1 + math.exp(-logit)) for logit in raw], abs=1e-6)


@pytest.mark.parametrize(("query", "relevant", "distractors"), CASES, ids=[case[0] for case in CASES])
def test_default_ranks_the_obviously_relevant_document_first(served_default, query, relevant, distractors):
    with ScorerClient(served_default.address) as client:
        response = client.score(query, [*distractors, ("relevant", relevant)], model=DEFAULT_NAME)
    assert response.scores[0].item_id == "relevant"
    assert response.scores[0].score > response.scores[1].score
    assert all(0.0 < entry.score < 1.0 for entry in response.scores)


# Sentences about other things: long runs of them are the documents that do not answer the query
_FILLER = ["The weather forecast predicts rain tomorrow afternoon over the northern hills.",
           "Bake the bread for forty minutes until the crust turns golden brown.",
           "The river flows through three countries before it reaches the sea.",
           "Our team won the football match in the last minute of extra time.",
           "Tulips bloom in spring and come in many colours, from red to purple.",
           "The museum shows paintings from the seventeenth century.",
           "Add salt and pepper to taste, then stir the soup gently."]
LONG_QUERY = "backup tool with encryption"
LONG_ANSWER = "Creates encrypted, deduplicated backups of your files to local disks or remote servers."


def _filler(rotation: int, repeats: int) -> str:
    return " ".join((_FILLER[rotation:] + _FILLER[:rotation]) * repeats)


def test_a_long_documents_answer_near_its_end_is_found_only_in_chunk_mode(served_default):
    """A document of about 3,700 tokens whose only relevant sentence ends it, among distractors of
    about 840: cut to its first 512 tokens it is filler like the others and not first; scored in
    windows it ranks first."""
    from xscore.api.schema import LengthPolicy

    items = [_filler(rotation, 8) for rotation in (1, 2, 3, 4)] + [("long", _filler(0, 40) + " " + LONG_ANSWER)]
    with ScorerClient(served_default.address) as client:
        chunked = client.score(LONG_QUERY, items, model=DEFAULT_NAME, lengths=LengthPolicy(long_documents="chunk"))
        truncated = client.score(LONG_QUERY, items, model=DEFAULT_NAME)
    assert list(chunked.usage.windows) == [2, 2, 2, 2, 8] and list(chunked.usage.truncated) == []
    assert chunked.scores[0].item_id == "long" and chunked.scores[0].score > chunked.scores[1].score
    assert truncated.scores[0].item_id != "long" and list(truncated.usage.truncated) == [0, 1, 2, 3, 4]
    cut = next(entry.score for entry in truncated.scores if entry.item_id == "long")
    assert cut < chunked.scores[0].score  # the window with the answer is what lifts it
