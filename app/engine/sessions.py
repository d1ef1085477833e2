"""Agents' contexts on disk: save a finished sequence, resume the next one from it.

When a request that belongs to a session finishes, its sequence's KV state
(prompt and reply) is saved to the content-addressed snapshot store; the
next request whose prompt starts with those tokens (the next turn of the
same conversation, or the same agent after an engine or app restart)
restores them instead of prefilling. The engine thread only copies the
state out of llama.cpp; writing the file happens on a writer thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from app.engine import kvstate
from app.engine.gguf_file import GGUFInfo
from app.engine.llama_adapter import LoadedModel
from app.engine.snapshots import SnapshotError, SnapshotStore, model_identity_from_info

log = logging.getLogger("soloist.engine.sessions")

DEFAULT_MAX_BYTES = 2 * 2**30


def kv_identity(info: GGUFInfo, *, n_seq_max: int, kv_unified: bool) -> str:
    """The identity a KV state of this model in such a context is saved under."""
    streams = kvstate.kv_streams(n_seq_max, kv_unified=kv_unified)
    return model_identity_from_info(info, kv_layout=kvstate.kv_layout_tag(n_streams=streams))


class SessionCache:
    """Save and resume sequences of one loaded model through a snapshot store."""

    def __init__(
        self,
        root: Path,
        info: GGUFInfo,
        *,
        n_seq_max: int,
        kv_unified: bool,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.identity = kv_identity(info, n_seq_max=n_seq_max, kv_unified=kv_unified)
        self._store = SnapshotStore(root)
        self._lock = threading.Lock()  # the store is not thread-safe
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="soloist-kv-writer")
        self._max_bytes = max_bytes
        self._pending: list[Future[int]] = []

    def resume(self, model: LoadedModel, seq: int, tokens: Sequence[int]) -> int:
        """Restore the longest saved prefix of ``tokens`` into ``seq``; return its length."""
        self._wait_for_writes()  # the turn that just ended may be the prefix
        with self._lock:
            return kvstate.resume_seq(model, seq, self._store, self.identity, tokens)

    def save(self, model: LoadedModel, seq: int, tokens: Sequence[int]) -> Future[int]:
        """Copy ``seq``'s state now; write it in the background. The future gives bytes saved."""
        if kvstate.seq_pos_max(model, seq) + 1 != len(tokens):
            log.warning(
                "sequence %d does not hold exactly its %d tokens; not saved", seq, len(tokens)
            )
            done: Future[int] = Future()
            done.set_result(0)
            return done
        state = kvstate.get_seq_state(model, seq)
        future = self._writer.submit(self._write, list(tokens), state)
        self._pending.append(future)
        return future

    def _wait_for_writes(self) -> None:
        for future in self._pending:
            future.result()
        self._pending.clear()

    def _write(self, tokens: list[int], state: bytearray) -> int:
        try:
            with self._lock:
                ref = self._store.save(self.identity, tokens, state)
                self._store.prune(self._max_bytes)
        except (OSError, SnapshotError) as exc:  # a full disk must not stop the engine
            log.warning("session snapshot not saved: %s", type(exc).__name__)
            return 0
        return ref.size_bytes

    def close(self) -> None:
        """Finish pending writes."""
        self._writer.shutdown(wait=True)
