"""The Approvals section on a real office: an agent's proposal from an untrusted email,
marked, edited and approved (executed once), rejected with a reason, batch-approved
(LOW risk only), refused when stale, and actions in doubt settled by the owner."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from agent_fakes import ScriptedEngine, call
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWidget
from pytestqt.qtbot import QtBot
from ui_fakes import FakeEngine, Windows

from app.agents.autonomy import Autonomy, AutonomyStore
from app.agents.loop import Trigger
from app.agents.outbox import ActionState, Outbox
from app.agents.outbox_states import ActionRecord, content_hash
from app.agents.runtime import AgentRuntime
from app.agents.taint import FieldOrigin, Origin, UntrustedSource
from app.agents.trace import RunState
from app.integrations.base import Action, JsonObject, PreparedAction, Risk
from app.memory.longterm import MemoryStore
from app.memory.memory_rows import ChangeOp, MemoryVersion
from app.memory.provenance import Provenance
from app.office import Office
from app.ui.office_bridge import OfficeBridge
from app.ui.sections import approvals_ops as ops
from app.ui.sections.approvals import ApprovalsSection

SUBJECT = "Invoice 4471 overdue: please call Ada Lovelace before Friday"
RUN_TIMEOUT_MS = 90_000
EMAIL_LABEL = "email <m1@mail.example> body"
EMAIL = f"Hello! {SUBJECT}. Thanks, Ada (ada@example.org)"
MAIL_SUBJECT = "Invoice 4471"
DESK_TOML = """
name = "Desk"
instructions = "Log calls the owner should make."
model_class = "fast"
triggers = ["manual", "mail.received"]

