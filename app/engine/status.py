"""The engine's residency, published as a small JSON file for other processes.

``soloist doctor`` runs in its own process and cannot ask the engine, so the
engine writes what it holds (models, layers on the GPU, memory estimate)
to ``<data dir>/engine.json`` whenever that changes, atomically.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("soloist.engine")

STATUS_FILE = "engine.json"


def write_status(path: Path, models: list[dict[str, Any]]) -> None:
    """Replace the status file with the models loaded now (never raises)."""
    doc = {"pid": os.getpid(), "updated_at": time.time(), "models": models}
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        tmp.write_text(json.dumps(doc, indent=2), encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:  # a read-only disk must not stop the engine
        log.warning("engine status not written: %s", type(exc).__name__)


def read_status(path: Path) -> dict[str, Any] | None:
    """The status a running engine published, with ``alive`` set; None if there is none."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), list):
        return None
    doc["alive"] = _pid_alive(doc.get("pid"))
    return doc


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
