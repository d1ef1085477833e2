"""Connections: connectors per account, events, sync status and the back-off loop;
``soloist connections`` end to end with the real Secret Service."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Iterator
from typing import ClassVar

import pytest
from test_accounts import MemoryKeyring

from app import cli_connections
from app.integrations.base import (
    ConnectionReport,
    Connector,
    ConnectorEvent,
    connector_classes,
    register,
)
from app.integrations.catalog import CONNECTOR_MODULES, load_connectors
from app.integrations.errors import ConnectorError, ConnectorUnreachableError
from app.integrations.service import Connections, SyncLoop, SyncStatus
from app.memory.db import Database
from app.secrets import SecretRef, SecretStore


@register
class CounterConnector(Connector):
    """Syncs by counting; fails while its account says ``down``."""

    kind = "counter-test"
    display_name = "Counter (tests)"
    settings_schema: ClassVar[dict[str, str]] = {
        "down": "optional: true to fail every sync",
        "label": "a label",
    }
    secret_fields = ("password",)
    syncs: ClassVar[int] = 0

    def test_connection(self) -> ConnectionReport:
        if self.account.setting("down"):
            raise ConnectorUnreachableError("Counter: cannot reach the server")
        return ConnectionReport(True, f"logged in with {len(self.secret())} characters")

    def sync(self) -> str:
        if self.account.setting("down"):
            raise ConnectorUnreachableError("Counter: cannot reach the server")
        type(self).syncs += 1
        self.context.emit(ConnectorEvent("counter.synced", self.account.id, {"n": self.syncs}))
        return f"{self.syncs} syncs"


@pytest.fixture
def connections(db: Database) -> Iterator[Connections]:
    made = Connections(db, SecretStore(backend=MemoryKeyring()))  # type: ignore[arg-type]
    yield made
    made.close()


def test_every_connector_module_registers_a_kind() -> None:
    kinds = load_connectors()
    assert {"email", "dav", "crm", "hubspot", "shopify"} <= set(kinds)
    assert len(CONNECTOR_MODULES) == 5
    for kind, cls in kinds.items():
        assert cls.kind == kind and cls.display_name


def test_one_connector_per_account_and_events_reach_listeners(connections: Connections) -> None:
    connections.accounts.add("counter-test", "A", {"label": "a"}, account_id="a")
    seen: list[ConnectorEvent] = []
    unsubscribe = connections.subscribe(seen.append)
    assert connections.connector("a") is connections.connector("a")
    status = connections.sync("a")
    assert status.ok and status.message.endswith("syncs")
    assert [e.kind for e in seen] == ["counter.synced"]
    unsubscribe()
    connections.sync("a")
    assert len(seen) == 1


def test_a_failed_sync_is_a_status_and_an_event(connections: Connections) -> None:
    connections.accounts.add("counter-test", "Down", {"down": True}, account_id="d")
    seen: list[ConnectorEvent] = []
    connections.subscribe(seen.append)
    first = connections.sync("d")
    second = connections.sync("d")
    assert not first.ok and first.message == "Counter: cannot reach the server"
    assert (first.failures_in_a_row, second.failures_in_a_row) == (1, 2)
    assert [e.kind for e in seen] == ["sync.failed", "sync.failed"]
    assert connections.status()["d"] == second


def test_a_failing_listener_does_not_stop_the_sync(connections: Connections) -> None:
    connections.accounts.add("counter-test", "A", {}, account_id="a")

    def broken(event: ConnectorEvent) -> None:
        raise RuntimeError("listener bug")

    connections.subscribe(broken)
    assert connections.sync("a").ok


def test_test_connection_failures_come_back_as_reports(connections: Connections) -> None:
    connections.accounts.add("counter-test", "Down", {"down": True}, account_id="d")
    connections.accounts.add("counter-test", "Up", {}, account_id="u")
    down = connections.test("d")
    assert (down.ok, down.summary) == (False, "Counter: cannot reach the server")
    no_secret = connections.test("u")
    assert not no_secret.ok and "no password is stored" in no_secret.summary


@register
class PlainConnector(Connector):
    kind = "plain-test"
    display_name = "Plain (tests)"
    secret_fields = ()

    def test_connection(self) -> ConnectionReport:
        return ConnectionReport(True, "fine")


def test_a_connector_without_sync_says_so(connections: Connections) -> None:
    connections.accounts.add("plain-test", "Plain", {}, account_id="p")
    assert connections.syncable_accounts() == []
    with pytest.raises(ConnectorError, match="Plain has nothing to sync"):
        connections.sync("p")


def test_the_loop_syncs_what_is_due_and_backs_off_failures(connections: Connections) -> None:
    connections.accounts.add("counter-test", "A", {}, account_id="a")
    connections.accounts.add("counter-test", "Down", {"down": True}, account_id="d")
    loop = SyncLoop(connections, interval_s=300, max_backoff_s=1000)
    assert sorted(loop.run_due(now=0.0)) == ["a", "d"]
    assert loop.run_due(now=100.0) == []
    assert sorted(loop.run_due(now=300.0)) == ["a", "d"]
    failing = SyncStatus("d", False, "x", 0.0, 0.0, failures_in_a_row=3)
    assert loop.delay_after(failing) == 1000  # 300 * 4 = 1200, capped
    assert loop.delay_after(SyncStatus("a", True, "", 0.0, 0.0)) == 300


def test_a_disabled_account_is_not_synced(connections: Connections) -> None:
    connections.accounts.add("counter-test", "A", {}, account_id="a")
    connections.accounts.set_enabled("a", False)
    assert SyncLoop(connections).run_due(now=0.0) == []


# ------------------------------------------------------------------ the CLI


def soloist_connections(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="soloist")
    cli_connections.add_parser(parser.add_subparsers(dest="command"))
    return cli_connections.run(parser.parse_args(["connections", *argv]))


@pytest.mark.slow
def test_the_cli_adds_tests_syncs_and_removes_with_the_real_keyring(
    secret_service: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    db_path: object,
) -> None:
    secret = "cli-secret-9f2e"
    monkeypatch.setattr("sys.stdin", io.StringIO(secret + "\n"))
    assert (
        soloist_connections(
            "add", "counter-test", "Shop", "--id", "shop", "--set", "label=x", "--secret-stdin"
        )
        == 0
    )
    assert "added shop" in capsys.readouterr().out
    assert SecretStore().get(SecretRef("counter-test:shop:password")) == secret
    assert soloist_connections("list", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed == [
        {
            "id": "shop",
            "kind": "counter-test",
            "name": "Shop",
            "enabled": True,
            "settings": {"label": "x"},
            "secrets_stored": {"password": True},
        }
    ]
    assert soloist_connections("test", "shop") == 0
    assert "ok: logged in with 15 characters" in capsys.readouterr().out
    assert soloist_connections("sync", "shop") == 0
    assert soloist_connections("remove", "shop") == 0
    assert SecretStore().find(SecretRef("counter-test:shop:password")) is None
    from pathlib import Path

    assert secret.encode() not in Path(str(db_path)).read_bytes()


def test_the_cli_refuses_missing_settings_and_secrets_in_settings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert soloist_connections("add", "counter-test", "X", "--secret-stdin") == 1
    assert "needs --set label=..." in capsys.readouterr().err
    assert (
        soloist_connections(
            "add",
            "counter-test",
            "X",
            "--set",
            "label=a",
            "--set",
            "password=hunter2",
            "--secret-stdin",
        )
        == 1
    )
    assert "looks like a secret" in capsys.readouterr().err


def test_kinds_lists_every_registered_kind(capsys: pytest.CaptureFixture[str]) -> None:
    assert soloist_connections("kinds") == 0
    out = capsys.readouterr().out
    for kind in connector_classes():
        assert f"{kind}: " in out
