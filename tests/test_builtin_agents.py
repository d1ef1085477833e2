"""The five built-in agents: valid definitions, TOML overrides, and one run each end to end.

Each run uses a scripted engine (the replies a good model would give) on
the real stores, the real outbox and the real autonomy and trace stores
(``office_rig.Office``); one slow test runs inbox triage on the real tiny
model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from agent_fakes import ScriptedEngine, call
from office_rig import OWNER_ADDRESS, Office, day_window

from app.agents.autonomy import Autonomy, Owner
from app.agents.builtin import BUILTINS
from app.agents.builtin.common import DATA_RULE
from app.agents.builtin.follow_up_keeper import follow_up_keeper
from app.agents.builtin.inbox_triage import LABELS
from app.agents.builtin.toml_export import definition_toml
from app.agents.definitions import TRIGGER_KINDS, load_definitions
from app.agents.definitions_toml import parse_cron
from app.agents.loop import LoopOptions, Trigger
from app.agents.outbox import ActionState
from app.agents.taint import Origin
from app.agents.trace import RunState, StepKind
from app.engine.llama_adapter import ContextConfig
from app.engine.llamacpp import LlamaCppEngine
from app.engine.types import GenerateRequest, Message, SamplingParams
from app.memory.db import Database
from app.memory.search import SearchFilter

IDS = [d.id for d in BUILTINS]


@pytest.fixture
def office(db: Database) -> Iterator[Office]:
    rig = Office(db)
    yield rig
    rig.close()


# -- the definitions ----------------------------------------------------------------
def test_there_are_five_builtins_with_distinct_ids() -> None:
    assert IDS == [
        "inbox-triage",
        "follow-up-keeper",
        "order-desk",
        "content-pipeline",
        "daily-briefing",
    ]
    assert all(d.builtin for d in BUILTINS)


@pytest.mark.parametrize("definition", BUILTINS, ids=IDS)
def test_a_builtin_is_valid(definition, office: Office) -> None:  # type: ignore[no-untyped-def]
    assert set(definition.triggers) <= TRIGGER_KINDS
    for line in definition.schedules:
        parse_cron(line)  # raises if bad
    assert ("schedule" in definition.triggers) == bool(definition.schedules)
    assert DATA_RULE in definition.instructions and len(definition.instructions) < 2000
    granted = [g.tool for g in definition.tools]
    # Every granted tool exists in a wired office, and is named in the instructions.
    assert office.toolbox(definition).names == tuple(granted)
    assert all(tool in definition.instructions for tool in granted)
    assert "email.send" not in granted  # built-ins draft; only the owner sends
    for grant in definition.tools:
        if office.toolbox(definition).is_action(grant.tool):
            expected = Autonomy.NOTIFY if grant.tool == "crm.create_follow_up" else Autonomy.ASK
            assert grant.autonomy is expected, grant.tool


@pytest.mark.parametrize("definition", BUILTINS, ids=IDS)
def test_a_builtin_round_trips_through_a_toml_override(definition, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "agents"
    folder.mkdir()
    (folder / f"{definition.id}.toml").write_text(definition_toml(definition), encoding="utf-8")
    loaded = load_definitions(folder, BUILTINS)
    assert loaded.errors == ()
    assert loaded.ids == tuple(IDS)
    override = loaded.get(definition.id)
    assert override is not None and override.builtin is False
    assert override == replace(definition, builtin=False)
    assert override.source == folder / f"{definition.id}.toml"


def test_an_override_retunes_a_builtin(tmp_path: Path) -> None:
    folder = tmp_path / "agents"
    folder.mkdir()
    text = definition_toml(follow_up_keeper(quiet_days=14))
    (folder / "follow-up-keeper.toml").write_text(text, encoding="utf-8")
    loaded = load_definitions(folder, BUILTINS).get("follow-up-keeper")
    assert loaded is not None and "days=14" in loaded.instructions
    with pytest.raises(ValueError, match="quiet_days"):
        follow_up_keeper(quiet_days=0)


# -- runs ---------------------------------------------------------------------------
def _acts(office: Office, run_id: str) -> list[tuple[str | None, str | None]]:
    return [
        (s.step.tool, s.step.error)
        for s in office.trace.steps(run_id)
        if s.step.kind is StepKind.ACT
    ]


def test_inbox_triage_drafts_exactly_one_reply_and_sends_nothing(office: Office) -> None:
    mail = office.add_mail("ada@example.org", "Delivery?", "Hi, when does my mug ship? Ada")
    office.add_person("Ada Lovelace", "ada@example.org")
    engine = ScriptedEngine(
        call("email.read", id=mail),
        call("crm.search", query="ada@example.org"),
        call(
            "email.save_draft",
            to=["ada@example.org"],
            subject="Re: Delivery?",
            body="Hi Ada, your mug ships tomorrow.",
            in_reply_to="<m1@mail.example>",
        ),
    )
    result = office.run("inbox-triage", engine, Trigger("mail.received", {"message_id": mail}))

    assert result.state is RunState.WAITING_FOR_APPROVAL
    actions = office.outbox.list()
    assert [(a.action, a.state) for a in actions] == [("email.save_draft", ActionState.PROPOSED)]
    origins = {o.path: o.origin for o in actions[0].origins}
    assert origins["to/0"] is Origin.UNTRUSTED  # the address came from the mail
    assert office.executions.done == []
    assert [tool for tool, _ in _acts(office, result.run_id)] == [
        "email.read",
        "crm.search",
        "email.save_draft",
    ]
    # The mail's text reached the model inside the untrusted block, through email.read.
    assert "when does my mug ship" in engine.requests[1].messages[-1].content
    # The owner approves: the draft (never a send) is saved once, with the stored password.
    office.outbox.approve(actions[0].id, Owner.at_ui())
    office.outbox.execute_approved()
    assert [name for name, _ in office.executions.done] == ["email.save_draft"]
    learned = office.memory.search(
        result.run_id, k=5, where=SearchFilter(scopes=("agent:inbox-triage",))
    )
    assert any(result.run_id in hit.text for hit in learned)


def test_inbox_triage_labels_with_a_final_answer_when_no_reply_is_needed(office: Office) -> None:
    mail = office.add_mail("news@letters.example", "Weekly news", "Our news this week...")
    engine = ScriptedEngine(
        call("email.read", id=mail),
        call("final", answer=f"{LABELS[5]}: a weekly newsletter; no reply drafted."),
    )
    result = office.run("inbox-triage", engine, Trigger("mail.received", {"message_id": mail}))
    assert result.state is RunState.SUCCEEDED and result.answer is not None
    assert result.answer.startswith("newsletter")
    assert office.outbox.list() == []


def test_follow_up_keeper_finds_quiet_contacts_and_drafts(office: Office) -> None:
    quiet = office.add_person("Grace Hopper", "grace@navy.example", quiet_days=60)
    office.add_person("Alan Turing", "alan@bletchley.example", quiet_days=5)
    engine = ScriptedEngine(
        call("crm.follow_ups_due"),
        call("crm.quiet_contacts", days=30),
        call("crm.person", id=quiet),
        call(
            "crm.create_follow_up",
            title="Check in with Grace",
            due_at="2025-03-17",
            person_id=quiet,
        ),
        call(
            "email.save_draft",
            to=["grace@navy.example"],
            subject="Catching up",
            body="Hi Grace, how are things?",
        ),
    )
    result = office.run("follow-up-keeper", engine, Trigger("schedule", {"slot": "09:00"}))

    assert result.state is RunState.WAITING_FOR_APPROVAL
    quiet_result = engine.requests[2].messages[-1].content
    assert "Grace Hopper" in quiet_result and "Alan Turing" not in quiet_result
    by_action = {a.action: a for a in office.outbox.list()}
    # The follow-up runs on the definition's NOTIFY grant (the owner's configuration)...
    assert by_action["crm.create_follow_up"].state is ActionState.DONE
    follow_ups = office.db.fetchall("SELECT title, person_id FROM crm_follow_ups")
    assert follow_ups == [("Check in with Grace", quiet)]
    # ...the mail waits for the owner.
    assert by_action["email.save_draft"].state is ActionState.PROPOSED
    assert [name for name, _ in office.executions.done] == ["crm.create_follow_up"]


def test_order_desk_drafts_an_answer_and_proposes_a_refund(office: Office) -> None:
    office.add_order("1001", "ada@example.org", total="30.00")
    mail = office.add_mail("ada@example.org", "Return #1001", "One mug arrived broken.")
    engine = ScriptedEngine(
        call("email.read", id=mail),
        call("store.order", id="#1001"),
        call("store.refund", order_id="1001", amount="12.50", note="broken mug"),
    )
    result = office.run("order-desk", engine, Trigger("mail.received", {"message_id": mail}))
    assert result.state is RunState.WAITING_FOR_APPROVAL
    (refund,) = office.outbox.list()
    assert refund.action == "store.refund" and refund.state is ActionState.PROPOSED
    assert "Mug" in engine.requests[2].messages[-1].content  # the order's lines were read

    # A second run for the order event drafts the answer; nothing ran without approval.
    engine = ScriptedEngine(
        call("store.orders", email="ada@example.org"),
        call(
            "email.save_draft",
            to=["ada@example.org"],
            subject="Your return",
            body="Sorry about the mug; we proposed a refund.",
        ),
    )
    office.run("order-desk", engine, Trigger("order.created", {"order_id": "1001"}))
    assert sorted(a.action for a in office.outbox.pending()) == ["email.save_draft", "store.refund"]
    assert office.executions.done == []


def test_content_pipeline_drafts_for_the_owners_review(office: Office) -> None:
    office.memory.remember("New product: the blue mug, 12.50 EUR, ships in March.", "fact")
    engine = ScriptedEngine(
        call("memory.search", query="new product"),
        call("memory.remember", text="Outline: blue mug launch; price; shipping."),
        call(
            "email.save_draft",
            to=[OWNER_ADDRESS],
            subject="Draft: The blue mug",
            body="Meet the blue mug...",
        ),
    )
    trigger = Trigger("manual", request="Write this week's newsletter.")
    result = office.run("content-pipeline", engine, trigger)
    assert result.state is RunState.WAITING_FOR_APPROVAL
    (draft,) = office.outbox.list()
    assert draft.state is ActionState.PROPOSED and draft.payload["to"] == [OWNER_ADDRESS]
    assert "blue mug" in engine.requests[1].messages[-1].content
    outline = office.memory.search(
        "Outline blue mug", k=5, where=SearchFilter(scopes=("agent:content-pipeline",))
    )
    assert any(hit.text.startswith("Outline:") for hit in outline)


def test_daily_briefing_reads_everything_and_writes_its_note(office: Office) -> None:
    office.add_event("Call with Ada", location="Phone")
    office.add_order("1002", "bob@example.org")
    mail = office.add_mail("ada@example.org", "Hi", "Please call me.")
    office.run(
        "inbox-triage",
        ScriptedEngine(
            call("email.save_draft", to=["ada@example.org"], subject="Re: Hi", body="Will call.")
        ),
        Trigger("mail.received", {"message_id": mail}),
    )
    briefing = "What happened: 1 order. What waits: 1 draft. What is due: call with Ada at 10:00."
    engine = ScriptedEngine(
        call("outbox.pending_summary"),
        call("crm.follow_ups_due"),
        call("calendar.events", **day_window(office)),
        call("store.sales_summary", days=1),
        call("memory.search", query="since yesterday"),
        call("memory.remember", text=briefing, kind="note"),
        call("final", answer="1 draft waits; call with Ada at 10:00."),
    )
    result = office.run("daily-briefing", engine, Trigger("schedule", {"slot": "08:00"}))

    assert result.state is RunState.SUCCEEDED
    assert all(error is None for _, error in _acts(office, result.run_id))
    pending = engine.requests[1].messages[-1].content
    assert '"waiting_for_approval": 1' in pending and "email.save_draft" in pending
    assert "Will call." not in pending  # counts and names only, never the payload
    assert "Call with Ada" in engine.requests[3].messages[-1].content
    notes = office.memory.search(
        "What happened", k=5, where=SearchFilter(scopes=("agent:daily-briefing",))
    )
    note = next(hit for hit in notes if hit.text == briefing)
    assert note.kind == "note" and note.scope == "agent:daily-briefing"
    assert len(office.outbox.list()) == 1  # the briefing proposed nothing


@pytest.fixture(scope="module")
def tiny_model_8k(model_dir: Path) -> Path:
    """The tiny test model (``tiny_model``'s shape and weights recipe) with an 8k context.

    The built-in's real instructions, tool list and the mail do not fit the 2k
    context of ``tiny_model`` with its byte-level vocabulary (a token per byte).
    """
    from app.devtools.testmodels import TINY, write_model

    path = model_dir / "tiny-8k.gguf"
    return path if path.exists() else write_model(path, replace(TINY, n_ctx_train=8192))


@pytest.mark.slow
def test_inbox_triage_on_the_real_tiny_model(office: Office, tiny_model_8k: Path) -> None:
    from app.engine.llama_adapter import ContextConfig
    from app.engine.llamacpp import LlamaCppEngine

    mail = office.add_mail("ada@example.org", "Hello", "Hi from Ada.")
    definition = replace(office.definitions["inbox-triage"])
    engine = LlamaCppEngine(ContextConfig(n_ctx=8192, n_batch=256))
    try:
        box = office.toolbox(definition, max_string=12)
        from app.agents.loop import AgentLoop

        loop = AgentLoop(
            definition, engine, office.memory, box, office.outbox, office.trace,
            lambda model_class: str(tiny_model_8k), office.clock,
            LoopOptions(max_tokens=200, max_data_chars=200),
        )  # fmt: skip
        result = loop.run(Trigger("mail.received", {"message_id": mail}))
        office.outbox.execute_approved()
    finally:
        engine.close()
    granted = {g.tool for g in definition.tools} | {"final"}
    steps = office.trace.steps(result.run_id)
    reasons = [s.step for s in steps if s.step.kind is StepKind.REASON]
    assert reasons and all(r.error is None and r.tool in granted for r in reasons)
    assert steps[0].step.kind is StepKind.PERCEIVE and steps[-1].step.kind is StepKind.LEARN
    assert [s.seq for s in steps] == list(range(1, len(steps) + 1))
    assert office.trace.run(result.run_id).state is result.state
    assert result.state is not RunState.FAILED
    assert office.executions.done == []  # nothing ran without the owner
    assert all(a.state is ActionState.PROPOSED for a in office.outbox.list())


@pytest.fixture(scope="module")
def grammar_engine() -> Iterator[LlamaCppEngine]:
    engine = LlamaCppEngine(ContextConfig(n_ctx=512))
    yield engine
    engine.close()


@pytest.mark.slow
@pytest.mark.parametrize("definition", BUILTINS, ids=[d.id for d in BUILTINS])
def test_llama_cpp_accepts_the_tool_call_grammar_of_every_builtin(  # type: ignore[no-untyped-def]
    definition, office: Office, tiny_model: Path, grammar_engine: LlamaCppEngine
) -> None:
    """The call schema with real bounds compiles to a grammar llama.cpp takes (a string
    bound over ~1,400 characters makes llama.cpp refuse the whole grammar)."""
    schema = json.dumps(office.toolbox(definition).schema())
    request = GenerateRequest(
        model_path=str(tiny_model),
        messages=(Message("user", "go"),),
        sampling=SamplingParams(max_tokens=2, json_schema=schema),
    )
    chunks = list(grammar_engine.generate(request))
    assert chunks[-1].finish_reason is not None and chunks[-1].error is None
