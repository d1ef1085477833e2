"""Logging set-up shared by the app and the CLI.

Logs go to a rotating file in the data directory; they carry ids, sizes and
timings, never the text of a prompt, a message or a secret.
"""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

from app import paths

FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(threadName)s] %(message)s"


def setup(
    name: str = "soloist", level: int = logging.INFO, home: Path | None = None
) -> Path | None:
    """Send Soloist's logs to ``<data dir>/logs/<name>.log``; return that path.

    Returns None when the directory cannot be written: logging must never
    be the reason the app does not start.
    """
    root = logging.getLogger()
    root.setLevel(level)
    try:
        folder = paths.log_dir(home)
        folder.mkdir(parents=True, exist_ok=True)
        file = folder / f"{name}.log"
        handler = logging.handlers.RotatingFileHandler(
            file, maxBytes=2_000_000, backupCount=3, encoding="utf-8"
        )
    except OSError:
        return None
    handler.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(handler)
    return file
