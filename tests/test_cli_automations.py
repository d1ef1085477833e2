"""``soloist automations`` end to end on the test's data directory (SOLOIST_HOME)."""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from holders import database_held_by_another_process

from app import cli_automations, paths
from app.agents.automations import (
    Automation,
    AutomationStore,
    CronSchedule,
    Ledger,
    MissedSlotPolicy,
    RunFn,
    RunState,
)
from app.memory.db import Database, utc_now


def soloist_automations(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="soloist")
    cli_automations.add_parser(parser.add_subparsers(dest="command"))
    return cli_automations.run(parser.parse_args(["automations", *argv]))


def as_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    capsys.readouterr()
    assert soloist_automations(*argv, "--json") == 0
    return json.loads(capsys.readouterr().out)


def add_automation(name: str = "digest", target: str = "agent:mail") -> Automation:
    with Database.open(paths.db_path()) as db:
        return AutomationStore(db).add(
            name, target, CronSchedule("0 9 * * *", "Europe/Lisbon"),
            policy=MissedSlotPolicy.RUN_EACH,
        )  # fmt: skip


def test_list_shows_next_and_last_run(capsys: pytest.CaptureFixture[str]) -> None:
    automation = add_automation()
    [doc] = as_json(capsys, "list")
    assert doc["id"] == automation.id and doc["policy"] == "run_each"
    assert doc["last_run"] is None
    next_run = datetime.fromisoformat(doc["next_run"])
    assert utc_now() < next_run <= utc_now() + timedelta(days=1, hours=1)
    assert soloist_automations("list") == 0
    shown = capsys.readouterr().out
    assert "digest" in shown and "last run: never" in shown and "Europe/Lisbon" in shown


def test_manual_run_is_recorded_and_shown(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    automation = add_automation()
    seen: list[str] = []

    def runner(target: Automation) -> RunFn:
        return lambda a, slot: seen.append(a.id)

    monkeypatch.setattr(cli_automations, "make_runner", runner)
    done = as_json(capsys, "run", automation.id)
    assert (done["kind"], done["state"]) == ("manual", "succeeded") and seen == [automation.id]
    [row] = as_json(capsys, "history", automation.id)
    assert row["kind"] == "manual"
    [doc] = as_json(capsys, "list")
    assert doc["last_run"]["state"] == "succeeded"


def test_a_failed_manual_run_exits_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    automation = add_automation()

    def broken(a: Automation, slot: datetime) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(cli_automations, "make_runner", lambda target: broken)
    assert soloist_automations("run", automation.id) == 1
    assert "failed: OSError: disk full" in capsys.readouterr().out


def test_run_refuses_a_target_nothing_can_run(capsys: pytest.CaptureFixture[str]) -> None:
    automation = add_automation(target="nowhere:x")
    assert soloist_automations("run", automation.id) == 1
    assert "'nowhere'" in capsys.readouterr().err
    assert as_json(capsys, "history", automation.id) == []  # nothing recorded


def test_history_marks_runs_of_a_dead_soloist_abandoned(capsys: pytest.CaptureFixture[str]) -> None:
    automation = add_automation()
    slot = utc_now() - timedelta(hours=1)
    with Database.open(paths.db_path()) as db:
        ledger = Ledger(db)
        claim = ledger.claim(automation.id, slot)
        assert claim is not None
        ledger.start(claim)  # and then the process died
    [row] = as_json(capsys, "history", automation.id)
    assert row["state"] == RunState.ABANDONED.value
    assert soloist_automations("history", automation.id) == 0
    assert "abandoned" in capsys.readouterr().out


def test_unknown_id_and_locked_database_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    add_automation()
    assert soloist_automations("history", "nope") == 1
    assert "No automation has the id 'nope'" in capsys.readouterr().err
    with database_held_by_another_process(paths.db_path()):
        assert soloist_automations("list") == 1
    assert "soloist:" in capsys.readouterr().err
