"""The engine interface every caller uses, wherever the engine runs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from app.engine.types import Chunk, GenerateRequest


class Engine(Protocol):
    """Generates text for requests; one implementation per place it runs.

    ``generate`` returns an iterator of chunks; the last one is final
    (``chunk.is_final``). Errors found before any token (missing model,
    prompt too long) are raised from the first ``next()``; they are
    subclasses of :class:`app.engine.errors.EngineError`.
    ``cancel`` may be called from any thread; the stream then ends within
    one token step with ``FinishReason.CANCELLED``.
    """

    def generate(self, request: GenerateRequest) -> Iterator[Chunk]: ...

    def cancel(self, request_id: str) -> bool: ...

    def close(self) -> None: ...
