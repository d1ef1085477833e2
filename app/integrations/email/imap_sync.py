"""Incremental IMAP sync of an account's folders into :mod:`.mail_store`.

Per folder, by UIDVALIDITY and UID (RFC 3501 section 2.3.1.1):

1. SELECT (read-only). A UIDVALIDITY other than the stored one means every
   stored UID is meaningless: the folder's rows are dropped and it is
   fetched again from scratch.
2. Known messages: ``UID SEARCH UID 1:last`` says which still exist (the rest
   were expunged and are deleted here); their flags come from ``UID FETCH
   1:last (FLAGS)``, or, where the server has CONDSTORE, only those changed
   since the stored HIGHESTMODSEQ (nothing at all when it did not move).
3. New messages: ``UID SEARCH UID last+1:*`` (filtered to UIDs above
   ``last``: ``n:*`` always matches the highest UID), then ``UID FETCH`` in
   batches of ``batch_size``. Each batch is committed with the new
   ``last_uid`` in one transaction, so a connection lost in the middle
   keeps every finished batch, and the next sync resumes after it: no
   duplicates (the key is the server's), no gaps (UIDs only grow).

New mail after the first full sync of a folder is announced with a
``mail.received`` event per committed batch and fed to memory once per
message. The first sync (and a resync after a UIDVALIDITY change) announces
nothing; it feeds memory only the newest ``initial_memory_limit`` messages
(200), so connecting a 20-year-old mailbox does not flood long-term memory,
and a resync feeds nothing (those mails were remembered before). Drafts,
Trash and Junk never feed memory; Sent feeds memory but announces nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from app.integrations.base import ConnectorEvent, EventSink, JsonObject, JsonValue, MemorySink
from app.integrations.email.imap import ImapClient
from app.integrations.email.imap_parse import FetchedMessage, FolderInfo, SelectedFolder
from app.integrations.email.mail_rows import memory_text, memory_url, stored_message
from app.integrations.email.mail_store import FolderState, MailStore, StoredMessage
from app.integrations.email.mime import parse_message
from app.integrations.errors import ConnectionLostError
from app.memory.provenance import Provenance

log = logging.getLogger("soloist.integrations.email")

QUIET_FOLDERS = ("\\Drafts", "\\Trash", "\\Junk")  # no events, no memory
NO_EVENT_FOLDERS = ("\\Sent", *QUIET_FOLDERS)
POLL_INTERVAL_S = 30.0
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What one folder's sync did, in counts and UIDs."""

    folder: str
    uidvalidity: int
    fetched: int = 0
    new_uids: tuple[int, ...] = ()
    flag_changes: int = 0
    deleted: int = 0
    reset: bool = False
    elapsed_s: float = 0.0


@dataclass
class _Run:
    """The mutable bookkeeping of one folder sync."""

    state: FolderState
    announce: bool
    memory_from_uid: int | None  # feed memory for UIDs >= this; None: none
    fetched: int = 0
    new_uids: list[int] = field(default_factory=list)


