"""xscore clients: gRPC (`ScorerClient`, `AsyncScorerClient`), HTTP (`HttpScorerClient`,
`AsyncHttpScorerClient`) and sentence-transformers' interface (`RemoteCrossEncoder`), all with
one `RetryPolicy`."""

from xscore.client.cross_encoder import RemoteCrossEncoder
from xscore.client.grpc_client import (
    AsyncScorerClient,
    ScorerClient,
    pairs_request,
    retry_after,
    score_request,
)
from xscore.client.http_client import AsyncHttpScorerClient, HttpScorerClient
from xscore.client.retry import RetryPolicy
from xscore.client.targets import channel_target

__all__ = ["AsyncHttpScorerClient", "AsyncScorerClient", "HttpScorerClient", "RemoteCrossEncoder",
           "RetryPolicy", "ScorerClient", "channel_target", "pairs_request", "retry_after", "score_request"]
