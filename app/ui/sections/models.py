"""Models & devices: accelerators, what the engine holds, its queue, and models to use.

The page shows what exists and says what does not: the engine is asked
(through :mod:`app.ui.sections.models_ops`, off the main thread) what it
holds and what it offers, and an action it does not offer (unloading,
pinning) stays disabled with the reason beside it. Opening the page never
starts the engine or loads a model.

Live parts (residency, the queue by priority class, the charts of recent
requests) refresh on a timer that runs only while the page is visible, so
the app idles at no cost; device memory is re-read every fifth tick (it
asks the GPU driver).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QHideEvent, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.engine.catalog import RECOMMENDED, RecommendedModel
from app.engine.devices import Device, DeviceProbe
from app.office import Office
from app.ui.charts import BarChart, LineChart
from app.ui.office_bridge import OfficeBridge
from app.ui.sections import models_ops, section
from app.ui.sections.model_downloads import DownloadController, DownloadRow, UrlOf, default_url
from app.ui.sections.models_ops import EngineView, ModelsList

REFRESH_MS = 2_000
DEVICES_EVERY = 5  # ticks
NOT_STARTED = (
    "The engine has not started yet: no model is loaded. It starts with the first request."
)
NO_QUEUE = "The engine does not report its queue by priority class."
NO_METRICS = "The engine does not report per-request metrics to this window."
NO_UNLOAD = "The engine does not offer unloading; an idle model unloads after its keep-alive."
NO_PIN = "The engine does not offer pinning from here."
DEVICE_COLUMNS = ("Device", "Kind", "Backend", "Memory")
RESIDENT_COLUMNS = ("Model", "Layers on accelerator", "Memory", "Context", "Pinned")

T = TypeVar("T")


def _table(columns: Sequence[str], name: str, parent: QWidget) -> QTableWidget:
    table = QTableWidget(0, len(columns), parent)
    table.setHorizontalHeaderLabels(list(columns))
    table.setAccessibleName(name)
    table.verticalHeader().setVisible(False)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.horizontalHeader().setStretchLastSection(True)
    return table


def _fill(table: QTableWidget, rows: Sequence[Sequence[str]]) -> None:
    table.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            table.setItem(r, c, QTableWidgetItem(text))


def table_texts(table: QTableWidget) -> list[list[str]]:
    """Every cell's text, row by row (for tests and accessibility checks)."""
    return [
        [(table.item(r, c) or QTableWidgetItem()).text() for c in range(table.columnCount())]
        for r in range(table.rowCount())
    ]


def device_row(device: Device) -> list[str]:
    return [device.description, device.kind, device.backend, models_ops.memory_line(device)]


def resident_row(model: models_ops.ResidentModel) -> list[str]:
    return [
        model.name,
        f"{model.gpu_layers} of {model.layers}",
        f"{model.memory_bytes / 2**20:,.0f} MiB",
        f"{model.n_ctx:,}",
        "yes" if model.pinned else "no",
    ]


def queue_text(queue: dict[str, int] | None) -> str:
    if queue is None:
        return NO_QUEUE
    return " · ".join(f"{name}: {count}" for name, count in queue.items())


