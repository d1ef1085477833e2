"""The chat transcript: messages as shaded blocks, the reply growing at the end.

Text is always inserted as plain text (never parsed as HTML), so whatever a
model writes is shown as written.
"""

from __future__ import annotations

from collections.abc import Iterable

from PySide6.QtCore import Slot
from PySide6.QtGui import QColor, QFont, QPalette, QTextCharFormat, QTextCursor, QTextFrameFormat
from PySide6.QtWidgets import QFrame, QTextBrowser, QWidget

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


class ChatView(QTextBrowser):
    """Shows one conversation; ``append_reply`` extends the last message."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setOpenLinks(False)
        self.document().setDocumentMargin(12)
        self._shown: list[tuple[str, str]] = []
        self._reply_cursor: QTextCursor | None = None

    # -- what is shown (also what the tests read) ----------------------
    def transcript(self) -> list[tuple[str, str]]:
        """(role, text) of every message shown, the growing reply included."""
        return list(self._shown)

    def reply_text(self) -> str:
        """The text of the reply being written, or of the last message."""
        return self._shown[-1][1] if self._shown else ""

    # -- slots ---------------------------------------------------------
    @Slot()
    def clear_messages(self) -> None:
        self.clear()
        self._shown.clear()
        self._reply_cursor = None

    def show_messages(self, messages: Iterable[tuple[str, str]]) -> None:
        """Replace the transcript with these (role, text) pairs."""
        self.clear_messages()
        for role, text in messages:
            self.add_message(role, text)
        self._scroll_to_end()

    def add_message(self, role: str, text: str) -> QTextCursor:
        """Add a message; the returned cursor sits at the end of its text."""
        cursor = self._insert_bubble(role)
        cursor.insertText(text, self._body_format())
        self._shown.append((role, text))
        self._scroll_to_end()
        return cursor

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
        role, so_far = self._shown[-1]
        self._shown[-1] = (role, so_far + text)
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
