"""The Chat section: the conversation list beside the transcript, the bar and the composer.

The page talks to the office only through :class:`OfficeBridge`: its
signals in, ``send`` / ``regenerate`` / ``call`` out; all of its wiring is
in ``_connect_signals``. What the status bar should say goes out through
``info``, ``problem`` and ``stats``. A cited memory opens in a non-modal
:class:`CitationPanel`, which shows it with the Memory section's detail view.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import QDialog, QSplitter, QVBoxLayout, QWidget

from app.ui.bridge import TurnStats
from app.ui.chat_view import ChatView
from app.ui.composer import ChatBar, Composer
from app.ui.conversation_list import PANE_WIDTH, ConversationList
from app.ui.office_bridge import OfficeBridge

if TYPE_CHECKING:  # DuckDB and the agents come with these: not on the start path
    from app.agents.chat_context import Citation
    from app.memory.conversations import Conversation, StoredMessage
    from app.memory.memory_rows import MemoryVersion
    from app.office import ChatAgent, Office
    from app.ui.sections.memory_detail import MemoryDetail

log = logging.getLogger("soloist.ui")

CHAT_WIDTH = 1200


def stored_citations(message: StoredMessage) -> tuple[Citation, ...]:
    """The citations saved with a message (none when it has no valid ones)."""
    from app.agents.chat_context import Citation  # loaded by then: the office is open

    raw = message.meta.get("citations")
    found = (Citation.from_json(item) for item in raw) if isinstance(raw, list) else ()
    return tuple(c for c in found if c is not None)


class CitationPanel(QDialog):
    """A cited memory, read-only: its versions, texts and provenance (non-modal)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from app.ui.sections.memory_detail import MemoryDetail  # its helpers bring DuckDB

        self.setWindowTitle("Cited memory")
        self.setModal(False)
        self.detail: MemoryDetail = MemoryDetail(self)
        self.detail.rollback.hide()  # read-only here: rollbacks are made in Memory
        layout = QVBoxLayout(self)
        layout.addWidget(self.detail)
        self.resize(560, 480)

    def show_memory(self, versions: list[MemoryVersion], version_id: str = "") -> None:
        self.detail.show_history(versions)
        cited = next((v for v in versions if v.id == version_id), None)
        if cited is not None:  # the version the reply cited, though newer ones exist
            self.detail.select_version(cited.version)
        self.show()
        self.raise_()


