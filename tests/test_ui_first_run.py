"""First run: when it shows, what it recommends, each way to get a model; steps skippable."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot
from test_ui_models import FAKE_PROBE, GB
from ui_fakes import FakeEngine
from ui_model_server import curated_for, serve

from app.engine.catalog import RECOMMENDED
from app.engine.devices import Device
from app.office import Office
from app.ui import first_run_ops
from app.ui.first_run import STEPS, FirstRunPage
from app.ui.office_bridge import OfficeBridge


def device(kind: str, free: int | None, backend: str = "CUDA") -> Device:
    source = "ggml"
    name = "CPU" if kind == "cpu" else "CUDA0"
    backend = "CPU" if kind == "cpu" else backend
    return Device(name, kind, backend, f"test {kind}", 16 * GB, free, (), source)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("devices", "name", "fits"),
    [
        ([device("cpu", 8 * GB), device("gpu", 6 * GB)], "Phi-3.5 mini Instruct", True),
        ([device("cpu", 2 * GB)], "Qwen2.5 0.5B Instruct", True),
        ([device("cpu", 3 * GB)], "Qwen2.5 1.5B Instruct", True),
        ([device("cpu", GB // 2)], "Qwen2.5 0.5B Instruct", False),  # nothing fits: smallest
        # a GPU too full for any model: the CPU's RAM takes it
        ([device("cpu", 64 * GB), device("gpu", GB // 4)], "Phi-3.5 mini Instruct", True),
    ],
)
def test_recommendation_fits_memory_and_allows_business_use(
    devices: list[Device], name: str, fits: bool
) -> None:
    rec = first_run_ops.recommend(devices, RECOMMENDED)
    assert rec is not None
    assert (rec.model.name, rec.fits) == (name, fits)
    assert "non-commercial" not in rec.model.licence


def test_a_model_that_fits_the_gpu_runs_there() -> None:
    rec = first_run_ops.recommend([device("cpu", 64 * GB), device("gpu", 6 * GB)], RECOMMENDED)
    assert rec is not None and rec.device == "test gpu" and rec.bandwidth_gbps == 250.0


def test_speed_estimate_is_bandwidth_over_size() -> None:
    rec = first_run_ops.recommend([device("cpu", 2 * GB)], RECOMMENDED)
    assert rec is not None and rec.model.size_bytes is not None
    assert rec.tokens_per_s == pytest.approx(20e9 / rec.model.size_bytes)
    assert "an estimate" in rec.estimate_text and "20 GB/s" in rec.estimate_text


def test_no_recommendation_without_business_models() -> None:
    research = [m for m in RECOMMENDED if "non-commercial" in m.licence]
    assert first_run_ops.recommend([device("cpu", 64 * GB)], research) is None


@pytest.fixture
def office(soloist_home: Path) -> Iterator[Office]:
    opened = Office(soloist_home, engine_factory=FakeEngine)
    yield opened
    opened.close()


def test_shown_until_a_model_is_chosen_or_dismissed(office: Office, tiny_model: Path) -> None:
    assert first_run_ops.should_show(office)
    first_run_ops.use_file(office, str(tiny_model))
    assert not first_run_ops.should_show(office)
    office.settings.delete("engine.model_path")
    assert first_run_ops.should_show(office)
    first_run_ops.dismiss(office)
    assert not first_run_ops.should_show(office)


def test_remote_endpoint_is_saved_and_used_for_every_class(office: Office) -> None:
    assert first_run_ops.endpoint_problem("ftp://x") is not None
    first_run_ops.use_remote(office, "http://127.0.0.1:9/v1/", "gpt-test", None)
    endpoint = office.remote_endpoint()
    assert endpoint is not None and endpoint.base_url == "http://127.0.0.1:9/v1"
    assert set(endpoint.priorities) == {"interactive", "standard", "background"}
    assert office.model_path() == "gpt-test"
    assert not first_run_ops.should_show(office)


@pytest.fixture
def bridge(qtbot: QtBot, office: Office) -> Iterator[OfficeBridge]:
    made = OfficeBridge()
    with qtbot.waitSignals([made.conversations_loaded, made.model_changed]):
        made.attach(office)
    yield made
    made.shutdown()


def first_run(qtbot: QtBot, bridge: OfficeBridge, **kwargs: Any) -> FirstRunPage:
    page = FirstRunPage(bridge, probe=FAKE_PROBE, **kwargs)
    qtbot.addWidget(page)
    page.show()
    with qtbot.waitSignal(page.wanted):
        page.check()
    qtbot.waitUntil(lambda: "NVIDIA RTX 4070" in page.devices_label.text())
    return page


def test_steps_are_pages_and_each_can_be_skipped(
    qtbot: QtBot, bridge: OfficeBridge, office: Office
) -> None:
    page = first_run(qtbot, bridge)
    assert page.step_label.text() == f"Step 1 of 3: {STEPS[0]}"
    assert not page.back_button.isEnabled()
    qtbot.mouseClick(page.skip_button, Qt.MouseButton.LeftButton)
    assert page.steps.currentIndex() == 1
    assert "Phi-3.5 mini Instruct fits this computer" in page.recommend_label.text()
    assert "tokens/s" in page.recommend_label.text()
    assert page.row is not None and "licence: MIT" in page.row.details.text()
    qtbot.mouseClick(page.skip_button, Qt.MouseButton.LeftButton)
    assert page.steps.currentIndex() == 2 and page.next_button.text() == "Finish"
    assert not page.skip_button.isVisibleTo(page)
    with qtbot.waitSignal(page.section_requested) as asked:
        qtbot.mouseClick(page.connect_buttons["crm"], Qt.MouseButton.LeftButton)
    assert asked.args == ["connections"]
    assert sorted(page.connect_buttons) == ["calendar", "crm", "email", "store"]
    with qtbot.waitSignal(page.finished):
        qtbot.mouseClick(page.next_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: office.settings.get(first_run_ops.DISMISSED_SETTING) is True)


def test_skip_setup_dismisses_from_any_step(
    qtbot: QtBot, bridge: OfficeBridge, office: Office
) -> None:
    page = first_run(qtbot, bridge)
    with qtbot.waitSignal(page.finished):
        qtbot.mouseClick(page.close_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not first_run_ops.should_show(office))


def test_not_wanted_once_dismissed(qtbot: QtBot, bridge: OfficeBridge, office: Office) -> None:
    first_run_ops.dismiss(office)
    page = FirstRunPage(bridge, probe=FAKE_PROBE)
    qtbot.addWidget(page)
    with qtbot.assertNotEmitted(page.wanted, wait=300):
        page.check()


def test_a_file_on_disk_is_checked_then_chosen(
    qtbot: QtBot, bridge: OfficeBridge, tiny_model: Path, tmp_path: Path
) -> None:
    page = first_run(qtbot, bridge)
    page.go_to(1)
    bad = tmp_path / "notes.gguf"
    bad.write_text("not a model")
    page.file_edit.setText(str(bad))
    qtbot.mouseClick(page.use_file_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "notes.gguf" in page.model_status.text())
    assert page.steps.currentIndex() == 1  # refused: still on the model step
    page.file_edit.setText(str(tiny_model))
    with qtbot.waitSignal(bridge.model_changed) as changed:
        qtbot.mouseClick(page.use_file_button, Qt.MouseButton.LeftButton)
    assert changed.args == [str(tiny_model)]
    assert page.model_status.text().startswith("Using ")
    assert page.steps.currentIndex() == 2  # on to connections


def test_a_bad_server_address_is_refused_in_place(qtbot: QtBot, bridge: OfficeBridge) -> None:
    page = first_run(qtbot, bridge)
    page.go_to(1)
    page.url_edit.setText("localhost:8080")
    qtbot.mouseClick(page.use_remote_button, Qt.MouseButton.LeftButton)
    assert "http://" in page.model_status.text() and "try again" in page.model_status.text()


def test_the_recommended_model_downloads_and_is_used(
    qtbot: QtBot, bridge: OfficeBridge, tiny_model: Path, soloist_home: Path
) -> None:
    body = tiny_model.read_bytes()
    with serve(body) as (_served, url):
        page = first_run(qtbot, bridge, curated=[curated_for(body)], url_of=lambda _m: url)
        page.go_to(1)
        row = page.row
        assert row is not None
        qtbot.waitUntil(lambda: row.action.text() == "Download")
        with qtbot.waitSignal(bridge.model_changed, timeout=10_000) as changed:
            qtbot.mouseClick(row.action, Qt.MouseButton.LeftButton)
    dest = soloist_home / "models" / "tiny-test.gguf"
    assert changed.args == [str(dest)] and dest.read_bytes() == body
    assert page.steps.currentIndex() == 2
