"""Connections: the office's accounts, how their last sync went, and what to do about it.

Each account shows its kind, name, whether it is enabled, its last sync
(from ``Connections.status()``) and any secret it lacks. Test, Sync now,
enable/disable, re-authenticate and remove run through the bridge, so a
slow or unreachable server never blocks the window; a test's
``ConnectionReport`` appears as soon as it comes back. The secret typed to
re-authenticate goes to the keyring and the field is cleared at once.
Adding an account uses :class:`~app.ui.sections.account_form.AccountForm`,
shown inline. The list refreshes when shown, when the office opens, and
every few seconds while visible (background syncs change it).
"""

from __future__ import annotations

from collections.abc import Mapping

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.integrations.base import Account, ConnectionReport, JsonValue
from app.integrations.service import SyncStatus
from app.office import Office
from app.ui.office_bridge import OfficeBridge
from app.ui.sections import section
from app.ui.sections.account_form import AccountForm
from app.ui.sections.connections_ops import (
    AccountRow,
    KindSpec,
    add_account,
    check_account,
    kinds,
    list_accounts,
    remove_account,
    report_text,
    row_text,
    set_enabled,
    set_secret,
    sync_account,
    sync_text,
)
from app.ui.sections.refreshing import RefreshingSection, StatusLabel

_ID_ROLE = Qt.ItemDataRole.UserRole
REFRESH_MS = 10_000
NO_ACCOUNT = "No account chosen. Add one to connect mail, calendars, the CRM or a store."


