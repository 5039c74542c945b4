"""Strict readers for decoded request bodies: a wrong type is a 400 that names the field.

Unknown fields are ignored (clients written for other servers send their own extras); known
fields must have exactly the documented type: a bool is not an integer, 3.0 is not an integer,
null means "not given".
"""

from __future__ import annotations

from typing import Any

from xscore.api.errors import invalid
from xscore.api.schema import LengthPolicy

_TYPE_NAMES = {str: "a string", bool: "a boolean", int: "an integer", dict: "an object", list: "an array"}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {str: "string", bool: "boolean", int: "integer", float: "number", dict: "object",
            list: "array", bytes: "binary"}.get(type(value), type(value).__name__)


def wrong_type(path: str, expected: str, value: Any) -> Exception:
    return invalid(f"{path} must be {expected}, got {_kind(value)}", field=path)


class Fields:
    """The fields of one decoded object, read by name and type; `path` names it in messages."""

    def __init__(self, value: Any, path: str = "body") -> None:
        if not isinstance(value, dict):
            raise wrong_type(path, "an object", value)
        self._value = value
        self.path = path

    def _at(self, key: str) -> str:
        return key if self.path == "body" else f"{self.path}.{key}"

    def has(self, key: str) -> bool:
        return self._value.get(key) is not None

    def raw(self, key: str) -> Any:
        return self._value.get(key)

    def _typed(self, key: str, kind: type, required: bool) -> Any:
        value = self._value.get(key)
        if value is None:
            if required:
                raise invalid(f"{self._at(key)} is required", field=self._at(key))
            return None
        # bool is a subclass of int: an integer field must not take true/false
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise wrong_type(self._at(key), _TYPE_NAMES[kind], value)
        return value

    def string(self, key: str, *, required: bool = False) -> str | None:
        return self._typed(key, str, required)

    def boolean(self, key: str, default: bool) -> bool:
        value = self._typed(key, bool, False)
        return default if value is None else value

    def integer(self, key: str) -> int | None:
        return self._typed(key, int, False)

    def obj(self, key: str, *, required: bool = False) -> Fields | None:
        value = self._typed(key, dict, required)
        return None if value is None else Fields(value, self._at(key))

    def array(self, key: str, *, required: bool = False) -> list[Any] | None:
        return self._typed(key, list, required)


def string_or_strings(value: Any, path: str) -> list[str]:
    """`"text"` or `["a", "b"]` (the vLLM text_1/text_2 shape) as a list of strings."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise wrong_type(path, "a string or an array of strings", value)
    for index, entry in enumerate(value):
        if not isinstance(entry, str):
            raise wrong_type(f"{path}[{index}]", "a string", entry)
    return value


def length_policy(fields: Fields) -> LengthPolicy:
    """The length fields (token caps, long-document mode) where a route carries them; unset: the
    server's default. Ranges are the scorer's to check, so every transport says the same."""
    return LengthPolicy(
        max_tokens_per_doc=fields.integer("max_tokens_per_doc"),
        max_tokens_per_query=fields.integer("max_tokens_per_query"),
        long_documents=fields.string("long_documents"),
        chunk_overlap=fields.integer("chunk_overlap"),
        aggregate=fields.string("aggregate"),
        max_chunks_per_doc=fields.integer("max_chunks_per_doc"),
    )
