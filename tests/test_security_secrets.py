"""Issue 7: after every built-in agent ran (and its actions were approved and executed),
the email account's password is nowhere but the keyring.

The password is stored in a keyring backend (the in-memory one of the logic
tests) and really read by the email actions' login when the owner's
approved drafts execute. Then: every text column of every table in the
DuckDB file (``information_schema.columns``), every log record at DEBUG,
and the bytes of every file under the data directory (the database and its
WAL, the memory index, any KV or trace file).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_fakes import ScriptedEngine, call
from keyring_service import MemoryKeyring
from office_rig import MAIL_PASSWORD, OWNER_ADDRESS, Office, day_window
from test_security_injection import file_hits, log_hits, secret_hits

from app.agents.autonomy import Owner
from app.agents.loop import Trigger
from app.agents.outbox import ActionState
from app.agents.trace import RunState
from app.memory.db import Database


class CountingKeyring(MemoryKeyring):
    """The in-memory keyring, counting reads (the password must really be used)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def get_password(self, service: str, username: str) -> str | None:
        self.reads += 1
        return super().get_password(service, username)


@pytest.fixture
def keyring() -> CountingKeyring:
    return CountingKeyring()


@pytest.fixture
def office(db: Database, keyring: CountingKeyring) -> Iterator[Office]:
    rig = Office(db, keyring)
    yield rig
    rig.close()


def run_every_builtin(office: Office) -> list[RunState]:
    mail = office.add_mail("ada@example.org", "Return #1001", "My mug broke. Ada")
    person = office.add_person("Grace Hopper", "grace@navy.example", note="Likes tea.")
    office.add_order("1001", "ada@example.org")
    office.add_event("Call with Ada")
    runs = [
        ("inbox-triage", Trigger("mail.received", {"message_id": mail}), [
            call("email.read", id=mail),
            call("email.save_draft", to=["ada@example.org"], subject="Re: Return #1001",
                 body="Sorry to hear that, Ada."),
        ]),
        ("follow-up-keeper", Trigger("schedule", {"slot": "09:00"}), [
            call("crm.quiet_contacts", days=30),
            call("crm.person", id=person),
            call("crm.create_follow_up", title="Tea with Grace", due_at="2025-03-20",
                 person_id=person),
            call("email.save_draft", to=["grace@navy.example"], subject="Tea?", body="Hi Grace"),
        ]),
        ("order-desk", Trigger("order.created", {"order_id": "1001"}), [
            call("store.order", id="#1001"),
            call("store.refund", order_id="1001", amount="12.50", note="broken mug"),
        ]),
        ("content-pipeline", Trigger("manual", request="Newsletter about mugs."), [
            call("memory.search", query="mugs"),
            call("memory.remember", text="Outline: mugs."),
            call("email.save_draft", to=[OWNER_ADDRESS], subject="Draft: Mugs", body="Mugs!"),
        ]),
        ("daily-briefing", Trigger("schedule", {"slot": "08:00"}), [
            call("outbox.pending_summary"),
            call("crm.follow_ups_due"),
            call("calendar.events", **day_window(office)),
            call("store.sales_summary", days=1),
            call("memory.remember", text="Briefing: 4 actions wait.", kind="note"),
            call("final", answer="4 actions wait."),
        ]),
    ]  # fmt: skip
    return [
        office.run(agent, ScriptedEngine(*script), trigger).state for agent, trigger, script in runs
    ]


def test_the_password_is_nowhere_after_every_builtin_ran(
    office: Office, keyring: CountingKeyring, caplog: pytest.LogCaptureFixture, soloist_home: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    states = run_every_builtin(office)
    assert states == [RunState.WAITING_FOR_APPROVAL] * 4 + [RunState.SUCCEEDED]
    reads_before = keyring.reads
    for action in office.outbox.pending():
        office.outbox.approve(action.id, Owner.at_ui())  # the owner, in the test
    office.outbox.execute_approved()
    done = [a.action for a in office.outbox.list() if a.state is ActionState.DONE]
    assert sorted(done) == [
        "crm.create_follow_up",
        *["email.save_draft"] * 3,
        "store.refund",
    ]
    assert keyring.reads > reads_before  # the drafts' login really read the password
    office.db.execute("CHECKPOINT")

    assert secret_hits(office.db, MAIL_PASSWORD) == []
    assert log_hits(caplog.records, MAIL_PASSWORD) == []
    assert len(caplog.records) > 100  # the scan saw the runs' logs, DEBUG included
    files = [p for p in soloist_home.rglob("*") if p.is_file()]
    assert any(p.name == "office.duckdb" for p in files)
    assert file_hits(soloist_home, MAIL_PASSWORD) == []


def test_the_scans_find_a_planted_secret(
    office: Office, caplog: pytest.LogCaptureFixture, soloist_home: Path
) -> None:
    """The scanners are not blind: a password that leaked would be found in each place."""
    caplog.set_level(logging.DEBUG)
    office.memory.remember(f"oops {MAIL_PASSWORD}", "note")
    logging.getLogger("soloist.test").debug("leaked %s", MAIL_PASSWORD)
    office.db.execute("CHECKPOINT")
    assert any(
        hit.endswith(".text") or "memor" in hit for hit in secret_hits(office.db, MAIL_PASSWORD)
    )
    assert log_hits(caplog.records, MAIL_PASSWORD) == ["soloist.test"]
    assert any(hit.endswith("office.duckdb") for hit in file_hits(soloist_home, MAIL_PASSWORD))
