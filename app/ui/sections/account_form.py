"""The inline form that adds an account, built from the connector's own description.

Its fields come from the chosen kind's ``settings_schema`` (key ->
description, shown as the placeholder; "Optional…" ones may stay empty)
and ``secret_fields`` (password fields). On Add it checks the required
fields, emits ``submitted(kind, name, config, secrets)`` and clears every
secret field at once, so no secret stays in a widget; the page stores the
secrets in the keyring and never logs them.
"""

from __future__ import annotations

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.integrations.base import JsonValue
from app.ui.sections.connections_ops import KindSpec, is_required, typed_value


def label_for(key: str) -> str:
    """``imap_host`` -> ``Imap host``."""
    return key.replace("_", " ").capitalize()


class AccountForm(QWidget):
    """Emits ``submitted(kind, name, config, secrets)`` or ``cancelled``."""

    submitted = Signal(str, str, object, object)  # kind, name, config dict, secrets dict
    cancelled = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._specs: dict[str, KindSpec] = {}
        self.settings: dict[str, QLineEdit] = {}
        self.secrets: dict[str, QLineEdit] = {}
        self.kind = QComboBox(self)
        self.kind.setAccessibleName("Kind of account")
        self.name = QLineEdit(self)
        self.name.setAccessibleName("Account name")
        self.name.setPlaceholderText("A name you will recognise, e.g. Work mail")
        self.fields = QFormLayout()
        self.problem = QLabel("", self)
        self.problem.setAccessibleName("Form problem")
        self.problem.setWordWrap(True)
        self.add = QPushButton("Add account", self)
        self.add.setAccessibleName("Add account")
        self.cancel = QPushButton("Cancel", self)
        self.cancel.setAccessibleName("Cancel adding an account")
        head = QFormLayout()
        head.addRow("Kind", self.kind)
        head.addRow("Name", self.name)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.cancel)
        buttons.addWidget(self.add)
        layout = QVBoxLayout(self)
        layout.addLayout(head)
        layout.addLayout(self.fields)
        layout.addWidget(self.problem)
        layout.addLayout(buttons)
        self.kind.currentIndexChanged.connect(self._kind_chosen)
        self.add.clicked.connect(self._submit)
        self.cancel.clicked.connect(self._cancel)

    def set_kinds(self, specs: list[KindSpec]) -> None:
        """The kinds to choose from; the first one's fields are shown."""
        self._specs = {spec.kind: spec for spec in specs}
        self.kind.blockSignals(True)
        self.kind.clear()
        for spec in specs:
            self.kind.addItem(spec.display_name, spec.kind)
        self.kind.blockSignals(False)
        self._kind_chosen()

    def choose_kind(self, kind: str) -> None:
        index = self.kind.findData(kind)
        if index >= 0:
            self.kind.setCurrentIndex(index)

    @Slot()
    def _kind_chosen(self) -> None:
        while self.fields.rowCount():
            self.fields.removeRow(0)
        self.settings, self.secrets = {}, {}
        spec = self._specs.get(str(self.kind.currentData()))
        if spec is None:
            return
        for key, description in spec.settings:
            edit = QLineEdit(self)
            edit.setPlaceholderText(description)
            edit.setToolTip(description)
            edit.setAccessibleName(label_for(key))
            self.settings[key] = edit
            self.fields.addRow(label_for(key), edit)
        for field_name in spec.secret_fields:
            edit = QLineEdit(self)
            edit.setEchoMode(QLineEdit.EchoMode.Password)
            edit.setPlaceholderText("Kept in the system keyring, never in a file")
            edit.setAccessibleName(label_for(field_name))
            self.secrets[field_name] = edit
            self.fields.addRow(label_for(field_name), edit)
        self.problem.clear()

    def missing(self) -> list[str]:
        """Required settings and secrets left empty, by label."""
        spec = self._specs.get(str(self.kind.currentData()))
        if spec is None:
            return ["a kind"]
        empty = [
            label_for(key)
            for key, description in spec.settings
            if is_required(description) and not self.settings[key].text().strip()
        ]
        return empty + [label_for(f) for f, edit in self.secrets.items() if not edit.text()]

    @Slot()
    def _submit(self) -> None:
        missing = self.missing()
        if missing:
            self.problem.setText(f"Fill in: {', '.join(missing)}.")
            return
        config: dict[str, JsonValue] = {
            key: typed_value(edit.text()) for key, edit in self.settings.items() if edit.text()
        }
        secrets = {name: edit.text() for name, edit in self.secrets.items()}
        self.clear_secrets()
        self.problem.setText("Adding…")
        kind, name = str(self.kind.currentData()), self.name.text().strip()
        self.submitted.emit(kind, name, config, secrets)

    def clear_secrets(self) -> None:
        for edit in self.secrets.values():
            edit.clear()

    def reset(self) -> None:
        """Empty every field (after an account was added, or on Cancel)."""
        self.name.clear()
        for edit in (*self.settings.values(), *self.secrets.values()):
            edit.clear()
        self.problem.clear()

    @Slot()
    def _cancel(self) -> None:
        self.reset()
        self.cancelled.emit()
