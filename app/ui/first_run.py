"""First run: a page of steps that gets a new owner from nothing to a working office.

Shown in the main window's page stack instead of Chat while no model is
chosen, no remote endpoint is set and the owner has not dismissed it (see
:func:`app.ui.first_run_ops.should_show`). The steps are pages of this one
widget, never a chain of modal dialogs, and each can be skipped:

1. the accelerators this computer has;
2. a model: the recommended download (progress, cancel, resume), or a GGUF
   file already on disk, or a remote OpenAI-compatible endpoint (its key
   goes to the keyring);
3. connections: a button per kind that opens the Connections section.

``wanted`` asks the window to show this page; ``finished`` says the owner is
done (onboarding is then dismissed for good); ``section_requested`` asks for
another section.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.engine.catalog import RECOMMENDED, ModelInfo, RecommendedModel
from app.engine.devices import Device, DeviceProbe
from app.ui import first_run_ops
from app.ui.office_bridge import OfficeBridge
from app.ui.sections import models_ops
from app.ui.sections.model_downloads import (
    DownloadController,
    DownloadRow,
    UrlOf,
    default_url,
)

STEPS = ("Accelerators", "Model", "Connections")
CONNECTION_KINDS = (
    ("email", "Email"),
    ("calendar", "Calendar"),
    ("crm", "Contacts (CRM)"),
    ("store", "Online store"),
)
MODEL_FILTER = "GGUF models (*.gguf);;All files (*)"


def _title(text: str, parent: QWidget) -> QLabel:
    label = QLabel(f"<h2>{text}</h2>", parent)
    label.setAccessibleName(text)
    return label


def device_lines(devices: Sequence[Device]) -> list[str]:
    return [
        f"{d.description} ({d.kind}, {d.backend}): {models_ops.memory_line(d)}" for d in devices
    ]


class FirstRunPage(QWidget):
    """Onboarding as one widget with a page per step; every step skippable."""

    wanted = Signal()  # the window should show this page
    finished = Signal()
    section_requested = Signal(str)

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
        self.row: DownloadRow | None = None
        self.setObjectName("first-run")
        self.setAccessibleName("Getting started")
        self.downloads = DownloadController(bridge, url_of, self)
        self.steps = QStackedWidget(self)
        self.steps.addWidget(self._devices_step())
        self.steps.addWidget(self._model_step())
        self.steps.addWidget(self._connections_step())
        self.step_label = QLabel(self)
        self.back_button = QPushButton("Back", self)
        self.skip_button = QPushButton("Skip this step", self)
        self.next_button = QPushButton("Next", self)
        self.close_button = QPushButton("Skip setup", self)
        self.close_button.setToolTip("Hide this guide; Models & devices offers the same later")
        self._lay_out()
        self._connect_signals()
        self.go_to(0)

    # -- construction --------------------------------------------------
    def _lay_out(self) -> None:
        buttons = QHBoxLayout()
        buttons.addWidget(self.close_button)
        buttons.addStretch(1)
        buttons.addWidget(self.step_label)
        buttons.addWidget(self.back_button)
        buttons.addWidget(self.skip_button)
        buttons.addWidget(self.next_button)
        column = QVBoxLayout(self)
        column.addWidget(_title("Welcome to Soloist", self))
        column.addWidget(self.steps, 1)
        column.addLayout(buttons)

    def _devices_step(self) -> QWidget:
        page = QWidget(self)
        column = QVBoxLayout(page)
        column.addWidget(_title("What this computer has", page))
        self.devices_label = QLabel("Looking for accelerators…", page)
        self.devices_label.setWordWrap(True)
        self.devices_label.setAccessibleName("Accelerators found")
        column.addWidget(self.devices_label)
        column.addStretch(1)
        return page

    def _model_step(self) -> QWidget:
        page = QWidget(self)
        column = QVBoxLayout(page)
        column.addWidget(_title("Choose a model", page))
        self.recommend_label = QLabel("Finding a model that fits…", page)
        self.recommend_label.setWordWrap(True)
        self.recommend_label.setAccessibleName("Recommended model")
        self.row_holder = QVBoxLayout()
        column.addWidget(self.recommend_label)
        column.addLayout(self.row_holder)
        column.addWidget(QLabel("<b>Or a GGUF file on this computer</b>", page))
        self.file_edit = QLineEdit(page)
        self.file_edit.setPlaceholderText("/path/to/model.gguf")
        self.file_edit.setAccessibleName("Model file")
        self.browse_button = QPushButton("Browse…", page)
        self.use_file_button = QPushButton("Use this file", page)
        file_row = QHBoxLayout()
        for widget in (self.file_edit, self.browse_button, self.use_file_button):
            file_row.addWidget(widget)
        column.addLayout(file_row)
        column.addWidget(QLabel("<b>Or a remote OpenAI-compatible server</b>", page))
        column.addLayout(self._remote_form(page))
        self.model_status = QLabel("", page)
        self.model_status.setWordWrap(True)
        self.model_status.setAccessibleName("Model choice status")
        column.addWidget(self.model_status)
        column.addStretch(1)
        return page

    def _remote_form(self, page: QWidget) -> QFormLayout:
        self.url_edit = QLineEdit(page)
        self.url_edit.setPlaceholderText("https://api.example.com/v1")
        self.remote_model_edit = QLineEdit(page)
        self.key_edit = QLineEdit(page)
        self.key_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.key_edit.setPlaceholderText("kept in the system keyring")
        self.use_remote_button = QPushButton("Use this server", page)
        form = QFormLayout()
        form.addRow("Address", self.url_edit)
        form.addRow("Model name", self.remote_model_edit)
        form.addRow("API key", self.key_edit)
        form.addRow("", self.use_remote_button)
        self.url_edit.setAccessibleName("Server address")
        self.remote_model_edit.setAccessibleName("Remote model name")
        self.key_edit.setAccessibleName("API key")
        return form

    def _connections_step(self) -> QWidget:
        page = QWidget(self)
        column = QVBoxLayout(page)
        column.addWidget(_title("Connect your accounts", page))
        column.addWidget(
            QLabel("Soloist can read and act on these; each opens the Connections section.", page)
        )
        self.connect_buttons: dict[str, QPushButton] = {}
        for kind, title in CONNECTION_KINDS:
            button = QPushButton(f"Connect {title}…", page)
            button.setAccessibleName(f"Connect {title}")
            button.clicked.connect(lambda _=False: self.section_requested.emit("connections"))
            self.connect_buttons[kind] = button
            column.addWidget(button)
        column.addStretch(1)
        return page

    def _connect_signals(self) -> None:
        self.back_button.clicked.connect(lambda: self.go_to(self.steps.currentIndex() - 1))
        self.skip_button.clicked.connect(self._next)
        self.next_button.clicked.connect(self._next)
        self.close_button.clicked.connect(self.finish)
        self.browse_button.clicked.connect(self._browse)
        self.use_file_button.clicked.connect(self._use_file)
        self.use_remote_button.clicked.connect(self._use_remote)
        self.downloads.progress.connect(self._on_progress)
        self.downloads.finished.connect(self._on_downloaded)
        self.downloads.failed.connect(self._on_download_failed)

    # -- the steps ------------------------------------------------------
    @Slot()
    def check(self) -> None:
        """Ask the office whether to show onboarding; ``wanted`` when it should."""
        self._bridge.call(first_run_ops.should_show, self._on_should_show)

    def _on_should_show(self, show: bool) -> None:
        if show:
            self.load()
            self.wanted.emit()

    def load(self) -> None:
        """Find the devices (off the main thread), then the recommendation."""
        self._bridge.call(lambda _office: models_ops.devices(self._probe), self.show_devices)

    def go_to(self, index: int) -> None:
        index = max(0, min(index, len(STEPS) - 1))
        self.steps.setCurrentIndex(index)
        self.step_label.setText(f"Step {index + 1} of {len(STEPS)}: {STEPS[index]}")
        self.back_button.setEnabled(index > 0)
        last = index == len(STEPS) - 1
        self.next_button.setText("Finish" if last else "Next")
        self.skip_button.setVisible(not last)

    def _next(self) -> None:
        if self.steps.currentIndex() == len(STEPS) - 1:
            self.finish()
        else:
            self.go_to(self.steps.currentIndex() + 1)

    @Slot()
    def finish(self) -> None:
        """Done or skipped: remember it, so the guide does not come back."""
        self.downloads.cancel_all()
        self._bridge.call(first_run_ops.dismiss, lambda _: None)
        self.finished.emit()

    # -- devices and the recommendation ---------------------------------
    def show_devices(self, devices: list[Device]) -> None:
        lines = device_lines(devices)
        gpus = [d for d in devices if d.can_offload]
        intro = (
            "Accelerators llama.cpp can use:"
            if gpus
            else "No GPU llama.cpp can use; models run on the CPU."
        )
        self.devices_label.setText("\n".join([intro, *lines]))
        self._show_recommendation(first_run_ops.recommend(devices, self._curated))

    def _show_recommendation(self, rec: first_run_ops.Recommendation | None) -> None:
        if rec is None:
            self.recommend_label.setText("No recommended model to offer; use a file or a server.")
            return
        fit = "fits this computer" if rec.fits else "is the smallest we know, and may not fit"
        self.recommend_label.setText(f"{rec.model.name} {fit}. {rec.estimate_text}")
        if self.row is None:
            self.row = DownloadRow(rec.model, self)
            self.row.download_requested.connect(self._start_download)
            self.row.cancel_requested.connect(self.downloads.cancel)
            self.row.use_requested.connect(self._use_path)
            self.row_holder.addWidget(self.row)
            model = rec.model
            self._bridge.call(
                lambda office: models_ops.curated_for(office, model), self.row.set_state
            )

    # -- the model choices ----------------------------------------------
    def _start_download(self, model: RecommendedModel) -> None:
        if self.row is not None:
            self.row.started()
        self.downloads.start(model)

    def _on_progress(self, _key: str, progress: object) -> None:
        if self.row is not None:
            self.row.show_progress(progress)  # type: ignore[arg-type]

    def _on_downloaded(self, _key: str, path: str) -> None:
        if self.row is not None:
            self.row.show_done(path)
        self._use_path(path)

    def _on_download_failed(self, _key: str, text: str, cancelled: bool) -> None:
        if self.row is not None:
            self.row.show_failed(text, cancelled)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a model", "", MODEL_FILTER)
        if path:
            self.file_edit.setText(path)
            self._use_file()

    def _use_file(self) -> None:
        path = self.file_edit.text().strip()
        if not path:
            self.model_status.setText("Type the path of a .gguf file, or press Browse….")
            return
        self._bridge.call(
            lambda office: first_run_ops.use_file(office, path), self._file_chosen, self._refused
        )

    def _file_chosen(self, info: ModelInfo) -> None:
        self._model_chosen(f"Using {info.name} ({info.quantisation}).")

    def _use_path(self, path: str) -> None:
        self._bridge.call(
            lambda office: first_run_ops.use_file(office, path), self._file_chosen, self._refused
        )

    def _use_remote(self) -> None:
        url, model = self.url_edit.text(), self.remote_model_edit.text()
        problem = first_run_ops.endpoint_problem(url)
        if problem is not None:
            self.model_status.setText(f"{problem} Check the address and try again.")
            return
        key = self.key_edit.text()
        self._bridge.call(
            lambda office: first_run_ops.use_remote(office, url, model, key),
            lambda _: self._model_chosen(f"Using the server at {url.strip()}."),
            self._refused,
        )

    def _model_chosen(self, text: str) -> None:
        self.key_edit.clear()
        self.model_status.setText(text)
        self._bridge.refresh()  # the window learns the model from the office
        self.go_to(len(STEPS) - 1)

    def _refused(self, text: str) -> None:
        self.model_status.setText(text)
