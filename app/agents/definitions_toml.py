"""Reading one agent TOML file, with every error naming the file and the field.

The owner writes these files by hand, so a mistake must be easy to find:
each problem is reported as ``agents/inbox.toml: tools[2].autonomy: must be
0-3, got 7`` and all problems of a file are collected, not just the first.
Unknown keys are errors too: a misspelt ``budget`` silently ignored would
leave an agent without the limits the owner meant to set.

A file looks like::

    id = "inbox"                 # optional: defaults to the file's name
    name = "Inbox"
    instructions = "Sort new mail..."
    model_class = "fast"         # "fast", "smart" or a model path
    priority = "background"      # interactive, standard, background
    triggers = ["mail.received"]
    schedules = ["TZ=Europe/Lisbon 0 8 * * 1-5"]
    memory_scopes = ["global", "agent:inbox"]

    [[tools]]
    tool = "email.search"
    autonomy = 0                 # 0-3 or suggest/ask/notify/silent

    [budgets]
    tokens_per_day = 200000
    runs_per_hour = 12
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from app.agents.autonomy import Autonomy
from app.agents.definitions import (
    DEFAULT_BUDGETS,
    MODEL_CLASSES,
    TRIGGER_KINDS,
    AgentDefinition,
    Budgets,
    DefinitionError,
    ToolGrant,
)
from app.engine.types import Priority
from app.memory.provenance import check_scope

__all__ = ["parse_cron", "parse_file"]

_ID = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_TOOL = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+")
_KEYS = frozenset(
    {
        "id",
        "name",
        "instructions",
        "model_class",
        "priority",
        "tools",
        "schedules",
        "triggers",
        "budgets",
        "memory_scopes",
    }
)
_BUDGET_KEYS = {"tokens_per_day": int, "runs_per_hour": int, "max_steps": int, "max_seconds": float}
_MAX_INSTRUCTIONS = 20_000


class _Problems:
    """The errors found in one file so far."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.found: list[DefinitionError] = []

    def add(self, field: str, message: str) -> None:
        self.found.append(DefinitionError(self.label, field, message))


def parse_file(path: Path, label: str) -> tuple[AgentDefinition | None, list[DefinitionError]]:
    """The definition in ``path``, or None and every problem found (``label`` names the file)."""
    problems = _Problems(label)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        problems.add("", f"cannot be read: {exc.__class__.__name__}")
        return None, problems.found
    except tomllib.TOMLDecodeError as exc:
        problems.add("", f"is not valid TOML: {exc}")
        return None, problems.found
    definition = _definition(data, path, problems)
    return (None if problems.found else definition), problems.found


def _definition(data: dict[str, Any], path: Path, p: _Problems) -> AgentDefinition:
    for key in sorted(set(data) - _KEYS):
        p.add(key, f"unknown key; expected one of {sorted(_KEYS)}")
    agent_id = _text(data, "id", p, default=path.stem)
    if agent_id and not _ID.fullmatch(agent_id):
        p.add("id", f"must be lower-case letters, digits, '_', '.' or '-', got {agent_id!r}")
    instructions = _text(data, "instructions", p)
    if len(instructions) > _MAX_INSTRUCTIONS:
        p.add("instructions", f"must be at most {_MAX_INSTRUCTIONS} characters")
    return AgentDefinition(
        id=agent_id,
        name=_text(data, "name", p, default=agent_id),
        instructions=instructions,
        model_class=_model_class(data, p),
        priority=_priority(data, p),
        tools=_tools(data.get("tools", []), p),
        schedules=_strings(data, "schedules", p, _check_cron),
        triggers=_strings(data, "triggers", p, _check_trigger, default=("manual",)),
        budgets=_budgets(data.get("budgets", {}), p),
        memory_scopes=_strings(data, "memory_scopes", p, _check_scope),
        builtin=False,
        source=path,
    )


def _text(data: dict[str, Any], key: str, p: _Problems, default: str | None = None) -> str:
    value = data.get(key, default)
    if value is None:
        p.add(key, "is required")
        return ""
    if not isinstance(value, str) or not value.strip():
        p.add(key, f"must be a non-empty string, got {_shown(value)}")
        return ""
    return value.strip()


def _model_class(data: dict[str, Any], p: _Problems) -> str:
    value = _text(data, "model_class", p, default="fast")
    if value and value not in MODEL_CLASSES and not value.endswith(".gguf") and "/" not in value:
        p.add("model_class", f"must be 'fast', 'smart' or a model path, got {value!r}")
    return value


def _priority(data: dict[str, Any], p: _Problems) -> Priority:
    value = data.get("priority", "background")
    names = [level.name.lower() for level in Priority]
    if isinstance(value, str) and value.lower() in names:
        return Priority[value.upper()]
    p.add("priority", f"must be one of {names}, got {_shown(value)}")
    return Priority.BACKGROUND


def _tools(value: object, p: _Problems) -> tuple[ToolGrant, ...]:
    if not isinstance(value, list):
        p.add("tools", "must be an array of tables ([[tools]])")
        return ()
    grants: list[ToolGrant] = []
    for index, item in enumerate(value):
        grant = _grant(item, f"tools[{index}]", p)
        if grant is not None and any(g.tool == grant.tool for g in grants):
            p.add(f"tools[{index}].tool", f"{grant.tool!r} is listed twice")
        elif grant is not None:
            grants.append(grant)
    return tuple(grants)


