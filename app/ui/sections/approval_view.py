"""One action as the owner decides on it: the exact payload, where each value came from.

The view shows an :class:`ActionRecord` and emits what the owner chose; it
never calls the office. Values an agent copied from outside text (an email,
a web page) are marked in three ways at once: a warning icon, the words
"from untrusted: <sources>" and a tinted row, so the mark survives colour
blindness and screen readers. Sources are named in words (the section hands
over what the office knows of each: "an email from anna@example.com,
'Invoice 42'", "3 memories (from you and the desk agent)"); the labels the
trace recorded, memory ids included, are in the tooltips. Edit and reject
happen inline (no dialogs): the edit form has one line per top-level field
of the payload, the reject form one line for the reason the agent will read.
"""

from __future__ import annotations

from collections.abc import Mapping

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QStyle,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.agents.outbox_states import ActionRecord, ActionState
from app.ui.sections.approvals_ops import (
    SourceWords,
    diff_rows,
    editable_fields,
    edited_args,
    field_rows,
    labels_tooltip,
    risk_label,
    taint_banner,
)

UNTRUSTED_TINT = QColor(255, 224, 178)  # amber; the text and icon say it too
UNTRUSTED_TEXT = QColor(33, 33, 33)  # dark text on the amber, whatever the theme
BANNER_STYLE = "background: #fff3cd; color: #5c4400; padding: 6px; border-radius: 4px;"
NOTHING = "Choose an action on the left to see exactly what it would do."
_FIT = QHeaderView.ResizeMode.ResizeToContents


def _table(parent: QWidget, headers: list[str], name: str, stretch: set[int]) -> QTableWidget:
    """Columns in ``stretch`` share the width (their text wraps); the others fit their text."""
    table = QTableWidget(0, len(headers), parent)
    table.setHorizontalHeaderLabels(headers)
    table.setAccessibleName(name)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.verticalHeader().setVisible(False)
    table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    header = table.horizontalHeader()
    header.setStretchLastSection(False)
    for column in range(len(headers)):
        mode = QHeaderView.ResizeMode.Stretch if column in stretch else _FIT
        header.setSectionResizeMode(column, mode)
    table.setWordWrap(True)
    return table


def _button(text: str, name: str, parent: QWidget) -> QPushButton:
    button = QPushButton(text, parent)
    button.setAccessibleName(name)
    return button


