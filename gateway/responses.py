"""Responses in the negotiated format, and the timing headers every scoring response carries."""

from __future__ import annotations

from typing import Any

from starlette import status
from starlette.responses import Response

from xscore.api.http import TIMING_HEADERS
from xscore.api.schema import Timing
from xscore.gateway.codec import encode
from xscore.gateway.media import Negotiated


class EncodedResponse(Response):
    """A msgpack or JSON body, whichever negotiation chose."""

    def __init__(self, content: Any, negotiated: Negotiated, status_code: int = status.HTTP_200_OK,
                 headers: dict[str, str] | None = None) -> None:
        self.negotiated = negotiated
        super().__init__(content, status_code, headers, negotiated.media_type)

    def render(self, content: Any) -> bytes:
        return encode(content, self.negotiated.format)


def _ms(value: float) -> str:
    return f"{value:.3f}"


def timing_headers(timing: Timing) -> dict[str, str]:
    return {header: _ms(getattr(timing, field)) for field, header in TIMING_HEADERS.items()}
