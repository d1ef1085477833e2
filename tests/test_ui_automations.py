"""The Automations section on a real office: schedules, history, on/off, run now."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot
from ui_agent_rig import ask, open_office_window
from ui_fakes import Windows

from app.agents.automations import (
    AutomationStore,
    CronSchedule,
    MissedSlotPolicy,
    RunKind,
    RunState,
)
from app.office import Office
from app.ui.office_bridge import OfficeBridge
from app.ui.sections import automations_ops
from app.ui.sections.automations import MANAGED_NOTE, AutomationsSection

NAME, STATE, NEXT, LAST = 0, 2, 5, 6


@pytest.fixture
def windows(qtbot: QtBot, soloist_home: Path) -> Iterator[Windows]:
    opened = Windows(qtbot, soloist_home)
    yield opened
    opened.close_all()


def add_nightly(office: Office) -> str:
    store = AutomationStore(office.db)
    schedule = CronSchedule("0 2 * * *", "UTC")
    return store.add("Nightly desk", "agent:desk", schedule, policy=MissedSlotPolicy.SKIP).id


@pytest.fixture
def opened(
    qtbot: QtBot, windows: Windows, soloist_home: Path
) -> tuple[OfficeBridge, AutomationsSection, str]:
    window, bridge = open_office_window(qtbot, windows, soloist_home)
    nightly = ask(qtbot, bridge, add_nightly)
    window.show_section("automations")
    page = window.pages.currentWidget()
    assert isinstance(page, AutomationsSection)
    qtbot.waitUntil(lambda: nightly in [row.id for row in page._rows], timeout=15_000)
    page.select(nightly)
    qtbot.waitUntil(lambda: page.current() is not None and page.current().id == nightly)
    return bridge, page, nightly


def row_of(page: AutomationsSection, automation_id: str) -> int:
    return [row.id for row in page._rows].index(automation_id)


def test_lists_schedules_policies_and_next_runs(
    opened: tuple[OfficeBridge, AutomationsSection, str],
) -> None:
    _, page, nightly = opened
    row = row_of(page, nightly)
    cells = [page.table.item(row, column).text() for column in range(page.table.columnCount())]
    zone = "" if automations_ops.is_local_zone("UTC", datetime.now(UTC)) else " (UTC)"
    assert cells[:5] == ["Nightly desk", "agent:desk", f"every day at 02:00{zone}",
                         "Skip missed slots", "yes"]  # fmt: skip
    assert page.table.item(row, 2).toolTip() == "cron 0 2 * * * (UTC)"
    assert cells[NEXT] not in ("off", "–", "")
    assert cells[LAST] == "never"
    assert page.enabled.isChecked() and page.note.text() == ""
    managed = next(r for r in page._rows if r.managed and r.target == "agent:desk")
    assert managed.cron.startswith("cron 0 9 * * *")
    assert managed.stored_name == "desk: 0 9 * * *"
    assert managed.name == "Desk — every day at 09:00"  # the agent's name, the line in words
    page.select(managed.id)
    assert page.note.text() == MANAGED_NOTE


def test_switching_off_goes_through_the_store_and_back_on(
    qtbot: QtBot, opened: tuple[OfficeBridge, AutomationsSection, str]
) -> None:
    bridge, page, nightly = opened
    page.enabled.click()
    qtbot.waitUntil(lambda: page.table.item(row_of(page, nightly), NEXT).text() == "off",
                    timeout=15_000)  # fmt: skip
    stored = ask(qtbot, bridge, lambda office: AutomationStore(office.db).get(nightly))
    assert not stored.enabled
    assert not page.enabled.isChecked()
    page.enabled.click()
    qtbot.waitUntil(lambda: page.table.item(row_of(page, nightly), 4).text() == "yes",
                    timeout=15_000)  # fmt: skip
    assert ask(qtbot, bridge, lambda office: AutomationStore(office.db).get(nightly)).enabled


def test_run_now_lands_in_the_history_from_the_ledger(
    qtbot: QtBot, opened: tuple[OfficeBridge, AutomationsSection, str]
) -> None:
    bridge, page, nightly = opened
    page.run_button.click()
    qtbot.waitUntil(
        lambda: (
            page.history.rowCount() == 1
            and page.history.item(0, STATE).text() == RunState.SUCCEEDED.value
        ),
        timeout=20_000,
    )
    assert page.history.item(0, 1).text() == RunKind.MANUAL.value
    qtbot.waitUntil(
        lambda: page.table.item(row_of(page, nightly), LAST).text().endswith(": succeeded"),
        timeout=15_000,
    )
    runs = ask(qtbot, bridge, lambda office: office.agents.trace.runs("desk"))
    assert [run.trigger for run in runs] == ["schedule"]


def test_the_managed_mark_is_the_runtimes() -> None:
    from app.agents.runtime import MANAGED_BY

    assert automations_ops.MANAGED_BY == MANAGED_BY  # kept apart so the module loads light


def test_an_unknown_automation_is_reported_readably(
    qtbot: QtBot, opened: tuple[OfficeBridge, AutomationsSection, str]
) -> None:
    bridge, _, _ = opened
    failures: list[str] = []
    bridge.call(lambda office: automations_ops.run_now(office, "nope"), print, failures.append)
    qtbot.waitUntil(lambda: len(failures) == 1, timeout=15_000)
    assert failures[0].startswith("No automation has the id 'nope'")


@pytest.mark.skipif(not hasattr(time, "tzset"), reason="the local zone is set through TZ")
@pytest.mark.parametrize(
    ("local", "zone", "same"),
    [
        ("UTC", "UTC", True),
        ("UTC", "Etc/UTC", True),
        ("Europe/Lisbon", "Europe/London", True),  # other names, the same clock all year
        ("Europe/Lisbon", "UTC", False),  # the same clock in winter only
        ("America/New_York", "Europe/Paris", False),
        ("UTC", "Not/AZone", False),
    ],
)
def test_a_schedule_names_its_zone_only_when_it_is_not_the_local_one(
    monkeypatch: pytest.MonkeyPatch, local: str, zone: str, same: bool
) -> None:
    monkeypatch.setenv("TZ", local)
    time.tzset()
    try:
        winter = datetime(2026, 1, 15, 12, tzinfo=UTC)
        for now in (winter, winter + timedelta(days=150)):
            assert automations_ops.is_local_zone(zone, now) is same
    finally:
        monkeypatch.undo()
        time.tzset()
