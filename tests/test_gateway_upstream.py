"""Upstream mode: the gateway in front of a gRPC service gives what the in-process gateway gives.

`ThinTestServicer` below stands in for the gRPC engineer's servicer until it lands: a minimal,
real grpc.aio servicer over a real Scorer. At merge, replace it with the service's own server.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import grpc
import httpx
import pytest

from gateway_harness import JSON, MSGPACK, LoopThread, decoded, loop, packb, running_gateway, scorer  # noqa: F401
from xscore.gateway.upstream import ERROR_CODE_METADATA, ERROR_DETAILS_METADATA, RETRY_AFTER_METADATA, RemoteScorer
from xscore.service.errors import GRPC_STATUS, XscoreError
from xscore.service.scorer import Item, ModelInfo, PairsRequest, ScoreRequest, Scorer
from xscore.v1 import score_pb2, score_pb2_grpc


class ThinTestServicer(score_pb2_grpc.ScorerServicer):
    """Test-only: maps proto <-> Scorer and XscoreError -> status + xscore-error-code metadata."""

    def __init__(self, scorer: Scorer) -> None:
        self.scorer = scorer

    async def _guard(self, context, call):
        try:
            return await call()
        except XscoreError as error:
            metadata = [(ERROR_CODE_METADATA, error.code.value), (ERROR_DETAILS_METADATA, json.dumps(error.details))]
            if error.retry_after_s is not None:
                metadata.append((RETRY_AFTER_METADATA, str(error.retry_after_s)))
            context.set_trailing_metadata(metadata)
            await context.abort(getattr(grpc.StatusCode, GRPC_STATUS[error.code]), error.message)

    async def Score(self, request, context):
        async def call():
            items = [Item(item.text, item.id or None) for item in request.items]
            truncate = request.truncate if request.HasField("truncate") else True
            result = await self.scorer.score(ScoreRequest(request.model, request.query, items, request.top_k or None,
                                                          request.raw_scores, truncate, request.return_text))
            return score_pb2.ScoreResponse(model=result.model, scores=[
                score_pb2.ScoredItem(item_id=e.item_id, index=e.index, score=e.score, rank=e.rank, text=e.text)
                for e in result.scores], usage=_usage(result.usage), timing=score_pb2.Timing(**_timing(result)))
        return await self._guard(context, call)

    async def ScorePairs(self, request, context):
        async def call():
            truncate = request.truncate if request.HasField("truncate") else True
            result = await self.scorer.score_pairs(PairsRequest(request.model, list(request.queries),
                                                                list(request.documents), request.raw_scores, truncate))
            return score_pb2.ScorePairsResponse(model=result.model, scores=result.scores, usage=_usage(result.usage),
                                                timing=score_pb2.Timing(**_timing(result)))
        return await self._guard(context, call)

    async def ListModels(self, request, context):
        return score_pb2.ListModelsResponse(models=[_info(info) for info in self.scorer.list_models()])

    async def GetModel(self, request, context):
        return await self._guard(context, lambda: _async(_info(self.scorer.get_model(request.name))))


async def _async(value):
    return value


def _usage(usage):
    return score_pb2.Usage(pairs=usage.pairs, tokens=usage.tokens, truncated=usage.truncated)


def _timing(result):
    t = result.timing
    return {"queue_ms": t.queue_ms, "tokenize_ms": t.tokenize_ms, "inference_ms": t.inference_ms,
            "total_ms": t.total_ms}


def _info(info: ModelInfo) -> score_pb2.ModelInfo:
    return score_pb2.ModelInfo(**{field: getattr(info, field) for field in ModelInfo.__dataclass_fields__})


@pytest.fixture(scope="module")
def upstream(loop: LoopThread, scorer: Scorer) -> Iterator[str]:
    async def start():
        server = grpc.aio.server()
        score_pb2_grpc.add_ScorerServicer_to_server(ThinTestServicer(scorer), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    server, port = loop.run(start())
    yield f"127.0.0.1:{port}"
    loop.run(server.stop(None))


@pytest.fixture(scope="module")
def clients(loop, scorer, upstream) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    remote = RemoteScorer(upstream)
    with running_gateway(loop, scorer) as local_url, running_gateway(loop, remote) as remote_url, \
            httpx.Client(base_url=local_url) as local, httpx.Client(base_url=remote_url) as far:
        yield local, far
    loop.run(remote.close())


def _without_volatile(payload):
    return {key: value for key, value in payload.items() if key not in ("id", "created")}


REQUESTS = [
    ("/v1/score/org/tiny", MSGPACK, {"query": {"id": "q", "text": "What is Python?"},
                                     "items": [{"id": "a", "text": "A language."}, "Snakes.", "word " * 700],
                                     "options": {"return_text": True, "top_k": 2}}),
    ("/v1/score/tiny", MSGPACK, {"query": "q", "items": ["x", "y"], "options": {"raw_scores": True}}),
    ("/score", JSON, {"model": "tiny", "text_1": ["a", "b"], "text_2": ["c", "d"]}),
    ("/v1/rerank", JSON, {"model": "org/tiny", "query": "q", "documents": ["c", {"text": "d"}], "top_n": 1}),
    ("/v1/score/none", MSGPACK, {"query": "q", "items": ["a"]}),  # 404
    ("/v1/score/tiny", MSGPACK, {"query": " ", "items": ["a"]}),  # 422
    ("/v1/score/tiny", MSGPACK, {"query": "q", "items": ["a"] * 33}),  # 413
    ("/score", JSON, {"model": "tiny", "text_1": ["a", "b"], "text_2": ["c", "d", "e"]}),  # 400
]


@pytest.mark.parametrize(("path", "content_type", "body"), REQUESTS, ids=[str(i) for i in range(len(REQUESTS))])
def test_upstream_mode_answers_exactly_like_in_process(clients, path, content_type, body):
    local, far = clients
    content = packb(body) if content_type == MSGPACK else httpx.Request("POST", "/", json=body).content
    answers = [http.post(path, content=content, headers={"content-type": content_type}) for http in (local, far)]
    assert answers[0].status_code == answers[1].status_code
    assert _without_volatile(decoded(answers[0])) == _without_volatile(decoded(answers[1]))


def test_upstream_models_and_readiness(clients):
    local, far = clients
    assert local.get("/v1/models").json() == far.get("/v1/models").json()
    assert far.get("/readyz").status_code == 200


def test_unreachable_upstream_is_503_with_retry_after(loop, scorer):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"
    remote = RemoteScorer(dead)
    with running_gateway(loop, remote) as url, httpx.Client(base_url=url) as http:
        response = http.post("/v1/score/tiny", content=packb({"query": "q", "items": ["a"]}),
                             headers={"content-type": MSGPACK, "accept": JSON})
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert response.json()["code"] == "UNAVAILABLE" and dead in response.json()["message"]
        assert http.get("/readyz").status_code == 503
    loop.run(remote.close())
