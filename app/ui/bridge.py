"""One chat turn, run on a worker thread and reported through Qt signals.

``ChatStream.run()`` blocks: it saves the owner's message through the office,
iterates the reply's chunks and emits ``chunk`` for each piece of text, then
``finished`` (with a :class:`TurnStats`) or ``failed`` (one readable line).
With ``regenerate`` it asks the office to write the conversation's last
reply again instead of sending a message. ``cited`` carries the memories the
reply may cite, right after ``started``. Signals emitted on the worker
thread reach main-thread receivers queued, in order. ``cancel()`` may be
called from any thread.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal

from app.agents.errors import AgentError
from app.desktop.errors import DesktopError
from app.engine.errors import EngineError
from app.engine.types import Chunk, FinishReason, Timings
from app.integrations.errors import ConnectorError
from app.memory.errors import StoreError
from app.secrets import SecretsError

if TYPE_CHECKING:  # the office (DuckDB, memory) is imported after the first paint
    from app.office import ChatTurn, Office

log = logging.getLogger("soloist.ui")

TITLE_CHARS = 48
KNOWN_ERRORS: tuple[type[Exception], ...] = (
    EngineError,
    StoreError,
    ConnectorError,
    AgentError,
    SecretsError,
    DesktopError,
)


@dataclass(frozen=True, slots=True)
class TurnStats:
    """How a turn ended; ``timings`` come from the final chunk when there was one."""

    finish_reason: str
    timings: Timings | None = None
    error: str | None = None


def describe_error(exc: BaseException) -> str:
    """One line for the owner; a bug also leaves its traceback in the log."""
    from app.office import NoModelError  # loaded by then: only an open office raises

    if isinstance(exc, (*KNOWN_ERRORS, NoModelError)):
        return str(exc)
    log.error("unexpected error", exc_info=exc)
    return f"Something went wrong ({type(exc).__name__}); the details are in the log."


def title_for(text: str) -> str:
    """A conversation title from the first line of its first message."""
    first_line = text.strip().splitlines()[0] if text.strip() else ""
    if len(first_line) <= TITLE_CHARS:
        return first_line or "New chat"
    return first_line[: TITLE_CHARS - 1].rstrip() + "…"


class ChatStream(QObject):
    """Sends one message and streams the reply; call ``run`` off the main thread."""

    started = Signal(str, str)  # conversation id, the owner's text (saved)
    cited = Signal(str, list)  # conversation id, list[Citation] of the reply
    chunk = Signal(str)
    finished = Signal(object)  # TurnStats
    failed = Signal(str)

    def __init__(
        self,
        office: Office,
        conversation_id: str | None,
        text: str,
        max_tokens: int = 256,
        *,
        agent_id: str | None = None,
        set_agent: bool = True,
        regenerate: bool = False,
    ) -> None:
        super().__init__()
        self._office = office
        self._conversation_id = conversation_id
        self._text = text
        self._max_tokens = max_tokens
        self._agent_id = agent_id  # the conversation talks to it from now on (None: assistant)
        self._set_agent = set_agent  # False: keep the conversation's own
        self._regenerate = regenerate
        self._cancelled = threading.Event()
        self._request_id: str | None = None

    def cancel(self) -> None:
        """Ask the engine to stop; the reply so far is kept."""
        self._cancelled.set()
        if self._request_id is not None:
            self._office.cancel(self._request_id)

    def run(self) -> None:
        try:
            stats = self._run()
        except Exception as exc:
            self.failed.emit(describe_error(exc))
            return
        if stats.finish_reason == FinishReason.ERROR:
            self.failed.emit(stats.error or "The engine failed while writing the reply.")
        else:
            self.finished.emit(stats)

    def _run(self) -> TurnStats:
        if self._cancelled.is_set():
            return TurnStats(FinishReason.CANCELLED)
        conversation_id = self._conversation_id or self._create_conversation()
        if self._set_agent:
            self._office.set_chat_agent(conversation_id, self._agent_id)
        if self._regenerate:
            turn = self._office.regenerate(conversation_id, max_tokens=self._max_tokens)
        else:
            turn = self._office.send(conversation_id, self._text, max_tokens=self._max_tokens)
        self._request_id = turn.request_id
        log.info("turn %s started in conversation %s", turn.request_id, conversation_id)
        self.started.emit(conversation_id, self._text)
        self.cited.emit(conversation_id, list(turn.citations))
        if self._cancelled.is_set():  # stopped before the first token: nothing to save
            return TurnStats(FinishReason.CANCELLED)
        final = self._pump(turn)
        if final is None:
            return TurnStats(FinishReason.STOP)
        log.info("turn %s ended: %s", turn.request_id, final.finish_reason)
        return TurnStats(str(final.finish_reason), final.timings, final.error)

    def _create_conversation(self) -> str:
        if self._office.model_path() is None:
            from app.office import NoModelError

            raise NoModelError()  # before creating: no empty conversation is left behind
        return self._office.new_conversation(title_for(self._text)).id

    def _pump(self, turn: ChatTurn) -> Chunk | None:
        cancel_sent = False
        for chunk in turn.chunks:
            if chunk.text:
                self.chunk.emit(chunk.text)
            if chunk.is_final:
                return chunk
            if self._cancelled.is_set() and not cancel_sent:
                cancel_sent = self._office.cancel(turn.request_id)
        return None
