"""The Connections section on a real office, with an in-memory keyring and no network.

A CRM account (no server, no secret) tests fine; an email account pointed
at a closed loopback port fails with a readable report while the window
stays free; re-authenticating stores the secret in the keyring and clears
the field; removing an account deletes its secrets.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from keyring_service import MemoryKeyring
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLineEdit
from pytestqt.qtbot import QtBot
from ui_fakes import FakeEngine

from app.office import Office
from app.secrets import SecretRef, SecretStore
from app.ui.office_bridge import OfficeBridge
from app.ui.sections.connections import ConnectionsPage
from app.ui.sections.connections_ops import add_account, is_required, kinds, typed_value


@pytest.fixture
def keyring() -> MemoryKeyring:
    return MemoryKeyring()


@pytest.fixture
def office(soloist_home: Path, keyring: MemoryKeyring) -> Office:
    return Office(soloist_home, engine_factory=FakeEngine, secrets=SecretStore(backend=keyring))


@pytest.fixture
def bridge(office: Office) -> Iterator[OfficeBridge]:
    bridge = OfficeBridge(office)
    yield bridge
    bridge.shutdown()


@pytest.fixture
def page(qtbot: QtBot, bridge: OfficeBridge) -> ConnectionsPage:
    shown = ConnectionsPage(bridge)
    qtbot.addWidget(shown)
    shown.show()
    return shown


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def click(qtbot: QtBot, button: object) -> None:
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def open_form(qtbot: QtBot, page: ConnectionsPage, kind: str, name: str) -> None:
    click(qtbot, page.new_account)
    qtbot.waitUntil(lambda: page.form.kind.findData(kind) >= 0)
    page.form.choose_kind(kind)
    page.form.name.setText(name)


def add_email(qtbot: QtBot, page: ConnectionsPage, password: str = "hunter2-secret") -> str:
    open_form(qtbot, page, "email", "Work mail")
    port = str(closed_port())
    values = {
        "imap_host": "127.0.0.1", "imap_port": port, "imap_security": "plain",
        "smtp_host": "127.0.0.1", "smtp_port": port, "smtp_security": "plain",
        "username": "me@example.com", "from_address": "me@example.com", "from_name": "Me",
    }  # fmt: skip
    for key, value in values.items():
        page.form.settings[key].setText(value)
    secret = page.form.secrets["password"]
    assert secret.echoMode() is QLineEdit.EchoMode.Password
    secret.setText(password)
    click(qtbot, page.form.add)
    assert secret.text() == ""  # cleared at once: the secret left the widget
    qtbot.waitUntil(lambda: (page.current_id() or "").startswith("email-"), timeout=10_000)
    return page.current_id() or ""


def test_a_crm_account_is_added_from_its_schema_and_tests_ok(
    qtbot: QtBot, page: ConnectionsPage, office: Office
) -> None:
    open_form(qtbot, page, "crm", "Clients")
    assert "default_country_code" in page.form.settings
    assert page.form.secrets == {}
    click(qtbot, page.form.add)
    qtbot.waitUntil(lambda: page.accounts.count() == 1)
    account_id = page.current_id()
    assert account_id is not None and account_id.startswith("crm-")
    assert not page.form.isVisible()
    assert "Clients" in page.title.text() and "enabled" in page.title.text()
    assert not page.auth_bar.isVisible()  # a CRM account has no secret
    click(qtbot, page.test)
    qtbot.waitUntil(lambda: page.report.text().startswith("Works:"), timeout=10_000)
    assert office.connections.accounts.get(account_id).name == "Clients"


def test_an_unreachable_email_server_fails_readably_without_blocking(
    qtbot: QtBot, page: ConnectionsPage, office: Office, keyring: MemoryKeyring
) -> None:
    account_id = add_email(qtbot, page)
    ref = SecretRef(f"email:{account_id}:password")
    assert office.secrets.get(ref) == "hunter2-secret"
    assert "hunter2-secret" not in str(office.connections.accounts.get(account_id).config)
    click(qtbot, page.test)
    assert page.report.text() == "Testing…"  # the click returned before the test ended
    assert not page.test.isEnabled()
    qtbot.waitUntil(lambda: page.report.text().startswith("Failed:"), timeout=20_000)
    assert "127.0.0.1" in page.report.text() or "connect" in page.report.text().lower()
    assert "Check the settings" in page.report.text()
    assert page.test.isEnabled()


def test_reauthenticate_stores_the_secret_and_clears_the_field(
    qtbot: QtBot, page: ConnectionsPage, office: Office, keyring: MemoryKeyring
) -> None:
    account_id = add_email(qtbot, page)
    assert page.auth_bar.isVisible()
    page.secret.setText("a-new-password")
    click(qtbot, page.save_secret)
    assert page.secret.text() == ""
    qtbot.waitUntil(lambda: "stored in the keyring" in page.message.text())
    assert office.secrets.get(SecretRef(f"email:{account_id}:password")) == "a-new-password"
    assert "a-new-password" in keyring.values.values()


def test_disable_enable_and_remove_with_its_secrets(
    qtbot: QtBot, page: ConnectionsPage, office: Office, keyring: MemoryKeyring
) -> None:
    account_id = add_email(qtbot, page)
    click(qtbot, page.toggle)
    qtbot.waitUntil(lambda: "disabled" in page.title.text())
    assert not office.connections.accounts.is_enabled(account_id)
    assert not page.test.isEnabled() and page.toggle.text() == "Enable"
    click(qtbot, page.toggle)
    qtbot.waitUntil(lambda: page.toggle.text() == "Disable")
    click(qtbot, page.remove)
    assert page.remove_bar.isVisible() and "Work mail" in page.remove_question.text()
    click(qtbot, page.confirm_remove)
    qtbot.waitUntil(lambda: page.accounts.count() == 0)
    assert office.connections.accounts.find(account_id) is None
    assert keyring.values == {}


def test_the_form_names_what_is_missing_and_keeps_nothing(
    qtbot: QtBot, page: ConnectionsPage, office: Office
) -> None:
    open_form(qtbot, page, "email", "Half done")
    click(qtbot, page.form.add)
    assert page.form.problem.text().startswith("Fill in: Imap host")
    assert "Password" in page.form.problem.text()
    assert "Ca file" not in page.form.problem.text()  # optional
    assert office.connections.accounts.list() == []


def test_ops_read_the_registry_and_type_values(office: Office) -> None:
    specs = {spec.kind: spec for spec in kinds()}
    assert {"crm", "email"} <= specs.keys()
    assert specs["email"].secret_fields == ("password",)
    assert not is_required("Optional: a PEM file")
    assert typed_value("993") == 993 and typed_value("true") is True
    assert typed_value("imap.example.com") == "imap.example.com"
    account = add_account(office, "crm", "Book", {}, {})
    assert office.connections.accounts.get(account.id).kind == "crm"