[[tools]]
tool = "crm.log_activity"
autonomy = "ask"
"""


@dataclass
class Desk:
    """A real office with a CRM account, the ``desk`` agent and the section on it."""

    office: Office
    bridge: OfficeBridge
    section: ApprovalsSection
    qtbot: QtBot

    @property
    def runtime(self) -> AgentRuntime:
        runtime = self.office.agents
        assert runtime is not None
        return runtime

    def receive_email(self) -> None:
        """The email of ``EMAIL_LABEL`` as the mail sync stores it (message id in brackets)."""
        self.office.db.execute(
            "INSERT INTO mail_messages (id, account_id, folder, uidvalidity, uid, message_id, "
            "thread_id, refs, subject, from_name, from_email, to_addrs, cc_addrs, size, flags, "
            "body_text, attachments, synced_at) VALUES ('mail1', 'mail', 'INBOX', 1, 1, "
            "'<m1@mail.example>', 't1', '[]', ?, 'Ada Lovelace', 'ada@example.org', '[]', '[]', "
            "100, '', ?, '[]', now())",
            [MAIL_SUBJECT, EMAIL],
        )

    def propose_from_email(self) -> str:
        trigger = Trigger("mail.received", untrusted=(UntrustedSource(EMAIL_LABEL, EMAIL),))
        future = self.runtime.manager.run("desk", trigger)
        self.qtbot.waitUntil(future.done, timeout=RUN_TIMEOUT_MS)  # memory may still be loading
        result = future.result()
        assert result.state is RunState.WAITING_FOR_APPROVAL
        return result.action_ids[0]

    def propose(self, risk: Risk, subject: str) -> str:
        """An action straight into the outbox, as a run would leave it (ASK)."""
        prepared = self.log_activity().prepare({"kind": "call", "subject": subject})
        if risk is not prepared.risk:
            prepared = PreparedAction(
                prepared.action, prepared.account_id, prepared.payload,
                prepared.preview, risk, prepared.idempotency_key,
            )  # fmt: skip
        return self.runtime.outbox.propose("desk", "run-t", prepared, [], [], Autonomy.ASK).id

    def log_activity(self) -> Action:
        actions = self.office.connections.connector("crm1").actions()
        return next(a for a in actions if a.name == "crm.log_activity")

    def show(self) -> None:
        self.section.show()
        self.qtbot.waitUntil(lambda: self.section.status.text() != ops.AGENTS_NOT_READY)

    def shows(self, *action_ids: str) -> None:
        self.section.refresh()
        self.qtbot.waitUntil(lambda: sorted(self.section.pending_ids()) == sorted(action_ids))

    def get(self, action_id: str) -> ActionRecord:
        return self.runtime.outbox.get(action_id)

    def activities(self) -> list[str]:
        rows = self.office.db.fetchall("SELECT subject FROM crm_activities ORDER BY subject")
        return [str(row[0]) for row in rows]


@pytest.fixture
def desk(qtbot: QtBot, soloist_home: Path) -> Iterator[Desk]:
    (soloist_home / "agents").mkdir()
    (soloist_home / "agents" / "desk.toml").write_text(DESK_TOML, encoding="utf-8")
    engine = ScriptedEngine(call("crm.log_activity", kind="call", subject=SUBJECT))
    office = Office(soloist_home, engine_factory=lambda: engine)  # type: ignore[arg-type,return-value]
    office.set_model_path("/models/fast.gguf")
    office.connections.accounts.add("crm", "CRM", {}, account_id="crm1")
    bridge = OfficeBridge()
    section = ApprovalsSection(bridge)
    qtbot.addWidget(section)
    office.start_agents()  # started before the test acts: its start-up pass is over
    bridge.attach(office)
    yield Desk(office, bridge, section, qtbot)
    section.hide()
    bridge.shutdown()


def click(qtbot: QtBot, button: QWidget) -> None:
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def test_an_untrusted_proposal_is_marked_edited_approved_and_run_once(
    qtbot: QtBot, desk: Desk
) -> None:
    counts: list[int] = []
    desk.section.pending_count_changed.connect(counts.append)
    desk.receive_email()
    action_id = desk.propose_from_email()
    desk.show()
    desk.shows(action_id)
    assert counts[-1] == 1
    assert desk.section.select(action_id)
    view = desk.section.view
    # the sources in words, from the stored mail; the labels as recorded in the tooltips
    assert view.origin_of("subject") == "⚠ from untrusted: an email from ada@example.org"
    assert view.origin_of("activity_id") == "from agent"  # made by the connector: not marked
    assert view.banner.isVisibleTo(desk.section)
    assert view.banner.text() == (
        f"⚠ Written after reading untrusted text: an email from ada@example.org, '{MAIL_SUBJECT}'."
    )
    assert EMAIL_LABEL in view.banner.toolTip()
    assert "crm.log_activity" in view.title.text() and "desk" in view.title.text()

    click(qtbot, view.edit_button)
    subject = view.edit_field("subject")
    assert subject is not None and subject.text() == SUBJECT
    subject.setText("Call Ada about invoice 4471")
    click(qtbot, view.save_edit_button)

    qtbot.waitUntil(lambda: desk.get(action_id).state is ActionState.DONE, timeout=10_000)
    done = desk.get(action_id)
    assert done.approval is not None and done.approval.decision == "edited"
    assert done.approval.decided_by == "owner:ui"
    assert FieldOrigin("subject", Origin.OWNER) in done.origins
    assert desk.activities() == ["Call Ada about invoice 4471"]
    qtbot.waitUntil(lambda: desk.section.pending_ids() == [])
    assert desk.section.pending_count == 0
    assert counts[-1] == 0
    desk.runtime.outbox.execute_approved()  # another pass runs nothing again
    assert desk.activities() == ["Call Ada about invoice 4471"]


def test_reject_with_a_reason_the_agent_can_read(qtbot: QtBot, desk: Desk) -> None:
    action_id = desk.propose(Risk.LOW, "Call Ada")
    assert not desk.section.select(action_id)  # not listed yet: chosen once it is
    desk.show()
    desk.shows(action_id)
    view = desk.section.view
    qtbot.waitUntil(lambda: view.action_id == action_id)
    assert not view.rejector.isVisibleTo(desk.section)
    click(qtbot, view.reject_button)
    assert view.rejector.isVisibleTo(desk.section)
    qtbot.keyClicks(view.reason, "Ada already paid; no call needed")
    click(qtbot, view.confirm_reject_button)
    qtbot.waitUntil(lambda: desk.get(action_id).state is ActionState.REJECTED)
    approval = desk.get(action_id).approval
    assert approval is not None
    assert approval.reason == "Ada already paid; no call needed"
    qtbot.waitUntil(lambda: desk.section.pending_ids() == [])
    assert desk.activities() == []


def test_batch_approval_takes_only_ticked_low_risk_actions(qtbot: QtBot, desk: Desk) -> None:
    low1, low2, low3 = (desk.propose(Risk.LOW, f"Call {n}") for n in ("Ann", "Bob", "Cy"))
    medium = desk.propose(Risk.MEDIUM, "Call Dee")
    high = desk.propose(Risk.HIGH, "Call Eve")
    desk.show()
    desk.shows(low1, low2, low3, medium, high)
    assert not desk.section.batch_button.isEnabled()
    assert desk.section.tick(low1) and desk.section.tick(low2)
    assert not desk.section.tick(high)
    assert not desk.section.tick(medium)
    assert desk.section.batch_button.text() == "Approve ticked (2)"
    click(qtbot, desk.section.batch_button)
    qtbot.waitUntil(lambda: desk.get(low2).state is ActionState.DONE, timeout=10_000)
    qtbot.waitUntil(lambda: desk.get(low1).state is ActionState.DONE, timeout=10_000)
    assert [desk.get(i).state for i in (low3, medium, high)] == [ActionState.PROPOSED] * 3
    assert desk.activities() == ["Call Ann", "Call Bob"]
    qtbot.waitUntil(lambda: sorted(desk.section.pending_ids()) == sorted([low3, medium, high]))
    assert desk.section.status.text().startswith("Approved 2 action(s).")

    refused = ops.approve_batch(desk.office, {high: desk.get(high).content_hash})
    assert refused.approved == ()
    assert refused.refused == ((high, "high risk: approve it on its own"),)
    assert desk.get(high).state is ActionState.PROPOSED


def test_an_action_changed_since_it_was_shown_is_refused(qtbot: QtBot, desk: Desk) -> None:
    action_id = desk.propose(Risk.LOW, "Call Ada")
    desk.show()
    desk.shows(action_id)
    desk.section.select(action_id)
    record = desk.get(action_id)
    payload: JsonObject = {**record.payload, "subject": "Call Mallory"}
    digest = content_hash(record.action, record.account_id, payload, record.idempotency_key)
    desk.office.db.execute(
        "UPDATE outbox_actions SET payload = ?, content_hash = ? WHERE id = ?",
        (json.dumps(payload), digest, action_id),
    )
    click(qtbot, desk.section.view.approve_button)
    qtbot.waitUntil(lambda: "changed" in desk.section.view.message.text())
    assert desk.get(action_id).state is ActionState.PROPOSED
    assert desk.activities() == []
    view = desk.section.view
    qtbot.waitUntil(lambda: view.record is not None and view.record.content_hash == digest)
    assert view.record is not None and view.record.payload["subject"] == "Call Mallory"
    assert view.message.text() == "This action changed; look at it again."


def flaky_action() -> Action:
    def prepare(args: JsonObject) -> PreparedAction:
        key = f"key-{args['to']}"
        return PreparedAction("test.flaky", "crm1", dict(args), "Flaky send", Risk.MEDIUM, key)

    def boom(prepared: PreparedAction) -> None:
        raise RuntimeError("connection reset in the middle")

    return Action("test.flaky", "", {}, Risk.MEDIUM, prepare, boom, boom)  # type: ignore[arg-type]


def test_in_doubt_actions_are_listed_apart_and_settled(qtbot: QtBot, desk: Desk) -> None:
    action = flaky_action()
    outbox = Outbox(desk.office.db, lambda account, name: action, AutonomyStore(desk.office.db))
    first = outbox.propose("desk", "r", action.prepare({"to": "a"}), [], [], Autonomy.NOTIFY)
    second = outbox.propose("desk", "r", action.prepare({"to": "b"}), [], [], Autonomy.NOTIFY)
    outbox.execute_approved()
    assert outbox.get(first.id).state is ActionState.IN_DOUBT
    desk.show()
    qtbot.waitUntil(lambda: sorted(desk.section.in_doubt_ids()) == sorted([first.id, second.id]))
    assert desk.section.pending_ids() == []
    view = desk.section.view
    assert desk.section.select(first.id)
    assert view.sent_button.isVisibleTo(desk.section)
    assert not view.approve_button.isVisibleTo(desk.section)
    with qtbot.waitSignal(desk.section.new_failures, timeout=5000) as failed:
        click(qtbot, view.not_sent_button)
    assert [item[0] for item in failed.args[0]] == [first.id]
    assert desk.get(first.id).state is ActionState.FAILED
    desk.section.select(second.id)
    click(qtbot, view.sent_button)
    qtbot.waitUntil(lambda: desk.get(second.id).state is ActionState.DONE)
    qtbot.waitUntil(lambda: desk.section.in_doubt_ids() == [])


def test_the_diff_and_edit_helpers() -> None:
    stage = record_with({"deal_id": "d1", "from_stage": "lead", "stage": "won"})
    assert ops.diff_rows(stage) == [ops.DiffRow("stage", "lead", "won")]
    nested = record_with(
        {"before": {"title": "A", "room": "1"}, "after": {"title": "B", "room": "1"}}
    )
    assert ops.diff_rows(nested) == [ops.DiffRow("title", "A", "B")]
    calendar = record_with({"uid": "u"}, "Update 'Standup': location 'Lisbon' → 'Porto'")
    assert ops.diff_rows(calendar) == [ops.DiffRow("location", "'Lisbon'", "'Porto'")]
    assert ops.diff_rows(record_with({"body": "hi"})) == []
    payload: JsonObject = {"to": ["a@x.org"], "subject": "Hi", "person_id": None}
    edited = ops.edited_args(payload, {"to": '["b@x.org"]', "subject": "Hello", "person_id": ""})
    assert edited == {"to": ["b@x.org"], "subject": "Hello", "person_id": None}
    with pytest.raises(ValueError, match=r"^to: not valid JSON"):
        ops.edited_args(payload, {"to": "[b@x.org"})
    assert ops.age_text(stage.created_at, stage.created_at) == "just now"


def record_with(
    payload: JsonObject,
    preview: str = "",
    labels: tuple[str, ...] = (),
    origins: tuple[FieldOrigin, ...] = (),
) -> ActionRecord:
    from app.memory.db import utc_now

    now = utc_now()
    return ActionRecord(
        id="a", agent_id="x", run_id="r", action="t.a", account_id="acc", payload=payload,
        preview=preview, risk=Risk.LOW, idempotency_key="k", content_hash="h",
        state=ActionState.PROPOSED, autonomy=Autonomy.ASK, origins=origins,
        untrusted_labels=labels, approval=None, outcome_summary=None, external_id=None,
        error=None, attempts=0, created_at=now, updated_at=now, expires_at=None,
        next_attempt_at=None,
    )  # fmt: skip


def memory_version(kind: str, text: str, provenance: Provenance) -> MemoryVersion:
    from app.memory.db import utc_now

    now = utc_now()
    return MemoryVersion(
        id="v", memory_id="m", version=1, kind=kind, scope="global", op=ChangeOp.ADD, text=text,
        metadata={}, content_hash=None, tombstone=False, restored_from=None,
        provenance=provenance, created_at=now, valid_from=now, valid_to=None,
    )  # fmt: skip


MEMORY_IDS = ("e97ed01af93e4de3", "79e1d160126843b2", "454e79adce204287", "d80909be53354748")


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        # nothing looked up: what the labels alone tell, memories counted
        ((EMAIL_LABEL,), "an email"),
        (tuple(f"memory {m}" for m in MEMORY_IDS), "4 memories"),
        ((f"memory {MEMORY_IDS[0]}",), "a memory"),
        (("tool result crm.search", "earlier runs of desk"),
         "the result of crm.search; the desk agent's earlier runs"),
        ((EMAIL_LABEL, f"memory {MEMORY_IDS[0]}", f"memory {MEMORY_IDS[1]}", "earlier runs of desk",
          EMAIL_LABEL), "an email; 2 memories; the desk agent's earlier runs"),
        (("something new",), "something new"),
    ],
)  # fmt: skip
def test_untrusted_sources_in_words_without_lookups(labels: tuple[str, ...], expected: str) -> None:
    assert ops.untrusted_text(labels, {}) == expected


@pytest.mark.parametrize(
    ("kind", "provenance", "phrase", "origin"),
    [
        ("fact", Provenance(), "a fact you wrote", "you"),
        ("note", Provenance(tool="ui"), "a note you wrote", "you"),
        ("note", Provenance(agent_id="desk", run_id="r1"), "a note by the desk agent",
         "the desk agent"),
        ("document_chunk", Provenance(source_file="/home/o/Finance/invoices.pdf"),
         "a passage from invoices.pdf", "invoices.pdf"),
        ("fact", Provenance(source_url="https://shop.example.com/terms"),
         "a fact from shop.example.com", "shop.example.com"),
        ("fact", Provenance(message_id="c1/3"), "a fact from a chat", "a chat"),
        ("crm_fact", Provenance(tool="crm.sync"), "a CRM fact saved by crm.sync", "crm.sync"),
        ("unheard_of", Provenance(), "a memory you wrote", "you"),
    ],
)  # fmt: skip
def test_a_memory_in_words_from_its_provenance(
    kind: str, provenance: Provenance, phrase: str, origin: str
) -> None:
    words = ops.memory_words(memory_version(kind, "Invoices are due in 30 days.", provenance))
    assert words == ops.SourceWords(f"{phrase}, 'Invoices are due in 30 days.'", origin, phrase)


def test_untrusted_sources_in_words_from_what_the_office_knows(soloist_home: Path) -> None:
    office = Office(soloist_home)
    try:
        store = MemoryStore(office.db)
        mine = store.add("Invoices are due 30 days after the workshop.", "fact", "global",
                         Provenance()).memory_id  # fmt: skip
        desks = store.add("Ada prefers calls.", "note", "agent:desk",
                          Provenance(agent_id="desk", run_id="r1")).memory_id  # fmt: skip
        gone = store.add("Old.", "note", "global", Provenance()).memory_id
        store.delete(gone, Provenance())
        one, two, deleted = f"memory {mine}", f"memory {desks}", f"memory {gone}"
        words = ops.describe_sources(office.db, [one, two, deleted, EMAIL_LABEL])
        fact = "a fact you wrote, 'Invoices are due 30 days after the workshop.'"
        assert words[one] == ops.SourceWords(fact, "you", "a fact you wrote")
        assert words[deleted] == ops.SourceWords("a memory")  # deleted since: no words
        assert words[EMAIL_LABEL] == ops.SourceWords("an email")  # not synced here
        assert ops.untrusted_text([one], words) == words[one].phrase
        assert ops.untrusted_text([one, two, deleted], words) == (
            "3 memories (from you and the desk agent)"
        )
        record = record_with(
            {"subject": "Call Ada"}, labels=(one, two),
            origins=(FieldOrigin("subject", Origin.UNTRUSTED, (two,)),),
        )  # fmt: skip
        assert ops.taint_banner(record, words) == (
            "⚠ Written after reading untrusted text: 2 memories (from you and the desk agent)."
        )
        assert ops.taint_banner(record_with({}), words) is None
        assert ops.field_rows(record)[0].origin_text(words) == (
            "⚠ from untrusted: a note by the desk agent"
        )
        assert ops.labels_tooltip(record.untrusted_labels).splitlines()[1:] == [one, two]
    finally:
        office.close()


def test_the_section_is_a_page_of_the_window_and_idle_when_hidden(
    qtbot: QtBot, soloist_home: Path
) -> None:
    windows = Windows(qtbot, soloist_home)
    try:
        window, _ = windows.open(FakeEngine)
        section_keys: list[str] = window.sidebar.keys()
        assert "approvals" in section_keys
        window.show_section("approvals")
        page = window.pages.currentWidget()
        assert isinstance(page, ApprovalsSection)
        assert page.accessibleName() == "Approvals"
        qtbot.waitUntil(lambda: page.loaded, timeout=15_000)
        assert page.live and page.pending_count == 0
        window.show_section("chat")
        assert not page.live
    finally:
        windows.close_all()