class MailSync:
    """Syncs folders of one account over one (re)connecting IMAP client."""

    def __init__(
        self,
        account_id: str,
        connect: Callable[[], ImapClient],
        store: MailStore,
        emit: EventSink,
        memory: MemorySink | None = None,
        *,
        batch_size: int = 50,
        initial_memory_limit: int = 200,
        use_idle: bool = True,
        poll_interval_s: float = POLL_INTERVAL_S,
    ) -> None:
        self.account_id = account_id
        self._connect = connect
        self.store = store
        self._emit = emit
        self._memory = memory
        self.batch_size = batch_size
        self.initial_memory_limit = initial_memory_limit
        self.use_idle = use_idle
        self.poll_interval_s = poll_interval_s
        self._client: ImapClient | None = None
        # One conversation at a time: a sync's SELECT must not be changed under it.
        self._lock = threading.RLock()

    # -- connection -----------------------------------------------------
    def client(self) -> ImapClient:
        if self._client is None or not self._client.connected:
            self._client = self._connect()
        return self._client

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- folders --------------------------------------------------------
    def list_folders(self) -> list[FolderInfo]:
        return self._guarded(lambda c: c.list_folders())

    def sync_all(self, folders: Sequence[str] | None = None) -> list[SyncResult]:
        """Sync ``folders`` (default: every selectable folder) in order, INBOX first."""
        listed = {f.name: f for f in self.list_folders() if f.selectable}
        names = list(folders) if folders is not None else sorted(listed, key=_inbox_first)
        if folders is None:
            for gone in {s.folder for s in self.store.folders()} - set(listed):
                log.info("imap folder vanished from the server; dropping its rows")
                self.store.forget_folder(gone)
        results = []
        for name in names:
            info = listed.get(name)
            results.append(self.sync_folder(name, info.special_use if info else None))
        return results

    def sync_folder(self, folder: str, special_use: str | None = None) -> SyncResult:
        with self._lock:
            return self._sync_folder(folder, special_use)

    def _sync_folder(self, folder: str, special_use: str | None) -> SyncResult:
        started = time.perf_counter()
        selected = self._guarded(lambda c: c.select(folder))
        run, reset, changes, deleted = self._prepare(selected, special_use)
        new_uids = self._guarded(lambda c: c.uid_search("UID", f"{run.state.last_uid + 1}:*"))
        new_uids = [uid for uid in new_uids if uid > run.state.last_uid]
        if run.memory_from_uid == 0 and len(new_uids) > self.initial_memory_limit:
            run.memory_from_uid = new_uids[-self.initial_memory_limit]
        for start in range(0, len(new_uids), self.batch_size):
            self._fetch_batch(run, new_uids[start : start + self.batch_size])
        self._finish(run, selected)
        result = SyncResult(
            folder,
            selected.uidvalidity,
            run.fetched,
            tuple(run.new_uids),
            changes,
            deleted,
            reset,
            time.perf_counter() - started,
        )
        log.info(
            "imap sync of a folder: %d fetched, %d flag changes, %d deleted, reset=%s, %.2f s",
            result.fetched,
            changes,
            deleted,
            reset,
            result.elapsed_s,
        )
        return result

    def _prepare(
        self, selected: SelectedFolder, special_use: str | None
    ) -> tuple[_Run, bool, int, int]:
        """The run's starting state: reset on a new UIDVALIDITY, refresh known messages."""
        folder = selected.name
        state = self.store.folder_state(folder)
        reset = state is not None and state.uidvalidity != selected.uidvalidity
        if state is None or reset:
            state = FolderState(folder, selected.uidvalidity, 0, None, special_use)
            dropped = self.store.reset_folder(state)
            if reset:
                log.info("imap UIDVALIDITY changed; dropped %d stored messages", dropped)
        elif special_use is not None and state.special_use != special_use:
            state = replace(state, special_use=special_use)
        changes = deleted = 0
        if state.last_uid > 0:
            changes, deleted = self._refresh_known(state, selected)
        quiet = state.special_use in QUIET_FOLDERS
        announce = state.initial_done and state.special_use not in NO_EVENT_FOLDERS
        memory_from: int | None = 0 if state.initial_done or not reset else None
        return _Run(state, announce, None if quiet else memory_from), reset, changes, deleted

    def _refresh_known(self, state: FolderState, selected: SelectedFolder) -> tuple[int, int]:
        """Apply flag changes and expunges of messages already stored."""
        known = self.store.known_flags(state.folder, state.uidvalidity)
        uid_range = f"1:{state.last_uid}"
        existing = set(self._guarded(lambda c: c.uid_search("UID", uid_range)))
        gone = [uid for uid in known if uid not in existing]
        if gone:
            self.store.delete_uids(state.folder, state.uidvalidity, gone)
        since = state.highestmodseq
        if since is not None and selected.highestmodseq == since:
            return 0, len(gone)
        condstore = since is not None and self.client().condstore
        flags = self._guarded(lambda c: c.fetch_flags(uid_range, since if condstore else None))
        changes = {u: f for u, f in flags.items() if u in known and known[u] != f}
        if changes:
            self.store.update_flags(state.folder, state.uidvalidity, changes)
        return len(changes), len(gone)

    def _fetch_batch(self, run: _Run, uids: Sequence[int]) -> None:
        fetched = self._guarded(lambda c: c.fetch_messages(uids))
        rows = self._rows(fetched)
        run.state, inserted = self.store.save_batch(run.state, rows)
        run.fetched += len(fetched)
        new = [m.uid for m in inserted]
        run.new_uids += new
        if run.announce and new:
            listed: list[JsonValue] = list(new)
            data: JsonObject = {"folder": run.state.folder, "count": len(new), "uids": listed}
            self._emit(ConnectorEvent("mail.received", self.account_id, data))
        if run.memory_from_uid is not None:
            for message in inserted:
                if message.uid >= run.memory_from_uid:
                    self._remember(run.state, message)

    def _rows(self, fetched: Sequence[FetchedMessage]) -> list[StoredMessage]:
        """Parse and thread a batch; a message may thread onto one earlier in the batch."""
        batch_threads: dict[str, str] = {}

        def lookup(message_ids: Sequence[str]) -> str | None:
            for message_id in message_ids:
                if message_id in batch_threads:
                    return batch_threads[message_id]
            return self.store.thread_of(message_ids)

        rows = []
        for item in fetched:
            row = stored_message(item, parse_message(item.raw), lookup)
            if row.message_id:
                batch_threads[row.message_id] = row.thread_id
            rows.append(row)
        return rows

    def _remember(self, state: FolderState, message: StoredMessage) -> None:
        if self._memory is None:
            return
        provenance = Provenance(
            tool="email.sync",
            source_url=memory_url(self.account_id, state.folder, state.uidvalidity, message.uid),
        )
        metadata: JsonObject = {
            "message_id": message.message_id,
            "thread_id": message.thread_id,
            "folder": state.folder,
        }
        try:
            self._memory.remember(
                text=memory_text(message),
                kind="email_summary",
                scope="global",
                provenance=provenance,
                metadata=metadata,
            )
        except Exception as exc:  # memory must not stop mail from syncing
            log.warning("memory refused mail uid %d: %s", message.uid, type(exc).__name__)

    def _finish(self, run: _Run, selected: SelectedFolder) -> None:
        modseq = selected.highestmodseq if self.client().condstore else None
        run.state = replace(run.state, highestmodseq=modseq, initial_done=True)
        self.store.write_state(run.state)

    # -- waiting for mail -----------------------------------------------
    def idle(self, folder: str, timeout_s: float, stop_event: threading.Event) -> bool:
        """Wait until ``folder`` changes (True), or ``timeout_s``/``stop_event`` (False).

        Uses IMAP IDLE when the server has it, else polls STATUS every
        ``poll_interval_s``.
        """
        client = self.client()
        if self.use_idle and client.has_idle:
            self._guarded(lambda c: c.select(folder))
            return bool(self._guarded(lambda c: c.idle(timeout_s, stop_event)))
        return self._poll(folder, timeout_s, stop_event)

    def _poll(self, folder: str, timeout_s: float, stop_event: threading.Event) -> bool:
        before = self._guarded(lambda c: c.status(folder))
        deadline = time.monotonic() + timeout_s
        while not stop_event.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if stop_event.wait(min(self.poll_interval_s, remaining)):
                return False
            if self._guarded(lambda c: c.status(folder)) != before:
                return True
        return False

    def _guarded(self, call: Callable[[ImapClient], T]) -> T:
        """Run ``call`` on the client; a lost connection is dropped so the next call redials."""
        try:
            with self._lock:
                return call(self.client())
        except ConnectionLostError:
            self.close()
            raise


def _inbox_first(name: str) -> tuple[int, str]:
    return (0 if name.upper() == "INBOX" else 1, name)
