"""How far an agent may act on its own, per tool, and who may change that.

The levels (:class:`Autonomy`) are ordered: each allows more than the one
before. An agent's definition brings a default per tool; the owner's choice,
stored by :class:`AutonomyStore`, overrides it, and every change is audited
(who, where, when, old -> new) in ``autonomy_changes``.

Only the owner changes autonomy or approves an action, and the owner's
authority is an :class:`Owner` object that only the UI (``Owner.at_ui()``)
and the CLI (``Owner.at_cli()``) make. Text from outside (an email, a tool
result) reaches an agent as data; the model answers with tool-call JSON and
cannot run code, so the one way an agent could hold an ``Owner`` is code in
its decision loop that makes one. Nothing in the decision loop may: a test
(``tests/test_autonomy.py``) parses ``app/agents/loop*.py``,
``app/agents/tools*.py`` and ``app/agents/builtin/`` and fails on any
``Owner(``, ``at_ui``, ``at_cli``, ``set_level`` or ``approve(`` there.
The private constructor token below guards against mistakes, not against
hostile code in the process (which could do anything anyway).
"""

from __future__ import annotations

import getpass
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from typing import final

from app.agents.errors import NotOwnerError
from app.memory.db import Database, from_db_time, to_db_time, utc_now

log = logging.getLogger("soloist.agents")

_OWNER_TOKEN = object()


class Autonomy(IntEnum):
    """How far an agent may act with one tool; the order means something."""

    SUGGEST = 0  # suggest only: the action is shown, never executed
    ASK = 1  # ask every time: the owner approves, edits or rejects
    NOTIFY = 2  # act, then tell the owner
    SILENT = 3  # act silently (the Activity log still has it)


@final
class Owner:
    """The owner's authority for one decision, with who and where for the audit log."""

    __slots__ = ("channel", "where", "who")

    def __init__(self, channel: str, who: str, where: str, *, _token: object = None) -> None:
        if _token is not _OWNER_TOKEN:
            raise NotOwnerError("only the UI and the CLI act for the owner (Owner.at_ui/at_cli)")
        self.channel = channel
        self.who = who
        self.where = where

    @classmethod
    def at_ui(cls, who: str = "owner", where: str = "desktop") -> Owner:
        """The owner clicking in the office window."""
        return cls("ui", who, where, _token=_OWNER_TOKEN)

    @classmethod
    def at_cli(cls, who: str | None = None, where: str = "terminal") -> Owner:
        """The owner typing a ``soloist`` command (``who`` defaults to the login name)."""
        return cls("cli", who or _login_name(), where, _token=_OWNER_TOKEN)

    @property
    def label(self) -> str:
        """``owner:ui`` or ``owner:cli``: the ``decided_by`` of the owner's decisions."""
        return f"owner:{self.channel}"

    def __repr__(self) -> str:
        return f"Owner({self.label!r}, who={self.who!r}, where={self.where!r})"


def require_owner(owner: object) -> Owner:
    """``owner`` if it is the owner's authority; ``NotOwnerError`` for anything else."""
    if not isinstance(owner, Owner):
        raise NotOwnerError(f"this needs the owner's authority, not a {type(owner).__name__}")
    return owner


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in a bare container
        return "owner"


@dataclass(frozen=True, slots=True)
class AutonomyChange:
    """One audited change of one agent's autonomy for one tool."""

    id: str
    agent_id: str
    tool: str
    old_level: Autonomy | None  # None: it was the agent's default
    new_level: Autonomy
    changed_by: str  # owner:ui, owner:cli
    who: str
    changed_at: datetime


class AutonomyStore:
    """The owner's autonomy choices, per agent and tool, with their history."""

    def __init__(self, db: Database, *, clock: Callable[[], datetime] = utc_now) -> None:
        self._db = db
        self._clock = clock

    def level(self, agent_id: str, tool: str, default: Autonomy = Autonomy.ASK) -> Autonomy:
        """The owner's stored choice, else ``default`` (the agent definition's)."""
        row = self._db.fetchone(
            "SELECT level FROM autonomy_levels WHERE agent_id = ? AND tool = ?", (agent_id, tool)
        )
        return default if row is None else Autonomy(int(row[0]))

    def set_level(self, agent_id: str, tool: str, level: Autonomy, owner: Owner) -> None:
        """Store the owner's choice and audit it; only the owner may call this."""
        owner = require_owner(owner)
        level = Autonomy(level)
        now = to_db_time(self._clock())
        with self._db.transaction():
            row = self._db.fetchone(
                "SELECT level FROM autonomy_levels WHERE agent_id = ? AND tool = ?",
                (agent_id, tool),
            )
            old = None if row is None else int(row[0])
            self._db.execute(
                "INSERT OR REPLACE INTO autonomy_levels VALUES (?, ?, ?, ?)",
                (agent_id, tool, int(level), now),
            )
            self._db.execute(
                "INSERT INTO autonomy_changes VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (uuid.uuid4().hex, agent_id, tool, old, int(level), owner.label, owner.who, now),
            )
        log.info(
            "autonomy of agent %s for %s: %s -> %d by %s",
            agent_id,
            tool,
            "default" if old is None else old,
            level,
            owner.label,
        )

    def changes(self, agent_id: str | None = None) -> list[AutonomyChange]:
        """The audit log, oldest first, of one agent or of all."""
        where, params = ("WHERE agent_id = ?", (agent_id,)) if agent_id is not None else ("", ())
        rows = self._db.fetchall(
            "SELECT id, agent_id, tool, old_level, new_level, changed_by, who, changed_at "
            f"FROM autonomy_changes {where} ORDER BY changed_at, rowid",
            params,
        )
        return [
            AutonomyChange(
                row[0],
                row[1],
                row[2],
                None if row[3] is None else Autonomy(int(row[3])),
                Autonomy(int(row[4])),
                row[5],
                row[6],
                from_db_time(row[7]),
            )
            for row in rows
        ]
