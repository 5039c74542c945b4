"""Prompt profiles: how a causal-LM reranker reads a (query, document) pair and answers.

Rerankers such as Qwen3-Reranker are language models asked, in a chat prompt with an
instruction, whether the document meets the query; the score is P("yes") against "no" at the
last position, i.e. sigmoid(logit_yes - logit_no). A profile holds the prompt (prefix, body,
suffix), the default instruction and the two answer tokens. Profiles ship for the known families
and a model directory can bring its own in `xscore_prompt.json` (the same fields).
"""

from __future__ import annotations

import dataclasses
import json
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xscore.api.errors import model_error

PROMPT_FILE = "xscore_prompt.json"
CONFIG_KEY = "xscore_prompt"  # where an export records the profile in its config.json


@dataclass(frozen=True, slots=True)
class PromptProfile:
    """How one family of causal-LM rerankers reads a pair.

    The body is one text, or several parts that the model's own recipe tokenizes one by one and
    joins (so they are tokenized apart here too); the parts hold `{instruction}`, `{query}` and
    `{document}`, the query before the document. `{instruction}` becomes `instruction_template`
    filled with the request's instruction or the default, or nothing when both are empty. The
    score is logit(yes) - logit(no) at the last position, or logit(yes) alone when `no_token` is
    None; its sigmoid is the activated score. Over the max length, the document loses its end and
    the query keeps at most `query_share` of the room that the prompt leaves.
    """

    name: str
    architectures: tuple[str, ...]  # causal-LM classes this profile is known to fit
    prefix: str
    body: str | tuple[str, ...]
    suffix: str
    default_instruction: str
    yes_token: str
    no_token: str | None
    instruction_template: str = "{instruction}"
    query_share: float = 0.5
    # substrings of the model's path or hub id that must appear when its architecture alone would
    # also fit chat models that are not rerankers ("" never matches)
    names: tuple[str, ...] = ()

    @property
    def parts(self) -> tuple[str, ...]:
        return (self.body,) if isinstance(self.body, str) else tuple(self.body)

    def render(self, query: str, document: str, instruction: str | None = None) -> list[str]:
        """The body's parts for one pair, each to be tokenized on its own."""
        return [text for text, _, _ in self.spans(query, document, instruction)]

    def spans(self, query: str, document: str, instruction: str | None = None
              ) -> list[tuple[str, tuple[int, int] | None, tuple[int, int] | None]]:
        """`render`'s parts, each with the characters its query and its document fill (or None)."""
        chosen = instruction or self.default_instruction
        values = {"instruction": self.instruction_template.format(instruction=chosen) if chosen else "",
                  "query": query, "document": document}
        out = []
        for part in self.parts:
            text, found = "", {}
            for literal, name, _, _ in string.Formatter().parse(part):
                text += literal
                if name is not None:
                    found[name] = (len(text), len(text) + len(values[name]))
                    text += values[name]
            out.append((text, found.get("query"), found.get("document")))
        return out

    def text(self, query: str, document: str, instruction: str | None = None) -> str:
        """The body of one pair as one text (prefix and suffix are added as token ids around it)."""
        return "".join(self.render(query, document, instruction))

    def fits(self, model_dir: Path, config: dict[str, Any]) -> bool:
        if not any(name in self.architectures for name in config.get("architectures") or []):
            return False
        where = f"{model_dir} {config.get('_name_or_path', '')}".lower()
        return not self.names or any(name.lower() in where for name in self.names)

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "architectures": list(self.architectures), "names": list(self.names),
                "body": self.body if isinstance(self.body, str) else list(self.body)}

    @classmethod
    def from_dict(cls, value: dict[str, Any], where: str) -> PromptProfile:
        fields = {field.name: field for field in dataclasses.fields(cls)}
        required = {name for name, field in fields.items() if field.default is dataclasses.MISSING}
        missing = sorted(required - set(value))
        if missing:
            raise model_error(f"{where}: a prompt profile needs {', '.join(missing)}")
        given = {key: value[key] for key in fields if key in value}
        given["architectures"] = tuple(value["architectures"])
        given["names"] = tuple(value.get("names", ()))
        if not isinstance(given["body"], str):
            given["body"] = tuple(given["body"])
        profile = cls(**given)
        fields_used = [name for part in profile.parts for _, name, _, _ in string.Formatter().parse(part) if name]
        if fields_used.count("query") != 1 or fields_used.count("document") != 1 or \
                fields_used.index("query") > fields_used.index("document"):
            raise model_error(f"{where}: a prompt body holds {{query}} once, then {{document}} once")
        return profile


QWEN3_RERANKER = PromptProfile(
    name="qwen3-reranker",
    architectures=("Qwen3ForCausalLM",),
    prefix=("<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
            "Instruct provided. Note that the answer can only be \"yes\" or \"no\".<|im_end|>\n<|im_start|>user\n"),
    body="<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}",
    suffix="<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
    default_instruction="Given a web search query, retrieve relevant passages that answer the query",
    yes_token="yes",
    no_token="no",
)
# mixedbread's recipe: the query (after an optional instruction line) and the document are
# tokenized apart, each behind its label, then a task line; "1" against "0" is the relevance.
MXBAI_RERANK_V2 = PromptProfile(
    name="mxbai-rerank-v2",
    architectures=("Qwen2ForCausalLM",),
    prefix="<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
           "<|im_start|>user\n",
    body=("{instruction}query: {query}", "\n", "document: {document}", "\n",
          "You are a search relevance expert who evaluates how well documents match search queries. For each "
          "query-document pair, carefully analyze the semantic relationship between them, then provide your binary "
          "relevance judgment (0 for not relevant, 1 for relevant).\nRelevance:"),
    suffix="<|im_end|>\n<|im_start|>assistant\n",
    default_instruction="",
    yes_token="1",
    no_token="0",
    instruction_template="instruction: {instruction}\n",
    query_share=0.75,
    names=("mxbai-rerank",),
)
# BAAI's FlagLLMReranker: BOS, "A: query", "B: passage" and the question, tokenized apart and
# joined by newlines; the score is the logit of "Yes" alone (its sigmoid with normalize=True).
BGE_RERANKER_V2_GEMMA = PromptProfile(
    name="bge-reranker-v2-gemma",
    architectures=("GemmaForCausalLM",),
    prefix="<bos>",
    body=("A: {query}", "\n", "B: {document}", "\n",
          "Given a query A and a passage B, determine whether the passage contains an answer to the query by "
          "providing a prediction of either 'Yes' or 'No'."),
    suffix="",
    default_instruction="",
    yes_token="Yes",
    no_token=None,
    query_share=0.75,
    names=("bge-reranker-v2-gemma",),
)
PROFILES: tuple[PromptProfile, ...] = (QWEN3_RERANKER, MXBAI_RERANK_V2, BGE_RERANKER_V2_GEMMA)


def prompt_profile(model_dir: Path, config: dict[str, Any]) -> PromptProfile | None:
    """The profile of a causal-LM reranker: its own file, one an export recorded, or a known one."""
    own = model_dir / PROMPT_FILE
    if own.is_file():
        try:
            return PromptProfile.from_dict(json.loads(own.read_text()), str(own))
        except (ValueError, TypeError) as exc:
            raise model_error(f"{own} is not a valid prompt profile: {exc}") from exc
    if isinstance(config.get(CONFIG_KEY), dict):
        return PromptProfile.from_dict(config[CONFIG_KEY], f"{model_dir / 'config.json'} {CONFIG_KEY}")
    for profile in PROFILES:
        if profile.fits(model_dir, config):
            return profile
    return None
