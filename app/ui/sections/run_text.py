"""Agent runs and schedules in words for the owner: pure functions, no Qt, nothing heavy.

:func:`outcome_text` turns how a run ended, as the trace stores it, into one
short sentence ("done · 3 steps · 1.2 s", "failed: <reason>", "waiting for
your approval"). The trace keeps a run's ``outcome`` as the JSON the agent
loop writes (``{"state": ..., "actions": [...], "reason": ...}``, see
``AgentLoop._finish``) and its ``error`` as plain text for failed, stopped,
refused and interrupted runs; older rows and tests may hold any text, which
is shown as it is, on one line.

:func:`schedule_words` reads the common five-field cron forms aloud ("every
day at 08:00", "weekdays at 09:00"); any other expression comes back as it
was written. Day-of-week numbers are read as in crontab(5): 0 and 7 are
Sunday. :func:`agent_title` makes an agent id readable when the agent's own
name is not at hand.

Used by the Home, Agents, Activity and Automations sections.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "REASON_CHARS",
    "agent_title",
    "duration_text",
    "interval_words",
    "one_line",
    "outcome_reason",
    "outcome_text",
    "schedule_words",
]

REASON_CHARS = 100  # a reason longer than this is cut, with "…"

_ACTION_WAITS = "waiting for your approval"
# state -> (words, whether the reason follows after a colon)
_STATES: Mapping[str, tuple[str, bool]] = {
    "succeeded": ("done", False),
    "waiting_for_approval": (_ACTION_WAITS, False),
    "stopped": ("stopped", True),
    "refused": ("not run", True),
    "failed": ("failed", True),
    "cancelled": ("cancelled", False),
    "interrupted": ("interrupted", True),
    "running": ("running", False),
}


def one_line(text: str | None, limit: int = REASON_CHARS) -> str:
    """``text`` on one line, whitespace runs as one space, cut to ``limit`` with "…"."""
    line = " ".join((text or "").split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def duration_text(seconds: float | None) -> str:
    """``0.0123`` -> ``12 ms``; ``75`` -> ``1 min 15 s``; None (still running) -> ``…``."""
    if seconds is None:
        return "…"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


def _parsed(outcome: str | None) -> dict[str, Any] | None:
    """The loop's outcome object, or None when ``outcome`` is not one."""
    if not outcome or not outcome.lstrip().startswith("{"):
        return None
    try:
        value = json.loads(outcome)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def outcome_reason(outcome: str | None, error: str | None = None) -> str:
    """Why the run ended, in full on one line: the error, else the outcome's reason or text."""
    if error and error.strip():
        return " ".join(error.split())
    parsed = _parsed(outcome)
    if parsed is None:
        return " ".join((outcome or "").split())
    reason = parsed.get("reason")
    return " ".join(reason.split()) if isinstance(reason, str) else ""


def _plural(count: int, one: str, many: str | None = None) -> str:
    return f"{count} {one if count == 1 else (many or one + 's')}"


def outcome_text(
    state: str,
    outcome: str | None = None,
    error: str | None = None,
    *,
    steps: int | None = None,
    duration_s: float | None = None,
    limit: int = REASON_CHARS,
) -> str:
    """How a run ended, as one short sentence.

    ``state`` is the run's state value (``RunState.value``); ``outcome`` and
    ``error`` are the trace's columns. ``steps`` and ``duration_s``, when
    given, follow a run that is done or still running ("done · 4 steps ·
    182 ms"); tables that show them in columns of their own leave them out.
    A reason longer than ``limit`` characters is cut (a tooltip passes more).
    """
    parsed = _parsed(outcome)
    if parsed is not None and isinstance(parsed.get("state"), str) and state not in _STATES:
        state = parsed["state"]
    words, with_reason = _STATES.get(state, (state.replace("_", " "), True))
    reason = one_line(outcome_reason(outcome, error), limit)
    if state == "waiting_for_approval":
        actions = parsed.get("actions") if parsed is not None else None
        count = len(actions) if isinstance(actions, list) else 0
        return f"{words} ({_plural(count, 'action')})" if count > 1 else words
    if state in ("succeeded", "running"):
        parts = [words]
        if steps is not None:
            parts.append(_plural(steps, "step"))
        if duration_s is not None:
            parts.append(duration_text(duration_s))
        if state == "succeeded" and parsed is None and reason:
            parts.append(reason)  # free text (not the loop's JSON): the only account there is
        return " · ".join(parts)
    if with_reason and reason and reason != words:
        return f"{words}: {reason}"
    return words


