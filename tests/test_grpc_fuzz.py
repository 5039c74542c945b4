"""Whatever bytes reach the gRPC service, the answer is a precise status, never INTERNAL or UNKNOWN,
and the server keeps serving."""

from __future__ import annotations

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from servers import RunningServer

from benchmarks import fuzzing
from xscore.client import RetryPolicy, ScorerClient
from xscore.service.serving.runtime import ServeConfig
from xscore.service.serving.validation import Limits

BROKEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}


@pytest.fixture(scope="module")
def server(tiny_model):
    running = RunningServer({"tiny": tiny_model}, ServeConfig(grpc_port=0, http_port=None,
                                                             limits=Limits(max_items_per_request=8)))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server.address) as opened:
        yield opened


def status_of(channel: grpc.Channel, method: str, data: bytes) -> grpc.StatusCode:
    call = channel.unary_unary(f"/xscore.v1.Scorer/{method}", request_serializer=None, response_deserializer=None)
    try:
        call(data, timeout=30)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(fuzzing.grpc_calls("tiny"))
def test_fuzzed_grpc_messages_never_get_internal_or_unknown(channel, call):
    method, data = call
    assert status_of(channel, method, data) not in BROKEN


def test_the_server_still_serves_after_the_fuzz(server):
    with ScorerClient(server.address, retry=RetryPolicy(attempts=1)) as client:
        assert len(client.score("q", ["a", "b"], model="tiny").scores) == 2
