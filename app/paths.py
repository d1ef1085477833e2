"""Where Soloist keeps its data.

The data directory comes from platformdirs and can be overridden with the
``SOLOIST_HOME`` environment variable (the tests always set it).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "Soloist"
HOME_ENV = "SOLOIST_HOME"


def data_dir() -> Path:
    """The office's data directory (not created here)."""
    override = os.environ.get(HOME_ENV)
    if override:
        return Path(override).expanduser().resolve()
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def db_path(home: Path | None = None) -> Path:
    """The office's DuckDB file."""
    return (home or data_dir()) / "office.duckdb"


def log_dir(home: Path | None = None) -> Path:
    """Where log files go."""
    return (home or data_dir()) / "logs"


def ensure_data_dir(home: Path | None = None) -> Path:
    """Create the data directory if needed and return it."""
    path = home or data_dir()
    path.mkdir(parents=True, exist_ok=True)
    return path


def models_dir(home: Path | None = None) -> Path:
    """Where GGUF models live: downloaded ones and those the user adds."""
    return (home or data_dir()) / "models"