class ConnectionsPage(RefreshingSection):
    refresh_interval_ms = REFRESH_MS

    def __init__(self, bridge: OfficeBridge, parent: QWidget | None = None) -> None:
        super().__init__(bridge, parent)
        self._rows: dict[str, AccountRow] = {}
        self._reports: dict[str, str] = {}
        self._loading = False
        self._build()
        self._connect_signals()
        self._show_account(None)

    # -- construction --------------------------------------------------
    def _build(self) -> None:
        self.accounts = QListWidget(self)
        self.accounts.setAccessibleName("Accounts")
        self.new_account = QPushButton("Add account…", self)
        self.new_account.setAccessibleName("Add account")
        self.form = AccountForm(self)
        self.form.hide()
        self.message = StatusLabel("Connections status", self)
        left = QVBoxLayout()
        left.addWidget(self.accounts, 1)
        left.addWidget(self.new_account)
        right = QVBoxLayout()
        right.addWidget(self.form)
        right.addWidget(self._build_detail(), 1)
        right.addWidget(self.message)
        layout = QHBoxLayout(self)
        layout.addLayout(left, 1)
        layout.addLayout(right, 2)

    def _build_detail(self) -> QWidget:
        self.detail = QWidget(self)
        self.title = QLabel(NO_ACCOUNT, self.detail)
        self.title.setWordWrap(True)
        self.sync_state = QLabel("", self.detail)
        self.sync_state.setAccessibleName("Last sync")
        self.sync_state.setWordWrap(True)
        self.test = _button("Test", "Test the connection", self.detail)
        self.sync = _button("Sync now", "Sync now", self.detail)
        self.toggle = _button("Disable", "Enable or disable the account", self.detail)
        self.remove = _button("Remove…", "Remove the account", self.detail)
        self.report = QLabel("", self.detail)
        self.report.setAccessibleName("Connection test report")
        self.report.setWordWrap(True)
        self.report.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.secret_field = QComboBox(self.detail)
        self.secret_field.setAccessibleName("Secret to replace")
        self.secret = QLineEdit(self.detail)
        self.secret.setEchoMode(QLineEdit.EchoMode.Password)
        self.secret.setAccessibleName("New password or token")
        self.secret.setPlaceholderText("New password or token (goes to the keyring)")
        self.save_secret = _button("Save", "Save the password or token", self.detail)
        self.confirm_remove = _button("Remove", "Confirm removing the account", self.detail)
        self.keep = _button("Keep", "Keep the account", self.detail)
        self.remove_question = QLabel("", self.detail)
        self.remove_bar = _row(self.detail, self.remove_question, self.confirm_remove, self.keep)
        self.remove_bar.hide()
        self.auth_bar = _row(self.detail, self.secret_field, self.secret, self.save_secret)
        column = QVBoxLayout(self.detail)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.title)
        column.addWidget(self.sync_state)
        column.addWidget(_row(self.detail, self.test, self.sync, self.toggle, self.remove))
        column.addWidget(self.remove_bar)
        column.addWidget(self.report)
        column.addWidget(self.auth_bar)
        column.addStretch(1)
        return self.detail

    def _connect_signals(self) -> None:
        self.accounts.currentItemChanged.connect(self._account_chosen)
        self.new_account.clicked.connect(self.open_form)
        self.form.submitted.connect(self._add)
        self.form.cancelled.connect(self.form.hide)
        self.test.clicked.connect(self.test_current)
        self.sync.clicked.connect(self._sync_current)
        self.toggle.clicked.connect(self._toggle_current)
        self.remove.clicked.connect(self._ask_remove)
        self.keep.clicked.connect(self.remove_bar.hide)
        self.confirm_remove.clicked.connect(self._remove_current)
        self.save_secret.clicked.connect(self._save_secret)
        self.secret.returnPressed.connect(self._save_secret)

    # -- the list ------------------------------------------------------
    @Slot()
    def refresh(self) -> None:
        if self._loading:
            return
        self._loading = True
        self._bridge.call(list_accounts, self._show_rows, self._failed)

    def _show_rows(self, rows: list[AccountRow]) -> None:
        self._loading = False
        chosen = self.current_id()
        self._rows = {row.id: row for row in rows}
        self.accounts.blockSignals(True)
        self.accounts.clear()
        for row in rows:
            item = QListWidgetItem(row_text(row), self.accounts)
            item.setData(_ID_ROLE, row.id)
            if row.id == chosen:
                self.accounts.setCurrentItem(item)
        self.accounts.blockSignals(False)
        if self.accounts.currentItem() is None and rows:
            self.accounts.setCurrentRow(0)  # shows it through the signal
        else:
            self._show_account(self._rows.get(chosen or ""))

    def current_id(self) -> str | None:
        item = self.accounts.currentItem()
        return None if item is None else str(item.data(_ID_ROLE))

    def select(self, account_id: str) -> None:
        for index in range(self.accounts.count()):
            if self.accounts.item(index).data(_ID_ROLE) == account_id:
                self.accounts.setCurrentRow(index)
                return

    @Slot(QListWidgetItem, QListWidgetItem)
    def _account_chosen(self, current: QListWidgetItem | None, _old: object) -> None:
        self.remove_bar.hide()
        self._show_account(None if current is None else self._rows.get(current.data(_ID_ROLE)))

    def _show_account(self, row: AccountRow | None) -> None:
        for widget in (self.test, self.sync, self.toggle, self.remove):
            widget.setEnabled(row is not None)
        self.auth_bar.setVisible(row is not None and bool(row.secret_fields))
        if row is None:
            self.title.setText(NO_ACCOUNT)
            self.sync_state.clear()
            self.report.clear()
            return
        account = row.account
        state = "enabled" if row.enabled else "disabled"
        self.title.setText(
            f"<b>{_escape(account.name)}</b> · {account.kind} · {account.id} · {state}"
        )
        missing = ", ".join(row.missing_secrets)
        note = f"\nNo {missing} stored: enter it below." if missing else ""
        self.sync_state.setText((sync_text(row.last_sync) if row.syncable else "") + note)
        self.sync.setEnabled(row.syncable and row.enabled)
        self.test.setEnabled(row.enabled)
        self.toggle.setText("Disable" if row.enabled else "Enable")
        self.report.setText(self._reports.get(account.id, ""))
        if [self.secret_field.itemText(i) for i in range(self.secret_field.count())] != list(
            row.secret_fields
        ):
            self.secret_field.clear()
            self.secret_field.addItems(list(row.secret_fields))
        self.secret_field.setVisible(len(row.secret_fields) > 1)

    # -- commands ------------------------------------------------------
    @Slot()
    def test_current(self) -> None:
        account_id = self.current_id()
        if account_id is None:
            return
        self._set_report(account_id, "Testing…")
        self.test.setEnabled(False)

        def done(report: ConnectionReport) -> None:
            self._set_report(account_id, report_text(report))
            self.test.setEnabled(True)

        def failed(text: str) -> None:
            self._set_report(account_id, f"Failed: {text}")
            self.test.setEnabled(True)

        self._bridge.call(lambda office: check_account(office, account_id), done, failed)

    @Slot()
    def _sync_current(self) -> None:
        account_id = self.current_id()
        if account_id is None:
            return
        self.sync.setEnabled(False)
        self.sync_state.setText("Syncing…")

        def done(status: SyncStatus) -> None:
            self.message.setText(sync_text(status))
            self.refresh()

        self._bridge.call(lambda office: sync_account(office, account_id), done, self._failed)

    @Slot()
    def _toggle_current(self) -> None:
        row = self._rows.get(self.current_id() or "")
        if row is None:
            return
        enable = not row.enabled

        def done(enabled: bool) -> None:
            self.message.setText(f"{row.account.name} {'enabled' if enabled else 'disabled'}.")
            self.refresh()

        self._bridge.call(lambda office: set_enabled(office, row.id, enable), done, self._failed)

    @Slot()
    def _ask_remove(self) -> None:
        row = self._rows.get(self.current_id() or "")
        if row is None:
            return
        self.remove_question.setText(
            f"Remove {row.account.name} and delete its secrets from the keyring?"
        )
        self.remove_bar.show()

    @Slot()
    def _remove_current(self) -> None:
        self.remove_bar.hide()
        account_id = self.current_id()
        if account_id is None:
            return

        def done(removed: str) -> None:
            self._reports.pop(removed, None)
            self.message.setText(f"Removed {removed} and its secrets.")
            self.refresh()

        self._bridge.call(lambda office: remove_account(office, account_id), done, self._failed)

    @Slot()
    def _save_secret(self) -> None:
        account_id = self.current_id()
        value = self.secret.text()
        self.secret.clear()  # the value lives on only in this call
        if account_id is None or not value:
            self.message.setText("Type the password or token first.")
            return
        field_name = self.secret_field.currentText() or "password"

        def done(stored: str) -> None:
            self.message.setText(f"The {stored} is stored in the keyring. Test the account now.")
            self.refresh()

        self._bridge.call(
            lambda office: set_secret(office, account_id, field_name, value), done, self._failed
        )

    # -- adding --------------------------------------------------------
    @Slot()
    def open_form(self) -> None:
        self.form.show()
        self._bridge.call(lambda _office: kinds(), self._show_kinds, self._failed)

    def _show_kinds(self, specs: list[KindSpec]) -> None:
        if self.form.kind.count() == 0:
            self.form.set_kinds(specs)
        self.form.name.setFocus()

    @Slot(str, str, object, object)
    def _add(
        self, kind: str, name: str, config: Mapping[str, JsonValue], secrets: Mapping[str, str]
    ) -> None:
        def op(office: Office) -> Account:
            return add_account(office, kind, name, config, secrets)

        def done(account: Account) -> None:
            self.form.reset()
            self.form.hide()
            self.message.setText(f"Added {account.name} ({account.id}). Test it now.")
            self._bridge.call(
                list_accounts, lambda rows: self._show_added(rows, account.id), self._failed
            )

        def failed(text: str) -> None:
            self.form.problem.setText(f"{text} Nothing was added; type any secret again.")

        self._bridge.call(op, done, failed)

    def _show_added(self, rows: list[AccountRow], account_id: str) -> None:
        self._show_rows(rows)
        self.select(account_id)

    def _set_report(self, account_id: str, text: str) -> None:
        self._reports[account_id] = text
        if self.current_id() == account_id:
            self.report.setText(text)

    def _failed(self, text: str) -> None:
        self._loading = False
        self.message.setText(text)

    @Slot()
    def on_opened(self) -> None:
        self._loading = False  # a read asked for before the office opened never ran
        super().on_opened()


def _button(text: str, name: str, parent: QWidget) -> QPushButton:
    button = QPushButton(text, parent)
    button.setAccessibleName(name)
    return button


def _row(parent: QWidget, *widgets: QWidget) -> QWidget:
    holder = QWidget(parent)
    row = QHBoxLayout(holder)
    row.setContentsMargins(0, 0, 0, 0)
    for widget in widgets:
        row.addWidget(widget)
    row.addStretch(1)
    return holder


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@section("connections", "Connections", order=70)
def make(bridge: OfficeBridge, parent: QWidget) -> QWidget:
    return ConnectionsPage(bridge, parent)
