"""Content negotiation: which format a body is in, which one to answer in.

Request bodies: msgpack iff the Content-Type is `application/msgpack` or `application/x-msgpack`,
JSON iff `application/json`; parameters such as `charset` are allowed; anything else is 415.
Responses: the Accept header's highest-q acceptable type wins (q=0 means "not acceptable", a more
specific range overrides a wildcard, RFC 9110 12.5.1); ties and `*/*` go to the route's preferred
format; nothing acceptable is 406.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Format(enum.Enum):
    MSGPACK = "msgpack"
    JSON = "json"


MSGPACK_TYPES = ("application/msgpack", "application/x-msgpack")
JSON_TYPE = "application/json"


@dataclass(frozen=True, slots=True)
class Negotiated:
    format: Format
    media_type: str  # the Content-Type to answer with (echoes x-msgpack when that was asked for)


def _media_type(header: str) -> str:
    return header.split(";", 1)[0].strip().lower()


def body_format(content_type: str | None) -> Format | None:
    """The format of a request body by its Content-Type, or None when it is neither (415)."""
    media_type = _media_type(content_type or "")
    if media_type in MSGPACK_TYPES:
        return Format.MSGPACK
    if media_type == JSON_TYPE:
        return Format.JSON
    return None


@dataclass(frozen=True, slots=True)
class _Range:
    type: str
    subtype: str
    q: float

    def specificity(self, media_type: str) -> int:
        """-1 when this range does not match `media_type`; else 0 (*/*), 1 (type/*), 2 (exact)."""
        type_, subtype = media_type.split("/")
        if self.type == "*":
            return 0 if self.subtype == "*" else -1
        if self.type != type_:
            return -1
        if self.subtype == "*":
            return 1
        return 2 if self.subtype == subtype else -1


def _parse_accept(header: str) -> list[_Range]:
    """The ranges of an Accept header; malformed entries are skipped, never an error."""
    ranges = []
    for entry in header.split(","):
        media_type, *params = entry.split(";")
        media_type = media_type.strip().lower()
        if media_type.count("/") != 1:
            continue
        type_, subtype = media_type.split("/")
        if not type_ or not subtype:
            continue
        q = 1.0
        valid = True
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    valid = False
                if not 0.0 <= q <= 1.0:  # also rejects nan
                    valid = False
        if valid:
            ranges.append(_Range(type_, subtype, q))
    return ranges


def _quality(ranges: list[_Range], media_types: tuple[str, ...]) -> tuple[float, str]:
    """A format's q and the alias to answer with: the most specific range naming any of its
    media types decides, so `application/msgpack;q=0` refuses msgpack under either name."""
    best_specificity, q, chosen = -1, 0.0, media_types[0]
    for media_type in media_types:
        for accepted in ranges:
            specificity = accepted.specificity(media_type)
            if specificity < 0:
                continue
            if specificity > best_specificity or (specificity == best_specificity and accepted.q > q):
                best_specificity, q, chosen = specificity, accepted.q, media_type
    return q, chosen


_ALIASES = {Format.MSGPACK: MSGPACK_TYPES, Format.JSON: (JSON_TYPE,)}


def response_format(accept: str | None, prefer: Format) -> Negotiated | None:
    """The response format for an Accept header, or None when nothing we speak is acceptable."""
    order = [prefer, *(other for other in Format if other is not prefer)]  # ties keep the preferred
    ranges = _parse_accept(accept or "")
    if not ranges:  # absent, empty, or nothing parseable: the route's default
        return default_for(prefer)
    best, best_q = None, 0.0
    for candidate in order:
        q, media_type = _quality(ranges, _ALIASES[candidate])
        if q > best_q:
            best, best_q = Negotiated(candidate, media_type), q
    return best


def default_for(prefer: Format) -> Negotiated:
    return Negotiated(prefer, MSGPACK_TYPES[0] if prefer is Format.MSGPACK else JSON_TYPE)