class ChatPage(QWidget):
    """Conversations and the chat; emits what the status bar should say."""

    info = Signal(str)
    problem = Signal(str)
    stats = Signal(object)  # TurnStats

    def __init__(self, bridge: OfficeBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._bridge = bridge
        self._conversation_id: str | None = None  # the one shown; None: a new chat
        self._turn_conversation: str | None = None  # the one a reply is being written in
        self._turn_citations: list[Citation] = []
        self._unsent: str | None = None  # text sent but not yet saved
        self._first_load = True
        self._agent_known = True  # False while the shown conversation's agent loads
        self.panel: CitationPanel | None = None
        self.conversations = ConversationList(self)
        self.chat = ChatView(self)
        self.bar = ChatBar(self)
        self.composer = Composer(self)
        self._build_layout()
        self._connect_signals()

    def _build_layout(self) -> None:
        right = QWidget(self)
        column = QVBoxLayout(right)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.chat, 1)
        column.addWidget(self.bar)
        column.addWidget(self.composer)
        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.addWidget(self.conversations)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([PANE_WIDTH, CHAT_WIDTH - PANE_WIDTH])
        splitter.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)
        self.setObjectName("section-chat")

    def _connect_signals(self) -> None:
        bridge = self._bridge
        self.conversations.new_chat_requested.connect(self.new_chat)
        self.conversations.selected.connect(self.open_conversation)
        self.composer.send_requested.connect(self.send)
        self.composer.stop_requested.connect(bridge.stop)
        self.bar.agent_chosen.connect(self._on_agent_chosen)
        self.bar.copy_requested.connect(self.copy_reply)
        self.bar.regenerate_requested.connect(self.regenerate)
        self.chat.citation_clicked.connect(self.show_citation)
        bridge.when_open(self._load_agents)
        bridge.conversations_loaded.connect(self._show_conversations)
        bridge.messages_loaded.connect(self._show_messages)
        bridge.turn_started.connect(self._on_turn_started)
        bridge.regenerate_started.connect(self._on_regenerate_started)
        bridge.citations.connect(self._on_citations)
        bridge.chunk.connect(self._on_chunk)
        bridge.finished.connect(self._on_turn_finished)
        bridge.failed.connect(self._on_turn_failed)
        bridge.busy_changed.connect(self.composer.set_busy)
        bridge.busy_changed.connect(self.bar.set_busy)

    # -- the owner's actions -------------------------------------------
    @property
    def conversation_id(self) -> str | None:
        return self._conversation_id

    @Slot()
    def new_chat(self) -> None:
        self._conversation_id = None
        self._agent_known = True  # a new chat talks to whoever the bar shows
        self.conversations.select(None)
        self._show_transcript([])
        self.composer.focus_input()

    @Slot(str)
    def open_conversation(self, conversation_id: str) -> None:
        self._conversation_id = conversation_id
        self.conversations.select(conversation_id)
        self._show_transcript([])
        self._bridge.load_messages(conversation_id)
        self._agent_known = False

        def show(agent_id: str | None) -> None:
            if conversation_id == self._conversation_id:
                self.bar.set_agent(agent_id)
                self._agent_known = True

        self._bridge.call(lambda office: office.chat_agent(conversation_id), show)

    @Slot(str)
    def send(self, text: str) -> None:
        self._unsent = text
        self.info.emit("Writing the reply…")
        self._bridge.send(
            self._conversation_id, text, self.bar.agent_id, set_agent=self._agent_known
        )

    @Slot()
    def regenerate(self) -> None:
        """Write the last reply again (Regenerate on the bar)."""
        if self._conversation_id is None or self._bridge.busy or not self.chat.last_is_reply():
            return
        self.info.emit("Writing the reply again…")
        self._bridge.regenerate(
            self._conversation_id, self.bar.agent_id, set_agent=self._agent_known
        )

    @Slot()
    def copy_reply(self) -> None:
        """Put the last reply's text on the clipboard (Copy reply on the bar)."""
        if self.chat.last_is_reply():
            self.chat.copy_message(-1)
            self.info.emit("Reply copied.")

    @Slot(str)
    def show_citation(self, memory_id: str) -> None:
        """Open the cited memory in the panel (its versions and provenance)."""
        cited = next((c for c in self._all_citations() if c.memory_id == memory_id), None)
        version_id = cited.version_id if cited is not None else ""

        def history(office: Office) -> list[MemoryVersion]:
            return office.memory.store.history(memory_id)

        def show(versions: list[MemoryVersion]) -> None:
            if self.panel is None:
                self.panel = CitationPanel(self)
            self.panel.show_memory(versions, version_id)

        self._bridge.call(history, show, self.problem.emit)

    def _all_citations(self) -> list[Citation]:
        count = len(self.chat.transcript())
        return [c for index in range(count) for c in self.chat.citations(index)]

    @Slot(str)
    def _on_agent_chosen(self, agent_id: str) -> None:
        self._agent_known = True
        conversation_id = self._conversation_id
        if conversation_id is not None:
            chosen = agent_id or None
            self._bridge.call(
                lambda office: office.set_chat_agent(conversation_id, chosen), lambda _: None
            )

    def _load_agents(self) -> None:
        def show(agents: list[ChatAgent]) -> None:
            self.bar.set_agents([(a.id, a.name) for a in agents])

        self._bridge.call(lambda office: office.chat_agents(), show, self.problem.emit)

    # -- reactions to the bridge ---------------------------------------
    @Slot(list)
    def _show_conversations(self, conversations: list[Conversation]) -> None:
        self.conversations.set_conversations(conversations, self._conversation_id)
        if self._first_load and conversations and self._conversation_id is None:
            self.open_conversation(conversations[0].id)
        self._first_load = False

    @Slot(str, list)
    def _show_messages(self, conversation_id: str, messages: list[StoredMessage]) -> None:
        if conversation_id == self._conversation_id:
            self._show_transcript([(m.role, m.content, stored_citations(m)) for m in messages])

    def _show_transcript(self, messages: list[tuple[str, str, tuple[Citation, ...]]]) -> None:
        self.chat.show_messages(messages)
        self.bar.set_has_reply(self.chat.last_is_reply())

    @Slot(str, str)
    def _on_turn_started(self, conversation_id: str, text: str) -> None:
        self._unsent = None
        self._begin_turn(conversation_id)
        if conversation_id == self._conversation_id:
            self.chat.end_reply()
            self.chat.add_message("user", text)
            self.bar.set_has_reply(False)

    @Slot(str)
    def _on_regenerate_started(self, conversation_id: str) -> None:
        self._begin_turn(conversation_id)
        if conversation_id == self._conversation_id:
            self.chat.end_reply()
            self.chat.remove_last_reply()
            self.bar.set_has_reply(False)

    def _begin_turn(self, conversation_id: str) -> None:
        self._turn_conversation = conversation_id
        self._turn_citations = []
        if self._conversation_id is None:  # a new chat got its conversation
            self._conversation_id = conversation_id
            self._bridge.refresh()

    @Slot(str, list)
    def _on_citations(self, conversation_id: str, citations: list[Citation]) -> None:
        if conversation_id == self._turn_conversation:
            self._turn_citations = citations

    @Slot(str)
    def _on_chunk(self, text: str) -> None:
        if self._turn_conversation == self._conversation_id:
            self.chat.append_reply(text)

    @Slot(object)
    def _on_turn_finished(self, stats: TurnStats) -> None:
        self._end_turn()
        self.stats.emit(stats)

    @Slot(str)
    def _on_turn_failed(self, text: str) -> None:
        self._end_turn()
        self.problem.emit(text)
        if self._unsent is not None:
            self.composer.restore(self._unsent)
            self._unsent = None

    def _end_turn(self) -> None:
        shown = self._turn_conversation == self._conversation_id
        self._turn_conversation = None
        self.chat.end_reply()
        if shown and self.chat.last_is_reply() and self._turn_citations:
            self.chat.set_citations(self._turn_citations)
        self._turn_citations = []
        self.bar.set_has_reply(self.chat.last_is_reply())
