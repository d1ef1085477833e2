"""The UI's one door to the office: slots in, signals out.

Every call that reaches the database or the engine runs on :class:`Jobs`;
its result comes back as a signal on the main thread. The window connects
to these signals and never holds the office itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from PySide6.QtCore import QCoreApplication, QObject, Signal, Slot

from app.ui.bridge import ChatStream, describe_error
from app.ui.jobs import Jobs

if TYPE_CHECKING:
    from app.office import Office

log = logging.getLogger("soloist.ui")

OfficeFactory = Callable[[], "Office"]
T = TypeVar("T")


class OfficeBridge(QObject):
    """Owns the office for the UI and reports everything through signals."""

    opened = Signal()
    open_failed = Signal(str)  # the office could not be opened: one readable line
    conversations_loaded = Signal(list)  # list[Conversation], most recent first
    messages_loaded = Signal(str, list)  # conversation id, list[StoredMessage]
    model_changed = Signal(str)  # the model's path, "" when none is chosen
    turn_started = Signal(str, str)  # conversation id, the owner's text
    regenerate_started = Signal(str)  # conversation id: its last reply is written again
    citations = Signal(str, list)  # conversation id, list[Citation] of the reply begun
    chunk = Signal(str)
    finished = Signal(object)  # TurnStats
    failed = Signal(str)  # the turn failed: one readable line
    error = Signal(str)  # anything else failed: one readable line
    busy_changed = Signal(bool)
    outbox_changed = Signal(str, str)  # event kind, action id (queued from the outbox's thread)

    def __init__(self, office: Office | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._jobs = Jobs(self)
        self._office = office
        self._stream: ChatStream | None = None
        self._closing = False

    # -- life cycle ----------------------------------------------------
    def open(self, factory: OfficeFactory) -> None:
        """Open the office on a worker thread; ``opened`` or ``error`` follows."""
        self._jobs.run(factory, self.attach, self._report_open_failure)

    @property
    def is_open(self) -> bool:
        return self._office is not None and not self._closing

    def when_open(self, slot: Callable[[], None]) -> None:
        """Call ``slot`` once the office is open: now if it is (a page built late), else then."""
        if self.is_open:
            slot()
        else:
            self.opened.connect(slot)

    def attach(self, office: Office) -> None:
        """Use an opened office, then load what the window shows first."""
        self._office = office
        if self._closing:  # opened while the app was quitting: only close it
            return
        log.info("office attached")
        self.opened.emit()
        self.refresh()
        # Connector accounts sync and agents run in the background (their imports
        # stay off this thread); scheduled automations keep running in the tray.
        self._jobs.run(office.start_sync, lambda _loop: None, self._report_error)
        office.on_outbox_event(lambda e: self.outbox_changed.emit(e.kind, e.action_id))
        self._jobs.run(office.start_agents, lambda _runtime: None, self._report_error)

    def call(
        self,
        op: Callable[[Office], T],
        on_success: Callable[[T], None],
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        """Run ``op(office)`` off the main thread; ``on_success(result)`` on it.

        A failure becomes one readable line for ``on_failure`` (default: the
        ``error`` signal). Nothing runs before the office is open or while
        the app is closing.
        """
        office = self._office
        if office is None or self._closing:
            return
        report = on_failure or self.error.emit
        self._jobs.run(lambda: op(office), on_success, lambda exc: report(describe_error(exc)))

    @property
    def busy(self) -> bool:
        return self._stream is not None

    def shutdown(self, timeout_ms: int = 10_000) -> None:
        """Stop the reply, wait for background jobs, close the office."""
        self._closing = True
        self.stop()
        if not self._jobs.wait(timeout_ms):
            log.warning("background jobs still running after %d ms", timeout_ms)
        # The event loop has ended: deliver the results still queued (an office
        # that finished opening must still be closed).
        QCoreApplication.sendPostedEvents(self._jobs)
        if self._office is not None:
            self._office.close()
            self._office = None

    # -- reads ---------------------------------------------------------
    def refresh(self) -> None:
        """Reload the conversation list and the chosen model."""
        office = self._office
        if office is None or self._closing:
            return
        self._jobs.run(
            office.list_conversations, self.conversations_loaded.emit, self._report_error
        )
        self._jobs.run(office.model_path, self._emit_model, self._report_error)

    def load_messages(self, conversation_id: str) -> None:
        office = self._office
        if office is None:
            return
        self._jobs.run(
            lambda: office.messages(conversation_id),
            lambda messages: self.messages_loaded.emit(conversation_id, messages),
            self._report_error,
        )

    # -- writes --------------------------------------------------------
    def set_model_path(self, path: str) -> None:
        office = self._office
        if office is None:
            return
        self._jobs.run(
            lambda: office.set_model_path(path),
            lambda _: self._emit_model(path),
            self._report_error,
        )

    def send(
        self,
        conversation_id: str | None,
        text: str,
        agent_id: str | None = None,
        *,
        set_agent: bool = True,
    ) -> None:
        """Start a turn; a new conversation is created when there is none.

        The conversation talks to ``agent_id`` (None: the assistant) from
        now on, unless ``set_agent`` is False (it keeps its own).
        """
        stream = self._new_stream(conversation_id, text, agent_id, set_agent, regenerate=False)
        if stream is not None:
            stream.started.connect(self.turn_started)
            self._start(stream)

    def regenerate(
        self, conversation_id: str, agent_id: str | None = None, *, set_agent: bool = True
    ) -> None:
        """Write the conversation's last reply again (the owner's message is not repeated)."""
        stream = self._new_stream(conversation_id, "", agent_id, set_agent, regenerate=True)
        if stream is not None:
            stream.started.connect(self._on_regenerate_started)
            self._start(stream)

    def _new_stream(
        self,
        conversation_id: str | None,
        text: str,
        agent_id: str | None,
        set_agent: bool,
        *,
        regenerate: bool,
    ) -> ChatStream | None:
        if self._office is None:
            self.failed.emit("The office is still opening; try again in a moment.")
            return None
        if self._stream is not None:
            return None
        return ChatStream(
            self._office,
            conversation_id,
            text,
            agent_id=agent_id,
            set_agent=set_agent,
            regenerate=regenerate,
        )

    def _start(self, stream: ChatStream) -> None:
        stream.cited.connect(self.citations)
        stream.chunk.connect(self.chunk)
        stream.finished.connect(self.finished)
        stream.failed.connect(self.failed)
        self._stream = stream
        self.busy_changed.emit(True)
        self._jobs.run(stream.run, self._stream_ended)

    def stop(self) -> None:
        """Cancel the reply being written, if any."""
        if self._stream is not None:
            log.info("stop requested")
            self._stream.cancel()

    # -- internals -----------------------------------------------------
    @Slot(str, str)
    def _on_regenerate_started(self, conversation_id: str, _text: str) -> None:
        self.regenerate_started.emit(conversation_id)

    def _stream_ended(self, _: None) -> None:
        # Queued after the stream's own signals, so the window saw them all.
        self._stream = None
        self.busy_changed.emit(False)
        self.refresh()

    def _emit_model(self, path: str | None) -> None:
        self.model_changed.emit(path or "")

    def _report_open_failure(self, exc: BaseException) -> None:
        self.open_failed.emit(describe_error(exc))

    def _report_error(self, exc: BaseException) -> None:
        self.error.emit(describe_error(exc))