def _grant(item: object, where: str, p: _Problems) -> ToolGrant | None:
    if not isinstance(item, dict):
        p.add(where, "must be a table with 'tool' and 'autonomy'")
        return None
    for key in sorted(set(item) - {"tool", "autonomy"}):
        p.add(f"{where}.{key}", "unknown key; expected 'tool' or 'autonomy'")
    tool = item.get("tool")
    if not isinstance(tool, str) or not _TOOL.fullmatch(tool):
        p.add(
            f"{where}.tool", f"must be a dotted tool name like 'email.search', got {_shown(tool)}"
        )
        return None
    autonomy = _autonomy(item.get("autonomy", 0), f"{where}.autonomy", p)
    return None if autonomy is None else ToolGrant(tool, autonomy)


def _autonomy(value: object, where: str, p: _Problems) -> Autonomy | None:
    if isinstance(value, str) and value.upper() in Autonomy.__members__:
        return Autonomy[value.upper()]
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 3:
        return Autonomy(value)
    if isinstance(value, int) and not isinstance(value, bool):
        p.add(where, f"must be 0-3, got {value}")
    else:
        p.add(where, f"must be 0-3 or suggest, ask, notify, silent; got {_shown(value)}")
    return None


def _strings(
    data: dict[str, Any],
    key: str,
    p: _Problems,
    check: Callable[[str], str | None],
    default: tuple[str, ...] = (),
) -> tuple[str, ...]:
    value = data.get(key, list(default))
    if not isinstance(value, list):
        p.add(key, f"must be an array of strings, got {_shown(value)}")
        return ()
    kept: list[str] = []
    for index, item in enumerate(value):
        problem = check(item) if isinstance(item, str) else f"must be a string, got {_shown(item)}"
        if problem:
            p.add(f"{key}[{index}]", problem)
        else:
            kept.append(item.strip())
    return tuple(kept)


def _check_trigger(value: str) -> str | None:
    if value in TRIGGER_KINDS:
        return None
    return f"must be one of {sorted(TRIGGER_KINDS)}, got {value!r}"


def _check_scope(value: str) -> str | None:
    try:
        check_scope(value)
    except ValueError:
        return f"must be 'global', 'agent:<id>' or 'contact:<id>', got {value!r}"
    return None


def _check_cron(value: str) -> str | None:
    try:
        parse_cron(value)
    except ValueError as exc:
        return str(exc)
    return None


def parse_cron(value: str) -> tuple[str, str | None]:
    """``(crontab, time zone or None)`` of ``"TZ=Europe/Lisbon 0 8 * * 1-5"``; ValueError if bad.

    Five fields (minute hour day month weekday), each a comma list of ``*``,
    ``n``, ``a-b``, with an optional ``/step``; months and weekdays may be
    named (``jan``, ``mon``). Checked here so a bad line is reported with its
    file; the automations' scheduler interprets it.
    """
    text = value.strip()
    zone: str | None = None
    if text.startswith("TZ="):
        zone, _, text = text[3:].partition(" ")
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {zone!r}") from None
    fields = text.split()
    if len(fields) != len(_CRON_FIELDS):
        raise ValueError(f"a cron line has 5 fields (minute hour day month weekday), got {text!r}")
    for raw, (name, low, high) in zip(fields, _CRON_FIELDS, strict=True):
        if not all(_cron_item(item.lower(), low, high) for item in raw.split(",")):
            raise ValueError(f"cron {name} field {raw!r} must be within {low}-{high}")
    return " ".join(fields), zone


_CRON_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day", 1, 31),
    ("month", 1, 12),
    ("weekday", 0, 7),
)
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_CRON_NAMES = {
    **{m: i + 1 for i, m in enumerate(_MONTHS)},
    **{d: i for i, d in enumerate(_WEEKDAYS)},
}
_CRON_ITEM = re.compile(r"(\*|\w+(?:-\w+)?)(?:/(\d+))?")


def _cron_item(item: str, low: int, high: int) -> bool:
    match = _CRON_ITEM.fullmatch(item)
    if match is None or (match.group(2) is not None and int(match.group(2)) < 1):
        return False
    if match.group(1) == "*":
        return True
    bounds = [_cron_number(part) for part in match.group(1).split("-")]
    if any(b is None or not low <= b <= high for b in bounds):
        return False
    return len(bounds) == 1 or bounds[0] <= bounds[1]  # type: ignore[operator]


def _cron_number(part: str) -> int | None:
    if part.isdigit():
        return int(part)
    return _CRON_NAMES.get(part)


def _budgets(value: object, p: _Problems) -> Budgets:
    if not isinstance(value, dict):
        p.add("budgets", "must be a table ([budgets])")
        return DEFAULT_BUDGETS
    values: dict[str, Any] = {}
    for key in sorted(set(value) - set(_BUDGET_KEYS)):
        p.add(f"budgets.{key}", f"unknown key; expected one of {sorted(_BUDGET_KEYS)}")
    for key, kind in _BUDGET_KEYS.items():
        if key not in value:
            continue
        number = value[key]
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            p.add(f"budgets.{key}", f"must be a number, got {_shown(number)}")
        elif kind is int and not isinstance(number, int):
            p.add(f"budgets.{key}", f"must be a whole number, got {number!r}")
        elif number <= 0:
            p.add(f"budgets.{key}", f"must be more than 0, got {number!r}")
        else:
            values[key] = kind(number)
    base = DEFAULT_BUDGETS
    return Budgets(
        tokens_per_day=values.get("tokens_per_day", base.tokens_per_day),
        runs_per_hour=values.get("runs_per_hour", base.runs_per_hour),
        max_steps=values.get("max_steps", base.max_steps),
        max_seconds=values.get("max_seconds", base.max_seconds),
    )


def _shown(value: object) -> str:
    """A value as an error shows it: short, and its type when it is not a scalar."""
    if isinstance(value, (str, int, float, bool)):
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "..."
    return f"a {type(value).__name__}"
