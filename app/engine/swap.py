"""Where preempted sequences wait: host memory up to a budget, then disk.

A swapped-out sequence's KV state is copied out of the context. Small
states stay in RAM; once the swapped states together would pass the host
budget, the next ones go to a checksummed snapshot file and come back from
it on resume. Files are private to the running engine: the folder is
emptied when the engine starts, since the requests they belonged to died
with the previous one.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

from app.engine.snapshots import SnapshotStore

log = logging.getLogger("soloist.engine.swap")


class SwapSpace:
    """Holds the KV states of swapped-out requests until they resume."""

    def __init__(self, host_budget_bytes: int, disk_dir: Path | None, identity: str) -> None:
        self._budget = host_budget_bytes
        self._identity = identity
        self._in_ram: dict[str, bytes | bytearray] = {}
        self._on_disk: dict[str, str] = {}  # request id -> snapshot key
        self._disk: SnapshotStore | None = None
        if disk_dir is not None:
            shutil.rmtree(disk_dir, ignore_errors=True)
            self._disk = SnapshotStore(disk_dir)

    @property
    def host_bytes(self) -> int:
        return sum(len(state) for state in self._in_ram.values())

    @property
    def on_disk(self) -> int:
        return len(self._on_disk)

    def put(self, request_id: str, tokens: Sequence[int], state: bytes | bytearray) -> None:
        """Keep ``state`` until :meth:`take`; in RAM while the budget allows."""
        if self._disk is None or self.host_bytes + len(state) <= self._budget:
            self._in_ram[request_id] = state
            return
        ref = self._disk.save(self._identity, tokens, state)
        self._on_disk[request_id] = ref.key
        log.info("request %s swapped to disk (%d bytes)", request_id, ref.size_bytes)

    def take(self, request_id: str) -> bytes | bytearray:
        """The saved state (removed from the swap space); snapshot errors propagate."""
        if request_id in self._in_ram:
            return self._in_ram.pop(request_id)
        key = self._on_disk.pop(request_id)
        assert self._disk is not None
        try:
            return self._disk.load(key, self._identity).state
        finally:
            self._disk.delete(key)

    def drop(self, request_id: str) -> None:
        """Forget a request's state (it finished or was cancelled while swapped out)."""
        self._in_ram.pop(request_id, None)
        key = self._on_disk.pop(request_id, None)
        if key is not None and self._disk is not None:
            self._disk.delete(key)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._in_ram or request_id in self._on_disk