class ModelsPage(QScrollArea):
    """The Models & devices section; talks to the office only through the bridge."""

    def __init__(
        self,
        bridge: OfficeBridge,
        parent: QWidget | None = None,
        *,
        probe: DeviceProbe | None = None,
        curated: Sequence[RecommendedModel] = RECOMMENDED,
        url_of: UrlOf = default_url,
    ) -> None:
        super().__init__(parent)
        self._bridge = bridge
        self._probe = probe
        self._curated = tuple(curated)
        self._asking: set[str] = set()  # queries in flight, so a slow one is not stacked
        self._ticks = 0
        self._view: EngineView | None = None
        self.downloads = DownloadController(bridge, url_of, self)
        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self._tick)
        self.setWidgetResizable(True)
        self.setObjectName("section-models")
        body = QWidget(self)
        column = QVBoxLayout(body)
        column.addWidget(self._build_devices(body))
        column.addWidget(self._build_residency(body))
        column.addWidget(self._build_requests(body))
        column.addWidget(self._build_local(body))
        column.addWidget(self._build_curated(body))
        column.addStretch(1)
        self.setWidget(body)
        self._connect_signals()
        self._update_actions()

    # -- construction --------------------------------------------------
    def _box(self, title: str, parent: QWidget) -> tuple[QGroupBox, QVBoxLayout]:
        box = QGroupBox(title, parent)
        box.setAccessibleName(title)
        return box, QVBoxLayout(box)

    def _build_devices(self, parent: QWidget) -> QGroupBox:
        box, column = self._box("Accelerators", parent)
        self.devices = _table(DEVICE_COLUMNS, "Devices and their memory", box)
        column.addWidget(self.devices)
        return box

    def _build_residency(self, parent: QWidget) -> QGroupBox:
        box, column = self._box("Loaded models", parent)
        self.engine_note = QLabel(NOT_STARTED, box)
        self.engine_note.setWordWrap(True)
        self.resident = _table(RESIDENT_COLUMNS, "Loaded models", box)
        self.unload_button = QPushButton("Unload", box)
        self.pin_button = QPushButton("Pin", box)
        self.actions_note = QLabel("", box)
        self.actions_note.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.unload_button)
        row.addWidget(self.pin_button)
        row.addWidget(self.actions_note, 1)
        column.addWidget(self.engine_note)
        column.addWidget(self.resident)
        column.addLayout(row)
        return box

    def _build_requests(self, parent: QWidget) -> QGroupBox:
        box, column = self._box("Requests", parent)
        self.queue_label = QLabel(NO_QUEUE, box)
        self.queue_label.setAccessibleName("Requests in flight by priority class")
        self.metrics_note = QLabel(NO_METRICS, box)
        self.speed_chart = LineChart(box)
        self.speed_chart.set_series("Tokens per second, recent requests", [], "tok/s")
        self.ttft_chart = BarChart(box)
        self.ttft_chart.setAccessibleName("Time to first token by priority class (median)")
        charts = QHBoxLayout()
        charts.addWidget(self.speed_chart)
        charts.addWidget(self.ttft_chart)
        column.addWidget(self.queue_label)
        column.addWidget(self.metrics_note)
        column.addLayout(charts)
        return box

    def _build_local(self, parent: QWidget) -> QGroupBox:
        box, column = self._box("Models on this computer", parent)
        self.local = QListWidget(box)
        self.local.setAccessibleName("Models on this computer")
        self.use_local = QPushButton("Use this model", box)
        self.use_local.setEnabled(False)
        self.folder_label = QLabel("", box)
        self.folder_label.setWordWrap(True)
        column.addWidget(self.local)
        column.addWidget(self.use_local, 0, Qt.AlignmentFlag.AlignLeft)
        column.addWidget(self.folder_label)
        return box

    def _build_curated(self, parent: QWidget) -> QGroupBox:
        box, column = self._box("Recommended downloads", parent)
        self.rows: dict[str, DownloadRow] = {}
        for model in self._curated:
            row = DownloadRow(model, box)
            self.rows[model.key] = row
            column.addWidget(row)
        return box

    def _connect_signals(self) -> None:
        self.unload_button.clicked.connect(self._unload_selected)
        self.pin_button.clicked.connect(self._pin_selected)
        self.resident.itemSelectionChanged.connect(self._update_actions)
        self.local.currentItemChanged.connect(
            lambda item, _prev: self.use_local.setEnabled(
                item is not None and bool(item.data(Qt.ItemDataRole.UserRole))
            )
        )
        self.use_local.clicked.connect(self._use_selected_local)
        for row in self.rows.values():
            row.download_requested.connect(self._start_download)
            row.cancel_requested.connect(self.downloads.cancel)
            row.use_requested.connect(self._use)
        self.downloads.progress.connect(lambda key, p: self.rows[key].show_progress(p))
        self.downloads.finished.connect(self._download_finished)
        self.downloads.failed.connect(self._download_failed)
        self._bridge.model_changed.connect(
            lambda _path: self._ask("models", self._models_op, self._show_models)
        )

    # -- visibility: the timer runs only while shown --------------------
    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 (Qt's name)
        super().showEvent(event)
        self.refresh()
        self.timer.start()

    def hideEvent(self, event: QHideEvent) -> None:  # noqa: N802 (Qt's name)
        self.timer.stop()
        super().hideEvent(event)

    def refresh(self) -> None:
        """Ask for everything the page shows."""
        self._ticks = 0
        self._ask("devices", lambda _office: models_ops.devices(self._probe), self._show_devices)
        self._ask("engine", models_ops.engine_view, self._show_engine)
        self._ask("models", self._models_op, self._show_models)

    def _tick(self) -> None:
        self._ticks += 1
        self._ask("engine", models_ops.engine_view, self._show_engine)
        if self._ticks % DEVICES_EVERY == 0:
            self._ask(
                "devices", lambda _office: models_ops.devices(self._probe), self._show_devices
            )

    def _ask(self, what: str, op: Callable[[Office], T], show: Callable[[T], None]) -> None:
        if what in self._asking:
            return
        self._asking.add(what)

        def done(result: T) -> None:
            self._asking.discard(what)
            show(result)

        def failed(text: str) -> None:
            self._asking.discard(what)
            self._bridge.error.emit(text)

        self._bridge.call(op, done, failed)

    def _models_op(self, office: Office) -> ModelsList:
        return models_ops.models_list(office, self._curated)

    # -- showing results ------------------------------------------------
    def _show_devices(self, devices: list[Device]) -> None:
        _fill(self.devices, [device_row(d) for d in devices])

    def _show_engine(self, view: EngineView) -> None:
        self._view = view
        _fill(self.resident, [resident_row(m) for m in view.residency])
        self.engine_note.setText(self._engine_note(view))
        self.queue_label.setText(queue_text(view.queue) if view.started else NOT_STARTED)
        self._show_metrics(view.recent)
        self._update_actions()

    @staticmethod
    def _engine_note(view: EngineView) -> str:
        if not view.started and view.residency_source == "none":
            return NOT_STARTED
        keep = f"Idle models unload after {view.keep_alive_s / 60:.0f} min (keep-alive)."
        where = " (as published by the engine's status file)" if not view.started else ""
        broken = "".join(
            f"\nKept out of loading: {Path(p).name}: {why}" for p, why in view.broken.items()
        )
        count = len(view.residency)
        loaded = (
            f"{count} model{'s' if count != 1 else ''} loaded{where}."
            if count
            else "No model is loaded."
        )
        return f"{loaded} {keep}{broken}"

    def _show_metrics(self, recent: Sequence[dict[str, Any]] | None) -> None:
        self.metrics_note.setVisible(recent is None)
        records = recent or ()
        self.speed_chart.set_series(
            "Tokens per second, recent requests", models_ops.tokens_per_s_points(records), "tok/s"
        )
        self.ttft_chart.set_bars(models_ops.ttft_bars(records), "ms")

    def _show_models(self, listing: ModelsList) -> None:
        self.local.clear()
        for info in listing.scan.models:
            chosen = " (in use)" if listing.chosen == info.path else ""
            text = (
                f"{info.name}{chosen} · {info.architecture} · {info.quantisation} · "
                f"{info.file_size / 1e9:.2f} GB · {info.context_length:,} context"
            )
            item = QListWidgetItem(text, self.local)
            item.setData(Qt.ItemDataRole.UserRole, info.path)
        for broken in listing.scan.broken:
            QListWidgetItem(
                f"{Path(broken.path).name}: cannot be used: {broken.reason}", self.local
            )
        if not listing.scan.models and not listing.scan.broken:
            QListWidgetItem(
                "No models yet: download one below, or put a .gguf file in the folder.", self.local
            )
        self.folder_label.setText(f"Models folder: {listing.models_dir}")
        for curated in listing.curated:
            row = self.rows.get(curated.model.key)
            if row is not None:
                row.set_state(curated)

    def _update_actions(self) -> None:
        view = self._view
        selected = self._selected_resident()
        self.unload_button.setEnabled(bool(view and view.can_unload and selected))
        self.pin_button.setEnabled(bool(view and view.can_pin and selected))
        self.pin_button.setText("Unpin" if selected and selected.pinned else "Pin")
        missing = []
        if view is None or not view.can_unload:
            missing.append(NO_UNLOAD)
        if view is None or not view.can_pin:
            missing.append(NO_PIN)
        self.actions_note.setText(" ".join(missing))

    def _selected_resident(self) -> models_ops.ResidentModel | None:
        view, row = self._view, self.resident.currentRow()
        if view is None or not 0 <= row < len(view.residency) or not self.resident.selectedItems():
            return None
        return view.residency[row]

    # -- actions ----------------------------------------------------------
    def _unload_selected(self) -> None:
        model = self._selected_resident()
        if model is not None:
            self._bridge.call(
                lambda office: models_ops.unload(office, model.path), lambda _: self.refresh()
            )

    def _pin_selected(self) -> None:
        model = self._selected_resident()
        if model is not None:
            pin = not model.pinned
            self._bridge.call(
                lambda office: models_ops.set_pinned(office, model.path, pin),
                lambda _: self.refresh(),
            )

    def _use_selected_local(self) -> None:
        item = self.local.currentItem()
        path = item.data(Qt.ItemDataRole.UserRole) if item is not None else None
        if isinstance(path, str) and path:
            self._use(path)

    def _use(self, path: str) -> None:
        self._bridge.set_model_path(path)

    def _start_download(self, model: RecommendedModel) -> None:
        self.rows[model.key].started()
        self.downloads.start(model)

    def _download_finished(self, key: str, path: str) -> None:
        self.rows[key].show_done(path)
        self._ask("models", self._models_op, self._show_models)

    def _download_failed(self, key: str, text: str, cancelled: bool) -> None:
        self.rows[key].show_failed(text, cancelled)


@section("models", "Models & devices", 80)
def make(bridge: OfficeBridge, parent: QWidget) -> QWidget:
    return ModelsPage(bridge, parent)