# -- schedules ---------------------------------------------------------------------------
_DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_DAY_NAMES = {name[:3].lower(): index for index, name in enumerate(_DAYS)}
_WEEKDAYS = {"1-5", "mon-fri"}
_NUMBER = re.compile(r"\d{1,2}")
_EVERY = re.compile(r"\*/(\d{1,2})")


def _day(field: str) -> str | None:
    """A single day-of-week field ("1", "mon", "7") as a day's name; None otherwise."""
    text = field.lower()
    if text in _DAY_NAMES:
        return _DAYS[_DAY_NAMES[text]]
    if _NUMBER.fullmatch(text) and int(text) <= 7:
        return _DAYS[int(text) % 7]
    return None


_SUFFIXES = {1: "st", 2: "nd", 3: "rd"}


def _ordinal(number: int) -> str:
    suffix = "th" if 10 <= number % 100 <= 20 else _SUFFIXES.get(number % 10, "th")
    return f"{number}{suffix}"


def _in_range(field: str, top: int, bottom: int = 0) -> bool:
    return bool(_NUMBER.fullmatch(field)) and bottom <= int(field) <= top


def _cron_words(expression: str) -> str | None:
    fields = expression.split()
    if len(fields) != 5:
        return None
    minute, hour, day, month, weekday = fields
    every = _EVERY.fullmatch(minute)
    if every and fields[1:] == ["*"] * 4:
        step = int(every.group(1))
        return "every minute" if step == 1 else f"every {step} minutes"
    if month != "*" or not _in_range(minute, 59):
        return None
    if (hour, day, weekday) == ("*", "*", "*"):
        return f"hourly at :{int(minute):02d}"
    if not _in_range(hour, 23):
        return None
    return _days_words(day, weekday, f"{int(hour):02d}:{int(minute):02d}")


def _days_words(day: str, weekday: str, at: str) -> str | None:
    """The day fields of a daily, weekday, weekly or monthly time; None for other forms."""
    if day == "*":
        if weekday == "*":
            return f"every day at {at}"
        if weekday.lower() in _WEEKDAYS:
            return f"weekdays at {at}"
        named = _day(weekday)
        return None if named is None else f"weekly on {named} at {at}"
    if weekday == "*" and _in_range(day, 31, 1):
        return f"monthly on the {_ordinal(int(day))} at {at}"
    return None


def _zone_words(zone: str) -> str:
    return zone.removeprefix("Etc/")


def schedule_words(line: str, timezone: str | None = None) -> str:
    """A schedule line (``"0 8 * * *"``, ``"TZ=Europe/Lisbon 0 8 * * 1-5"``) in words.

    The common forms read "every N minutes", "hourly at :MM", "every day at
    HH:MM", "weekdays at HH:MM", "weekly on <day> at HH:MM" and "monthly on
    the Nth at HH:MM"; anything else is the line as written. A zone (from
    ``TZ=`` or ``timezone``) follows in brackets.
    """
    text = " ".join(line.split())
    zone = timezone
    if text.startswith("TZ="):
        first, _, text = text.partition(" ")
        zone = first.removeprefix("TZ=")
    words = _cron_words(text) or text
    return f"{words} ({_zone_words(zone)})" if zone else words


def interval_words(seconds: float) -> str:
    """A fixed interval in words: "every 30 minutes", "every 2 hours", "every 90 s"."""
    whole = int(seconds)
    for size, one in ((86_400, "day"), (3_600, "hour"), (60, "minute")):
        if whole >= size and whole % size == 0:
            count = whole // size
            return f"every {one}" if count == 1 else f"every {count} {one}s"
    return f"every {whole} s"


def agent_title(agent_id: str) -> str:
    """``"daily-briefing"`` -> ``"Daily briefing"`` (when the agent's own name is unknown)."""
    words = " ".join(agent_id.replace("_", " ").replace("-", " ").split())
    return words[:1].upper() + words[1:] if words else agent_id
