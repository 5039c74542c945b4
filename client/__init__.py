"""xscore clients: `ScorerClient` (blocking) and `AsyncScorerClient` (asyncio) over gRPC."""

from xscore.client.grpc_client import (
    AsyncScorerClient,
    RetryPolicy,
    ScorerClient,
    pairs_request,
    retry_after,
    score_request,
)

__all__ = ["AsyncScorerClient", "RetryPolicy", "ScorerClient", "pairs_request", "retry_after", "score_request"]
