"""Request validation, once, for every transport: each message names the field and index."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from xscore.api.errors import ErrorCode, XscoreError, invalid
from xscore.api.schema import Item


@dataclass(frozen=True, slots=True)
class Limits:
    max_items_per_request: int = 1000
    max_text_chars: int = 100_000  # per query or document


def check_query(query: object, limits: Limits, field_name: str = "query") -> str:
    if not isinstance(query, str):
        raise invalid(f"{field_name} must be a string, got {type(query).__name__}", field=field_name)
    if not query.strip():
        raise XscoreError(ErrorCode.UNPROCESSABLE, f"{field_name} is empty", details={"field": field_name})
    return check_text(query, limits, field_name)


def check_items(items: Sequence[Item], limits: Limits) -> list[str]:
    check_count(len(items), limits, "items")
    return [check_text(item.text, limits, f"items[{index}].text") for index, item in enumerate(items)]


def check_documents(documents: Sequence[str], limits: Limits) -> list[str]:
    check_count(len(documents), limits, "documents")
    return [check_text(text, limits, f"documents[{index}]") for index, text in enumerate(documents)]


def check_instruction(instruction: object, limits: Limits) -> str | None:
    """None (the model's default) or a non-empty text within the text limit."""
    if instruction is None:
        return None
    text = check_text(instruction, limits, "instruction")
    if not text.strip():
        raise XscoreError(ErrorCode.UNPROCESSABLE, "instruction is empty: leave it out for the model's default",
                          details={"field": "instruction"})
    return text


def check_count(count: int, limits: Limits, field_name: str) -> None:
    if count == 0:
        raise invalid(f"{field_name} is empty: give at least one", field=field_name)
    if count > limits.max_items_per_request:
        raise XscoreError(
            ErrorCode.TOO_LARGE,
            f"{field_name} has {count} entries, over the limit of {limits.max_items_per_request}",
            details={"field": field_name, "count": count, "limit": limits.max_items_per_request},
        )


def check_text(text: object, limits: Limits, field_name: str) -> str:
    if not isinstance(text, str):
        raise invalid(f"{field_name} must be a string, got {type(text).__name__}", field=field_name)
    if len(text) > limits.max_text_chars:
        raise XscoreError(
            ErrorCode.TOO_LARGE,
            f"{field_name} is {len(text)} characters, over the limit of {limits.max_text_chars}",
            details={"field": field_name, "chars": len(text), "limit": limits.max_text_chars},
        )
    return text


def pair_up(queries: Sequence[str], documents: Sequence[str]) -> tuple[list[str], list[str]]:
    """1:1, 1:N and N:N pairings (the vLLM /score rule), in input order."""
    if len(queries) == 0:
        raise invalid("queries is empty: give at least one", field="queries")
    if len(documents) == 0:
        raise invalid("documents is empty: give at least one", field="documents")
    if len(queries) == 1:
        return [queries[0]] * len(documents), list(documents)
    if len(queries) == len(documents):
        return list(queries), list(documents)
    raise invalid(
        f"Input lengths must be 1:1, 1:N or N:N; got {len(queries)} queries and {len(documents)} documents",
        field="queries",
    )
