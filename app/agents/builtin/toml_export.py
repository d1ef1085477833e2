"""A definition written as the TOML file that would override it (``agents/<id>.toml``).

The owner retunes a built-in by copying it into ``<data dir>/agents`` and
editing it; this writes that file's text. ``load_definitions`` reads it back
to the same definition (tested for every built-in).
"""

from __future__ import annotations

import json

from app.agents.definitions import AgentDefinition

__all__ = ["definition_toml"]


def _text(value: str) -> str:
    # A JSON string is a valid TOML basic string (same escapes, no raw control characters).
    return json.dumps(value, ensure_ascii=False)


def _texts(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(_text(v) for v in values) + "]"


def definition_toml(definition: AgentDefinition) -> str:
    """The TOML text of ``definition`` (every field, so nothing falls back to a default)."""
    budgets = definition.budgets
    lines = [
        f"id = {_text(definition.id)}",
        f"name = {_text(definition.name)}",
        f"instructions = {_text(definition.instructions)}",
        f"model_class = {_text(definition.model_class)}",
        f"priority = {_text(definition.priority.name.lower())}",
        f"triggers = {_texts(definition.triggers)}",
        f"schedules = {_texts(definition.schedules)}",
        f"memory_scopes = {_texts(definition.memory_scopes)}",
    ]
    for grant in definition.tools:
        lines += [
            "",
            "[[tools]]",
            f"tool = {_text(grant.tool)}",
            f"autonomy = {int(grant.autonomy)}",
        ]
    lines += [
        "",
        "[budgets]",
        f"tokens_per_day = {budgets.tokens_per_day}",
        f"runs_per_hour = {budgets.runs_per_hour}",
        f"max_steps = {budgets.max_steps}",
        f"max_seconds = {float(budgets.max_seconds)!r}",
    ]
    return "\n".join(lines) + "\n"
