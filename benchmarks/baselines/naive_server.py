"""The naive reranking service a team writes first (seed 003's shape): a web app around
sentence-transformers' `CrossEncoder`, scoring one request at a time with `predict`.

`python -m benchmarks.baselines.naive_server MODEL_DIR PORT` serves `POST /v1/rerank` in the
Cohere shape, so `xscore bench --protocol cohere` drives it like any peer; it prints
`listening http=HOST:PORT` once the model is loaded. torch threads: NUM_THREADS (default: all).
A baseline for the comparison, never part of xscore.
"""

from __future__ import annotations

import asyncio
import os
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def app(model_dir: str) -> Starlette:
    import torch
    from sentence_transformers import CrossEncoder

    torch.set_num_threads(int(os.environ.get("NUM_THREADS", os.cpu_count() or 1)))
    model = CrossEncoder(model_dir, device="cpu")
    lock = asyncio.Lock()  # one request at a time, as the seed's service runs

    async def rerank(request: Request) -> JSONResponse:
        body = await request.json()
        documents = [d if isinstance(d, str) else d["text"] for d in body["documents"]]
        async with lock:
            scores = await asyncio.to_thread(model.predict, [(body["query"], d) for d in documents])
        order = sorted(range(len(documents)), key=lambda index: -float(scores[index]))
        top = body.get("top_n") or len(documents)
        return JSONResponse({"results": [{"index": index, "relevance_score": float(scores[index])}
                                         for index in order[:top]]})

    return Starlette(routes=[Route("/v1/rerank", rerank, methods=["POST"])])


def main() -> int:
    model_dir, port = sys.argv[1], int(sys.argv[2])
    served = app(model_dir)
    config = uvicorn.Config(served, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)

    async def serve() -> None:
        serving = asyncio.create_task(server.serve())
        while not server.started and not serving.done():
            await asyncio.sleep(0.05)
        if server.started:
            print(f"listening http=127.0.0.1:{port}", flush=True)
        await serving

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
