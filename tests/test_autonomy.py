"""Autonomy levels, the owner's authority, and that the decision loop never holds it."""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.agents.autonomy import Autonomy, AutonomyStore, Owner, require_owner
from app.agents.errors import NotOwnerError
from app.memory.db import Database

AGENTS = Path(__file__).resolve().parents[1] / "app" / "agents"
# The agents' decision loop: code that runs on the model's output.
LOOP_GLOBS = ("loop*.py", "tools*.py", "builtin/**/*.py")
FORBIDDEN_CALLS = frozenset({"Owner", "at_ui", "at_cli", "set_level", "approve"})


def forbidden_calls(source: str) -> list[tuple[int, str]]:
    """Calls in ``source`` that would give the loop the owner's authority."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in FORBIDDEN_CALLS:
                found.append((node.lineno, name))
        elif isinstance(node, ast.Name | ast.Attribute):  # passed around without a call
            name = node.attr if isinstance(node, ast.Attribute) else node.id
            if name in {"at_ui", "at_cli", "_OWNER_TOKEN"}:
                found.append((node.lineno, name))
    return found


def loop_files() -> list[Path]:
    return sorted({p for pattern in LOOP_GLOBS for p in AGENTS.glob(pattern)})


@pytest.mark.parametrize(
    "source",
    [
        "Owner('ui', 'x', 'y')",
        "from app.agents.autonomy import Owner\nOwner.at_ui()",
        "outbox.approve(action_id, owner)",
        "store.set_level('a', 't', 3, o)",
        "make = Owner.at_cli",
        "autonomy._OWNER_TOKEN",
    ],
)
def test_the_scanner_catches_every_way_to_the_owners_authority(source: str) -> None:
    assert forbidden_calls(source)


def test_the_scanner_lets_ordinary_code_pass() -> None:
    assert forbidden_calls("outbox.propose(a, r, p, o, l, level)\nrecord.approval") == []


def test_the_decision_loop_never_acts_as_the_owner() -> None:
    offenders = {
        str(path.relative_to(AGENTS)): calls
        for path in loop_files()
        if (calls := forbidden_calls(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}


def test_levels_are_ordered() -> None:
    assert Autonomy.SUGGEST < Autonomy.ASK < Autonomy.NOTIFY < Autonomy.SILENT
    assert [int(level) for level in Autonomy] == [0, 1, 2, 3]


def test_only_the_ui_and_the_cli_make_an_owner() -> None:
    with pytest.raises(NotOwnerError):
        Owner("ui", "someone", "somewhere")
    with pytest.raises(NotOwnerError):
        require_owner(object())
    assert Owner.at_ui().label == "owner:ui"
    cli = Owner.at_cli("ann")
    assert (cli.label, cli.who, cli.where) == ("owner:cli", "ann", "terminal")
    assert Owner.at_cli().who  # the login name, or "owner"


def test_the_default_applies_until_the_owner_chooses(db: Database) -> None:
    store = AutonomyStore(db)
    assert store.level("a1", "email.send") is Autonomy.ASK
    assert store.level("a1", "email.send", Autonomy.SUGGEST) is Autonomy.SUGGEST
    store.set_level("a1", "email.send", Autonomy.NOTIFY, Owner.at_ui())
    assert store.level("a1", "email.send", Autonomy.SUGGEST) is Autonomy.NOTIFY
    assert store.level("a2", "email.send") is Autonomy.ASK
    assert store.level("a1", "crm.add_note") is Autonomy.ASK


def test_every_change_is_audited(db: Database) -> None:
    moments = iter([datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 1, 2, tzinfo=UTC)])
    store = AutonomyStore(db, clock=lambda: next(moments))
    store.set_level("a1", "email.send", Autonomy.NOTIFY, Owner.at_ui("ann"))
    store.set_level("a1", "email.send", Autonomy.SILENT, Owner.at_cli("ann"))
    first, second = store.changes("a1")
    assert (first.old_level, first.new_level, first.changed_by) == (
        None, Autonomy.NOTIFY, "owner:ui",
    )  # fmt: skip
    assert (second.old_level, second.new_level, second.changed_by, second.who) == (
        Autonomy.NOTIFY, Autonomy.SILENT, "owner:cli", "ann",
    )  # fmt: skip
    assert second.changed_at == datetime(2025, 1, 2, tzinfo=UTC)
    assert store.changes("other") == [] and len(store.changes()) == 2


def test_a_non_owner_cannot_change_a_level(db: Database) -> None:
    store = AutonomyStore(db)
    with pytest.raises(NotOwnerError):
        store.set_level("a1", "email.send", Autonomy.SILENT, "owner")  # type: ignore[arg-type]
    assert store.level("a1", "email.send") is Autonomy.ASK
    assert store.changes() == []
