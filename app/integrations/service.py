"""The office's connections: accounts, their connectors, tools, and background sync.

:class:`Connections` is what the office, the CLI and (later) the agents and
the UI talk to. It makes one connector per enabled account on demand, runs
``test_connection()``, lists every account's tools and actions, and runs
:class:`SyncLoop`: each account that can sync is synced every
``interval_s``, with backoff after failures, and its last outcome kept for
the UI (``status()``). Errors never escape the loop: they become a
``sync.failed`` event and a status line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from app.integrations.accounts import AccountStore
from app.integrations.base import (
    Action,
    ConnectionReport,
    Connector,
    ConnectorContext,
    ConnectorEvent,
    EventSink,
    MemorySink,
    Tool,
    connector_class,
)
from app.integrations.catalog import load_connectors
from app.integrations.errors import ConnectorError
from app.memory.db import Database
from app.memory.errors import StoreError
from app.secrets import SecretsError, SecretStore

log = logging.getLogger("soloist.integrations")


@runtime_checkable
class Syncable(Protocol):
    """A connector that keeps a local copy (mail, contacts, orders) up to date."""

    def sync(self) -> object: ...


@dataclass(frozen=True, slots=True)
class SyncStatus:
    """The last sync of one account, for the UI."""

    account_id: str
    ok: bool
    message: str
    finished_at: float  # time.time()
    elapsed_s: float
    failures_in_a_row: int = 0


class Connections:
    """Accounts and their live connectors; thread-safe."""

    def __init__(
        self,
        db: Database,
        secrets: SecretStore,
        memory: Callable[[], MemorySink | None] = lambda: None,
    ) -> None:
        load_connectors()
        self._db = db
        self._secrets = secrets
        self._memory = memory
        self.accounts = AccountStore(db, secrets)
        self._connectors: dict[str, Connector] = {}
        self._listeners: list[EventSink] = []
        self._lock = threading.RLock()
        self._status: dict[str, SyncStatus] = {}

    # -- events --------------------------------------------------------
    def subscribe(self, listener: EventSink) -> Callable[[], None]:
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def emit(self, event: ConnectorEvent) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event)
            except Exception:  # one bad listener must not stop a sync
                log.exception("listener failed on %s", event.kind)

    # -- connectors ----------------------------------------------------
    def connector(self, account_id: str) -> Connector:
        with self._lock:
            existing = self._connectors.get(account_id)
            if existing is not None:
                return existing
            account = self.accounts.get(account_id)
            context = ConnectorContext(
                db=self._db, secrets=self._secrets, emit=self.emit, memory=self._memory()
            )
            made = connector_class(account.kind)(account, context)
            self._connectors[account_id] = made
            return made

    def forget(self, account_id: str) -> None:
        """Close the account's connector (after its settings changed, or it was removed)."""
        with self._lock:
            connector = self._connectors.pop(account_id, None)
        if connector is not None:
            connector.close()

    def test(self, account_id: str) -> ConnectionReport:
        """``test_connection()`` of the account; a failure is a report, not an exception."""
        started = time.perf_counter()
        try:
            return self.connector(account_id).test_connection()
        except (ConnectorError, SecretsError) as exc:
            return ConnectionReport(False, str(exc), elapsed_ms=_ms_since(started))

    def tools(self) -> list[Tool]:
        return [t for c in self._enabled_connectors() for t in c.tools()]

    def actions(self) -> list[Action]:
        return [a for c in self._enabled_connectors() for a in c.actions()]

    def _enabled_connectors(self) -> list[Connector]:
        return [self.connector(a.id) for a in self.accounts.list(enabled_only=True)]

    # -- sync ----------------------------------------------------------
    def sync(self, account_id: str) -> SyncStatus:
        """Sync one account now; the outcome is returned and kept for ``status()``."""
        connector = self.connector(account_id)
        if not isinstance(connector, Syncable):
            raise ConnectorError(f"{connector.account.name} has nothing to sync")
        started = time.perf_counter()
        previous = self._status.get(account_id)
        try:
            result = connector.sync()
        except (ConnectorError, SecretsError, StoreError) as exc:
            failures = (previous.failures_in_a_row if previous else 0) + 1
            status = SyncStatus(
                account_id, False, str(exc), time.time(), _s_since(started), failures
            )
            log.warning("sync of %s failed (%d in a row): %s", account_id, failures, exc)
            self.emit(ConnectorEvent("sync.failed", account_id, {"error": str(exc)}))
        else:
            status = SyncStatus(account_id, True, _summary(result), time.time(), _s_since(started))
            log.info("sync of %s done in %.1f s", account_id, status.elapsed_s)
        with self._lock:
            self._status[account_id] = status
        return status

    def syncable_accounts(self) -> list[str]:
        return [
            a.id
            for a in self.accounts.list(enabled_only=True)
            if issubclass(connector_class(a.kind), Syncable)
        ]

    def status(self) -> dict[str, SyncStatus]:
        with self._lock:
            return dict(self._status)

    def close(self) -> None:
        with self._lock:
            connectors, self._connectors = list(self._connectors.values()), {}
        for connector in connectors:
            try:
                connector.close()
            except ConnectorError as exc:
                log.warning("closing %r: %s", connector, exc)


class SyncLoop:
    """Syncs every syncable account every ``interval_s``; backs off on failures."""

    def __init__(
        self,
        connections: Connections,
        interval_s: float = 300.0,
        first_after_s: float = 30.0,
        max_backoff_s: float = 3600.0,
    ) -> None:
        self._connections = connections
        self._interval_s = interval_s
        self._first_after_s = first_after_s
        self._max_backoff_s = max_backoff_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._due: dict[str, float] = {}
        self._thread = threading.Thread(target=self._run, name="soloist-sync", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def sync_soon(self) -> None:
        """Sync everything at the next turn (the owner pressed "Sync now")."""
        self._due.clear()
        self._wake.set()

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        if self._stop.wait(self._first_after_s):
            return
        while not self._stop.is_set():
            self.run_due(time.monotonic())
            self._wake.wait(self._next_wait(time.monotonic()))
            self._wake.clear()

    def run_due(self, now: float) -> list[str]:
        """Sync the accounts that are due at ``now``; returns their ids."""
        ran = []
        for account_id in self._connections.syncable_accounts():
            if self._stop.is_set() or self._due.get(account_id, 0.0) > now:
                continue
            status = self._connections.sync(account_id)
            self._due[account_id] = now + self.delay_after(status)
            ran.append(account_id)
        return ran

    def delay_after(self, status: SyncStatus) -> float:
        """The normal interval after a success; doubling (capped) after failures."""
        if status.ok:
            return self._interval_s
        doubling = float(2 ** max(0, status.failures_in_a_row - 1))
        return min(self._max_backoff_s, self._interval_s * doubling)

    def _next_wait(self, now: float) -> float:
        if not self._due:
            return self._interval_s
        return max(1.0, min(self._due.values()) - now)


def _summary(result: object) -> str:
    text = str(result) if result is not None else "up to date"
    return text if len(text) <= 200 else text[:197] + "..."


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _s_since(started: float) -> float:
    return time.perf_counter() - started


__all__: Sequence[str] = ("Connections", "SyncLoop", "SyncStatus", "Syncable")
