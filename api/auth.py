"""The bearer-token rule both transports apply (HTTP's Authorization header, gRPC's metadata)."""

from __future__ import annotations

import hmac


def token_matches(authorization: str, token: str) -> bool:
    """`authorization` is "Bearer <token>" with the server's token."""
    scheme, _, given = authorization.partition(" ")
    # compare_digest: the time taken must not tell how much of a guess was right
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
