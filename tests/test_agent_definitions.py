"""Agent definitions from TOML: valid files load, every error names the file and the field,
a bad file is skipped while the others load, a user file overrides a built-in."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.agents.autonomy import Autonomy
from app.agents.definitions import (
    DEFAULT_BUDGETS,
    AgentDefinition,
    Budgets,
    ToolGrant,
    load_definitions,
)
from app.agents.definitions_toml import parse_cron
from app.engine.types import Priority

FULL = """
id = "inbox"
name = "Inbox"
instructions = "Sort new mail."
model_class = "smart"
priority = "standard"
triggers = ["mail.received", "manual"]
schedules = ["TZ=Europe/Lisbon 0 8 * * 1-5", "*/30 * * * *"]
memory_scopes = ["global", "agent:inbox"]

[[tools]]
tool = "email.search"
autonomy = 0

[[tools]]
tool = "email.send"
autonomy = "ask"

[budgets]
tokens_per_day = 50000
runs_per_hour = 4
max_steps = 6
max_seconds = 120.5
"""

BUILTIN = AgentDefinition(id="inbox", name="Built-in inbox", instructions="x", builtin=True)


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_full_file_loads_every_field(tmp_path: Path) -> None:
    folder = tmp_path / "agents"
    path = write(folder, "inbox.toml", FULL)
    found = load_definitions(folder, [])
    assert found.errors == ()
    agent = found.get("inbox")
    assert agent is not None
    assert agent.name == "Inbox"
    assert agent.model_class == "smart"
    assert agent.priority is Priority.STANDARD
    assert agent.tools == (
        ToolGrant("email.search", Autonomy.SUGGEST),
        ToolGrant("email.send", Autonomy.ASK),
    )
    assert agent.schedules == ("TZ=Europe/Lisbon 0 8 * * 1-5", "*/30 * * * *")
    assert agent.triggers == ("mail.received", "manual")
    assert agent.budgets == Budgets(50000, 4, 6, 120.5)
    assert agent.memory_scopes == ("global", "agent:inbox")
    assert agent.source == path
    assert not agent.builtin


def test_a_minimal_file_gets_defaults_and_its_id_from_the_name(tmp_path: Path) -> None:
    folder = tmp_path / "agents"
    write(folder, "notes.toml", 'instructions = "Keep notes."\n')
    agent = load_definitions(folder, []).get("notes")
    assert agent is not None
    assert (agent.name, agent.model_class, agent.priority) == ("notes", "fast", Priority.BACKGROUND)
    assert agent.budgets == DEFAULT_BUDGETS
    assert agent.triggers == ("manual",)
    assert agent.tools == ()


BAD = [
    (
        'instructions = "x"\n[[tools]]\ntool = "a.b"\nautonomy = 7\n',
        "tools[0].autonomy: must be 0-3, got 7",
    ),
    (
        'instructions = "x"\n[[tools]]\ntool="a.b"\n[[tools]]\ntool="c.d"\n'
        '[[tools]]\ntool = "e.f"\nautonomy = 7\n',
        "tools[2].autonomy: must be 0-3, got 7",
    ),
    ('instructions = "x"\n[[tools]]\ntool = "send"\n', "tools[0].tool: must be a dotted tool name"),
    (
        'instructions = "x"\n[[tools]]\ntool = "a.b"\n[[tools]]\ntool = "a.b"\n',
        "tools[1].tool: 'a.b' is listed twice",
    ),
    ('instructions = "x"\n[[tools]]\ntool = "a.b"\nlevel = 1\n', "tools[0].level: unknown key"),
    ('name = "No instructions"\n', "instructions: is required"),
    ('instructions = ""\n', "instructions: must be a non-empty string"),
    ('instructions = "x"\npriority = "urgent"\n', "priority: must be one of"),
    (
        'instructions = "x"\nmodel_class = "huge"\n',
        "model_class: must be 'fast', 'smart' or a model path",
    ),
    ('instructions = "x"\ntriggers = ["mail.sent"]\n', "triggers[0]: must be one of"),
    ('instructions = "x"\nschedules = ["0 25 * * *"]\n', "schedules[0]: cron hour field '25'"),
    (
        'instructions = "x"\nschedules = ["TZ=Mars/Olympus 0 8 * * *"]\n',
        "schedules[0]: unknown time zone",
    ),
    ('instructions = "x"\nschedules = ["0 8 * *"]\n', "schedules[0]: a cron line has 5 fields"),
    ('instructions = "x"\nmemory_scopes = ["everything"]\n', "memory_scopes[0]: must be 'global'"),
    (
        'instructions = "x"\n[budgets]\nruns_per_hour = 0\n',
        "budgets.runs_per_hour: must be more than 0",
    ),
    (
        'instructions = "x"\n[budgets]\nmax_steps = 2.5\n',
        "budgets.max_steps: must be a whole number",
    ),
    ('instructions = "x"\n[budgets]\ntokens = 5\n', "budgets.tokens: unknown key"),
    ('instructions = "x"\nbudget = 5\n', "budget: unknown key"),
    ('id = "Bad Id"\ninstructions = "x"\n', "id: must be lower-case"),
    ('instructions = "x\n', "is not valid TOML"),
]


@pytest.mark.parametrize(("text", "expected"), BAD, ids=[e for _, e in BAD])
def test_an_error_names_the_file_and_the_field(tmp_path: Path, text: str, expected: str) -> None:
    folder = tmp_path / "agents"
    write(folder, "bad.toml", text)
    found = load_definitions(folder, [])
    assert len(found) == 0
    messages = [str(error) for error in found.errors]
    assert any(m.startswith("agents/bad.toml: ") and expected in m for m in messages), messages


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    folder = tmp_path / "agents"
    write(folder, "bad.toml", 'priority = "urgent"\n[[tools]]\ntool = "a.b"\nautonomy = 9\n')
    fields = {error.field for error in load_definitions(folder, []).errors}
    assert fields == {"instructions", "priority", "tools[0].autonomy"}


def test_a_bad_file_is_skipped_and_the_others_load(tmp_path: Path) -> None:
    folder = tmp_path / "agents"
    write(folder, "a_good.toml", 'instructions = "x"\n')
    write(folder, "b_bad.toml", 'instructions = "x"\n[[tools]]\ntool = "a.b"\nautonomy = 7\n')
    write(folder, "c_good.toml", 'instructions = "y"\n')
    found = load_definitions(folder, [])
    assert found.ids == ("a_good", "c_good")
    assert [e.file for e in found.errors] == ["agents/b_bad.toml"]


def test_a_user_file_overrides_a_builtin_with_its_id(tmp_path: Path) -> None:
    folder = tmp_path / "agents"
    other = AgentDefinition(id="digest", name="Digest", instructions="y", builtin=True)
    write(folder, "mine.toml", 'id = "inbox"\nname = "My inbox"\ninstructions = "Mine."\n')
    found = load_definitions(folder, [BUILTIN, other])
    inbox = found.get("inbox")
    assert inbox is not None
    assert (inbox.name, inbox.builtin) == ("My inbox", False)
    assert found.get("digest") == other


def test_two_user_files_with_one_id_keep_the_first(tmp_path: Path) -> None:
    folder = tmp_path / "agents"
    write(folder, "a.toml", 'id = "x"\ninstructions = "first"\n')
    write(folder, "b.toml", 'id = "x"\ninstructions = "second"\n')
    found = load_definitions(folder, [])
    agent = found.get("x")
    assert agent is not None and agent.instructions == "first"
    assert [str(e) for e in found.errors] == ["agents/b.toml: id: 'x' is defined twice"]


def test_a_missing_folder_gives_the_builtins(tmp_path: Path) -> None:
    found = load_definitions(tmp_path / "nowhere", [BUILTIN])
    assert found.ids == ("inbox",) and found.errors == ()


def test_repr_hides_the_instructions() -> None:
    agent = AgentDefinition(id="a", name="A", instructions="the secret plan")
    assert "secret" not in repr(agent)
    assert "instructions_chars=15" in repr(agent)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("0 8 * * 1-5", ("0 8 * * 1-5", None)),
        ("TZ=Europe/Lisbon  30 7 1,15 jan-jun mon", ("30 7 1,15 jan-jun mon", "Europe/Lisbon")),
        ("*/5 * * * *", ("*/5 * * * *", None)),
    ],
)
def test_cron_lines_parse(line: str, expected: tuple[str, str | None]) -> None:
    assert parse_cron(line) == expected


@pytest.mark.parametrize("line", ["60 * * * *", "* * 0 * *", "5-1 * * * *", "*/0 * * * *", "x"])
def test_bad_cron_lines_are_refused(line: str) -> None:
    with pytest.raises(ValueError):
        parse_cron(line)
