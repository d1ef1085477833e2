"""Accounts: settings in DuckDB, secrets only in the (real) OS keyring."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from keyring_service import MemoryKeyring

from app.integrations.accounts import AccountStore, check_config
from app.integrations.base import (
    Account,
    ConnectionReport,
    Connector,
    ConnectorContext,
    connector_class,
    connector_classes,
    register,
)
from app.integrations.errors import ConnectorAuthError, ConnectorConfigError
from app.memory.db import Database
from app.secrets import SecretRef, SecretStore


@register
class EchoConnector(Connector):
    """A connector for these tests: its 'server' is the keyring itself."""

    kind = "echo-test"
    display_name = "Echo (tests)"
    secret_fields = ("password", "token")

    def test_connection(self) -> ConnectionReport:
        return ConnectionReport(True, f"password has {len(self.secret())} characters")


@pytest.fixture
def keyring() -> MemoryKeyring:
    return MemoryKeyring()


@pytest.fixture
def store(db: Database, keyring: MemoryKeyring) -> Iterator[AccountStore]:
    yield AccountStore(db, SecretStore(backend=keyring))  # type: ignore[arg-type]


def test_an_account_round_trips_with_its_settings(store: AccountStore) -> None:
    account = store.add("echo-test", "  Work  ", {"host": "mail.example.com", "port": 993})
    assert account.id.startswith("echo-test-")
    assert store.get(account.id) == Account(
        account.id, "echo-test", "Work", {"host": "mail.example.com", "port": 993}
    )
    assert [a.id for a in store.list("echo-test")] == [account.id]
    assert store.list("email") == []


def test_settings_named_like_secrets_are_refused(store: AccountStore) -> None:
    for key in ("password", "smtp_password", "api_key", "Token", "client_secret"):
        with pytest.raises(ConnectorConfigError, match="keyring"):
            store.add("echo-test", "x", {key: "hunter2"})
    assert store.list() == []
    assert check_config({"username": "ana", "host": "h"}) == {"username": "ana", "host": "h"}


def test_unknown_kinds_and_bad_ids_are_refused(store: AccountStore) -> None:
    with pytest.raises(ConnectorConfigError, match="unknown connector kind"):
        store.add("fax", "x", {})
    with pytest.raises(ConnectorConfigError, match="not a valid account id"):
        store.add("echo-test", "x", {}, account_id="../etc")
    store.add("echo-test", "x", {}, account_id="work")
    with pytest.raises(ConnectorConfigError, match="already exists"):
        store.add("echo-test", "y", {}, account_id="work")


def test_update_disable_and_list_enabled(store: AccountStore) -> None:
    account = store.add("echo-test", "x", {"port": 1}, account_id="a1")
    assert store.update("a1", {"port": 2}).config == {"port": 2}
    store.set_enabled("a1", False)
    assert not store.is_enabled("a1")
    assert store.list(enabled_only=True) == []
    assert store.get(account.id).config == {"port": 2}


def test_secrets_go_to_the_keyring_and_leave_with_the_account(
    store: AccountStore, keyring: MemoryKeyring
) -> None:
    store.add("echo-test", "x", {}, account_id="a1")
    store.set_secret("a1", "password", "hunter2")
    assert keyring.values == {("soloist", "echo-test:a1:password"): "hunter2"}
    assert store.has_secret("a1", "password") and not store.has_secret("a1", "token")
    with pytest.raises(ConnectorConfigError, match="no secret 'pin'"):
        store.set_secret("a1", "pin", "1234")
    store.remove("a1")
    assert keyring.values == {}
    assert store.find("a1") is None


def test_a_connector_without_its_secret_says_what_to_do(
    store: AccountStore, db: Database, keyring: MemoryKeyring
) -> None:
    account = store.add("echo-test", "Shop", {}, account_id="a1")
    secrets = SecretStore(backend=keyring)  # type: ignore[arg-type]
    connector = connector_class("echo-test")(account, ConnectorContext(db, secrets))
    with pytest.raises(ConnectorAuthError, match="no password is stored for Shop"):
        connector.test_connection()
    store.set_secret("a1", "password", "hunter2")
    assert connector.test_connection().summary == "password has 7 characters"


def test_a_kind_cannot_be_registered_twice_by_another_class() -> None:
    class Impostor(EchoConnector):
        pass

    with pytest.raises(ValueError, match="registered twice"):
        register(Impostor)
    assert connector_classes()["echo-test"] is EchoConnector


def test_a_connector_refuses_an_account_of_another_kind(db: Database) -> None:
    with pytest.raises(ValueError, match="was given a email account"):
        EchoConnector(Account("a", "email", "x"), ConnectorContext(db, SecretStore()))


def test_secret_refs_name_kind_account_and_field() -> None:
    account = Account("work", "email", "Work")
    assert account.secret_ref() == SecretRef("email:work:password")
    assert "password" not in repr(Account("w", "email", "W", {"host": "h"}).config)


@pytest.mark.slow
def test_with_the_real_secret_service_the_secret_is_nowhere_but_the_keyring(
    secret_service: str, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    secret = "s3cr3t-Zq7-unique-value"
    store = AccountStore(db, SecretStore())
    store.add("echo-test", "Real", {"host": "127.0.0.1"}, account_id="real")
    store.set_secret("real", "password", secret)
    assert SecretStore().get(SecretRef("echo-test:real:password")) == secret
    db.execute("CHECKPOINT")
    assert secret.encode() not in db.path.read_bytes()
    assert secret not in caplog.text
    store.remove("real")
    assert SecretStore().find(SecretRef("echo-test:real:password")) is None


class PlaintextKeyring(MemoryKeyring):
    """Named like keyrings.alt's file backend: the store must refuse it."""


def test_with_only_a_file_keyring_no_secret_is_stored_anywhere(db: Database) -> None:
    from app.secrets import SecretsUnavailableError

    backend = PlaintextKeyring()
    store = AccountStore(db, SecretStore(backend=backend))  # type: ignore[arg-type]
    store.add("echo-test", "x", {}, account_id="a1")
    with pytest.raises(SecretsUnavailableError, match="never in a file"):
        store.set_secret("a1", "password", "hunter2")
    assert backend.values == {}
    assert b"hunter2" not in db.path.read_bytes()
