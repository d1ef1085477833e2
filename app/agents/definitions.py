"""What an agent is, as a record: instructions, model, tools with autonomy, schedule, budgets.

A definition is plain frozen data. Built-in agents ship as Python values;
the owner adds or overrides agents with TOML files in ``<data dir>/agents``
(parsed in ``app.agents.definitions_toml``). A user file with a built-in's
id replaces that built-in, so the owner can retune a shipped agent without
editing code.

The autonomy level a grant names is only the *default*: the levels the owner
sets live in the ``AutonomyStore`` and win. Nothing an agent reads can change
a definition; only the owner edits these files.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from app.agents.autonomy import Autonomy
from app.engine.types import Priority

__all__ = [
    "DEFAULT_BUDGETS",
    "MODEL_CLASSES",
    "TRIGGER_KINDS",
    "AgentDefinition",
    "Budgets",
    "DefinitionError",
    "DefinitionSet",
    "ToolGrant",
    "load_definitions",
]

MODEL_CLASSES = ("fast", "smart")
"""Model classes resolved to a model by the office; anything else is a model path."""

TRIGGER_KINDS = frozenset(
    {
        "mail.received",
        "order.created",
        "contacts.changed",
        "calendar.changed",
        "manual",
        "schedule",
    }
)
"""Events an agent can be started by (connector event kinds, plus manual and schedule)."""


@dataclass(frozen=True, slots=True)
class ToolGrant:
    """One tool an agent may call, and the autonomy it has by default for it."""

    tool: str
    autonomy: Autonomy = Autonomy.SUGGEST


@dataclass(frozen=True, slots=True)
class Budgets:
    """Limits checked before a run (per day, per hour) and during it (steps, seconds)."""

    tokens_per_day: int
    runs_per_hour: int
    max_steps: int = 8
    max_seconds: float = 300.0


DEFAULT_BUDGETS = Budgets(tokens_per_day=200_000, runs_per_hour=12)


@dataclass(frozen=True, slots=True)
class AgentDefinition:
    """One agent as the owner configured it; ``repr`` hides the instructions."""

    id: str
    name: str
    instructions: str
    model_class: str = "fast"
    priority: Priority = Priority.BACKGROUND
    tools: tuple[ToolGrant, ...] = ()
    schedules: tuple[str, ...] = ()
    triggers: tuple[str, ...] = ("manual",)
    budgets: Budgets = DEFAULT_BUDGETS
    memory_scopes: tuple[str, ...] = ()
    builtin: bool = False
    source: Path | None = field(default=None, compare=False)

    def grant(self, tool: str) -> ToolGrant | None:
        """The grant for ``tool``, or None when the agent may not call it."""
        return next((g for g in self.tools if g.tool == tool), None)

    def __repr__(self) -> str:
        return (
            f"AgentDefinition(id={self.id!r}, name={self.name!r}, model={self.model_class!r}, "
            f"tools={len(self.tools)}, instructions_chars={len(self.instructions)})"
        )


@dataclass(frozen=True, slots=True)
class DefinitionError:
    """One problem in one file: ``agents/inbox.toml: tools[2].autonomy: must be 0-3, got 7``."""

    file: str
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.field}" if self.field else self.file
        return f"{where}: {self.message}"


@dataclass(frozen=True, slots=True)
class DefinitionSet:
    """The agents in effect (built-ins overridden by user files) and what was skipped."""

    definitions: Mapping[str, AgentDefinition]
    errors: tuple[DefinitionError, ...] = ()

    def get(self, agent_id: str) -> AgentDefinition | None:
        return self.definitions.get(agent_id)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self.definitions)

    def __iter__(self) -> Iterator[AgentDefinition]:
        return iter(self.definitions.values())

    def __len__(self) -> int:
        return len(self.definitions)


def load_definitions(folder: Path, builtins: Sequence[AgentDefinition]) -> DefinitionSet:
    """The built-ins, then every ``folder/*.toml`` in name order (a bad file is skipped).

    A user file whose id is a built-in's replaces the built-in; two user
    files with one id: the first (by name) wins and the second is an error.
    """
    from app.agents.definitions_toml import parse_file

    found: dict[str, AgentDefinition] = {d.id: d for d in builtins}
    from_files: set[str] = set()
    errors: list[DefinitionError] = []
    files = sorted(folder.glob("*.toml")) if folder.is_dir() else []
    for path in files:
        label = f"{folder.name}/{path.name}"
        definition, problems = parse_file(path, label)
        if definition is not None and definition.id in from_files:
            problems = [DefinitionError(label, "id", f"{definition.id!r} is defined twice")]
        if problems:
            errors.extend(problems)
            continue
        assert definition is not None
        found[definition.id] = definition
        from_files.add(definition.id)
    return DefinitionSet(found, tuple(errors))
