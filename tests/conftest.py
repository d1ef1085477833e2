"""Shared fixtures: an isolated data directory and generated GGUF models."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from keyring_service import secret_service  # noqa: F401  (a real Secret Service fixture)

from app.memory.db import Database

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(autouse=True)
def soloist_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own data directory through SOLOIST_HOME."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("SOLOIST_HOME", str(home))
    yield home


@pytest.fixture(autouse=True)
def qsettings_in_tmp(tmp_path: Path) -> Iterator[None]:
    """QSettings (window geometry, last section) write under the test's tmp dir."""
    from PySide6.QtCore import QSettings

    previous = QSettings.defaultFormat()
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(
        QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "qsettings")
    )
    yield
    QSettings.setDefaultFormat(previous)


@pytest.fixture
def db_path(soloist_home: Path) -> Path:
    """The office database file of this test's data directory."""
    return soloist_home / "office.duckdb"


@pytest.fixture
def db(db_path: Path) -> Iterator[Database]:
    """The office database, migrated, closed after the test."""
    database = Database.open(db_path)
    yield database
    database.close()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_model(model_dir: Path) -> Path:
    """A ~0.5 MB llama GGUF with random weights and a ChatML chat template."""
    from app.devtools.testmodels import write_tiny_model

    return write_tiny_model(model_dir / "tiny.gguf")


@pytest.fixture(scope="session")
def tiny_model_no_template(model_dir: Path) -> Path:
    """The same tiny model without a chat template in its metadata."""
    from app.devtools.testmodels import write_tiny_model

    return write_tiny_model(model_dir / "tiny-plain.gguf", chat_template=None)


@pytest.fixture(scope="session")
def crashing_model(model_dir: Path) -> Path:
    """A model whose context creation aborts llama.cpp (SIGABRT)."""
    from app.devtools.testmodels import write_crashing_model

    return write_crashing_model(model_dir / "crash.gguf")
