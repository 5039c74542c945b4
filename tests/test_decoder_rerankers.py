"""mxbai-rerank-v2 and bge-reranker-v2-gemma shapes: each served as the classifier it is at its last
token, and scored as its authors' recipe scores it (their parts tokenized apart, their answer
tokens), pair by pair, in mixed-length batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scoring import score_pairs

from benchmarks.families import causal_reranker
from xscore.api.errors import XscoreError
from xscore.api.schema import LengthPolicy
from xscore.service.models.engines import create_engine
from xscore.service.models.export import export
from xscore.service.models.model import LoadedModel
from xscore.service.serving.blocking import BlockingScorer

QUERIES = ["how do I read a file line by line"] * 3 + ["spawn a process and wait"] * 3

MXBAI_TASK = ("You are a search relevance expert who evaluates how well documents match search queries. For each "
              "query-document pair, carefully analyze the semantic relationship between them, then provide your "
              "binary relevance judgment (0 for not relevant, 1 for relevant).\nRelevance:")
GEMMA_PROMPT = ("Given a query A and a passage B, determine whether the passage contains an answer to the query by "
                "providing a prediction of either 'Yes' or 'No'.")


def documents() -> list[str]:
    from xscore.service.models.corpus import docstrings

    texts = [text for _, text in docstrings()]
    return [" ".join(texts[index].split()[:length]) for index, length in zip(range(70, 76), (3, 170, 20, 95, 1, 55))]


def mxbai_recipe(model_dir: Path, queries: list[str], docs: list[str], instruction: str | None = None) -> np.ndarray:
    """mixedbread's recipe, written out in transformers: the query (behind an optional instruction
    line) and the document tokenized apart, "1" against "0" at the last position."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()

    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    prefix = ids("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
                 "<|im_start|>user\n")
    suffix = ids("<|im_end|>\n<|im_start|>assistant\n")
    yes, no = ids("1")[0], ids("0")[0]
    out = []
    with torch.inference_mode():
        for query, document in zip(queries, docs):
            query_text = f"query: {query}" if not instruction else f"instruction: {instruction}\nquery: {query}"
            sequence = prefix + ids(query_text) + ids("\n") + ids(f"document: {document}") + ids("\n") + \
                ids(MXBAI_TASK) + suffix
            last = model(input_ids=torch.tensor([sequence])).logits[0, -1]
            out.append(float(last[yes] - last[no]))
    return np.array(out)


def gemma_recipe(model_dir: Path, queries: list[str], docs: list[str]) -> np.ndarray:
    """BAAI's FlagLLMReranker recipe, written out: BOS, "A: query", "B: passage" and the question
    tokenized apart and joined by newlines; the logit of "Yes" at the last position."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()

    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    yes = ids("Yes")[0]
    out = []
    with torch.inference_mode():
        for query, document in zip(queries, docs):
            sequence = [tokenizer.bos_token_id] + ids(f"A: {query}") + ids("\n") + ids(f"B: {document}") + \
                ids("\n") + ids(GEMMA_PROMPT)
            out.append(float(model(input_ids=torch.tensor([sequence])).logits[0, -1, yes]))
    return np.array(out)


@pytest.fixture(scope="module", params=["mxbai-rerank-v2", "bge-reranker-v2-gemma"])
def built(request, tmp_path_factory, cache_dir) -> tuple[str, Path, LoadedModel]:
    name = request.param
    model_dir = causal_reranker(name).build(tmp_path_factory.mktemp("families") / name)
    exported = export(str(model_dir), ["fp32"], root=cache_dir, progress=False)["fp32"]
    assert exported.manifest.parity["max_abs_diff"] <= 1e-4
    model = LoadedModel.load(name, exported.path, create_engine(exported.path, exported.manifest, device="cpu"))
    return name, model_dir, model


def _recipe(name: str, model_dir: Path, queries: list[str], docs: list[str], instruction: str | None = None):
    return mxbai_recipe(model_dir, queries, docs, instruction) if name == "mxbai-rerank-v2" else \
        gemma_recipe(model_dir, queries, docs)


def test_scores_as_the_authors_recipe_in_mixed_length_batches(built):
    name, model_dir, model = built
    docs = documents()
    expected = _recipe(name, model_dir, QUERIES, docs)
    assert expected.std() > 0.5, "the answer rows must spread the scores, or the comparison says nothing"
    served = score_pairs(model, QUERIES, docs, raw=True).scores
    np.testing.assert_allclose(served, expected, atol=1e-4)
    activated = score_pairs(model, QUERIES, docs).scores
    np.testing.assert_allclose(activated, 1 / (1 + np.exp(-expected)), atol=1e-5)


def test_mxbai_takes_an_instruction_line_only_when_given(built):
    name, model_dir, model = built
    if name != "mxbai-rerank-v2":
        pytest.skip("bge-reranker-v2-gemma's prompt has no instruction")
    docs = documents()
    with BlockingScorer(model) as served:
        instructed = served.score_pairs(QUERIES, docs, raw=True, instruction="find code that reads files").scores
    np.testing.assert_allclose(instructed, mxbai_recipe(model_dir, QUERIES, docs, "find code that reads files"),
                               atol=1e-4)


def test_a_long_document_keeps_the_task_and_the_answer_suffix(built):
    """Over the max length the document loses its end; the task line after it stays."""
    name, _, served_model = built
    model = LoadedModel.load(name, served_model.directory, served_model.engine, max_length=256)
    long_document = " ".join(documents() * 3)
    with BlockingScorer(model) as served:
        truncated = served.score_pairs([QUERIES[0]], [long_document], raw=True)
        chunked = served.score_pairs([QUERIES[0]], [long_document], raw=True,
                                     lengths=LengthPolicy(long_documents="chunk", aggregate="first"))
    assert truncated.usage.truncated == [0] and chunked.usage.windows[0] > 2
    assert chunked.scores[0] == pytest.approx(truncated.scores[0], abs=1e-4)  # the first window is the cut pair
    tokenizer = model.tokenizer
    [document] = tokenizer.encode_documents([QUERIES[0]], [long_document])
    ids = document.windows[0].ids
    assert len(ids) == tokenizer.max_length
    tail = tokenizer._tokenizer.encode(MXBAI_TASK if name == "mxbai-rerank-v2" else GEMMA_PROMPT,
                                       add_special_tokens=False).ids + tokenizer._suffix
    assert ids[-len(tail):] == tail


def test_a_chat_model_of_the_same_architecture_is_not_taken_for_a_reranker(tmp_path, cache_dir):
    model_dir = causal_reranker("mxbai-rerank-v2").build(tmp_path / "qwen2-chat")
    with pytest.raises(XscoreError) as refused:
        export(str(model_dir), ["fp32"], root=cache_dir, progress=False)
    assert "prompt profile" in refused.value.message
