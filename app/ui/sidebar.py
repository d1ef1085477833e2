"""The sidebar: one entry per section, Ctrl+<n> each; emits the chosen key."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal, Slot
from PySide6.QtWidgets import QListWidget, QListWidgetItem, QWidget

SIDEBAR_WIDTH = 168
_KEY_ROLE = Qt.ItemDataRole.UserRole


class Sidebar(QListWidget):
    """Entries carry their section key; ``section_chosen(key)`` on a change."""

    section_chosen = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("sidebar")
        self.setAccessibleName("Sections")
        self.setFixedWidth(SIDEBAR_WIDTH)
        self.setUniformItemSizes(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.currentItemChanged.connect(self._changed)

    def add_section(self, key: str, title: str, shortcut: str | None) -> None:
        item = QListWidgetItem(title, self)
        item.setData(_KEY_ROLE, key)
        item.setSizeHint(QSize(SIDEBAR_WIDTH - 8, 32))
        item.setToolTip(f"{title} ({shortcut})" if shortcut else title)

    def keys(self) -> list[str]:
        return [str(self.item(row).data(_KEY_ROLE)) for row in range(self.count())]

    def title_of(self, key: str) -> str | None:
        for row in range(self.count()):
            if self.item(row).data(_KEY_ROLE) == key:
                return self.item(row).text()
        return None

    def select(self, key: str) -> None:
        for row, existing in enumerate(self.keys()):
            if existing == key:
                self.setCurrentRow(row)
                return

    @property
    def current_key(self) -> str | None:
        item = self.currentItem()
        return None if item is None else str(item.data(_KEY_ROLE))

    @Slot(QListWidgetItem, QListWidgetItem)
    def _changed(self, current: QListWidgetItem | None, _previous: QListWidgetItem | None) -> None:
        if current is not None:
            self.section_chosen.emit(str(current.data(_KEY_ROLE)))
