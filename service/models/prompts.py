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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xscore.api.errors import model_error

PROMPT_FILE = "xscore_prompt.json"
CONFIG_KEY = "xscore_prompt"  # where an export records the profile in its config.json


@dataclass(frozen=True, slots=True)
class PromptProfile:
    name: str
    architectures: tuple[str, ...]  # causal-LM classes this profile is known to fit
    prefix: str
    body: str  # formatted with {instruction}, {query} and {document}
    suffix: str
    default_instruction: str
    yes_token: str
    no_token: str

    def text(self, query: str, document: str, instruction: str | None = None) -> str:
        """The body of one pair (prefix and suffix are added as token ids around it)."""
        return self.body.format(instruction=instruction or self.default_instruction, query=query,
                                document=document)

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "architectures": list(self.architectures)}

    @classmethod
    def from_dict(cls, value: dict[str, Any], where: str) -> PromptProfile:
        fields = {field.name for field in dataclasses.fields(cls)}
        missing = sorted(fields - set(value))
        if missing:
            raise model_error(f"{where}: a prompt profile needs {', '.join(missing)}")
        return cls(**{**{key: value[key] for key in fields}, "architectures": tuple(value["architectures"])})


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
PROFILES: tuple[PromptProfile, ...] = (QWEN3_RERANKER,)


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
    architectures = config.get("architectures") or []
    for profile in PROFILES:
        if any(name in profile.architectures for name in architectures):
            return profile
    return None
