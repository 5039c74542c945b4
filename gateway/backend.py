"""What the gateway needs from a scorer: the in-process `Scorer` or a `RemoteScorer`.

Both have async `score` and `score_pairs`; `list_models`/`get_model` are plain methods on the
in-process scorer and coroutines on the remote one, so the gateway awaits them when needed.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable
from typing import Protocol, TypeVar

from xscore.api.errors import invalid
from xscore.api.schema import ModelInfo, PairsRequest, PairsResult, ScoreRequest, ScoreResult

T = TypeVar("T")


class ScoringBackend(Protocol):
    async def score(self, request: ScoreRequest) -> ScoreResult: ...

    async def score_pairs(self, request: PairsRequest) -> PairsResult: ...

    def list_models(self) -> list[ModelInfo] | Awaitable[list[ModelInfo]]: ...

    def get_model(self, name: str) -> ModelInfo | Awaitable[ModelInfo]: ...


async def _resolve(value: T | Awaitable[T]) -> T:
    return await value if inspect.isawaitable(value) else value  # type: ignore[return-value]


async def list_models(backend: ScoringBackend) -> list[ModelInfo]:
    return await _resolve(backend.list_models())


async def get_model(backend: ScoringBackend, name: str) -> ModelInfo:
    return await _resolve(backend.get_model(name))


async def is_ready(backend: ScoringBackend) -> bool:
    """Every model loaded and the scorer not draining (`ready`/`draining` are optional attributes)."""
    if getattr(backend, "draining", False) or not getattr(backend, "ready", True):
        return False
    models = await list_models(backend)
    return bool(models) and all(model.ready for model in models)


async def model_or_only(backend: ScoringBackend, given: str | None) -> str:
    """The compatibility routes' rule: a request without `model` means the only model served."""
    if given:
        return given
    names = [model.name for model in await list_models(backend)]
    if len(names) == 1:
        return names[0]
    raise invalid(f"model is required: this server serves {len(names)} models ({', '.join(names)})",
                  field="model")
