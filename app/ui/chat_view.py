"""The chat transcript: messages as shaded blocks, the reply growing at the end.

Text is always inserted as plain text (never parsed as HTML), so whatever a
model writes is shown as written. A reply's citations are links under it
("[1] Title"); clicking one emits ``citation_clicked(memory_id)``. The
context menu of a message copies its text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from PySide6.QtCore import QPoint, QUrl, Signal, Slot
from PySide6.QtGui import (
    QColor,
    QContextMenuEvent,
    QFont,
    QGuiApplication,
    QPalette,
    QTextCharFormat,
    QTextCursor,
    QTextFrame,
    QTextFrameFormat,
)
from PySide6.QtWidgets import QFrame, QMenu, QTextBrowser, QWidget

if TYPE_CHECKING:  # the agents package brings DuckDB: not on the start path
    from app.agents.chat_context import Citation

MEMORY_SCHEME = "memory"
ROLE_LABELS = {"user": "You", "assistant": "Soloist", "system": "System", "tool": "Tool"}
BUBBLE_PADDING = 10
BUBBLE_GAP = 6
USER_INDENT = 48
USER_TINT = 0.16  # how much of the highlight colour shades the owner's messages


def mix(base: QColor, tint: QColor, amount: float) -> QColor:
    """``base`` moved ``amount`` (0..1) of the way towards ``tint``."""
    return QColor.fromRgbF(
        base.redF() + (tint.redF() - base.redF()) * amount,
        base.greenF() + (tint.greenF() - base.greenF()) * amount,
        base.blueF() + (tint.blueF() - base.blueF()) * amount,
    )


@dataclass
class Shown:
    """One message shown: its role, its text as written, the memories it cites."""

    role: str
    text: str
    citations: tuple[Citation, ...] = ()
    frame: QTextFrame | None = field(default=None, repr=False)


class ChatView(QTextBrowser):
    """Shows one conversation; ``append_reply`` extends the last message."""

    citation_clicked = Signal(str)  # memory id

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setOpenLinks(False)
        self.document().setDocumentMargin(12)
        self._shown: list[Shown] = []
        self._reply_cursor: QTextCursor | None = None
        self.anchorClicked.connect(self._on_anchor)

    # -- what is shown (also what the tests read) ----------------------
    def transcript(self) -> list[tuple[str, str]]:
        """(role, text) of every message shown, the growing reply included."""
        return [(m.role, m.text) for m in self._shown]

    def reply_text(self) -> str:
        """The text of the reply being written, or of the last message."""
        return self._shown[-1].text if self._shown else ""

    def citations(self, index: int = -1) -> tuple[Citation, ...]:
        """The citations shown under message ``index`` (the last by default)."""
        return self._shown[index].citations if self._shown else ()

    def last_is_reply(self) -> bool:
        return bool(self._shown) and self._shown[-1].role == "assistant"

    # -- slots ---------------------------------------------------------
    @Slot()
    def clear_messages(self) -> None:
        self.clear()
        self._shown.clear()
        self._reply_cursor = None

    def show_messages(
        self, messages: Iterable[tuple[str, str] | tuple[str, str, Sequence[Citation]]]
    ) -> None:
        """Replace the transcript with these (role, text[, citations])."""
        self.clear_messages()
        for role, text, *cited in messages:
            self.add_message(role, text)
            if cited and cited[0]:
                self.set_citations(cited[0])
        self._scroll_to_end()

    def add_message(self, role: str, text: str) -> QTextCursor:
        """Add a message; the returned cursor sits at the end of its text."""
        cursor = self._insert_bubble(role)
        frame = cursor.currentFrame()
        cursor.insertText(text, self._body_format())
        self._shown.append(Shown(role, text, frame=frame))
        self._scroll_to_end()
        return cursor

    def set_citations(self, citations: Sequence[Citation]) -> None:
        """Show links to ``citations`` under the last message (a finished reply)."""
        if not self._shown or not citations or self._shown[-1].frame is None:
            return
        shown = self._shown[-1]
        shown.citations = tuple(citations)
        assert shown.frame is not None
        cursor = shown.frame.lastCursorPosition()
        cursor.insertBlock()
        cursor.insertText("Sources: ", self._label_format())
        for number, citation in enumerate(citations):
            if number:
                cursor.insertText("   ", self._body_format())
            cursor.insertText(f"[{citation.number}] {citation.title}", _link_format(citation))
        self._scroll_to_end()

    def remove_last_reply(self) -> None:
        """Take the last message away if it is a reply (it is being written again)."""
        if not self.last_is_reply():
            return
        kept = [(m.role, m.text, m.citations) for m in self._shown[:-1]]
        self.show_messages(kept)

    # -- copying -------------------------------------------------------
    def copy_message(self, index: int = -1) -> None:
        """Put message ``index``'s text, as written, on the clipboard."""
        if self._shown:
            QGuiApplication.clipboard().setText(self._shown[index].text)

    def message_at(self, pos: QPoint) -> int | None:
        """The index of the message under ``pos`` (viewport coordinates), if any."""
        frame: QTextFrame | None = self.cursorForPosition(pos).currentFrame()
        while frame is not None:
            for index, shown in enumerate(self._shown):
                if shown.frame == frame:
                    return index
            frame = frame.parentFrame()
        return None

    def context_menu(self, pos: QPoint) -> QMenu:
        """The standard menu, with "Copy message" first when over a message."""
        menu = self.createStandardContextMenu(pos)
        index = self.message_at(pos)
        if index is not None:
            label = "Copy reply" if self._shown[index].role == "assistant" else "Copy message"
            action = menu.addAction(label)
            action.triggered.connect(lambda _=False, i=index: self.copy_message(i))
            first = menu.actions()[0]
            menu.insertAction(first, action)
            menu.insertSeparator(first)
        return menu

    def contextMenuEvent(self, event: QContextMenuEvent) -> None:  # noqa: N802 (Qt's name)
        menu = self.context_menu(self.viewport().mapFromGlobal(event.globalPos()))
        menu.exec(event.globalPos())
        menu.deleteLater()

    @Slot(QUrl)
    def _on_anchor(self, url: QUrl) -> None:
        if url.scheme() == MEMORY_SCHEME and url.path():
            self.citation_clicked.emit(url.path())

    @Slot()
    def begin_reply(self) -> None:
        """Add an empty assistant message that ``append_reply`` extends."""
        self._reply_cursor = self.add_message("assistant", "")

    @Slot(str)
    def append_reply(self, text: str) -> None:
        if self._reply_cursor is None:
            self.begin_reply()
        assert self._reply_cursor is not None
        follow = self._at_end()
        self._reply_cursor.insertText(text, self._body_format())
        self._shown[-1].text += text
        if follow:
            self._scroll_to_end()

    @Slot()
    def end_reply(self) -> None:
        """The reply is complete; the next chunk would start a new message."""
        self._reply_cursor = None

    # -- formatting ----------------------------------------------------
    def _insert_bubble(self, role: str) -> QTextCursor:
        cursor = QTextCursor(self.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        frame = cursor.insertFrame(self._bubble_format(role))
        inner = frame.firstCursorPosition()
        inner.insertText(ROLE_LABELS.get(role, role), self._label_format())
        inner.insertBlock()
        return inner

    def _bubble_format(self, role: str) -> QTextFrameFormat:
        fmt = QTextFrameFormat()
        fmt.setPadding(BUBBLE_PADDING)
        fmt.setTopMargin(BUBBLE_GAP)
        fmt.setBottomMargin(BUBBLE_GAP)
        fmt.setBorder(0)
        fmt.setBackground(self._bubble_color(role))
        if role == "user":
            fmt.setLeftMargin(USER_INDENT)
        else:
            fmt.setRightMargin(USER_INDENT)
        return fmt

    def _bubble_color(self, role: str) -> QColor:
        palette = self.palette()
        if role == "user":
            base = palette.color(QPalette.ColorRole.Base)
            return mix(base, palette.color(QPalette.ColorRole.Highlight), USER_TINT)
        return palette.color(QPalette.ColorRole.AlternateBase)

    def _label_format(self) -> QTextCharFormat:
        fmt = QTextCharFormat()
        fmt.setFontWeight(QFont.Weight.Bold)
        fmt.setForeground(self.palette().color(QPalette.ColorRole.PlaceholderText))
        return fmt

    def _body_format(self) -> QTextCharFormat:
        fmt = QTextCharFormat()
        fmt.setFontWeight(QFont.Weight.Normal)
        fmt.setForeground(self.palette().color(QPalette.ColorRole.Text))
        return fmt

    # -- scrolling -----------------------------------------------------
    def _at_end(self) -> bool:
        bar = self.verticalScrollBar()
        return bar.value() >= bar.maximum() - 4

    def _scroll_to_end(self) -> None:
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())


def _link_format(citation: Citation) -> QTextCharFormat:
    fmt = QTextCharFormat()
    fmt.setAnchor(True)
    fmt.setAnchorHref(f"{MEMORY_SCHEME}:{citation.memory_id}")
    fmt.setFontUnderline(True)
    fmt.setForeground(QGuiApplication.palette().color(QPalette.ColorRole.Link))
    fmt.setToolTip(f"Memory from {citation.source}")
    return fmt
