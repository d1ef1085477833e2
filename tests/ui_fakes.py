"""Helpers for the UI tests: fake engines with real cancellation, and windows."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from pytestqt.qtbot import QtBot
from test_search import HashEmbedder

from app.engine.embeddings import DEFAULT_EMBEDDING_MODEL
from app.engine.interface import Engine
from app.engine.types import Chunk, FinishReason, GenerateRequest, Timings
from app.office import Office
from app.ui.main_window import MainWindow
from app.ui.office_bridge import OfficeBridge

PIECES = ("Hello", ",", " I", " am", " a", " fake", " engine", ".")


class FakeEngine:
    """Yields ``pieces`` one by one, ``delay_s`` apart; honours ``cancel``."""

    def __init__(
        self,
        pieces: Sequence[str] = PIECES,
        delay_s: float = 0.01,
        error: Exception | None = None,
    ) -> None:
        self.pieces = tuple(pieces)
        self.delay_s = delay_s
        self.error = error
        self.requests: list[GenerateRequest] = []
        self._cancel_flags: dict[str, threading.Event] = {}
        self.closed = False

    def generate(self, request: GenerateRequest) -> Iterator[Chunk]:
        self.requests.append(request)
        flag = self._cancel_flags.setdefault(request.request_id, threading.Event())
        return self._stream(request.request_id, flag)

    def cancel(self, request_id: str) -> bool:
        flag = self._cancel_flags.get(request_id)
        if flag is None:
            return False
        flag.set()
        return True

    def close(self) -> None:
        self.closed = True

    def _stream(self, request_id: str, cancelled: threading.Event) -> Iterator[Chunk]:
        if self.error is not None:
            raise self.error
        clock = _Clock()
        for index, piece in enumerate(self.pieces):
            if cancelled.wait(self.delay_s):
                yield clock.final(request_id, index, FinishReason.CANCELLED)
                return
            clock.token()
            yield Chunk(request_id, index, text=piece)
        yield clock.final(request_id, len(self.pieces), FinishReason.STOP)


class EmbeddingEngine(FakeEngine):
    """The chat fake, plus a fast deterministic embedder for the office's memory."""

    def __init__(self, pieces: Sequence[str] = PIECES, delay_s: float = 0.01) -> None:
        super().__init__(pieces, delay_s)
        # The name the office's lazy embedder reports before it is made: one model throughout.
        self.embedding = HashEmbedder(model_name=DEFAULT_EMBEDDING_MODEL)

    def embedder(self) -> HashEmbedder:
        return self.embedding


class _Clock:
    """Times a fake stream the way the engine does."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.first = 0.0
        self.tokens = 0

    def token(self) -> None:
        self.first = self.first or time.perf_counter()
        self.tokens += 1

    def final(self, request_id: str, index: int, reason: FinishReason) -> Chunk:
        end = time.perf_counter()
        timings = Timings(
            prompt_tokens=12,
            completion_tokens=self.tokens,
            time_to_first_token_s=(self.first or end) - self.started,
            total_s=end - self.started,
        )
        return Chunk(request_id, index, finish_reason=reason, timings=timings)


class Windows:
    """Opens offices and main windows on one data directory; closes them all."""

    def __init__(self, qtbot: QtBot, home: Path) -> None:
        self.qtbot = qtbot
        self.home = home
        self._bridges: list[OfficeBridge] = []
        self.offices: list[Office] = []  # for tests that write memories beside the window

    def open(
        self, engine: Callable[[], Engine] | None = None, model: str | None = None
    ) -> tuple[MainWindow, OfficeBridge]:
        """A shown window on a fresh office; ``engine`` None means the real engine."""
        office = Office(self.home, engine_factory=engine)
        if model is not None:
            office.set_model_path(model)
        bridge = OfficeBridge()
        window = MainWindow(bridge)
        self.qtbot.addWidget(window)
        window.show()
        self._bridges.append(bridge)
        self.offices.append(office)
        with self.qtbot.waitSignals([bridge.conversations_loaded, bridge.model_changed]):
            bridge.attach(office)
        return window, bridge

    def close_all(self) -> None:
        for bridge in self._bridges:
            bridge.shutdown()
        self._bridges.clear()
        self.offices.clear()
