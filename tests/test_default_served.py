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
