"""Models & devices: devices, residency, queue, charts, and downloads with cancel and resume."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot
from ui_fakes import FakeEngine
from ui_model_server import curated_for, serve

from app.engine.devices import DeviceProbe, GgmlDevice, HostMemory
from app.engine.downloads import part_path
from app.engine.metrics import MetricsRing, RequestRecord
from app.office import Office
from app.ui.office_bridge import OfficeBridge
from app.ui.sections import models_ops, registered
from app.ui.sections.models import NO_QUEUE, NOT_STARTED, ModelsPage, table_texts

GB = 10**9
FAKE_PROBE = DeviceProbe(
    ggml_devices=lambda: [
        GgmlDevice("CPU", "Test CPU", 0, "CPU", 16 * GB, 16 * GB),
        GgmlDevice("CUDA0", "NVIDIA RTX 4070", 1, "CUDA", 6 * GB, 12 * GB),
    ],
    nvidia_gpus=lambda: [],
    host_memory=lambda: HostMemory(16 * GB, 10 * GB),
    system_info=lambda: "",
    cpu_name=lambda: "Test CPU",
)


def record(n: int, priority: str, tok_s: float | None, ttft: float | None) -> RequestRecord:
    return RequestRecord(
        f"r{n}", "m.gguf", priority, "assistant", 0.0, ttft, tok_s, 10, 20, 0, 0, "stop", n
    )


class ReportingEngine(FakeEngine):
    """A fake engine that reports residency, a queue and metrics, as a real one may."""

    def __init__(self) -> None:
        super().__init__()
        self.metrics = MetricsRing()
        self.metrics.add(record(1, "interactive", 40.0, 0.20))
        self.metrics.add(record(2, "background", 35.0, 0.90))
        self.metrics.add(record(3, "interactive", 42.0, 0.10))

    def residency(self) -> list[dict[str, Any]]:
        return [
            {
                "path": "/m/q.gguf",
                "name": "Qwen",
                "n_layer": 24,
                "gpu_layers": 25,
                "memory_bytes": 900 * 2**20,
                "n_ctx": 4096,
                "n_seq_max": 4,
                "pinned": False,
            }
        ]

    def queue_by_priority(self) -> dict[str, int]:
        return {"interactive": 1, "background": 3}


@pytest.fixture
def office(soloist_home: Path) -> Iterator[Office]:
    opened = Office(soloist_home, engine_factory=ReportingEngine)
    yield opened
    opened.close()


@pytest.fixture
def bridge(qtbot: QtBot, office: Office) -> Iterator[OfficeBridge]:
    made = OfficeBridge()
    with qtbot.waitSignals([made.conversations_loaded, made.model_changed]):
        made.attach(office)
    yield made
    made.shutdown()


def page_for(qtbot: QtBot, bridge: OfficeBridge, **kwargs: Any) -> ModelsPage:
    page = ModelsPage(bridge, probe=FAKE_PROBE, **kwargs)
    qtbot.addWidget(page)
    page.resize(900, 700)
    page.show()
    return page


# -- the plain functions ---------------------------------------------------------


def test_engine_view_does_not_start_the_engine(office: Office) -> None:
    view = models_ops.engine_view(office)
    assert not view.started and view.residency == () and view.queue is None
    assert models_ops.started_engine(office) is None  # still not started


def test_engine_view_reports_what_the_engine_offers(office: Office) -> None:
    office.engine  # noqa: B018  (started, as a first request would)
    view = models_ops.engine_view(office)
    assert view.started and view.residency_source == "engine"
    assert view.residency[0].name == "Qwen" and view.residency[0].layers == 25
    assert view.queue == {"interactive": 1, "standard": 0, "background": 3}
    assert view.recent is not None and len(view.recent) == 3
    assert not view.can_unload and not view.can_pin  # the fake offers neither


def test_plain_engine_reports_no_queue_and_no_metrics(soloist_home: Path) -> None:
    office = Office(soloist_home, engine_factory=FakeEngine)
    try:
        office.engine  # noqa: B018
        view = models_ops.engine_view(office)
    finally:
        office.close()
    assert view.started and view.queue is None and view.recent is None


def test_chart_points_and_bars() -> None:
    records = [
        record(1, "interactive", 40.0, 0.2).to_dict(),
        record(2, "interactive", None, 0.4).to_dict(),  # one token: no tokens/s
        record(3, "interactive", 30.0, 0.3).to_dict(),
        record(4, "background", 20.0, None).to_dict(),
    ]
    assert models_ops.tokens_per_s_points(records) == [(1.0, 40.0), (3.0, 30.0), (4.0, 20.0)]
    assert models_ops.ttft_bars(records) == [("interactive", 300.0)]


def test_memory_line() -> None:
    devices = models_ops.devices(FAKE_PROBE)
    assert [models_ops.memory_line(d) for d in devices] == [
        "6.0 of 16.0 GB in use",
        "6.0 of 12.0 GB in use",
    ]


# -- the page -----------------------------------------------------------------------


def test_section_is_registered_at_80() -> None:
    spec = next(s for s in registered() if s.key == "models")
    assert (spec.title, spec.order) == ("Models & devices", 80)


def test_page_shows_devices_and_says_the_engine_has_not_started(
    qtbot: QtBot, bridge: OfficeBridge
) -> None:
    page = page_for(qtbot, bridge, curated=())
    qtbot.waitUntil(lambda: page.devices.rowCount() == 2)
    rows = table_texts(page.devices)
    assert rows[1] == ["NVIDIA RTX 4070", "gpu", "CUDA", "6.0 of 12.0 GB in use"]
    qtbot.waitUntil(lambda: "engine" not in page._asking)
    assert page.engine_note.text() == NOT_STARTED
    assert page.resident.rowCount() == 0
    assert not page.unload_button.isEnabled()
    assert "does not offer unloading" in page.actions_note.text()


def test_timer_runs_only_while_visible(qtbot: QtBot, bridge: OfficeBridge) -> None:
    page = page_for(qtbot, bridge, curated=())
    assert page.timer.isActive()
    page.hide()
    assert not page.timer.isActive()
    page.show()
    assert page.timer.isActive()


def test_page_shows_residency_queue_and_charts_of_a_running_engine(
    qtbot: QtBot, bridge: OfficeBridge, office: Office
) -> None:
    office.engine  # noqa: B018
    page = page_for(qtbot, bridge, curated=())
    qtbot.waitUntil(lambda: page.resident.rowCount() == 1)
    assert table_texts(page.resident)[0] == ["Qwen", "25 of 25", "900 MiB", "4,096", "no"]
    assert page.queue_label.text() == "interactive: 1 · standard: 0 · background: 3"
    assert page.speed_chart.points == [(1.0, 40.0), (2.0, 35.0), (3.0, 42.0)]
    assert [label for label, _ in page.ttft_chart.bars] == ["interactive", "background"]
    assert "ms" in page.ttft_chart.accessibleDescription()
    assert not page.metrics_note.isVisibleTo(page)


def test_queue_says_when_the_engine_does_not_report_it(qtbot: QtBot, soloist_home: Path) -> None:
    office = Office(soloist_home, engine_factory=FakeEngine)
    office.engine  # noqa: B018
    made = OfficeBridge()
    with qtbot.waitSignal(made.conversations_loaded):
        made.attach(office)
    try:
        page = page_for(qtbot, made, curated=())
        qtbot.waitUntil(lambda: page.queue_label.text() == NO_QUEUE)
        assert page.metrics_note.isVisibleTo(page)
    finally:
        made.shutdown()


def test_download_cancel_resume_and_use(
    qtbot: QtBot, bridge: OfficeBridge, tiny_model: Path, soloist_home: Path
) -> None:
    body = tiny_model.read_bytes()
    model = curated_for(body)
    dest = soloist_home / "models" / model.filename
    pause = models_ops.DOWNLOAD_CHUNK + 4096  # one chunk is written, then the server waits
    assert len(body) > pause
    with serve(body, pause_after=pause) as (served, url):
        page = page_for(qtbot, bridge, curated=[model], url_of=lambda _m: url)
        row = page.rows[model.key]
        qtbot.waitUntil(lambda: row.action.text() == "Download")
        qtbot.mouseClick(row.action, Qt.MouseButton.LeftButton)
        assert row.action.text() == "Cancel" and row.bar.isVisibleTo(row)
        part = part_path(dest)
        qtbot.waitUntil(lambda: part.is_file() and part.stat().st_size > 0)
        with qtbot.waitSignal(page.downloads.failed) as failed:
            qtbot.mouseClick(row.action, Qt.MouseButton.LeftButton)  # Cancel
            served.release.set()
        assert failed.args is not None and failed.args[2] is True  # cancelled by the owner
        assert "partial file is kept" in row.status.text()
        assert row.action.text() == "Resume" and not dest.exists() and part.is_file()
        with qtbot.waitSignal(page.downloads.finished, timeout=10_000):
            qtbot.mouseClick(row.action, Qt.MouseButton.LeftButton)  # Resume
        assert served.ranges[-1].startswith("bytes=") and served.ranges[-1] != "bytes=0-"
    assert dest.read_bytes() == body
    assert row.use.isEnabled()
    with qtbot.waitSignal(bridge.model_changed) as changed:
        qtbot.mouseClick(row.use, Qt.MouseButton.LeftButton)
    assert changed.args == [str(dest)]
    qtbot.waitUntil(
        lambda: any("(in use)" in page.local.item(i).text() for i in range(page.local.count()))
    )


def test_a_failed_download_reads_as_one_line(qtbot: QtBot, bridge: OfficeBridge) -> None:
    model = curated_for(b"not served")
    page = page_for(qtbot, bridge, curated=[model], url_of=lambda _m: "http://127.0.0.1:9/x.gguf")
    row = page.rows[model.key]
    started = time.monotonic()
    with qtbot.waitSignal(page.downloads.failed, timeout=30_000) as failed:
        qtbot.mouseClick(row.action, Qt.MouseButton.LeftButton)
    assert failed.args is not None and failed.args[2] is False
    assert "Check the internet connection" in row.status.text()
    assert row.action.isEnabled() and time.monotonic() - started < 30


@pytest.mark.slow
def test_page_shows_the_live_state_of_a_real_engine_and_pins_and_unloads(
    qtbot: QtBot, soloist_home: Path, tiny_model: Path
) -> None:
    from app.engine.llama_adapter import ContextConfig
    from app.engine.llamacpp import EngineConfig
    from app.engine.process.supervisor import ProcessConfig, ProcessEngine
    from app.engine.types import GenerateRequest, Message, SamplingParams

    config = ProcessConfig(
        engine=EngineConfig(context=ContextConfig(n_ctx=2048, n_batch=128), keep_alive_s=120.0),
        heartbeat_interval_s=0.2,
    )
    office = Office(soloist_home, engine_factory=lambda: ProcessEngine(config))
    made = OfficeBridge()
    with qtbot.waitSignal(made.conversations_loaded):
        made.attach(office)
    try:
        request = GenerateRequest(
            str(tiny_model),
            (Message("user", "hello"),),
            SamplingParams(max_tokens=16, temperature=0.0),
        )
        assert list(office.engine.generate(request))[-1].is_final
        page = page_for(qtbot, made, curated=())
        qtbot.waitUntil(lambda: page.resident.rowCount() == 1, timeout=10_000)
        assert table_texts(page.resident)[0][4] == "no"
        assert page.queue_label.text() == "interactive: 0 · standard: 0 · background: 0"
        assert len(page.speed_chart.points) == 1
        assert [label for label, _ in page.ttft_chart.bars] == ["interactive"]
        assert not page.metrics_note.isVisibleTo(page)
        assert "2 min" in page.engine_note.text()  # the engine's keep-alive, not a default
        page.resident.selectRow(0)
        assert page.unload_button.isEnabled() and page.pin_button.isEnabled()
        assert page.actions_note.text() == ""
        qtbot.mouseClick(page.pin_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: [r[4] for r in table_texts(page.resident)] == ["yes"])
        page.resident.selectRow(0)
        assert page.pin_button.text() == "Unpin"
        qtbot.mouseClick(page.unload_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: page.resident.rowCount() == 0, timeout=10_000)
        assert page.engine_note.text().startswith("No model is loaded.")
    finally:
        made.shutdown()
