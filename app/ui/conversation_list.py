"""The left pane: a "New chat" button over the list of conversations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from PySide6.QtCore import QSignalBlocker, Qt, Signal, Slot
from PySide6.QtWidgets import QListWidget, QListWidgetItem, QPushButton, QVBoxLayout, QWidget

if TYPE_CHECKING:
    from app.memory.conversations import Conversation

ID_ROLE = Qt.ItemDataRole.UserRole
PANE_WIDTH = 240


class ConversationList(QWidget):
    """Emits ``selected(id)`` when the owner picks a conversation."""

    selected = Signal(str)
    new_chat_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.new_button = QPushButton("New chat", self)
        self.list = QListWidget(self)
        self.list.setUniformItemSizes(True)
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setSpacing(2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 12, 6, 12)
        layout.addWidget(self.new_button)
        layout.addWidget(self.list, 1)
        self.setMinimumWidth(180)
        self.resize(PANE_WIDTH, self.height())
        self.new_button.clicked.connect(self.new_chat_requested)
        self.list.currentItemChanged.connect(self._on_current_changed)

    def ids(self) -> list[str]:
        """Conversation ids in the order shown."""
        return [str(self.list.item(row).data(ID_ROLE)) for row in range(self.list.count())]

    def set_conversations(self, conversations: Sequence[Conversation], current: str | None) -> None:
        """Show these conversations, keeping ``current`` selected; emits nothing."""
        with QSignalBlocker(self.list):
            self.list.clear()
            for conversation in conversations:
                item = QListWidgetItem(conversation.title, self.list)
                item.setData(ID_ROLE, conversation.id)
                item.setToolTip(conversation.title)
        self.select(current)

    @Slot(object)
    def select(self, conversation_id: str | None) -> None:
        """Mark this conversation (none for ``None``) as current; emits nothing."""
        with QSignalBlocker(self.list):
            self.list.setCurrentItem(self._item(conversation_id))  # type: ignore[arg-type]
            if conversation_id is None:
                self.list.clearSelection()

    def _item(self, conversation_id: str | None) -> QListWidgetItem | None:
        for row in range(self.list.count()):
            item = self.list.item(row)
            if item.data(ID_ROLE) == conversation_id:
                return item
        return None

    @Slot(QListWidgetItem, QListWidgetItem)
    def _on_current_changed(self, current: QListWidgetItem | None, _: object) -> None:
        if current is not None:
            self.selected.emit(str(current.data(ID_ROLE)))
