"""The main window: the sidebar of sections, and the page of the chosen one.

Chat (conversations, the chat, the composer) is the window's own page; the
other sections register in :mod:`app.ui.sections`.

The window talks to the office only through :class:`OfficeBridge` signals
and slots; all of its wiring is in ``_connect_signals``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QMainWindow,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.ui import window_state
from app.ui.bridge import TurnStats
from app.ui.chat_view import ChatView
from app.ui.composer import Composer
from app.ui.conversation_list import PANE_WIDTH, ConversationList
from app.ui.office_bridge import OfficeBridge
from app.ui.page_stack import SectionPages
from app.ui.sections import SectionInfo, declared
from app.ui.sidebar import Sidebar
from app.ui.status_bar import StatusBar

if TYPE_CHECKING:
    from app.memory.conversations import Conversation, StoredMessage
    from app.ui.first_run import FirstRunPage

log = logging.getLogger("soloist.ui")

MODEL_FILTER = "GGUF models (*.gguf);;All files (*)"
WINDOW_SIZE = (1200, 760)
CHAT = "chat"
CHAT_ORDER = 20  # Home is 10; the other sections come after Chat
FIRST_RUN = "first-run"


class MainWindow(QMainWindow):
    """Emits ``quit_requested`` for Ctrl+Q; closing may only hide it (tray)."""

    quit_requested = Signal()

    def __init__(self, bridge: OfficeBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._bridge = bridge
        self._conversation_id: str | None = None  # the one shown; None: a new chat
        self._turn_conversation: str | None = None  # the one a reply is being written in
        self._unsent: str | None = None  # text sent but not yet saved
        self._model_path = ""
        self._first_load = True
        self._hide_on_close = False
        self.setWindowTitle("Soloist")
        self.conversations = ConversationList(self)
        self.chat = ChatView(self)
        self.composer = Composer(self)
        self.status = StatusBar(self)
        self.setStatusBar(self.status)
        self._build_layout()
        self._build_actions()
        self._connect_signals()
        self.resize(*WINDOW_SIZE)
        window_state.restore(self)

    # -- construction --------------------------------------------------
    def _build_layout(self) -> None:
        right = QWidget(self)
        column = QVBoxLayout(right)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.chat, 1)
        column.addWidget(self.composer)
        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.addWidget(self.conversations)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([PANE_WIDTH, WINDOW_SIZE[0] - PANE_WIDTH])
        splitter.setChildrenCollapsible(False)
        splitter.setObjectName("section-chat")
        self.sidebar = Sidebar(self)
        self.pages = SectionPages(self._bridge, self)
        chat = SectionInfo("", CHAT, "Chat", CHAT_ORDER)
        for number, info in enumerate(sorted([*declared(), chat], key=lambda i: i.order), 1):
            if info is chat:
                splitter.setAccessibleName(chat.title)
                self.pages.add_built(CHAT, splitter)
            else:
                self.pages.add_section(info)
            self._add_to_sidebar(info, number)
        self.pages.add_lazy(FIRST_RUN, "Getting started", self._make_first_run)
        body = QWidget(self)
        row = QHBoxLayout(body)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)
        row.addWidget(self.sidebar)
        row.addWidget(self.pages, 1)
        self.setCentralWidget(body)

    def _add_to_sidebar(self, info: SectionInfo, number: int) -> None:
        shortcut = f"Ctrl+{number}" if number <= 9 else None
        self.sidebar.add_section(info.key, info.title, shortcut)
        if shortcut is not None:
            action = self._action(info.title, QKeySequence(shortcut))
            action.triggered.connect(lambda _=False, key=info.key: self.show_section(key))

    def _make_first_run(self) -> QWidget:
        from app.ui.first_run import FirstRunPage  # model downloads bring httpx: not at start

        return FirstRunPage(self._bridge, self.pages)

    @Slot(str, QWidget)
    def _on_page_built(self, key: str, page: QWidget) -> None:
        if key != FIRST_RUN:
            page.setAccessibleName(self.sidebar.title_of(key) or key)
        requested = getattr(page, "section_requested", None)
        if requested is not None:  # a page may send the owner elsewhere (Home -> Approvals)
            requested.connect(self.show_section)
        if key == FIRST_RUN:
            page.wanted.connect(lambda: self.pages.setCurrentWidget(page))  # type: ignore[attr-defined]
            page.finished.connect(lambda: self.show_section(CHAT))  # type: ignore[attr-defined]

    def build_sections(self) -> None:
        """Build every section page soon, the shown one and Approvals (the tray's) first."""
        self.pages.build_later(first=[self.current_section or CHAT, "approvals", FIRST_RUN])

    @property
    def first_run(self) -> FirstRunPage:
        page = self.pages.page(FIRST_RUN)
        assert page is not None
        return page  # type: ignore[return-value]

    @Slot()
    def _check_first_run(self) -> None:
        self.first_run.check()  # builds the page if the office opened before it was built

    @Slot(str)
    def show_section(self, key: str) -> None:
        """Show the page of ``key`` (a sidebar click, Ctrl+<n>, the tray)."""
        page = self.pages.page(key)
        if page is None or key == FIRST_RUN:
            return
        self.pages.setCurrentWidget(page)
        if self.sidebar.current_key != key:
            self.sidebar.select(key)

    def page(self, key: str) -> QWidget | None:
        """The page of section ``key``, built now if it was not yet."""
        return self.pages.page(key)

    @Slot(str)
    def new_chat_with(self, text: str) -> None:
        """A new chat whose first message is ``text`` (the tray's clipboard actions)."""
        self.show_section(CHAT)
        self.new_chat()
        if text.strip():
            self._send(text)

    @property
    def current_section(self) -> str | None:
        return self.sidebar.current_key

    def _section_keys(self) -> list[str]:
        return [key for key in self.pages.section_keys() if key != FIRST_RUN]

    def _show_placeholder(self, key: str) -> None:
        """At start: select ``key`` without building its page (built after the paint)."""
        blocked = self.sidebar.blockSignals(True)
        self.sidebar.select(key)
        self.sidebar.blockSignals(blocked)
        self.pages.show_unbuilt(key)

    def _build_actions(self) -> None:
        self.new_chat_action = self._action("&New chat", QKeySequence.StandardKey.New)
        self.model_action = self._action("&Model…", None)
        self.model_action.setIconText("Model…")  # a toolbar would drop the "…"
        self.model_action.setToolTip("Choose the GGUF model file to chat with")
        self.focus_input_action = self._action("&Focus input", QKeySequence("Ctrl+L"))
        self.quit_action = self._action("&Quit", QKeySequence("Ctrl+Q"))
        self.quit_action.setMenuRole(QAction.MenuRole.QuitRole)
        menu = self.menuBar().addMenu("&Soloist")
        for action in (self.new_chat_action, self.model_action, self.focus_input_action):
            menu.addAction(action)
        menu.addSeparator()
        menu.addAction(self.quit_action)
        toolbar = self.addToolBar("Main")
        toolbar.setObjectName("main-toolbar")
        toolbar.setMovable(False)
        toolbar.addAction(self.model_action)

    def _action(
        self, text: str, shortcut: QKeySequence | QKeySequence.StandardKey | None
    ) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(shortcut)
        action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        self.addAction(action)
        return action

    def _connect_signals(self) -> None:
        bridge = self._bridge
        self.new_chat_action.triggered.connect(self.new_chat)
        self.model_action.triggered.connect(self.choose_model)
        self.focus_input_action.triggered.connect(self.composer.focus_input)
        self.quit_action.triggered.connect(self.quit_requested)
        self.conversations.new_chat_requested.connect(self.new_chat)
        self.conversations.selected.connect(self.open_conversation)
        self.sidebar.section_chosen.connect(self.show_section)
        self.pages.page_built.connect(self._on_page_built)
        self._show_placeholder(window_state.last_section(self._section_keys(), CHAT))
        bridge.opened.connect(self._check_first_run)
        self.composer.send_requested.connect(self._send)
        self.composer.stop_requested.connect(bridge.stop)
        bridge.opened.connect(self._on_opened)
        bridge.conversations_loaded.connect(self._show_conversations)
        bridge.messages_loaded.connect(self._show_messages)
        bridge.model_changed.connect(self._on_model_changed)
        bridge.turn_started.connect(self._on_turn_started)
        bridge.chunk.connect(self._on_chunk)
        bridge.finished.connect(self._on_turn_finished)
        bridge.failed.connect(self._on_turn_failed)
        bridge.error.connect(self.status.show_error)
        bridge.busy_changed.connect(self.composer.set_busy)

    # -- public slots --------------------------------------------------
    @property
    def conversation_id(self) -> str | None:
        return self._conversation_id

    def set_hide_on_close(self, hide: bool) -> None:
        """With a tray icon, closing the window only hides it."""
        self._hide_on_close = hide

    @Slot()
    def bring_to_front(self) -> None:
        if self.isMinimized():
            self.showNormal()
        self.show()
        self.raise_()
        self.activateWindow()

    @Slot()
    def new_chat(self) -> None:
        self._conversation_id = None
        self.conversations.select(None)
        self.chat.clear_messages()
        self.composer.focus_input()

    @Slot(str)
    def open_conversation(self, conversation_id: str) -> None:
        self._conversation_id = conversation_id
        self.conversations.select(conversation_id)
        self.chat.clear_messages()
        self._bridge.load_messages(conversation_id)

    @Slot()
    def choose_model(self) -> None:
        start = str(Path(self._model_path).parent) if self._model_path else str(Path.home())
        path, _ = QFileDialog.getOpenFileName(self, "Choose a model", start, MODEL_FILTER)
        if path:
            log.info("model chosen: %s", Path(path).name)
            self._bridge.set_model_path(path)

    # -- reactions to the bridge ---------------------------------------
    @Slot()
    def _on_opened(self) -> None:
        self.status.show_info("Office open.")

    @Slot(list)
    def _show_conversations(self, conversations: list[Conversation]) -> None:
        self.conversations.set_conversations(conversations, self._conversation_id)
        if self._first_load and conversations and self._conversation_id is None:
            self.open_conversation(conversations[0].id)
        self._first_load = False

    @Slot(str, list)
    def _show_messages(self, conversation_id: str, messages: list[StoredMessage]) -> None:
        if conversation_id == self._conversation_id:
            self.chat.show_messages((m.role, m.content) for m in messages)

    @Slot(str)
    def _on_model_changed(self, path: str) -> None:
        self._model_path = path
        self.status.set_model(path)

    @Slot(str)
    def _send(self, text: str) -> None:
        self._unsent = text
        self.status.show_info("Writing the reply…")
        self._bridge.send(self._conversation_id, text)

    @Slot(str, str)
    def _on_turn_started(self, conversation_id: str, text: str) -> None:
        self._unsent = None
        self._turn_conversation = conversation_id
        if self._conversation_id is None:  # a new chat got its conversation
            self._conversation_id = conversation_id
            self._bridge.refresh()
        if conversation_id == self._conversation_id:
            self.chat.end_reply()
            self.chat.add_message("user", text)

    @Slot(str)
    def _on_chunk(self, text: str) -> None:
        if self._turn_conversation == self._conversation_id:
            self.chat.append_reply(text)

    @Slot(object)
    def _on_turn_finished(self, stats: TurnStats) -> None:
        self._turn_conversation = None
        self.chat.end_reply()
        self.status.show_stats(stats)

    @Slot(str)
    def _on_turn_failed(self, text: str) -> None:
        self._turn_conversation = None
        self.chat.end_reply()
        self.status.show_error(text)
        if self._unsent is not None:
            self.composer.restore(self._unsent)
            self._unsent = None

    # -- events --------------------------------------------------------
    def save_state(self) -> None:
        """Remember geometry and the section shown, for the next start."""
        window_state.save(self, self.current_section)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt's name)
        self.save_state()
        if self._hide_on_close:
            event.ignore()
            self.hide()
            return
        event.accept()
