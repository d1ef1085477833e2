"""The input box and its Send/Stop button, and the bar above it.

Enter sends, Shift+Enter starts a new line. While a reply is being written
the button reads Stop and Enter does nothing. The bar (:class:`ChatBar`)
chooses who the chat talks to and acts on the last reply: copy, regenerate.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QSignalBlocker, Qt, Signal, Slot
from PySide6.QtGui import QKeyEvent, QTextCursor
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QWidget,
)

INPUT_LINES = 4
SUBMIT_KEYS = (Qt.Key.Key_Return, Qt.Key.Key_Enter)
ASSISTANT = "Assistant"
AGENT_TIP = (
    "Who answers in this chat. An agent answers with its own instructions, in plain "
    "chat: it calls no tools and takes no actions from here (run it from Agents for that)."
)


class PromptEdit(QPlainTextEdit):
    """A plain-text box that emits ``submitted`` on Enter."""

    submitted = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt's name)
        if event.key() in SUBMIT_KEYS:
            if event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
                self.insertPlainText("\n")
            else:
                self.submitted.emit()
            event.accept()
            return
        super().keyPressEvent(event)


class Composer(QWidget):
    """Emits ``send_requested(text)`` and ``stop_requested()``."""

    send_requested = Signal(str)
    stop_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._busy = False
        self.edit = PromptEdit(self)
        self.edit.setPlaceholderText("Message Soloist (Enter sends, Shift+Enter for a new line)")
        self.edit.setTabChangesFocus(True)
        self.edit.setFixedHeight(self._lines_height(INPUT_LINES))
        self.button = QPushButton("Send", self)
        self.button.setDefault(False)
        self.button.setMinimumWidth(80)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 6, 12, 12)
        layout.addWidget(self.edit, 1)
        layout.addWidget(self.button, 0, Qt.AlignmentFlag.AlignBottom)
        self.edit.submitted.connect(self._submit)
        self.button.clicked.connect(self._on_button)

    @Slot(bool)
    def set_busy(self, busy: bool) -> None:
        self._busy = busy
        self.button.setText("Stop" if busy else "Send")

    @Slot(str)
    def restore(self, text: str) -> None:
        """Put back a message that could not be sent, unless something new was typed."""
        if not self.edit.toPlainText():
            self.edit.setPlainText(text)
            self.edit.moveCursor(QTextCursor.MoveOperation.End)

    @Slot()
    def focus_input(self) -> None:
        self.edit.setFocus(Qt.FocusReason.ShortcutFocusReason)

    @Slot()
    def _on_button(self) -> None:
        if self._busy:
            self.stop_requested.emit()
        else:
            self._submit()

    @Slot()
    def _submit(self) -> None:
        text = self.edit.toPlainText()
        if self._busy or not text.strip():
            return
        self.edit.clear()
        self.send_requested.emit(text)

    def _lines_height(self, lines: int) -> int:
        margins = self.edit.contentsMargins()
        frame = 2 * self.edit.frameWidth() + margins.top() + margins.bottom()
        doc_margin = int(2 * self.edit.document().documentMargin())
        return lines * self.edit.fontMetrics().lineSpacing() + frame + doc_margin


class ChatBar(QWidget):
    """ "Talk to" and the last reply's actions.

    Emits ``agent_chosen(agent_id)`` ("" for the assistant) when the owner
    picks one, ``copy_requested()`` and ``regenerate_requested()``.
    """

    agent_chosen = Signal(str)
    copy_requested = Signal()
    regenerate_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._busy = False
        self._has_reply = False
        self.agent = QComboBox(self)
        self.agent.setAccessibleName("Talk to")
        self.agent.setToolTip(AGENT_TIP)
        self.agent.addItem(ASSISTANT, "")
        self.copy = QPushButton("Copy reply", self)
        self.copy.setToolTip("Copy the last reply's text to the clipboard")
        self.regenerate = QPushButton("Regenerate", self)
        self.regenerate.setToolTip("Write the last reply again")
        label = QLabel("Talk to:", self)
        label.setBuddy(self.agent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 6, 12, 0)
        layout.addWidget(label)
        layout.addWidget(self.agent)
        layout.addStretch(1)
        layout.addWidget(self.copy)
        layout.addWidget(self.regenerate)
        self._update_buttons()
        self.agent.activated.connect(self._on_activated)
        self.copy.clicked.connect(self.copy_requested)
        self.regenerate.clicked.connect(self.regenerate_requested)

    @property
    def agent_id(self) -> str | None:
        """The agent chosen; None for the assistant."""
        return str(self.agent.currentData() or "") or None

    def set_agents(self, agents: Sequence[tuple[str, str]]) -> None:
        """Offer these (id, name) agents after the assistant, keeping the choice."""
        chosen = self.agent_id
        with QSignalBlocker(self.agent):
            self.agent.clear()
            self.agent.addItem(ASSISTANT, "")
            for agent_id, name in agents:
                self.agent.addItem(name, agent_id)
        self.set_agent(chosen)

    def set_agent(self, agent_id: str | None) -> None:
        """Show ``agent_id`` as chosen (an unknown one is added by id); emits nothing."""
        index = self.agent.findData(agent_id or "")
        with QSignalBlocker(self.agent):
            if index < 0:
                self.agent.addItem(str(agent_id), agent_id)
                index = self.agent.count() - 1
            self.agent.setCurrentIndex(index)

    @Slot(bool)
    def set_busy(self, busy: bool) -> None:
        self._busy = busy
        self._update_buttons()

    def set_has_reply(self, has_reply: bool) -> None:
        self._has_reply = has_reply
        self._update_buttons()

    def _update_buttons(self) -> None:
        self.copy.setEnabled(self._has_reply)
        self.regenerate.setEnabled(self._has_reply and not self._busy)

    @Slot(int)
    def _on_activated(self, _index: int) -> None:
        self.agent_chosen.emit(self.agent_id or "")
