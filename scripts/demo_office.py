"""Seed a throw-away office with believable demo data, through the real stores.

Used by ``scripts/screenshots.py`` so that every section has something to
show. Nothing here reaches the network: the CRM is the local one, memories
are embedded by the packaged all-MiniLM-L6-v2, and the agent runs are
answered by :class:`DemoEngine`, a scripted engine (a random-weight test
model cannot write a tool call). The office the window opens afterwards is
a plain ``Office(home)`` with the real engine.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

from app.agents.automations.models import CronSchedule, MissedSlotPolicy
from app.agents.automations.store import AutomationStore
from app.agents.builtin.daily_briefing import SCOPE as BRIEFING_SCOPE
from app.agents.loop_steps import Trigger
from app.agents.runtime import AgentRuntime
from app.agents.taint import UntrustedSource
from app.engine.embeddings import SentenceTransformerEmbedder
from app.engine.types import Chunk, FinishReason, GenerateRequest, Timings
from app.integrations.crm.models import ContactPoint, Deal, DealStage, Person
from app.integrations.crm.store import CrmStore
from app.office import Office

RUN_TIMEOUT_S = 120.0
CRM_ACCOUNT = "crm1"
DESK_AGENT = "desk"
SUBJECT = "Call Ada Lovelace about overdue invoice 4471 before Friday"
EMAIL = (
    "Hi! Invoice 4471 is still open on our side, sorry. "
    f"Could you {SUBJECT[0].lower()}{SUBJECT[1:]}? Thanks, Ada (ada@example.org)"
)
EMAIL_LABEL = "email <m1@mail.example> body"
DESK_TOML = """\
name = "Desk"
instructions = "Log the calls the owner should make, from new mail."
model_class = "fast"
triggers = ["manual", "mail.received", "schedule"]
schedules = ["0 9 * * 1-5"]

[[tools]]
tool = "crm.log_activity"
autonomy = "ask"

[[tools]]
tool = "memory.search"
autonomy = "silent"

