"""Background work for the UI: the one helper every slow call goes through.

Like Anki's ``QueryOp``: ``jobs.run(op, on_success, on_failure)`` runs
``op`` on a worker thread and then calls exactly one of the callbacks on
the thread that owns ``jobs`` (the main thread) with the result or the
exception. ``op`` never touches widgets; the callbacks may.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from PySide6.QtCore import QObject, QThreadPool, Signal, Slot

log = logging.getLogger("soloist.ui")

T = TypeVar("T")
OnFailure = Callable[[BaseException], None]


def log_failure(exc: BaseException) -> None:
    """The default failure callback: a background job failing is a bug."""
    log.error("background job failed", exc_info=exc)


class Jobs(QObject):
    """Runs callables on a private thread pool; reports back on this object's thread."""

    _done = Signal(int, bool, object)  # job id, succeeded, result or exception

    def __init__(self, parent: QObject | None = None, max_threads: int = 4) -> None:
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(max_threads)
        self._ids = itertools.count(1)
        self._callbacks: dict[int, tuple[Callable[[Any], None], OnFailure]] = {}
        self._done.connect(self._deliver)

    def run(
        self,
        op: Callable[[], T],
        on_success: Callable[[T], None],
        on_failure: OnFailure = log_failure,
    ) -> None:
        """Start ``op`` in the background; one callback runs when it ends."""
        job_id = next(self._ids)
        self._callbacks[job_id] = (on_success, on_failure)
        self._pool.start(lambda: self._work(job_id, op))

    def wait(self, timeout_ms: int = 10_000) -> bool:
        """Block until every job has returned; False if some still run."""
        return self._pool.waitForDone(timeout_ms)

    def _work(self, job_id: int, op: Callable[[], object]) -> None:
        # Runs on a pool thread: the emit is queued to the owner's thread.
        try:
            result = op()
        except Exception as exc:
            self._done.emit(job_id, False, exc)
        else:
            self._done.emit(job_id, True, result)

    @Slot(int, bool, object)
    def _deliver(self, job_id: int, succeeded: bool, value: object) -> None:
        on_success, on_failure = self._callbacks.pop(job_id)
        if succeeded:
            on_success(value)
        else:
            assert isinstance(value, BaseException)
            on_failure(value)
