"""Hardened decoding and plain encoding of msgpack and JSON bodies.

A body is untrusted input: every failure to decode is a 400 naming what was wrong, a body that
declares more than the limits allow is a 413, and nothing here can turn into a 500. msgpack's
`Unpacker` limits stop a few header bytes from declaring a huge array or string; the depth walk
bounds nesting for both formats (the decoders would otherwise recurse as deep as the body goes).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import msgpack

from xscore.api.errors import ErrorCode, XscoreError, invalid
from xscore.gateway.media import Format


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    max_body_bytes: int = 16 * 1024 * 1024
    max_depth: int = 16  # SIE requests nest 4 deep (body > items > item > metadata value)
    max_array_len: int = 100_000
    max_map_len: int = 10_000
    max_str_len: int = 4 * 1024 * 1024


def _too_large(message: str) -> XscoreError:
    return XscoreError(ErrorCode.TOO_LARGE, message)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def decode(body: bytes, body_format: Format, limits: DecodeLimits) -> Any:
    if len(body) > limits.max_body_bytes:  # callers enforce this while reading; keep it true here too
        raise _too_large(f"request body is {len(body)} bytes, over the limit of {limits.max_body_bytes}")
    if not body:
        raise invalid("request body is empty")
    value = _decode_msgpack(body, limits) if body_format is Format.MSGPACK else _decode_json(body)
    check_structure(value, limits.max_depth)
    return value


def _decode_msgpack(body: bytes, limits: DecodeLimits) -> Any:
    unpacker = msgpack.Unpacker(
        raw=False,  # str must be UTF-8; invalid bytes fail here
        strict_map_key=True,
        max_buffer_size=max(limits.max_body_bytes, 1),
        max_str_len=limits.max_str_len,
        max_bin_len=limits.max_str_len,
        max_array_len=limits.max_array_len,
        max_map_len=limits.max_map_len,
        max_ext_len=0,  # no extension types in this API
    )
    try:
        unpacker.feed(body)
        value = unpacker.unpack()
    except msgpack.OutOfData:
        raise invalid("request body is truncated msgpack") from None
    except ValueError as error:  # limits, bad UTF-8, bad map keys, unknown type bytes
        if "exceeds max_" in str(error):
            raise _too_large(f"request body is over a decoding limit: {error}") from None
        raise invalid(f"request body is not valid msgpack: {error}") from None
    except (TypeError, msgpack.FormatError, msgpack.StackError, RecursionError) as error:
        raise invalid(f"request body is not valid msgpack: {type(error).__name__}: {error}") from None
    try:
        unpacker.unpack()
    except msgpack.OutOfData:
        return value
    except Exception:  # noqa: BLE001 - anything after the first object is trailing garbage
        pass
    raise invalid("request body has data after the first msgpack object")


def _decode_json(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise invalid(f"request body is not UTF-8: byte {error.start}") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        raise invalid(f"request body is not valid JSON: {error.msg} at line {error.lineno} "
                      f"column {error.colno}") from None
    except ValueError as error:  # NaN / Infinity
        raise invalid(f"request body is not valid JSON: {error}") from None
    except RecursionError:
        raise invalid("request body nests too deeply") from None


def check_structure(value: Any, max_depth: int) -> None:
    """Bounded nesting, and text that is valid Unicode: JSON's `\\ud800` escapes decode to lone
    surrogates, which no tokenizer or encoder takes. Iterative, so the walk cannot overflow the
    stack; the error names the field (`items[3].text`)."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "body")]
    while stack:
        node, depth, path = stack.pop()
        if isinstance(node, str):
            _check_text(node, path)
            continue
        if isinstance(node, dict):
            children = []
            for key, child in node.items():
                if isinstance(key, str):
                    _check_text(key, f"a key of {path}")
                children.append((child, key if path == "body" else f"{path}.{key}"))
        elif isinstance(node, list):
            children = [(child, f"{path}[{index}]") for index, child in enumerate(node)]
        else:
            continue
        if depth > max_depth:
            raise invalid(f"request body nests deeper than {max_depth} levels")
        stack.extend((child, depth + 1, child_path) for child, child_path in children)


def _check_text(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise invalid(f"{path} is not valid Unicode: a lone surrogate at character {error.start}",
                      field=path) from None


def encode(value: Any, body_format: Format) -> bytes:
    if body_format is Format.MSGPACK:
        return msgpack.packb(value, use_bin_type=True)
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def finite(value: float) -> float | None:
    """JSON has no NaN: a non-finite score (a broken model) becomes null rather than a 500."""
    return value if math.isfinite(value) else None
