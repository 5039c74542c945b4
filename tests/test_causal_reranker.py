"""A causal-LM reranker (Qwen3-Reranker's shape) served as the classifier it is at its last token:
the prompt around each pair, logit("yes") - logit("no"), per-request instructions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scoring import score_pairs

from benchmarks.families import causal_reranker
from xscore.service.models.engines import create_engine
from xscore.service.models.export import export
from xscore.service.models.model import LoadedModel
from xscore.service.models.prompts import QWEN3_RERANKER
from xscore.service.serving.blocking import BlockingScorer

QUERIES = ["how do I read a file line by line"] * 3 + ["spawn a process and wait"] * 3


@pytest.fixture(scope="module")
def reranker_dir(tmp_path_factory) -> Path:
    return causal_reranker().build(tmp_path_factory.mktemp("families") / "qwen3-reranker")


@pytest.fixture(scope="module")
def reranker(reranker_dir, cache_dir) -> LoadedModel:
    exported = export(str(reranker_dir), ["fp32"], root=cache_dir, progress=False)["fp32"]
    return LoadedModel.load("reranker", exported.path, create_engine(exported.path, exported.manifest, device="cpu"))


def documents() -> list[str]:
    from xscore.service.models.corpus import docstrings

    texts = [text for _, text in docstrings()]
    return [" ".join(texts[index].split()[:length]) for index, length in zip(range(60, 66), (4, 180, 25, 90, 2, 60))]


def reference(model_dir: Path, queries: list[str], docs: list[str], instruction: str | None = None) -> np.ndarray:
    """The reranker's own recipe in transformers: prompt, one pair at a time, last-token logits."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    prefix = tokenizer.encode(QWEN3_RERANKER.prefix, add_special_tokens=False)
    suffix = tokenizer.encode(QWEN3_RERANKER.suffix, add_special_tokens=False)
    yes, no = tokenizer.convert_tokens_to_ids("yes"), tokenizer.convert_tokens_to_ids("no")
    instruction = instruction or "Given a web search query, retrieve relevant passages that answer the query"
    out = []
    with torch.inference_mode():
        for query, document in zip(queries, docs):
            body = tokenizer.encode(f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}",
                                    add_special_tokens=False)
            last = model(input_ids=torch.tensor([prefix + body + suffix])).logits[0, -1]
            out.append(float(last[yes] - last[no]))
    return np.array(out)


def test_a_causal_reranker_scores_as_its_own_recipe_in_mixed_length_batches(reranker, reranker_dir):
    docs = documents()
    expected = reference(reranker_dir, QUERIES, docs)
    assert expected.std() > 0.5, "the answer rows must spread the logits, or the comparison says nothing"
    served = score_pairs(reranker, QUERIES, docs, raw=True, max_tokens=1024).scores
    np.testing.assert_allclose(served, expected, atol=1e-4)
    activated = score_pairs(reranker, QUERIES, docs).scores  # P(yes) against no
    np.testing.assert_allclose(activated, 1 / (1 + np.exp(-expected)), atol=1e-5)
    assert reranker.tokenizer.max_length == 4096  # a decoder's default cap


def test_an_instruction_changes_the_prompt_and_the_scores(reranker, reranker_dir):
    docs = documents()
    instruction = "Given a question about Python, find the passage of its documentation that answers it"
    with BlockingScorer(reranker) as scorer:
        default = np.array(scorer.score_pairs(QUERIES, docs, raw=True).scores)
        instructed = np.array(scorer.score_pairs(QUERIES, docs, raw=True, instruction=instruction).scores)
    np.testing.assert_allclose(instructed, reference(reranker_dir, QUERIES, docs, instruction), atol=1e-4)
    assert np.abs(instructed - default).max() > 1e-3


def test_an_over_long_document_loses_its_tail_and_keeps_the_question(reranker):
    long = " ".join(["word"] * 6000)
    result = score_pairs(reranker, ["q"], [long])
    assert result.truncated == [0]
    pair = reranker.tokenizer.encode(["q"], [long])[0]
    suffix = reranker.tokenizer.encode(["q"], ["short"])[0].ids[-5:]
    assert pair.length == reranker.tokenizer.max_length and pair.ids[-5:] == suffix