class ApprovalView(QWidget):
    """Emits the owner's decision on the shown action, with the hash they saw."""

    approve_requested = Signal(str, str)  # action id, shown content hash
    edit_approved = Signal(str, str, object)  # action id, shown hash, edited args (dict)
    reject_requested = Signal(str, str)  # action id, reason
    settle_requested = Signal(str, bool)  # action id, it happened

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.record: ActionRecord | None = None
        self._sources: Mapping[str, SourceWords] = {}
        self._edits: dict[str, QLineEdit] = {}
        self.title = QLabel(NOTHING, self)
        self.title.setWordWrap(True)
        self.banner = QLabel(self)
        self.banner.setWordWrap(True)
        self.banner.setStyleSheet(BANNER_STYLE)
        self.banner.setAccessibleName("Untrusted input warning")
        self.preview = QLabel(self)
        self.preview.setWordWrap(True)
        self.preview.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.diff = _table(self, ["Field", "Before", "After"], "Changes", {1, 2})
        self.fields = _table(self, ["Field", "Value", "Origin"], "Exact payload", {1})
        self.message = QLabel(self)
        self.message.setWordWrap(True)
        self.message.setAccessibleName("Approval message")
        self._build_buttons()
        self._build_forms()
        self._layout()
        self.show_record(None)

    # -- construction --------------------------------------------------------------
    def _build_buttons(self) -> None:
        self.approve_button = _button("Approve", "Approve this action", self)
        self.edit_button = _button("Edit…", "Edit then approve", self)
        self.reject_button = _button("Reject…", "Reject this action", self)
        self.sent_button = _button("It was sent", "It happened", self)
        self.not_sent_button = _button("It was not sent", "It did not happen", self)
        self.approve_button.clicked.connect(self._approve)
        self.edit_button.clicked.connect(self.start_edit)
        self.reject_button.clicked.connect(self.start_reject)
        self.sent_button.clicked.connect(lambda: self._settle(True))
        self.not_sent_button.clicked.connect(lambda: self._settle(False))

    def _build_forms(self) -> None:
        self.editor = QWidget(self)
        self.editor_form = QFormLayout(self.editor)
        self.save_edit_button = _button("Approve edited", "Approve the edited action", self)
        self.cancel_edit_button = _button("Cancel edit", "Cancel the edit", self)
        self.save_edit_button.clicked.connect(self._approve_edited)
        self.cancel_edit_button.clicked.connect(self._end_forms)
        self.rejector = QWidget(self)
        row = QHBoxLayout(self.rejector)
        row.setContentsMargins(0, 0, 0, 0)
        self.reason = QLineEdit(self.rejector)
        self.reason.setPlaceholderText("Why? The agent reads this next time.")
        self.reason.setAccessibleName("Reason for rejecting")
        self.confirm_reject_button = _button("Reject", "Confirm the rejection", self.rejector)
        self.cancel_reject_button = _button("Cancel", "Cancel the rejection", self.rejector)
        self.reason.returnPressed.connect(self._reject)
        self.confirm_reject_button.clicked.connect(self._reject)
        self.cancel_reject_button.clicked.connect(self._end_forms)
        for widget in (self.reason, self.confirm_reject_button, self.cancel_reject_button):
            row.addWidget(widget)

    def _layout(self) -> None:
        column = QVBoxLayout(self)
        for widget in (self.title, self.banner, self.preview):
            column.addWidget(widget)
        column.addWidget(self.diff)
        column.addWidget(self.fields, 1)
        column.addWidget(self.editor)
        edit_row = QHBoxLayout()
        edit_row.addWidget(self.save_edit_button)
        edit_row.addWidget(self.cancel_edit_button)
        edit_row.addStretch(1)
        column.addLayout(edit_row)
        column.addWidget(self.rejector)
        buttons = QHBoxLayout()
        for button in (self.approve_button, self.edit_button, self.reject_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.sent_button)
        buttons.addWidget(self.not_sent_button)
        column.addLayout(buttons)
        column.addWidget(self.message)

    # -- showing -------------------------------------------------------------------
    @property
    def action_id(self) -> str | None:
        return self.record.id if self.record is not None else None

    def show_record(self, record: ActionRecord | None, message: str = "") -> None:
        """Show ``record`` (None: nothing chosen); any open form is closed."""
        self.record = record
        self._end_forms()
        self.message.setText(message)
        waiting = record is not None and record.state is ActionState.PROPOSED
        in_doubt = record is not None and record.state is ActionState.IN_DOUBT
        for button in (self.approve_button, self.edit_button, self.reject_button):
            button.setVisible(waiting)
        self.sent_button.setVisible(in_doubt)
        self.not_sent_button.setVisible(in_doubt)
        self.fields.setVisible(record is not None)
        if record is None:
            self.title.setText(NOTHING)
            self.banner.hide()
            self.preview.clear()
            self.diff.hide()
            return
        self.title.setText(self._title(record))
        self._show_banner(record)
        self.preview.setText(record.preview)
        self._fill_diff(record)
        self._fill_fields(record)

    def set_sources(self, sources: Mapping[str, SourceWords]) -> None:
        """What the office knows of each untrusted source label; the shown action is reworded."""
        if dict(sources) == dict(self._sources):
            return
        self._sources = dict(sources)
        if self.record is not None:
            self._show_banner(self.record)
            self._fill_fields(self.record)

    def show_message(self, text: str) -> None:
        self.message.setText(text)

    def _show_banner(self, record: ActionRecord) -> None:
        notice = taint_banner(record, self._sources)
        self.banner.setVisible(notice is not None)
        self.banner.setText(notice or "")
        self.banner.setToolTip(labels_tooltip(record.untrusted_labels) if notice else "")

    @staticmethod
    def _title(record: ActionRecord) -> str:
        what = "Did this happen?" if record.state is ActionState.IN_DOUBT else "Approve?"
        return (
            f"<b>{record.action}</b> by agent <b>{record.agent_id}</b> — "
            f"{risk_label(record.risk)} risk. {what}"
        )

    def _fill_diff(self, record: ActionRecord) -> None:
        rows = diff_rows(record)
        self.diff.setRowCount(len(rows))
        for index, row in enumerate(rows):
            for column, text in enumerate((row.name, row.before, row.after)):
                self.diff.setItem(index, column, QTableWidgetItem(text))
        self.diff.setVisible(bool(rows))

    def _fill_fields(self, record: ActionRecord) -> None:
        rows = field_rows(record)
        warning = self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning)
        self.fields.setRowCount(len(rows))
        for index, row in enumerate(rows):
            origin = row.origin_text(self._sources)  # short; the sources in full in the tooltip
            items = [QTableWidgetItem(text) for text in (row.path, row.value, origin)]
            items[1].setToolTip(row.value)
            if row.untrusted:
                items[1].setIcon(warning)
                for item in items:
                    item.setBackground(QBrush(UNTRUSTED_TINT))
                    item.setForeground(QBrush(UNTRUSTED_TEXT))  # readable in dark themes too
                    item.setToolTip(f"{origin}\n\n{labels_tooltip(row.sources)}")
            for column, item in enumerate(items):
                self.fields.setItem(index, column, item)

    def origin_of(self, path: str) -> str:
        """The origin text shown for the field at ``path`` ("" when absent)."""
        for index in range(self.fields.rowCount()):
            name = self.fields.item(index, 0)
            if name is not None and name.text() == path:
                mark = self.fields.item(index, 2)
                return mark.text() if mark is not None else ""
        return ""

    # -- forms ---------------------------------------------------------------------
    @Slot()
    def start_edit(self) -> None:
        if self.record is None:
            return
        self._end_forms()
        self._edits = {}
        untrusted = {row.path.split("/")[0] for row in field_rows(self.record) if row.untrusted}
        for key, text in editable_fields(self.record.payload):
            edit = QLineEdit(text, self.editor)
            edit.setAccessibleName(f"Edit {key}")
            label = f"⚠ {key} (untrusted)" if key in untrusted else key
            self.editor_form.addRow(label, edit)
            self._edits[key] = edit
        self._show_editor(True)

    def edit_field(self, key: str) -> QLineEdit | None:
        return self._edits.get(key)

    @Slot()
    def start_reject(self) -> None:
        if self.record is None:
            return
        self._end_forms()
        self.rejector.show()
        self.reason.setFocus()

    @Slot()
    def _end_forms(self) -> None:
        while self.editor_form.rowCount():
            self.editor_form.removeRow(0)
        self._edits = {}
        self._show_editor(False)
        self.reason.clear()
        self.rejector.hide()

    def _show_editor(self, shown: bool) -> None:
        self.editor.setVisible(shown)
        self.save_edit_button.setVisible(shown)
        self.cancel_edit_button.setVisible(shown)

    # -- decisions -----------------------------------------------------------------
    @Slot()
    def _approve(self) -> None:
        if self.record is not None:
            self.message.setText("Approving…")
            self.approve_requested.emit(self.record.id, self.record.content_hash)

    @Slot()
    def _approve_edited(self) -> None:
        if self.record is None:
            return
        texts = {key: edit.text() for key, edit in self._edits.items()}
        try:
            args = edited_args(self.record.payload, texts)
        except ValueError as exc:
            self.message.setText(str(exc))
            return
        self.message.setText("Approving the edited action…")
        self.edit_approved.emit(self.record.id, self.record.content_hash, args)

    @Slot()
    def _reject(self) -> None:
        if self.record is not None:
            self.message.setText("Rejecting…")
            self.reject_requested.emit(self.record.id, self.reason.text())

    def _settle(self, happened: bool) -> None:
        if self.record is not None:
            self.message.setText("Saving…")
            self.settle_requested.emit(self.record.id, happened)
