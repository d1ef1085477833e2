"""Runs and schedules in words (``app.ui.sections.run_text``): pure, table-driven."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from app.ui.sections.run_text import (
    agent_title,
    interval_words,
    one_line,
    outcome_reason,
    outcome_text,
    schedule_words,
)


def loop_outcome(state: str, reason: str, actions: tuple[str, ...] = ()) -> str:
    """What ``AgentLoop._finish`` stores as a run's outcome."""
    return json.dumps({"state": state, "actions": list(actions), "reason": reason})


LONG = "the model server went away " * 10


@pytest.mark.parametrize(
    ("state", "outcome", "error", "extra", "expected"),
    [
        # a final answer: done, with the counts when the caller has no columns for them
        ("succeeded", loop_outcome("succeeded", "final answer"), None,
         {"steps": 3, "duration_s": 1.234}, "done · 3 steps · 1.2 s"),
        ("succeeded", loop_outcome("succeeded", "final answer"), None,
         {"steps": 1, "duration_s": 0.182}, "done · 1 step · 182 ms"),
        ("succeeded", loop_outcome("succeeded", "final answer"), None, {}, "done"),
        # an action waits: never the action ids
        ("waiting_for_approval", loop_outcome("waiting_for_approval", "action a1 waits", ("a1",)),
         None, {"steps": 5, "duration_s": 0.2}, "waiting for your approval"),
        ("waiting_for_approval", loop_outcome("waiting_for_approval", "x", ("a1", "a2")), None,
         {}, "waiting for your approval (2 actions)"),
        # failed, stopped, refused, interrupted: the reason, on one line
        ("failed", loop_outcome("failed", "RuntimeError: boom"), "RuntimeError: boom", {},
         "failed: RuntimeError: boom"),
        ("failed", None, "no model\n  was chosen", {}, "failed: no model was chosen"),
        ("failed", loop_outcome("failed", "from the outcome"), None, {},
         "failed: from the outcome"),
        ("failed", None, None, {}, "failed"),
        ("stopped", loop_outcome("stopped", "step limit: 8 reason steps"),
         "step limit: 8 reason steps", {}, "stopped: step limit: 8 reason steps"),
        ("refused", None, "over the budget of 30 runs an hour", {},
         "not run: over the budget of 30 runs an hour"),
        ("interrupted", None, "the office stopped mid-run", {},
         "interrupted: the office stopped mid-run"),
        ("cancelled", loop_outcome("cancelled", "cancelled"), None, {}, "cancelled"),
        ("running", None, None, {"steps": 2, "duration_s": None}, "running · 2 steps"),
        # text that is not the loop's JSON is shown as it is
        ("succeeded", "run 4 done", None, {}, "done · run 4 done"),
        ("succeeded", "[1, 2]", None, {}, "done · [1, 2]"),
        ("failed", "{not json", None, {}, "failed: {not json"),
        # a state this version does not know: its words and reason
        ("paused_forever", None, "why not", {}, "paused forever: why not"),
    ],
)  # fmt: skip
def test_outcome_text(
    state: str, outcome: str | None, error: str | None, extra: dict[str, object], expected: str
) -> None:
    assert outcome_text(state, outcome, error, **extra) == expected  # type: ignore[arg-type]


def test_a_long_reason_is_cut_and_a_tooltip_may_ask_for_all_of_it() -> None:
    short = outcome_text("failed", None, LONG)
    assert short.startswith("failed: the model server went away")
    assert short.endswith("…") and len(short) <= len("failed: ") + 100
    full = outcome_text("failed", None, LONG, limit=10_000)
    assert full == "failed: " + " ".join(LONG.split())
    assert outcome_reason(loop_outcome("failed", "a\nb")) == "a b"
    assert one_line("a\n\tb  c") == "a b c"
    assert one_line("x" * 50, 10) == "x" * 9 + "…"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("*/15 * * * *", "every 15 minutes"),
        ("*/1 * * * *", "every minute"),
        ("5 * * * *", "hourly at :05"),
        ("0 8 * * *", "every day at 08:00"),
        ("30 17 * * *", "every day at 17:30"),
        ("0 9 * * 1-5", "weekdays at 09:00"),
        ("0 9 * * MON-FRI", "weekdays at 09:00"),
        ("0 10 * * 1", "weekly on Monday at 10:00"),
        ("0 10 * * 0", "weekly on Sunday at 10:00"),
        ("0 10 * * 7", "weekly on Sunday at 10:00"),
        ("0 10 * * fri", "weekly on Friday at 10:00"),
        ("0 16 28 * *", "monthly on the 28th at 16:00"),
        ("0 16 1 * *", "monthly on the 1st at 16:00"),
        ("0 16 22 * *", "monthly on the 22nd at 16:00"),
        ("0 16 13 * *", "monthly on the 13th at 16:00"),
        ("TZ=Europe/Lisbon 0 8 * * 1-5", "weekdays at 08:00 (Europe/Lisbon)"),
        # anything else: as written
        ("0 8 * 1 *", "0 8 * 1 *"),
        ("0 8,12 * * *", "0 8,12 * * *"),
        ("0 8 * * 1,3", "0 8 * * 1,3"),
        ("0 8 1 * 1", "0 8 1 * 1"),
        ("61 8 * * *", "61 8 * * *"),
        ("0 24 * * *", "0 24 * * *"),
        ("*/5 8 * * *", "*/5 8 * * *"),
        ("@daily", "@daily"),
    ],
)
def test_schedule_words(line: str, expected: str) -> None:
    assert schedule_words(line) == expected


def test_schedule_words_with_a_zone() -> None:
    assert schedule_words("0 8 * * *", "Etc/UTC") == "every day at 08:00 (UTC)"
    assert schedule_words("0 8 * * *", "Europe/Paris") == "every day at 08:00 (Europe/Paris)"


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(1800, "every 30 minutes"), (60, "every minute"), (7200, "every 2 hours"),
     (86_400, "every day"), (90, "every 90 s")],
)  # fmt: skip
def test_interval_words(seconds: float, expected: str) -> None:
    assert interval_words(seconds) == expected


@pytest.mark.parametrize(
    ("agent_id", "expected"),
    [("daily-briefing", "Daily briefing"), ("desk", "Desk"), ("order_desk", "Order desk")],
)
def test_agent_title(agent_id: str, expected: str) -> None:
    assert agent_title(agent_id) == expected


def test_the_module_loads_no_qt_and_nothing_heavy() -> None:
    code = (
        "import sys, app.ui.sections.run_text; "
        "print([m for m in ('PySide6', 'duckdb', 'numpy', 'apscheduler') if m in sys.modules])"
    )
    shown = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert shown.strip() == "[]"
