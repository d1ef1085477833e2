"""The outbox's transitions with a recording fake external system (no crash here)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest
from outbox_child import RecordingSystem

from app.agents.approvals import effective_level
from app.agents.autonomy import Autonomy, AutonomyStore, Owner
from app.agents.errors import (
    ActionNotAllowedError,
    ApprovalError,
    IllegalTransitionError,
    NotOwnerError,
    StaleApprovalError,
)
from app.agents.outbox import Outbox, OutboxEvent
from app.agents.outbox_states import TRANSITIONS, ActionState, check_transition
from app.agents.outbox_store import OutboxStore
from app.agents.taint import FieldOrigin, Origin
from app.integrations.base import Action, JsonObject, PreparedAction, Risk
from app.integrations.errors import (
    ConnectionLostError,
    ConnectorUnreachableError,
    RateLimitedError,
    RemoteRejectedError,
)
from app.memory.db import Database

S = ActionState
UNTRUSTED_TEXT = (FieldOrigin("text", Origin.UNTRUSTED, ("email <m1> body",)),)


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime(2025, 3, 1, 9, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@dataclass
class Harness:
    db: Database
    system: RecordingSystem
    clock: Clock
    events: list[OutboxEvent]
    outbox: Outbox
    actions: dict[str, Action]

    def prepared(self, text: str = "call Ann back", name: str = "crm.add_note") -> PreparedAction:
        return self.actions[name].prepare({"text": text})

    def propose(
        self,
        level: Autonomy = Autonomy.ASK,
        name: str = "crm.add_note",
        origins: tuple[FieldOrigin, ...] = (),
        **kw: object,
    ) -> str:
        record = self.outbox.propose(
            "agent-1",
            "run-1",
            self.prepared(name=name),
            origins,
            (),
            level,
            **kw,  # type: ignore[arg-type]
        )
        return record.id

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


def make_harness(db: Database, **kw: object) -> Harness:
    system, clock = RecordingSystem(), Clock()
    events: list[OutboxEvent] = []
    actions = {
        "crm.add_note": system.action(),
        "store.refund": system.action("store.refund", Risk.HIGH),
        "email.send": system.action("email.send", Risk.MEDIUM),
    }

    def resolve(account_id: str, name: str) -> Action:
        return actions[name]

    outbox = Outbox(
        db, resolve, AutonomyStore(db, clock=clock), clock=clock, emit=events.append,
        backoff=lambda attempt: timedelta(seconds=10 * attempt), **kw,  # type: ignore[arg-type]
    )  # fmt: skip
    return Harness(db, system, clock, events, outbox, actions)


@pytest.fixture
def h(db: Database) -> Harness:
    return make_harness(db)


OWNER = Owner.at_cli("tester")


# -- the table ------------------------------------------------------------------
@pytest.mark.parametrize("state", list(ActionState))
def test_every_state_is_in_the_table_and_final_states_have_no_exit(state: ActionState) -> None:
    assert state in TRANSITIONS
    if state in (S.DONE, S.FAILED, S.REJECTED, S.EXPIRED):
        assert TRANSITIONS[state] == frozenset()
    assert S.EXECUTING not in TRANSITIONS[None]
    assert S.EXECUTING not in TRANSITIONS[S.SUGGESTED] | TRANSITIONS[S.PROPOSED]


@pytest.mark.parametrize(
    ("old", "new"),
    [(S.DONE, S.APPROVED), (S.SUGGESTED, S.APPROVED), (S.PROPOSED, S.EXECUTING),
     (S.REJECTED, S.APPROVED), (None, S.EXECUTING), (S.IN_DOUBT, S.EXECUTING)],
)  # fmt: skip
def test_illegal_transitions_raise(old: ActionState | None, new: ActionState) -> None:
    with pytest.raises(IllegalTransitionError):
        check_transition("a1", old, new)


def test_the_store_refuses_an_illegal_move(h: Harness) -> None:
    action_id = h.propose()
    record = h.outbox.get(action_id)
    with pytest.raises(IllegalTransitionError):
        OutboxStore(h.db).move(record, S.DONE, h.clock())
    assert h.outbox.get(action_id).state is S.PROPOSED


# -- autonomy -----------------------------------------------------------------------
def test_suggest_is_shown_and_never_executed(h: Harness) -> None:
    action_id = h.propose(Autonomy.SUGGEST)
    assert h.outbox.get(action_id).state is S.SUGGESTED
    assert h.outbox.execute_approved() == []
    with pytest.raises(ActionNotAllowedError):
        h.outbox.approve(action_id, OWNER)
    assert h.system.calls == 0
    assert h.kinds() == ["action.suggested"]


def test_ask_waits_for_the_owner_then_runs_once(h: Harness) -> None:
    action_id = h.propose(Autonomy.ASK)
    assert h.outbox.get(action_id).state is S.PROPOSED
    assert [r.id for r in h.outbox.pending()] == [action_id]
    assert h.outbox.execute_approved() == [] and h.system.calls == 0
    approved = h.outbox.approve(action_id, OWNER)
    assert approved.approval is not None and approved.approval.decided_by == "owner:cli"
    assert approved.approval.decision == "approved"
    assert approved.approval.content_hash == approved.content_hash
    [done] = h.outbox.execute_approved()
    assert done.state is S.DONE and done.attempts == 1 and done.external_id
    assert h.system.deliveries == {done.idempotency_key: 1}
    assert h.kinds() == ["approval.requested", "action.approved", "action.executing", "action.done"]
    assert [t[1] for t in h.outbox.transitions(action_id)] == [
        S.PROPOSED, S.APPROVED, S.EXECUTING, S.DONE,
    ]  # fmt: skip
    assert h.outbox.execute_approved() == [] and h.system.calls == 1


@pytest.mark.parametrize(("level", "notifies"), [(Autonomy.NOTIFY, True), (Autonomy.SILENT, False)])
def test_notify_and_silent_are_approved_by_the_level(
    h: Harness, level: Autonomy, notifies: bool
) -> None:
    action_id = h.propose(level)
    record = h.outbox.get(action_id)
    assert record.state is S.APPROVED
    assert record.approval is not None and record.approval.decided_by == f"autonomy:{int(level)}"
    h.outbox.execute_approved()
    assert h.outbox.get(action_id).state is S.DONE
    assert ("action.notify" in h.kinds()) is notifies
    assert "approval.requested" not in h.kinds()


def test_the_owners_stored_level_overrides_the_default(h: Harness) -> None:
    store = AutonomyStore(h.db)
    store.set_level("agent-1", "crm.add_note", Autonomy.SILENT, OWNER)
    assert h.outbox.get(h.propose(Autonomy.ASK)).state is S.APPROVED
    store.set_level("agent-1", "crm.add_note", Autonomy.SUGGEST, OWNER)
    assert h.outbox.get(h.propose(Autonomy.SILENT)).state is S.SUGGESTED


@pytest.mark.parametrize(
    ("level", "risk", "untrusted", "expected"),
    [
        (Autonomy.SILENT, Risk.HIGH, True, Autonomy.ASK),
        (Autonomy.NOTIFY, Risk.HIGH, True, Autonomy.ASK),
        (Autonomy.SILENT, Risk.HIGH, False, Autonomy.SILENT),
        (Autonomy.SILENT, Risk.MEDIUM, True, Autonomy.SILENT),
        (Autonomy.SUGGEST, Risk.HIGH, True, Autonomy.SUGGEST),
        (Autonomy.ASK, Risk.HIGH, True, Autonomy.ASK),
    ],
)
def test_effective_level(level: Autonomy, risk: Risk, untrusted: bool, expected: Autonomy) -> None:
    origins = UNTRUSTED_TEXT if untrusted else (FieldOrigin("text", Origin.AGENT),)
    assert effective_level(level, risk, origins) is expected


def test_high_risk_with_untrusted_values_is_never_auto_approved(h: Harness) -> None:
    action_id = h.propose(Autonomy.SILENT, "store.refund", UNTRUSTED_TEXT)
    record = h.outbox.get(action_id)
    assert record.state is S.PROPOSED and record.autonomy is Autonomy.ASK
    assert h.outbox.execute_approved() == [] and h.system.calls == 0
    clean = h.propose(Autonomy.SILENT, "store.refund", (FieldOrigin("text", Origin.OWNER),))
    assert h.outbox.get(clean).state is S.APPROVED


# -- the owner's decisions ------------------------------------------------------------
def test_edit_prepares_again_and_records_edited(h: Harness) -> None:
    origins = (*UNTRUSTED_TEXT, FieldOrigin("key", Origin.AGENT))
    action_id = h.propose(Autonomy.ASK, origins=origins)
    before = h.outbox.get(action_id)
    edited = h.outbox.approve(
        action_id, OWNER, {"text": "call Ann on Monday", "key": before.idempotency_key}
    )
    assert edited.payload["text"] == "call Ann on Monday"
    assert edited.content_hash != before.content_hash
    assert edited.approval is not None and edited.approval.decision == "edited"
    assert edited.approval.content_hash == edited.content_hash
    assert {o.path: o.origin for o in edited.origins} == {"text": Origin.OWNER, "key": Origin.AGENT}
    h.outbox.execute_approved()
    assert h.system.applied[before.idempotency_key]["text"] == "call Ann on Monday"


def test_an_invalid_edit_is_refused_and_the_action_still_waits(h: Harness) -> None:
    action_id = h.propose()
    with pytest.raises(ApprovalError):
        h.outbox.approve(action_id, OWNER, {"no_text": 1})
    assert h.outbox.get(action_id).state is S.PROPOSED


def test_an_edit_may_not_switch_the_action(h: Harness, db: Database) -> None:
    action_id = h.propose(name="email.send")
    h.actions["email.send"] = h.actions["store.refund"]
    with pytest.raises(ApprovalError):
        h.outbox.approve(action_id, OWNER, {"text": "x"})


def test_reject_keeps_the_reason_for_the_agent(h: Harness) -> None:
    action_id = h.propose()
    rejected = h.outbox.reject(action_id, Owner.at_ui(), "not this customer")
    assert rejected.state is S.REJECTED
    assert rejected.approval is not None and rejected.approval.reason == "not this customer"
    assert rejected.approval.decided_by == "owner:ui"
    with pytest.raises(ApprovalError):
        h.outbox.approve(action_id, OWNER)
    assert h.outbox.execute_approved() == [] and h.system.calls == 0


def test_a_stale_view_cannot_be_approved(h: Harness) -> None:
    action_id = h.propose()
    with pytest.raises(StaleApprovalError):
        h.outbox.approve(action_id, OWNER, expected_hash="0" * 64)
    shown = h.outbox.get(action_id).content_hash
    assert h.outbox.approve(action_id, OWNER, expected_hash=shown).state is S.APPROVED


def test_only_the_owner_decides(h: Harness) -> None:
    action_id = h.propose()
    with pytest.raises(NotOwnerError):
        h.outbox.approve(action_id, "owner")  # type: ignore[arg-type]
    with pytest.raises(NotOwnerError):
        Owner("ui", "mallory", "email")
    assert h.outbox.get(action_id).state is S.PROPOSED


def test_proposals_expire(h: Harness) -> None:
    first = h.propose(expires_in=timedelta(hours=1))
    second = h.propose(expires_in=timedelta(hours=3))
    never = h.propose(expires_in=None)
    h.clock.advance(timedelta(hours=2))
    [expired] = h.outbox.expire_due()
    assert expired.id == first and expired.state is S.EXPIRED
    assert expired.approval is not None and expired.approval.decision == "expired"
    h.clock.advance(timedelta(hours=2))  # second is due, expire_due has not run yet
    with pytest.raises(ApprovalError):
        h.outbox.approve(second, OWNER)
    assert h.outbox.get(second).state is S.EXPIRED
    assert h.outbox.get(never).state is S.PROPOSED


# -- execution -------------------------------------------------------------------------
@pytest.mark.parametrize("also_hash", [False, True])
def test_a_payload_changed_after_approval_is_never_executed(h: Harness, also_hash: bool) -> None:
    action_id = h.propose()
    record = h.outbox.approve(action_id, OWNER)
    evil = '{"text":"wire 9000 EUR","key":"' + record.idempotency_key + '"}'
    h.db.execute("UPDATE outbox_actions SET payload = ? WHERE id = ?", (evil, action_id))
    if also_hash:  # the attacker fixes the stored hash too: the approval's still differs
        from app.agents.outbox_states import content_hash

        forged = content_hash(record.action, record.account_id,
                              {"text": "wire 9000 EUR", "key": record.idempotency_key},
                              record.idempotency_key)  # fmt: skip
        h.db.execute("UPDATE outbox_actions SET content_hash = ? WHERE id = ?", (forged, action_id))
    [failed] = h.outbox.execute_approved()
    assert failed.state is S.FAILED
    assert failed.error == "payload changed after approval; not executed"
    assert h.system.calls == 0


def test_a_transient_error_is_retried_later_with_the_same_key(h: Harness) -> None:
    h.system.fail_before.append(ConnectorUnreachableError("mail server down"))
    action_id = h.propose(Autonomy.SILENT)
    [waiting] = h.outbox.execute_approved()
    assert waiting.state is S.APPROVED and waiting.attempts == 1
    assert waiting.next_attempt_at == h.clock() + timedelta(seconds=10)
    assert waiting.error is not None and "ConnectorUnreachableError" in waiting.error
    assert h.outbox.execute_approved() == []  # not due yet
    h.clock.advance(timedelta(seconds=10))
    [done] = h.outbox.execute_approved()
    assert done.state is S.DONE and done.attempts == 2 and done.error is None
    assert h.system.calls == 2 and h.system.deliveries == {done.idempotency_key: 1}
    assert h.outbox.get(action_id).idempotency_key == waiting.idempotency_key


def test_rate_limits_wait_at_least_as_long_as_asked(h: Harness) -> None:
    h.system.fail_before.append(RateLimitedError("slow down", retry_after_s=600))
    h.propose(Autonomy.SILENT)
    [waiting] = h.outbox.execute_approved()
    assert waiting.next_attempt_at == h.clock() + timedelta(seconds=600)


def test_a_connection_lost_mid_call_is_reconciled_not_repeated(h: Harness) -> None:
    h.system.fail_after.append(ConnectionLostError("connection closed after DATA"))
    h.propose(Autonomy.SILENT)
    [done] = h.outbox.execute_approved()
    assert done.state is S.DONE
    assert done.outcome_summary == "note is there (found after the call failed)"
    assert h.system.calls == 1 and list(h.system.deliveries.values()) == [1]


def test_a_connection_lost_before_the_effect_is_retried(h: Harness) -> None:
    h.system.fail_before.append(ConnectionLostError("closed before DATA"))
    h.propose(Autonomy.SILENT)
    [waiting] = h.outbox.execute_approved()
    assert waiting.state is S.APPROVED
    h.clock.advance(timedelta(minutes=1))
    [done] = h.outbox.execute_approved()
    assert done.state is S.DONE and list(h.system.deliveries.values()) == [1]


def test_a_permanent_error_fails_without_retry(h: Harness) -> None:
    h.system.fail_before.append(RemoteRejectedError("recipient refused"))
    h.propose(Autonomy.SILENT)
    [failed] = h.outbox.execute_approved()
    assert failed.state is S.FAILED
    assert failed.error == "RemoteRejectedError: recipient refused"
    h.clock.advance(timedelta(days=1))
    assert h.outbox.execute_approved() == [] and h.system.calls == 1


def test_retries_give_up(db: Database) -> None:
    h = make_harness(db, max_attempts=2)
    h.system.fail_before.extend([ConnectorUnreachableError("down")] * 2)
    h.propose(Autonomy.SILENT)
    h.outbox.execute_approved()
    h.clock.advance(timedelta(hours=1))
    [failed] = h.outbox.execute_approved()
    assert failed.state is S.FAILED and failed.error is not None
    assert failed.error.startswith("gave up after 2 tries")


@pytest.mark.parametrize(("after", "expected"), [(False, S.FAILED), (True, S.DONE)])
def test_a_connector_bug_is_reconciled_and_never_retried(
    h: Harness, after: bool, expected: ActionState
) -> None:
    (h.system.fail_after if after else h.system.fail_before).append(RuntimeError("bug"))
    h.propose(Autonomy.SILENT)
    [record] = h.outbox.execute_approved()
    assert record.state is expected and h.system.calls == 1


def test_a_missing_connector_fails_the_action(h: Harness) -> None:
    action_id = h.propose(Autonomy.SILENT)
    del h.actions["crm.add_note"]
    [failed] = h.outbox.execute_approved()
    assert failed.id == action_id and failed.state is S.FAILED
    assert failed.error is not None and "not available" in failed.error


def _send_of(system: RecordingSystem, account_id: str) -> Action:
    """``email.send`` of one account: its prepared actions carry ``account_id``."""
    base = system.action("email.send", Risk.MEDIUM)

    def prepare(args: JsonObject) -> PreparedAction:
        return replace(base.prepare(args), account_id=account_id)

    return replace(base, prepare=prepare)


def test_two_accounts_with_the_same_action_are_resolved_by_account(db: Database) -> None:
    systems = {"work": RecordingSystem(), "home": RecordingSystem()}
    actions = {(acct, "email.send"): _send_of(sys_, acct) for acct, sys_ in systems.items()}
    asked: list[tuple[str, str]] = []

    def resolve(account_id: str, name: str) -> Action:
        asked.append((account_id, name))
        return actions[account_id, name]

    outbox = Outbox(db, resolve, AutonomyStore(db), clock=Clock())

    def propose(acct: str, text: str, level: Autonomy) -> str:
        prepared = actions[acct, "email.send"].prepare({"text": text})
        return outbox.propose("a", "r", prepared, (), (), level).id

    work_id = propose("work", "from work", Autonomy.SILENT)
    home_id = propose("home", "from home", Autonomy.ASK)
    home = outbox.get(home_id)
    outbox.approve(home_id, OWNER, {"text": "edited at home", "key": home.idempotency_key})
    # A claimed action of "home" that reached its system before a crash.
    stuck_id = propose("home", "stuck", Autonomy.SILENT)
    stuck = outbox.get(stuck_id)
    OutboxStore(db).move(stuck, S.EXECUTING, Clock()(), "attempt 1", attempts=1)
    systems["home"].applied[stuck.idempotency_key] = stuck.payload
    [recovered] = outbox.recover()
    assert recovered.id == stuck_id and recovered.state is S.DONE  # found in home's system
    outbox.execute_approved()
    assert {outbox.get(i).state for i in (work_id, home_id)} == {S.DONE}
    assert [p["text"] for p in systems["work"].applied.values()] == ["from work"]
    assert sorted(str(p["text"]) for p in systems["home"].applied.values()) == [
        "edited at home", "stuck",
    ]  # fmt: skip
    assert {a for a, _ in asked} == {"work", "home"}
    assert all(name == "email.send" for _, name in asked)


def test_one_event_per_state_change_and_logs_carry_no_payload(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    record = h.outbox.propose(
        "agent-1", "run-1", h.prepared("SECRET-PAYLOAD-TEXT"), (), ("email <m1> body",),
        Autonomy.ASK,
    )  # fmt: skip
    h.outbox.approve(record.id, OWNER)
    h.outbox.execute_approved()
    changes = [t for t in h.outbox.transitions(record.id)]
    assert len([e for e in h.events if e.kind != "action.notify"]) == len(changes)
    assert all(e.action_id == record.id for e in h.events)
    assert "SECRET-PAYLOAD-TEXT" not in caplog.text
    assert "SECRET-PAYLOAD-TEXT" not in repr(h.outbox.get(record.id))
    assert h.outbox.get(record.id).taint_notice == (
        "written after reading untrusted text: email <m1> body"
    )


def test_a_failing_listener_does_not_stop_the_outbox(db: Database) -> None:
    h = make_harness(db)

    def broken(event: OutboxEvent) -> None:
        raise RuntimeError("listener bug")

    outbox = Outbox(
        db, lambda account, name: h.actions[name], AutonomyStore(db), emit=broken, clock=h.clock
    )
    record = outbox.propose("a", "r", h.prepared(), (), (), Autonomy.SILENT)
    logging.getLogger("soloist.agents.outbox").disabled = True  # the expected error log
    try:
        [done] = outbox.execute_approved()
    finally:
        logging.getLogger("soloist.agents.outbox").disabled = False
    assert done.id == record.id and done.state is S.DONE


def test_list_filters_by_state_and_agent(h: Harness) -> None:
    a = h.propose()
    b = h.propose(Autonomy.SUGGEST)
    assert [r.id for r in h.outbox.list()] == [a, b]
    assert [r.id for r in h.outbox.list(state=S.SUGGESTED)] == [b]
    assert h.outbox.list(agent_id="nobody") == []
