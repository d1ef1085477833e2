"""One memory in detail: its versions, each one's text and provenance, and rollback.

A view only: it shows the history it is given and asks for a rollback with
``rollback_requested(memory_id, version)`` after an inline confirmation (a
bar under the versions, not a modal dialog: rolling back writes a new
version and keeps the history, so it is undoable by rolling forward).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.memory.memory_rows import MemoryVersion
from app.ui.sections.memory_ops import provenance_lines, version_title

_VERSION_ROLE = Qt.ItemDataRole.UserRole
NOTHING_SELECTED = "Select a memory to see its versions and where it came from."


class MemoryDetail(QWidget):
    """Emits ``rollback_requested(memory_id, version)`` once the owner confirmed."""

    rollback_requested = Signal(str, int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._versions: dict[int, MemoryVersion] = {}
        self._memory_id: str | None = None
        self._build()
        self.versions.currentItemChanged.connect(self._version_chosen)
        self.rollback.clicked.connect(self._ask_confirmation)
        self.confirm.clicked.connect(self._confirmed)
        self.keep.clicked.connect(self._hide_confirmation)

    def _build(self) -> None:
        self.header = QLabel(NOTHING_SELECTED, self)
        self.header.setWordWrap(True)
        self.versions = QListWidget(self)
        self.versions.setAccessibleName("Versions")
        self.text = QPlainTextEdit(self)
        self.text.setReadOnly(True)
        self.text.setAccessibleName("Version text")
        self.provenance = QLabel("", self)
        self.provenance.setAccessibleName("Provenance")
        self.provenance.setWordWrap(True)
        self.provenance.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.rollback = QPushButton("Roll back to this version", self)
        self.rollback.setAccessibleName("Roll back to this version")
        self.rollback.setEnabled(False)
        self.question = QLabel("", self)
        self.confirm = QPushButton("Roll back", self)
        self.confirm.setAccessibleName("Confirm rollback")
        self.keep = QPushButton("Keep as it is", self)
        self.keep.setAccessibleName("Cancel rollback")
        self.confirm_bar = QWidget(self)
        bar = QHBoxLayout(self.confirm_bar)
        bar.setContentsMargins(0, 0, 0, 0)
        bar.addWidget(self.question, 1)
        bar.addWidget(self.confirm)
        bar.addWidget(self.keep)
        self.confirm_bar.hide()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for widget in (self.header, self.versions, self.text, self.provenance):
            layout.addWidget(widget)
        layout.addWidget(self.rollback, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.confirm_bar)

    # -- showing -------------------------------------------------------
    def clear(self) -> None:
        self._memory_id = None
        self._versions = {}
        self.versions.clear()
        self.text.clear()
        self.provenance.clear()
        self.header.setText(NOTHING_SELECTED)
        self.rollback.setEnabled(False)
        self._hide_confirmation()

    @property
    def memory_id(self) -> str | None:
        return self._memory_id

    def show_history(self, versions: list[MemoryVersion]) -> None:
        """Show a memory's versions, newest first, the current one selected."""
        self.clear()
        if not versions:
            return
        latest = versions[-1]
        self._memory_id = latest.memory_id
        self._versions = {v.version: v for v in versions}
        self.header.setText(
            f"Memory {latest.memory_id} · {latest.kind} · {latest.scope} · "
            f"{len(versions)} version{'s' if len(versions) != 1 else ''}"
        )
        for version in reversed(versions):
            item = QListWidgetItem(version_title(version), self.versions)
            item.setData(_VERSION_ROLE, version.version)
        self.versions.setCurrentRow(0)

    def select_version(self, number: int) -> None:
        for row in range(self.versions.count()):
            if self.versions.item(row).data(_VERSION_ROLE) == number:
                self.versions.setCurrentRow(row)
                return

    def selected_version(self) -> MemoryVersion | None:
        item = self.versions.currentItem()
        return None if item is None else self._versions.get(int(item.data(_VERSION_ROLE)))

    @Slot(QListWidgetItem, QListWidgetItem)
    def _version_chosen(
        self, current: QListWidgetItem | None, _old: QListWidgetItem | None
    ) -> None:
        self._hide_confirmation()
        version = self.selected_version() if current is not None else None
        if version is None:
            return
        self.text.setPlainText("(deleted)" if version.tombstone else version.text)
        self.provenance.setText(
            "\n".join(f"{label}: {value}" for label, value in provenance_lines(version))
        )
        self.rollback.setEnabled(not version.is_current)

    # -- rollback ------------------------------------------------------
    @Slot()
    def _ask_confirmation(self) -> None:
        version = self.selected_version()
        if version is None or version.is_current:
            return
        self.question.setText(
            f"Make version {version.version} current again? The newer versions stay in the history."
        )
        self.confirm_bar.show()
        self.confirm.setFocus()

    @Slot()
    def _confirmed(self) -> None:
        version = self.selected_version()
        self._hide_confirmation()
        if version is not None and self._memory_id is not None:
            self.rollback.setEnabled(False)
            self.rollback_requested.emit(self._memory_id, version.version)

    @Slot()
    def _hide_confirmation(self) -> None:
        self.confirm_bar.hide()