def test_the_instruction_reaches_the_prompt_over_http_and_grpc(reranker, reranker_dir):
    """The SIE body's `instruction`, Cohere's and vLLM's extension field, and the gRPC field."""
    import httpx
    from servers import RunningServer

    from xscore.client import ScorerClient
    from xscore.service.serving.runtime import ServeConfig

    docs = documents()[:3]
    instruction = "Find the passage that explains the standard library function"
    expected = 1 / (1 + np.exp(-reference(reranker_dir, ["q"] * 3, docs, instruction)))
    running = RunningServer({"reranker": reranker}, ServeConfig(grpc_port=0, http_port=0))
    try:
        http = f"http://{running.runtime.addresses['http']}"
        native = httpx.post(f"{http}/v1/score/reranker", headers={"Accept": "application/json"},
                            json={"query": {"text": "q"}, "items": [{"text": d} for d in docs],
                                  "instruction": instruction}).json()
        by_index = sorted(native["scores"], key=lambda entry: entry["index"])
        np.testing.assert_allclose([entry["score"] for entry in by_index], expected, atol=1e-5)
        rerank = httpx.post(f"{http}/v1/rerank", json={"query": "q", "documents": docs, "instruction": instruction}).json()
        np.testing.assert_allclose([r["relevance_score"] for r in sorted(rerank["results"], key=lambda r: r["index"])],
                                   expected, atol=1e-5)
        with ScorerClient(running.address) as client:
            pairs = client.score_pairs(["q"], docs, model="reranker", instruction=instruction).scores
        np.testing.assert_allclose(pairs, expected, atol=1e-5)
    finally:
        running.stop()


def test_a_long_document_is_windowed_with_the_whole_prompt_around_each_window(reranker_dir, cache_dir):
    from xscore.api.schema import LengthPolicy
    from xscore.service.models.tokenization import PairTokenizer

    exported = export(str(reranker_dir), ["fp32"], root=cache_dir, progress=False)["fp32"]
    tokenizer = PairTokenizer.from_dir(exported.path, max_length=256)
    prefix = tokenizer._prefix
    suffix = tokenizer._suffix
    long_document = " ".join(documents() * 8)
    policy = LengthPolicy(long_documents="chunk", chunk_overlap=4)
    [chunked] = tokenizer.encode_documents([QUERIES[0]], [long_document], lengths=policy, instruction="find it")
    assert len(chunked.windows) > 4 and not chunked.truncated
    # the document's tokens as the whole body tokenizes them (the first may carry the space before it)
    [(body_text, _, (doc_start, doc_end))] = QWEN3_RERANKER.spans(QUERIES[0], long_document, "find it")
    body = tokenizer._tokenizer.encode(body_text, add_special_tokens=False)
    doc_ids = [token for token, (start, end) in zip(body.ids, body.offsets) if end > doc_start and start < doc_end]
    head = body.ids[: len(body.ids) - len(doc_ids)]
    room = 256 - len(prefix) - len(suffix) - len(head)
    for position, window in enumerate(chunked.windows):
        assert window.length <= 256
        assert window.ids[: len(prefix)] == prefix and window.ids[-len(suffix):] == suffix
        start = position * (room - 4)
        assert window.ids[len(prefix): -len(suffix)] == head + doc_ids[start: start + room]
    assert tokenizer._tokenizer.decode(head).startswith("<Instruct>: find it")
    assert (len(chunked.windows) - 1) * (room - 4) + room >= len(doc_ids) > (len(chunked.windows) - 1) * (room - 4)
    # a document that fits is one window: the whole body's encoding inside the prompt
    short = tokenizer.encode_documents([QUERIES[0]], ["tiny doc"], lengths=policy)[0]
    whole = tokenizer._tokenizer.encode(QWEN3_RERANKER.text(QUERIES[0], "tiny doc"), add_special_tokens=False).ids
    assert [window.ids for window in short.windows] == [prefix + whole + suffix]


def test_token_caps_cut_a_prompted_pairs_query_and_document(reranker, reranker_dir):
    from xscore.api.schema import LengthPolicy

    with BlockingScorer(reranker) as served:
        capped = served.score_pairs(["a fairly long query about reading files line by line"], ["word " * 50],
                                    lengths=LengthPolicy(max_tokens_per_doc=5, max_tokens_per_query=3), raw=True)
        whole = served.score_pairs(["a fairly long query about reading files line by line"], ["word " * 50], raw=True)
    assert capped.usage.truncated == [0] and whole.usage.truncated == []
    assert capped.usage.tokens < whole.usage.tokens - 40
