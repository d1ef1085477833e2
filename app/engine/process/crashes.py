"""Why engine children died, and the models that crashed them.

Plain records and a small JSON-backed list, kept apart from the supervisor
that fills them.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("soloist.engine.supervisor")

# How a process ends when the code it ran crashed (rather than was stopped).
CRASH_SIGNALS = frozenset(
    getattr(signal, name)
    for name in ("SIGABRT", "SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE")
    if hasattr(signal, name)
)


@dataclass(frozen=True, slots=True)
class CrashRecord:
    """Why one engine child ended, and what happened to its requests."""

    at: float  # wall-clock time
    pid: int
    reason: str
    exit_code: int | None
    signal: str | None
    last_log_lines: tuple[str, ...]
    retried: int = 0
    failed: int = 0
    broken_model: str | None = None

    def summary(self) -> str:
        how = f"signal {self.signal}" if self.signal else f"exit code {self.exit_code}"
        return f"engine process {self.pid} {self.reason} ({how})"


class BrokenModels:
    """Models that crashed the engine, kept in a small JSON file.

    An entry is dropped when its file changes (size or mtime): the owner
    replaced the model.
    """

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._entries: dict[str, dict[str, Any]] = self._read()

    def reasons(self) -> dict[str, str]:
        with self._lock:
            stale = [p for p, e in self._entries.items() if file_stamp(p) != e.get("stamp")]
            for path in stale:
                del self._entries[path]
            if stale:
                self._write()
            return {p: str(e["reason"]) for p, e in self._entries.items()}

    def add(self, path: str, reason: str) -> None:
        with self._lock:
            self._entries[path] = {"reason": reason, "at": time.time(), "stamp": file_stamp(path)}
            self._write()

    def forget(self, path: str) -> bool:
        with self._lock:
            found = self._entries.pop(path, None) is not None
            self._write()
            return found

    def _read(self) -> dict[str, dict[str, Any]]:
        if self._path is None:
            return {}
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(k): v for k, v in data.items() if isinstance(v, dict) and "reason" in v}

    def _write(self) -> None:
        if self._path is None:
            return
        tmp = self._path.with_name(self._path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(self._entries, indent=2), encoding="utf-8")
            tmp.replace(self._path)
        except OSError as exc:
            log.warning("broken-model list not saved: %s", type(exc).__name__)


def file_stamp(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def signal_name(code: int | None) -> str | None:
    if code is None or code >= 0:
        return None
    try:
        return signal.Signals(-code).name
    except ValueError:
        return str(-code)


def crash_reason(code: int | None, reason: str, tail: tuple[str, ...]) -> str:
    sig = signal_name(code)
    how = f"killed by {sig}" if sig else f"{reason}, exit code {code}"
    # The most telling line: an assertion or error from llama.cpp, else the last.
    telling = [ln for ln in tail if "ASSERT" in ln or "error" in ln.lower()]
    last = (telling or list(tail) or [""])[-1].strip()
    return f"{how}: {last[-200:]}" if last else how
