"""Downloading a recommended model from the UI: one row per model, one controller.

The Models section and the first-run page both offer downloads, so both
use these. :class:`DownloadController` runs each download through the
bridge (``bridge.call``; the transfer itself is
:func:`~app.ui.sections.models_ops.download`) and turns its progress,
which arrives on a worker thread, into queued signals. A cancel sets an
event the downloader checks between chunks; the partial file stays, so
pressing Download again resumes it. :class:`DownloadRow` shows one model:
what it is, its licence, whether its checksum is published, a progress bar
with Cancel, and "Use this model" once the file is in place.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QWidget,
)

from app.engine.catalog import RecommendedModel
from app.engine.downloads import DownloadProgress, DownloadState
from app.ui.office_bridge import OfficeBridge
from app.ui.sections import models_ops
from app.ui.sections.models_ops import Curated

UrlOf = Callable[[RecommendedModel], str]


def default_url(model: RecommendedModel) -> str:
    return model.url


def progress_text(p: DownloadProgress) -> str:
    """``"120.0 of 491.4 MB · 8.1 MB/s · 46 s left"``."""
    if p.state == DownloadState.CONNECTING:
        return "Connecting…"
    if p.state == DownloadState.RETRYING:
        return f"Connection lost at {p.bytes_done / 1e6:,.1f} MB; trying again…"
    total = f" of {p.bytes_total / 1e6:,.1f}" if p.bytes_total else ""
    parts = [f"{p.bytes_done / 1e6:,.1f}{total} MB"]
    if p.rate_bps > 0:
        parts.append(f"{p.rate_bps / 1e6:,.1f} MB/s")
    if p.eta_s is not None:
        parts.append(f"{p.eta_s:,.0f} s left")
    return " · ".join(parts)


def describe_model(model: RecommendedModel) -> str:
    size = f"{model.size_bytes / 1e9:.1f} GB" if model.size_bytes else "size unknown"
    check = "checksum published" if model.verified else "UNVERIFIED: no published checksum"
    return (
        f"{model.parameters} · {model.quantisation} · {size} · licence: {model.licence} · "
        f"{check}\n{model.notes}"
    )


class DownloadController(QObject):
    """Runs downloads off the main thread; reports per model key."""

    progress = Signal(str, object)  # key, DownloadProgress
    finished = Signal(str, str)  # key, the file's path
    failed = Signal(str, str, bool)  # key, one readable line, cancelled by the owner

    def __init__(
        self, bridge: OfficeBridge, url_of: UrlOf = default_url, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self._bridge = bridge
        self._url_of = url_of
        self._cancels: dict[str, threading.Event] = {}

    def running(self, key: str) -> bool:
        return key in self._cancels

    def start(self, model: RecommendedModel) -> None:
        key = model.key
        if key in self._cancels:
            return
        cancel = threading.Event()
        self._cancels[key] = cancel
        url = self._url_of(model)

        def report(p: DownloadProgress) -> None:  # on the worker thread: queued
            self.progress.emit(key, p)

        self._bridge.call(
            lambda office: models_ops.download(office.home, model, url, report, cancel),
            lambda path: self._done(key, path),
            lambda text: self._failed(key, text),
        )

    def cancel(self, key: str) -> None:
        event = self._cancels.get(key)
        if event is not None:
            event.set()

    def cancel_all(self) -> None:
        for event in self._cancels.values():
            event.set()

    def _done(self, key: str, path: str) -> None:
        self._cancels.pop(key, None)
        self.finished.emit(key, path)

    def _failed(self, key: str, text: str) -> None:
        event = self._cancels.pop(key, None)
        self.failed.emit(key, text, event is not None and event.is_set())


class DownloadRow(QFrame):
    """One recommended model: details, Download / Cancel / Resume, progress, Use."""

    download_requested = Signal(object)  # RecommendedModel
    cancel_requested = Signal(str)  # the model's key
    use_requested = Signal(str)  # the downloaded file's path

    def __init__(self, model: RecommendedModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self._path = ""
        self._busy = False
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAccessibleName(model.name)
        self.title = QLabel(f"<b>{model.name}</b>", self)
        self.details = QLabel(describe_model(model), self)
        self.details.setWordWrap(True)
        self.bar = QProgressBar(self)
        self.bar.setAccessibleName(f"Download of {model.name}")
        self.bar.setVisible(False)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)
        self.action = QPushButton("Download", self)
        self.use = QPushButton("Use this model", self)
        self.use.setEnabled(False)
        self.use.setAccessibleName(f"Use {model.name}")
        self._lay_out()
        self.action.clicked.connect(self._on_action)
        self.use.clicked.connect(lambda: self.use_requested.emit(self._path))

    def _lay_out(self) -> None:
        grid = QGridLayout(self)
        grid.addWidget(self.title, 0, 0)
        grid.addWidget(self.action, 0, 1)
        grid.addWidget(self.use, 0, 2)
        grid.addWidget(self.details, 1, 0, 1, 3)
        grid.addWidget(self.bar, 2, 0, 1, 3)
        grid.addWidget(self.status, 3, 0, 1, 3)
        grid.setColumnStretch(0, 1)

    @property
    def busy(self) -> bool:
        return self._busy

    def set_state(self, curated: Curated) -> None:
        """What is on disk now: the file, a partial download, or nothing."""
        if self._busy:
            return
        self._path = curated.dest if curated.downloaded else ""
        self.use.setEnabled(curated.downloaded)
        self.action.setVisible(not curated.downloaded)
        if curated.downloaded:
            self.status.setText(f"Downloaded: {Path(curated.dest).name}")
        elif curated.partial_bytes:
            self.action.setText("Resume")
            self._show_partial(curated.partial_bytes)
        else:
            self.action.setText("Download")

    def _show_partial(self, done: int) -> None:
        size = self.model.size_bytes
        self.bar.setVisible(bool(size))
        if size:
            self.bar.setRange(0, 1000)
            self.bar.setValue(int(done * 1000 / size))
        self.status.setText(f"{done / 1e6:,.1f} MB downloaded; Resume continues from there.")

    def started(self) -> None:
        self._busy = True
        self.action.setText("Cancel")
        self.action.setAccessibleName(f"Cancel the download of {self.model.name}")
        self.bar.setVisible(True)
        self.bar.setRange(0, 0)  # busy until the size is known
        self.status.setText("Connecting…")

    @Slot(object)
    def show_progress(self, p: DownloadProgress) -> None:
        if p.bytes_total:
            self.bar.setRange(0, 1000)
            self.bar.setValue(int(p.bytes_done * 1000 / p.bytes_total))
        self.status.setText(progress_text(p))

    def show_done(self, path: str) -> None:
        self._busy = False
        self._path = path
        self.action.setEnabled(True)
        self.bar.setVisible(False)
        self.action.setVisible(False)
        self.use.setEnabled(True)
        self.status.setText(f"Downloaded: {Path(path).name}")

    def show_failed(self, text: str, cancelled: bool) -> None:
        self._busy = False
        self.action.setEnabled(True)
        self.action.setText("Resume" if cancelled or self.bar.value() > 0 else "Download")
        self.action.setAccessibleName("")
        self.status.setText(text)

    def _on_action(self) -> None:
        if self._busy:
            self.action.setEnabled(False)  # enabled again when the download stops
            self.cancel_requested.emit(self.model.key)
        else:
            self.download_requested.emit(self.model)
