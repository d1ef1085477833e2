"""The main window: the sidebar of sections, and the page of the chosen one.

Chat (:class:`~app.ui.chat_page.ChatPage`: conversations, the chat, the
composer) is built with the window; the other sections register in
:mod:`app.ui.sections` and are built after the first paint.

The window talks to the office only through :class:`OfficeBridge` signals
and slots; all of its wiring is in ``_connect_signals``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QMainWindow, QWidget

from app.ui import window_state
from app.ui.chat_page import ChatPage
from app.ui.chat_view import ChatView
from app.ui.composer import Composer
from app.ui.conversation_list import ConversationList
from app.ui.office_bridge import OfficeBridge
from app.ui.page_stack import SectionPages
from app.ui.sections import SectionInfo, declared
from app.ui.sidebar import Sidebar
from app.ui.status_bar import StatusBar

if TYPE_CHECKING:
    from app.ui.first_run import FirstRunPage

log = logging.getLogger("soloist.ui")

MODEL_FILTER = "GGUF models (*.gguf);;All files (*)"
WINDOW_SIZE = (1200, 760)
CHAT = "chat"
CHAT_ORDER = 20  # Home is 10; the other sections come after Chat
FIRST_RUN = "first-run"
EXTRA_SHORTCUTS = {"settings": "Ctrl+,"}  # past Ctrl+9: the usual Preferences key


class MainWindow(QMainWindow):
    """Emits ``quit_requested`` for Ctrl+Q; closing may only hide it (tray)."""

    quit_requested = Signal()

    def __init__(self, bridge: OfficeBridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._bridge = bridge
        self._model_path = ""
        self._hide_on_close = False
        self.setWindowTitle("Soloist")
        self.chat_page = ChatPage(bridge, self)
        self.status = StatusBar(self)
        self.setStatusBar(self.status)
        self._build_layout()
        self._build_actions()
        self._connect_signals()
        self.resize(*WINDOW_SIZE)
        window_state.restore(self)

    # -- the chat page's parts (the tests reach them here) ----------------
    @property
    def chat(self) -> ChatView:
        return self.chat_page.chat

    @property
    def composer(self) -> Composer:
        return self.chat_page.composer

    @property
    def conversations(self) -> ConversationList:
        return self.chat_page.conversations

    # -- construction --------------------------------------------------
    def _build_layout(self) -> None:
        self.sidebar = Sidebar(self)
        self.pages = SectionPages(self._bridge, self)
        chat = SectionInfo("", CHAT, "Chat", CHAT_ORDER)
        for number, info in enumerate(sorted([*declared(), chat], key=lambda i: i.order), 1):
            if info is chat:
                self.chat_page.setAccessibleName(chat.title)
                self.pages.add_built(CHAT, self.chat_page)
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
        shortcut = f"Ctrl+{number}" if number <= 9 else EXTRA_SHORTCUTS.get(info.key)
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
            self.chat_page.send(text)

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
        self.chat_page.info.connect(self.status.show_info)
        self.chat_page.problem.connect(self.status.show_error)
        self.chat_page.stats.connect(self.status.show_stats)
        self.sidebar.section_chosen.connect(self.show_section)
        self.pages.page_built.connect(self._on_page_built)
        self._show_placeholder(window_state.last_section(self._section_keys(), CHAT))
        bridge.opened.connect(self._check_first_run)
        bridge.opened.connect(self._on_opened)
        bridge.model_changed.connect(self._on_model_changed)
        bridge.error.connect(self.status.show_error)

    # -- public slots --------------------------------------------------
    @property
    def conversation_id(self) -> str | None:
        return self.chat_page.conversation_id

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
        self.chat_page.new_chat()

    @Slot(str)
    def open_conversation(self, conversation_id: str) -> None:
        self.chat_page.open_conversation(conversation_id)

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

    @Slot(str)
    def _on_model_changed(self, path: str) -> None:
        self._model_path = path
        self.status.set_model(path)

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