[budgets]
tokens_per_day = 50000
runs_per_hour = 30
"""
CONVERSATIONS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    (
        "Plan the week",
        (
            ("user", "Plan my week: three client calls and the VAT return."),
            (
                "assistant",
                "Monday: VAT return (2 h, the receipts are in the Finance folder).\n"
                "Tuesday: calls with Ada Lovelace and Grace Hopper.\n"
                "Thursday: call Alan Turing about the workshop follow-up.\n"
                "Friday morning is kept free for invoices.",
            ),
        ),
    ),
    (
        "Spring workshop feedback",
        (
            ("user", "Summarise the feedback from the spring workshop."),
            (
                "assistant",
                "Twelve answers. Most liked the hands-on part; three asked for "
                "longer breaks; two want the slides before the day.",
            ),
        ),
    ),
    (
        "Reminder to Dana",
        (
            ("user", "Write a short reminder to Dana that invoice #2041 is due on Friday."),
            (
                "assistant",
                "Hi Dana, a friendly reminder that invoice #2041 (1,800 EUR) is due "
                "this Friday [1]. Thanks a lot, and have a good week!",
            ),
        ),
    ),
)
PEOPLE = (
    ("Ada Lovelace", "ada@example.org", "Analytical Engines Ltd", "CTO"),
    ("Grace Hopper", "grace@example.net", "Compiler Works", "Founder"),
    ("Alan Turing", "alan@example.com", "Bletchley Studio", "Consultant"),
)
DEALS = (
    ("Website relaunch", DealStage.PROPOSAL, 0, 480_000),
    ("Workshop series (spring)", DealStage.NEGOTIATION, 1, 220_000),
    ("Support retainer", DealStage.WON, 2, 90_000),
)
MEMORIES = (
    ("Ada prefers calls in the morning, never on Fridays.", "fact"),
    ("Invoices are due 30 days after the workshop; VAT return by the 10th.", "fact"),
    ("Grace asked for the slides a week before the next workshop.", "note"),
    ("The spring workshop had twelve participants; most liked the hands-on part.", "note"),
)
BRIEFING = (
    "Good morning. One action waits for your approval (a call to log for Ada). "
    "Two deals are open (7,000 EUR). Invoice 4471 is overdue; the VAT return is due on the 10th."
)
AUTOMATIONS = (  # the agents' own schedules add theirs beside these
    ("Weekly order check", "agent:order-desk", "0 8 * * 1"),
    ("Month-end follow-ups", "agent:follow-up-keeper", "0 16 28 * *"),
)


class DemoEngine:
    """Answers each request with the next scripted reply; embeds with the packaged model."""

    def __init__(self) -> None:
        self._replies: list[str] = []
        self._lock = threading.Lock()
        self._embedder = SentenceTransformerEmbedder()

    def script(self, *replies: dict[str, object]) -> None:
        with self._lock:
            self._replies = [json.dumps(reply) for reply in replies]

    def generate(self, request: GenerateRequest) -> Iterator[Chunk]:
        with self._lock:
            final = json.dumps({"tool": "final", "arguments": {"answer": "Done."}})
            reply = self._replies.pop(0) if self._replies else final
        yield Chunk(request.request_id, 0, reply)
        timings = Timings(sum(len(m.content) for m in request.messages) // 4, 40, 0.05, 0.4)
        yield Chunk(request.request_id, 1, "", FinishReason.STOP, timings)

    def cancel(self, request_id: str) -> bool:
        return True

    def embedder(self) -> SentenceTransformerEmbedder:
        return self._embedder

    def close(self) -> None:
        pass


def seed(home: Path, model: Path) -> None:
    """Fill the office at ``home``; it is closed again when this returns."""
    (home / "agents").mkdir(parents=True, exist_ok=True)
    (home / "agents" / "desk.toml").write_text(DESK_TOML, encoding="utf-8")
    engine = DemoEngine()
    office = Office(home, engine_factory=lambda: engine)
    try:
        office.set_model_path(str(model))
        seed_conversations(office)
        seed_crm(office)
        seed_memories(office)
        seed_automations(office)
        seed_runs(office, engine)
    finally:
        office.close()


CITED = "Invoice #2041 to Dana (Northwind): 1,800 EUR, due Friday; she likes a short nudge."


def seed_conversations(office: Office) -> None:
    """The conversations; a reply that cites [1] carries the citation the chat stores."""
    from app.agents.chat_context import Citation

    cited = office.memory.remember(CITED, "fact")
    citation = Citation(1, cited.memory_id, "Invoice #2041 to Dana", "the owner", cited.id)
    for title, messages in CONVERSATIONS:
        conversation = office.new_conversation(title)
        for role, text in messages:
            meta = {"citations": [citation.to_json()]} if "[1]" in text else None
            office.conversations.append(conversation.id, role, text, meta)


def seed_crm(office: Office) -> None:
    office.connections.accounts.add("crm", "CRM", {}, account_id=CRM_ACCOUNT)
    store = CrmStore(office.db)
    people = [
        Person("", name, company_name=company, title=title, emails=(ContactPoint(email, "work"),))
        for name, email, company, title in PEOPLE
    ]
    ids = store.add_people(people)
    for title, stage, person, cents in DEALS:
        store.add_deal(Deal("", title, stage, person_id=ids[person], value_cents=cents))
    office.connections.sync(CRM_ACCOUNT)  # the local CRM: no network


def seed_memories(office: Office) -> None:
    memory = office.memory
    for text, kind in MEMORIES:
        memory.remember(text, kind)
    memory.remember(BRIEFING, "note", BRIEFING_SCOPE)


def seed_automations(office: Office) -> None:
    store = AutomationStore(office.db)
    for name, target, cron in AUTOMATIONS:
        store.add(name, target, CronSchedule(cron, "UTC"), policy=MissedSlotPolicy.SKIP)


def seed_runs(office: Office, engine: DemoEngine) -> None:
    """A finished manual run, then a run from an email that waits for approval."""
    runtime = office.start_agents()
    engine.script({"tool": "final", "arguments": {"answer": "Nothing new to log today."}})
    _run(runtime, DESK_AGENT, Trigger("manual", request="Anything to log?"))
    engine.script({"tool": "crm.log_activity", "arguments": {"kind": "call", "subject": SUBJECT}})
    untrusted = (UntrustedSource(EMAIL_LABEL, EMAIL),)
    _run(runtime, DESK_AGENT, Trigger("mail.received", untrusted=untrusted))


def _run(runtime: AgentRuntime, agent_id: str, trigger: Trigger) -> None:
    result = runtime.manager.run(agent_id, trigger).result(timeout=RUN_TIMEOUT_S)
    print(f"demo: {agent_id} run {result.state.value}")
