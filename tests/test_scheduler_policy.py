"""The scheduling policy: pure decisions in tables, the bookkeeping by properties.

Table-driven tests pin the decisions (admission, preemption, prefill
chunks, aging, deadlines, cancellation, the life cycle). Property tests
drive ``Scheduler`` with random request mixes and random step sequences
through ``FakeContext``, which carries out every plan in the documented
order the way the llama.cpp mechanism will and checks each step: budgets,
priority order, forward-only life cycles and, under a bounded arrival
rate, that every request finishes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.engine.scheduler import (
    TRANSITIONS,
    Admission,
    InvalidTransitionError,
    PreemptAction,
    Release,
    RequestState,
    ResumeAction,
    SchedRequest,
    Scheduler,
    SchedulerConfig,
    SchedulerError,
    SeqState,
    StepPlan,
    UnknownRequestError,
    WaitReason,
    admit,
    check_transition,
    effective_priority,
    plan_step,
    priority_band,
    rank_key,
)
from app.engine.types import GenerateRequest, Message, Priority, SamplingParams

INT, STD, BG = Priority.INTERACTIVE, Priority.STANDARD, Priority.BACKGROUND
NOW = 100.0
CFG = SchedulerConfig(
    n_seq_max=4,
    step_token_budget=64,
    kv_budget_tokens=1000,
    max_queue=8,
    aging_rate=0.1,
    deadline_horizon_s=5.0,
)
STATES = list(RequestState)


# -- building sequences in a given state --------------------------------
def req(
    rid: str,
    prio: Priority = STD,
    prompt: int = 10,
    max_tokens: int = 10,
    *,
    arrival: float = NOW,
    deadline: float | None = None,
) -> SchedRequest:
    return SchedRequest(rid, "agent", "session", prio, prompt, max_tokens, arrival, deadline)


def waiting(
    rid: str,
    prio: Priority = STD,
    prompt: int = 10,
    *,
    arrival: float = NOW,
    deadline: float | None = None,
) -> SeqState:
    """A queued request; ``arrival`` earlier than NOW means it has waited."""
    return SeqState.waiting(req(rid, prio, prompt, arrival=arrival, deadline=deadline))


def decoding(
    rid: str, prio: Priority, slot: int, prompt: int = 10, arrival: float = NOW
) -> SeqState:
    """Running, first token sampled: it holds ``prompt`` KV cells."""
    return SeqState(
        req(rid, prio, prompt, max_tokens=50, arrival=arrival),
        RequestState.DECODING,
        prompt_done=prompt,
        generated=1,
        slot=slot,
    )


def prefilling(rid: str, prio: Priority, slot: int, prompt: int, done: int) -> SeqState:
    return SeqState(
        req(rid, prio, prompt, arrival=NOW), RequestState.PREFILLING, prompt_done=done, slot=slot
    )


def paused(rid: str, prio: Priority, slot: int | None, prompt: int = 10) -> SeqState:
    """Preempted while decoding: KEPT in ``slot``, or swapped out when slot is None."""
    return SeqState(
        req(rid, prio, prompt, max_tokens=50, arrival=NOW),
        RequestState.PREEMPTED,
        prompt_done=prompt,
        generated=1,
        slot=slot,
        swapped=slot is None,
        waiting_since=NOW,
    )


# -- admission ----------------------------------------------------------
ADMISSION_CASES = [
    ("empty engine", [], req("n", INT), Admission.ACCEPTED),
    ("fills the KV budget exactly", [], req("n", STD, 991, 10), Admission.ACCEPTED),
    ("one cell past the KV budget", [], req("n", STD, 992, 10), Admission.REFUSED_TOO_LARGE),
    (
        "queue at its bound",
        [waiting(f"w{k}", BG, arrival=NOW - 0.1 * k) for k in range(8)],
        req("n", INT),
        Admission.REFUSED_QUEUE_FULL,
    ),
    ("same id twice", [waiting("n")], req("n"), Admission.REFUSED_DUPLICATE),
    (
        "every slot holds interactive work",
        [decoding(f"i{k}", INT, k) for k in range(4)],
        req("n", STD),
        Admission.QUEUED_NO_SLOT,
    ),
    (
        "interactive takes a background slot",
        [decoding(f"b{k}", BG, k) for k in range(4)],
        req("n", INT),
        Admission.ACCEPTED,
    ),
    (
        "KV held by a peer of its class",
        [decoding("s0", STD, 0, prompt=900)],
        req("n", STD, prompt=200),
        Admission.QUEUED_NO_KV,
    ),
    (
        "background yields to live interactive work",
        [decoding("i0", INT, 0)],
        req("n", BG),
        Admission.QUEUED_YIELDING,
    ),
    (
        "aged background no longer yields",
        [decoding("i0", INT, 0)],
        req("n", BG, arrival=NOW - 10),
        Admission.ACCEPTED,
    ),
    (
        "behind a larger request of its class",
        [decoding("s0", STD, 0, prompt=600), waiting("big", STD, 500, arrival=NOW - 1)],
        req("n", STD, prompt=10),
        Admission.QUEUED_BEHIND,
    ),
]


@pytest.mark.parametrize(
    ("live", "new", "expected"),
    [case[1:] for case in ADMISSION_CASES],
    ids=[case[0] for case in ADMISSION_CASES],
)
def test_admission(live: list[SeqState], new: SchedRequest, expected: Admission) -> None:
    decision = admit(new, live, NOW, CFG)

    assert decision.admission is expected
    assert decision.taken is not expected.is_refused
    assert decision.message


def test_refusals_say_the_sizes_that_matter() -> None:
    too_large = admit(req("n", STD, 992, 10), [], NOW, CFG)
    full = admit(req("n"), [waiting(f"w{k}") for k in range(8)], NOW, CFG)

    assert "1,001" in too_large.message and "1,000" in too_large.message
    assert "8 requests" in full.message and "limit is 8" in full.message


def test_a_refused_request_leaves_the_scheduler_unchanged() -> None:
    sched = Scheduler(CFG, clock=lambda: NOW)

    decision = sched.add(req("n", STD, 5000))

    assert decision.admission is Admission.REFUSED_TOO_LARGE
    assert len(sched) == 0


def test_admission_order_separates_taken_from_refused() -> None:
    assert [a for a in Admission if a.is_queued] == [
        Admission.QUEUED_NO_SLOT,
        Admission.QUEUED_NO_KV,
        Admission.QUEUED_YIELDING,
        Admission.QUEUED_BEHIND,
    ]
    assert not Admission.ACCEPTED.is_queued and not Admission.ACCEPTED.is_refused


# -- preemption -----------------------------------------------------------
PREEMPTION_CASES: list[tuple[str, SchedulerConfig, list[SeqState], set[tuple[str, str]]]] = [
    (
        "interactive swaps out the newest background, the rest pause in place",
        CFG,
        [
            decoding("b0", BG, 0, arrival=NOW - 2),
            decoding("b1", BG, 1, arrival=NOW - 1),
            decoding("s0", STD, 2),
            decoding("s1", STD, 3),
            waiting("i", INT),
        ],
        {("b1", "swap_out"), ("b0", "keep")},
    ),
    (
        "standard gives way only when there is no background",
        CFG,
        [*(decoding(f"s{k}", STD, k, arrival=NOW - 4 + k) for k in range(4)), waiting("i", INT)],
        {("s3", "swap_out")},
    ),
    (
        "with yielding off and room to spare nothing is preempted",
        replace(CFG, yield_class=None),
        [decoding("b0", BG, 0), waiting("i", INT)],
        set(),
    ),
    (
        "background pauses in place for interactive work even with room",
        CFG,
        [decoding("b0", BG, 0), waiting("i", INT)],
        {("b0", "keep")},
    ),
    (
        "KV pressure swaps out the fewest, lowest ranked first",
        CFG,
        [
            decoding("b0", BG, 0, prompt=300, arrival=NOW - 2),
            decoding("b1", BG, 1, prompt=300, arrival=NOW - 1),
            decoding("s0", STD, 2, prompt=300),
            waiting("i", INT, prompt=150),
        ],
        {("b1", "swap_out"), ("b0", "keep")},
    ),
    (
        "a request never evicts its own class to start",
        CFG,
        [*(decoding(f"s{k}", STD, k) for k in range(4)), waiting("n", STD)],
        set(),
    ),
    (
        "a resident that cannot grow swaps out the lowest ranked peer",
        CFG,
        [
            decoding("s0", STD, 0, prompt=600, arrival=NOW - 2),
            decoding("s1", STD, 1, prompt=400, arrival=NOW - 1),
        ],
        {("s1", "swap_out")},
    ),
    (
        "a background running alone is not disturbed",
        CFG,
        [decoding("b0", BG, 0), waiting("s", STD)],
        set(),
    ),
]


@pytest.mark.parametrize(
    ("config", "live", "expected"),
    [case[1:] for case in PREEMPTION_CASES],
    ids=[case[0] for case in PREEMPTION_CASES],
)
def test_preemption_choices(
    config: SchedulerConfig, live: list[SeqState], expected: set[tuple[str, str]]
) -> None:
    plan = plan_step(NOW, live, config)

    assert {(p.request_id, p.action.value) for p in plan.preempt} == expected
    assert not plan.scheduled & {rid for rid, _ in expected}


def test_interactive_starts_in_the_slot_it_freed() -> None:
    live = [decoding(f"b{k}", BG, k, arrival=NOW - 4 + k) for k in range(4)] + [waiting("i", INT)]

    plan = plan_step(NOW, live, CFG)

    assert [(s.request_id, s.slot) for s in plan.start] == [("i", 3)]
    assert [(p.request_id, p.slot, p.action) for p in plan.preempt if p.request_id == "b3"] == [
        ("b3", 3, PreemptAction.SWAP_OUT)
    ]


def test_nothing_ranked_below_a_victim_starts_in_the_room_it_left() -> None:
    live = [
        decoding("i0", INT, 0, prompt=450),
        decoding("b_old", BG, 1, prompt=500, arrival=NOW - 2),
        decoding("b_new", BG, 2, prompt=10, arrival=NOW - 1),
        waiting("s", STD, prompt=100),
        waiting("b_late", BG, prompt=20),
    ]

    plan = plan_step(NOW, live, replace(CFG, yield_class=None))

    assert {(p.request_id, p.action) for p in plan.preempt} == {
        ("b_old", PreemptAction.SWAP_OUT),
        ("b_new", PreemptAction.SWAP_OUT),
    }
    assert [s.request_id for s in plan.start] == ["s"]
    assert ("b_late", WaitReason.BEHIND) in {(b.request_id, b.reason) for b in plan.blocked}


RESUME_CASES = [
    ("kept in place resumes with no copy", [paused("b0", BG, 2)], [("b0", 2, ResumeAction.NONE)]),
    (
        "swapped out comes back into the lowest free slot",
        [decoding("s0", STD, 0), paused("b0", BG, None)],
        [("b0", 1, ResumeAction.SWAP_IN)],
    ),
    (
        "swapped out waits while its cells are held by more urgent work",
        [decoding("s0", STD, 0, prompt=800), paused("b0", BG, None, prompt=300)],
        [],
    ),
]


@pytest.mark.parametrize(
    ("live", "expected"), [c[1:] for c in RESUME_CASES], ids=[c[0] for c in RESUME_CASES]
)
def test_resume(live: list[SeqState], expected: list[tuple[str, int, ResumeAction]]) -> None:
    plan = plan_step(NOW, live, CFG)

    assert [(r.request_id, r.slot, r.action) for r in plan.resume] == expected
    resumed = {rid for rid, _, _ in expected}
    assert {d.request_id for d in plan.decode} >= resumed
    if not expected:
        assert ("b0", WaitReason.NO_KV) in {(b.request_id, b.reason) for b in plan.blocked}


# -- chunked prefill ------------------------------------------------------
SMALL = replace(CFG, step_token_budget=16)
PREFILL_CASES = [
    ("a long prompt alone takes the whole budget", SMALL, [prefilling("p", STD, 0, 40, 0)], []),
    ("the last chunk completes the prompt", SMALL, [prefilling("p", STD, 0, 40, 32)], []),
    (
        "decode tokens come off the budget first",
        SMALL,
        [prefilling("p", STD, 0, 40, 0), *(decoding(f"d{k}", STD, k + 1) for k in range(3))],
        ["d0", "d1", "d2"],
    ),
    (
        "prefills share what is left in rank order",
        SMALL,
        [prefilling("i", INT, 0, 10, 0), prefilling("s", STD, 1, 40, 0), decoding("d", STD, 2)],
        ["d"],
    ),
    (
        "a budget of one token per slot still moves every prefill",
        replace(CFG, step_token_budget=4),
        [prefilling(f"p{k}", STD, k, 30, 0) for k in range(4)],
        [],
    ),
]
PREFILL_EXPECTED = [
    [("p", 0, 16, False)],
    [("p", 32, 8, True)],
    [("p", 0, 13, False)],
    [("i", 0, 10, True), ("s", 0, 5, False)],
    [(f"p{k}", 0, 1, False) for k in range(4)],
]


@pytest.mark.parametrize(
    ("config", "live", "decodes", "chunks"),
    [(*c[1:], e) for c, e in zip(PREFILL_CASES, PREFILL_EXPECTED, strict=True)],
    ids=[c[0] for c in PREFILL_CASES],
)
def test_chunked_prefill_split(
    config: SchedulerConfig,
    live: list[SeqState],
    decodes: list[str],
    chunks: list[tuple[str, int, int, bool]],
) -> None:
    plan = plan_step(NOW, live, config)

    assert sorted(d.request_id for d in plan.decode) == decodes
    assert [(c.request_id, c.start, c.n_tokens, c.completes_prompt) for c in plan.prefill] == (
        chunks
    )
    assert plan.n_tokens <= config.step_token_budget


# -- aging and deadlines --------------------------------------------------
def aged(prio: Priority, waited: float, deadline_in: float | None = None) -> SeqState:
    deadline = None if deadline_in is None else NOW + deadline_in
    return waiting("x", prio, arrival=NOW - waited, deadline=deadline)


URGENCY_CASES = [
    ("standard, fresh", STD, 0.0, None, 1.0, 1),
    ("background after 10 s is standard", BG, 10.0, None, 1.0, 1),
    ("background half way there is still background", BG, 5.0, None, 1.5, 2),
    ("interactive keeps aging", INT, 20.0, None, -2.0, -2),
    ("a far deadline changes nothing", STD, 0.0, 10.0, 1.0, 1),
    ("a deadline within the horizon promotes one class", STD, 0.0, 5.0, 0.0, 0),
    ("a missed deadline promotes one class, no more", STD, 0.0, -100.0, 0.0, 0),
    ("aging and a deadline add up", BG, 5.0, 1.0, 0.5, 1),
]


@pytest.mark.parametrize(
    ("prio", "waited", "deadline_in", "effective", "band"),
    [c[1:] for c in URGENCY_CASES],
    ids=[c[0] for c in URGENCY_CASES],
)
def test_effective_priority(
    prio: Priority, waited: float, deadline_in: float | None, effective: float, band: int
) -> None:
    seq = aged(prio, waited, deadline_in)

    assert effective_priority(seq, NOW, CFG) == pytest.approx(effective)
    assert priority_band(seq, NOW, CFG) == band


def test_time_spent_running_does_not_age() -> None:
    seq = replace(decoding("d", BG, 0), waited_s=3.0, waiting_since=None)

    assert effective_priority(seq, NOW + 1000, CFG) == pytest.approx(2 - 0.3)


def test_aging_counts_only_time_spent_waiting() -> None:
    clock = Clock()
    sched = Scheduler(CFG, clock=clock)
    sched.add(req("b", BG, prompt=4, max_tokens=100))

    def run(seconds: int) -> None:
        for _ in range(seconds):
            sched.complete_step(sched.schedule())
            clock.t += 1.0

    def urgency() -> float:
        seq = sched.get("b")
        assert seq is not None
        return effective_priority(seq, clock.t, CFG)

    run(5)
    assert urgency() == pytest.approx(2.0)
    sched.add(req("i", INT, prompt=4, max_tokens=3, arrival=clock.t))
    run(4)  # the background request pauses while the interactive one runs
    assert urgency() == pytest.approx(2.0 - 0.1 * 3)
    run(5)
    assert sched.get("i") is None
    assert urgency() == pytest.approx(2.0 - 0.1 * 3)


@pytest.mark.parametrize(
    ("background_waited", "winner"),
    [(0.0, "i"), (15.0, "i"), (25.0, "b"), (40.0, "b")],
    ids=["fresh", "aged to standard", "aged to interactive", "aged past interactive"],
)
def test_aging_wins_a_single_slot(background_waited: float, winner: str) -> None:
    live = [waiting("b", BG, arrival=NOW - background_waited), waiting("i", INT, arrival=NOW - 1)]

    plan = plan_step(NOW, live, replace(CFG, n_seq_max=1, yield_class=None))

    assert [s.request_id for s in plan.start] == [winner]


@pytest.mark.parametrize(
    ("deadlines", "order"),
    [
        ((None, 50.0, 30.0), ["c", "b", "a"]),
        ((None, None, None), ["a", "b", "c"]),
        ((40.0, None, 20.0), ["c", "a", "b"]),
    ],
    ids=["earliest deadline first", "no deadlines: first come", "deadline before none"],
)
def test_deadline_order_within_a_class(
    deadlines: tuple[float | None, ...], order: list[str]
) -> None:
    live = [
        waiting(rid, STD, arrival=NOW - 0.1 * (3 - k), deadline=None if d is None else NOW + d)
        for k, (rid, d) in enumerate(zip("abc", deadlines, strict=True))
    ]

    plan = plan_step(NOW, live, replace(CFG, n_seq_max=3))

    assert [c.request_id for c in plan.prefill] == order


def test_a_near_deadline_outranks_an_earlier_interactive() -> None:
    live = [waiting("i", INT, arrival=NOW - 1), waiting("s", STD, deadline=NOW + 2)]

    plan = plan_step(NOW, live, replace(CFG, n_seq_max=1))

    assert [s.request_id for s in plan.start] == ["s"]


# -- life cycle -------------------------------------------------------------
def allowed(old: RequestState, new: RequestState) -> bool:
    """The life cycle in words, written apart from the table it checks."""
    if old.is_finished or new is RequestState.WAITING or new is old:
        return False
    if old is RequestState.WAITING:
        return new in (RequestState.PREFILLING, RequestState.FINISHED_CANCELLED) or (
            new is RequestState.FINISHED_ERROR
        )
    if old is RequestState.PREEMPTED:
        return new.is_running or new in (
            RequestState.FINISHED_CANCELLED,
            RequestState.FINISHED_ERROR,
        )
    return not (old is RequestState.DECODING and new is RequestState.PREFILLING)


@pytest.mark.parametrize("old", STATES, ids=[s.name for s in STATES])
def test_transition_table(old: RequestState) -> None:
    for new in STATES:
        if allowed(old, new):
            assert check_transition(old, new) is new
        else:
            with pytest.raises(InvalidTransitionError):
                check_transition(old, new)
    assert set(TRANSITIONS[old]) == {new for new in STATES if allowed(old, new)}


def test_finished_states_come_after_preempted() -> None:
    assert [s.is_finished for s in STATES] == [s > RequestState.PREEMPTED for s in STATES]
    assert not any(s.is_finished for s in STATES[:4])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_seq_max": 0}, "n_seq_max"),
        ({"n_seq_max": 8, "step_token_budget": 7}, "step_token_budget"),
        ({"kv_budget_tokens": 0}, "kv_budget_tokens"),
        ({"max_queue": 0}, "max_queue"),
        ({"aging_rate": -1.0}, "aging_rate"),
        ({"deadline_horizon_s": -1.0}, "deadline_horizon_s"),
    ],
)
def test_config_is_checked(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SchedulerConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("prompt", "max_tokens"), [(0, 5), (5, 0)])
def test_a_request_needs_tokens(prompt: int, max_tokens: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        req("r", STD, prompt, max_tokens)


def test_from_generate_takes_ids_priority_and_limits() -> None:
    gen = GenerateRequest(
        "m.gguf",
        (Message("user", "secret text"),),
        SamplingParams(max_tokens=33),
        priority=BG,
        agent_id="bookkeeper",
        session_id="s1",
    )

    sched_req = SchedRequest.from_generate(gen, prompt_tokens=12, arrival=5.0)

    assert (sched_req.request_id, sched_req.agent_id, sched_req.session_id) == (
        gen.request_id,
        "bookkeeper",
        "s1",
    )
    assert (sched_req.priority, sched_req.prompt_tokens, sched_req.max_tokens) == (BG, 12, 33)
    assert "secret" not in repr(sched_req)


class Clock:
    def __init__(self, t: float = NOW) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def recording_scheduler(
    config: SchedulerConfig, clock: Callable[[], float]
) -> tuple[Scheduler, list[tuple[str, RequestState, RequestState]]]:
    events: list[tuple[str, RequestState, RequestState]] = []
    sched = Scheduler(config, clock=clock, on_transition=lambda *e: events.append(e))
    return sched, events


def test_one_request_from_start_to_length() -> None:
    sched, events = recording_scheduler(replace(CFG, step_token_budget=8), Clock())
    sched.add(req("r", STD, prompt=20, max_tokens=3))

    chunks: list[tuple[int, int, bool]] = []
    finished: list[str] = []
    for _ in range(5):
        plan = sched.schedule()
        chunks += [(c.start, c.n_tokens, c.completes_prompt) for c in plan.prefill]
        finished += sched.complete_step(plan)

    assert chunks == [(0, 8, False), (8, 8, False), (16, 4, True)]
    assert finished == ["r"]
    assert [(old.name, new.name) for _, old, new in events] == [
        ("WAITING", "PREFILLING"),
        ("PREFILLING", "DECODING"),
        ("DECODING", "FINISHED_LENGTH"),
    ]
    assert sched.schedule().release == (Release("r", 0, drop_swapped=False),)


def _to_waiting(sched: Scheduler, clock: Clock) -> None:
    sched.add(req("r", STD, prompt=100))


def _to_prefilling(sched: Scheduler, clock: Clock) -> None:
    sched.add(req("r", STD, prompt=100))
    sched.complete_step(sched.schedule())


def _to_decoding(sched: Scheduler, clock: Clock) -> None:
    sched.add(req("r", STD, prompt=4))
    sched.complete_step(sched.schedule())


def _to_kept(sched: Scheduler, clock: Clock) -> None:
    sched.add(req("r", BG, prompt=4))
    sched.complete_step(sched.schedule())
    sched.add(req("i", INT, prompt=4))
    sched.complete_step(sched.schedule())


def _to_swapped(sched: Scheduler, clock: Clock) -> None:
    _to_kept(sched, clock)
    sched.add(req("i2", INT, prompt=4, arrival=NOW - 1))
    sched.complete_step(sched.schedule())


CANCEL_CASES = [
    ("queued", _to_waiting, RequestState.WAITING, ()),
    ("prefilling", _to_prefilling, RequestState.PREFILLING, (Release("r", 0, False),)),
    ("decoding", _to_decoding, RequestState.DECODING, (Release("r", 0, False),)),
    ("preempted, kept", _to_kept, RequestState.PREEMPTED, (Release("r", 0, False),)),
    ("preempted, swapped out", _to_swapped, RequestState.PREEMPTED, (Release("r", None, True),)),
]


@pytest.mark.parametrize(
    ("setup", "state", "release"), [c[1:] for c in CANCEL_CASES], ids=[c[0] for c in CANCEL_CASES]
)
def test_cancel(
    setup: Callable[[Scheduler, Clock], None],
    state: RequestState,
    release: tuple[Release, ...],
) -> None:
    clock = Clock()
    sched, events = recording_scheduler(replace(CFG, n_seq_max=2), clock)
    setup(sched, clock)
    seq = sched.get("r")
    assert seq is not None and seq.state is state

    assert sched.cancel("r")

    assert events[-1] == ("r", state, RequestState.FINISHED_CANCELLED)
    assert sched.get("r") is None
    assert not sched.cancel("r")
    plan = sched.schedule()
    assert [r for r in plan.release if r.request_id == "r"] == list(release)
    assert "r" not in plan.scheduled


def test_cancel_during_a_step_skips_its_credit() -> None:
    sched = Scheduler(CFG, clock=Clock())
    sched.add(req("r", STD, prompt=4))
    plan = sched.schedule()

    sched.cancel("r")

    assert sched.complete_step(plan) == ()
    assert len(sched) == 0


def test_stop_and_error_finish_a_request() -> None:
    sched, events = recording_scheduler(CFG, Clock())
    sched.add(req("a", STD, prompt=4))
    sched.add(req("b", STD, prompt=4))
    sched.complete_step(sched.schedule())

    sched.finish("a", RequestState.FINISHED_STOPPED)
    sched.finish("b", RequestState.FINISHED_ERROR)

    assert events[-2:] == [
        ("a", RequestState.DECODING, RequestState.FINISHED_STOPPED),
        ("b", RequestState.DECODING, RequestState.FINISHED_ERROR),
    ]
    assert {r.slot for r in sched.schedule().release} == {0, 1}


def test_misuse_is_reported() -> None:
    sched = Scheduler(CFG, clock=Clock())
    sched.add(req("r"))
    stale = sched.schedule()
    sched.schedule()

    with pytest.raises(SchedulerError, match="last schedule"):
        sched.complete_step(stale)
    with pytest.raises(UnknownRequestError):
        sched.finish("nope", RequestState.FINISHED_STOPPED)
    with pytest.raises(InvalidTransitionError):
        sched.finish("r", RequestState.DECODING)


def test_live_returns_copies() -> None:
    sched = Scheduler(CFG, clock=Clock())
    sched.add(req("r"))

    sched.live()[0].generated = 99

    seq = sched.get("r")
    assert seq is not None and seq.generated == 0


# -- the mechanism, faked --------------------------------------------------
@dataclass
class FakeContext:
    """Carries out plans in the documented order, as the mechanism will.

    Tracks which request owns each slot and how many cells each holds (in a
    slot or swapped out), and fails on any step that breaks the protocol.
    """

    config: SchedulerConfig
    slots: dict[int, str] = field(default_factory=dict)
    cells: dict[str, int] = field(default_factory=dict)
    swapped: dict[str, int] = field(default_factory=dict)

    def run(self, plan: StepPlan) -> None:
        for rel in plan.release:
            if rel.slot is not None:
                assert self.slots.pop(rel.slot) == rel.request_id
                del self.cells[rel.request_id]
            if rel.drop_swapped:
                del self.swapped[rel.request_id]
        for p in plan.preempt:
            assert self.slots[p.slot] == p.request_id
            if p.action is PreemptAction.SWAP_OUT:
                del self.slots[p.slot]
                self.swapped[p.request_id] = self.cells.pop(p.request_id)
        for r in plan.resume:
            if r.action is ResumeAction.SWAP_IN:
                assert r.slot not in self.slots
                self.slots[r.slot] = r.request_id
                self.cells[r.request_id] = self.swapped.pop(r.request_id)
            assert self.slots[r.slot] == r.request_id
        for s in plan.start:
            assert s.slot not in self.slots
            self.slots[s.slot] = s.request_id
            self.cells[s.request_id] = 0
        self._batch(plan)

    def _batch(self, plan: StepPlan) -> None:
        assert len(self.slots) <= self.config.n_seq_max
        assert all(0 <= slot < self.config.n_seq_max for slot in self.slots)
        for d in plan.decode:
            assert self.slots[d.slot] == d.request_id
            self.cells[d.request_id] += 1
        for c in plan.prefill:
            assert self.slots[c.slot] == c.request_id
            assert self.cells[c.request_id] == c.start
            self.cells[c.request_id] += c.n_tokens
        assert sum(self.cells.values()) <= self.config.kv_budget_tokens


@dataclass
class Snapshot:
    before: dict[str, SeqState]
    plan: StepPlan
    after: dict[str, SeqState]


@dataclass
class Driver:
    """Drives a Scheduler step by step, keeping what each step saw."""

    config: SchedulerConfig
    dt: float = 0.1
    clock: Clock = field(default_factory=Clock)
    events: list[tuple[str, RequestState, RequestState]] = field(default_factory=list)
    history: list[Snapshot] = field(default_factory=list)
    added_at: dict[str, int] = field(default_factory=dict)
    done_at: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sched = Scheduler(
            self.config, clock=self.clock, on_transition=lambda *e: self.events.append(e)
        )
        self.ctx = FakeContext(self.config)
        self._n = 0

    def add(self, prio: Priority, prompt: int, max_tokens: int, deadline: float | None) -> None:
        self._n += 1
        rid = f"r{self._n}"
        at = None if deadline is None else self.clock.t + deadline
        request = SchedRequest(rid, "a", "s", prio, prompt, max_tokens, self.clock.t, at)
        if self.sched.add(request).taken:
            self.added_at[rid] = len(self.history)

    def act(self, kind: str, pick: int) -> None:
        live = sorted(self.sched.live(), key=lambda s: s.request_id)
        if kind == "stop":
            live = [s for s in live if s.state is RequestState.DECODING]
        if not live:
            return
        rid = live[pick % len(live)].request_id
        if kind == "cancel":
            assert self.sched.cancel(rid)
        else:
            state = RequestState.FINISHED_STOPPED if kind == "stop" else RequestState.FINISHED_ERROR
            self.sched.finish(rid, state)
        self.done_at[rid] = len(self.history)

    def step(self) -> None:
        before = {s.request_id: s for s in self.sched.live()}
        plan = self.sched.schedule()
        after = {s.request_id: s for s in self.sched.live()}
        self.ctx.run(plan)
        for rid in self.sched.complete_step(plan):
            self.done_at[rid] = len(self.history)
        for seq in self.sched.live():  # the accounting matches the cells really written
            held = self.ctx.cells.get(seq.request_id, self.ctx.swapped.get(seq.request_id, 0))
            assert held == seq.kv_tokens, seq.request_id
        self.history.append(Snapshot(before, plan, after))
        self.clock.t += self.dt


# -- what every plan must satisfy ---------------------------------------------
def residents_after(before: dict[str, SeqState], plan: StepPlan) -> dict[str, bool]:
    """Which requests hold a slot once the plan has been carried out."""
    resident = {rid: seq.resident for rid, seq in before.items()}
    resident.update({p.request_id: False for p in plan.preempt if p.action == "swap_out"})
    resident.update({r.request_id: True for r in plan.resume})
    resident.update({s.request_id: True for s in plan.start})
    return resident


def claim_after(seq: SeqState, plan: StepPlan, resident: bool) -> int:
    """Cells ``seq`` claims once the plan's step has run."""
    if seq.request_id in plan.scheduled:
        return seq.claim_running()
    return seq.kv_claim() if resident else 0


def blocked_by_as_urgent(
    rid: str, before: dict[str, SeqState], plan: StepPlan, config: SchedulerConfig
) -> bool:
    """Whether ``rid`` could not run even if every less urgent request vanished."""
    band = {r: priority_band(s, plan.now, config) for r, s in before.items()}
    resident = residents_after(before, plan)
    urgent = [r for r in before if r != rid and band[r] <= band[rid]]
    kv_held = sum(claim_after(before[r], plan, resident[r]) for r in urgent)
    seq = before[rid]
    if kv_held + seq.claim_running() > config.kv_budget_tokens:
        return True
    return not resident[rid] and sum(resident[r] for r in urgent) >= config.n_seq_max


def check_budgets(before: dict[str, SeqState], plan: StepPlan, config: SchedulerConfig) -> None:
    resident = residents_after(before, plan)
    assert sum(resident.values()) <= config.n_seq_max
    claimed = sum(claim_after(s, plan, resident[r]) for r, s in before.items())
    assert claimed == plan.kv_claimed <= config.kv_budget_tokens
    assert plan.n_tokens <= config.step_token_budget
    assert all(c.n_tokens >= 1 for c in plan.prefill)
    assert len(plan.decode) + len(plan.prefill) == len(plan.scheduled)
    if before:
        assert plan.scheduled, "live work but nothing scheduled"


def behind_a_blocked_head(
    rid: str, before: dict[str, SeqState], plan: StepPlan, config: SchedulerConfig
) -> bool:
    """Whether ``rid`` waits behind a more urgent request that cannot start.

    The policy does not let later requests start past the head of the
    queue (a large prompt is not overtaken for ever), so that is a reason.
    """
    rank = {r: rank_key(s, plan.now, config) for r, s in before.items()}
    return any(
        b.reason in (WaitReason.NO_SLOT, WaitReason.NO_KV)
        and not before[b.request_id].resident
        and rank[b.request_id] < rank[rid]
        for b in plan.blocked
    )


def check_priorities(before: dict[str, SeqState], plan: StepPlan, config: SchedulerConfig) -> None:
    """Work ran beside a more urgent request only if that one was truly blocked.

    Blocked means: what it needs is held by work at least as urgent as it,
    or it is queued behind a more urgent request that cannot start. While
    interactive-band work is live, the yielding class never runs.
    """
    band = {r: priority_band(s, plan.now, config) for r, s in before.items()}
    ran = [band[r] for r in plan.scheduled]
    if config.yield_class is not None and any(b <= INT for b in band.values()):
        assert all(b < config.yield_class for b in ran), "background ran beside interactive"
    for blocked in plan.blocked:
        rid = blocked.request_id
        if any(b > band[rid] for b in ran):
            behind = blocked.reason is WaitReason.BEHIND
            assert blocked_by_as_urgent(rid, before, plan, config) or (
                behind and behind_a_blocked_head(rid, before, plan, config)
            ), blocked


def check_slot_order(before: dict[str, SeqState], plan: StepPlan, config: SchedulerConfig) -> None:
    """Slots go out in rank order: none to a request ranked below one left without."""
    rank = {r: rank_key(s, plan.now, config) for r, s in before.items()}
    resident = residents_after(before, plan)
    left_out = [rank[r] for r in before if not resident[r]]
    granted = [s.request_id for s in plan.start]
    granted += [r.request_id for r in plan.resume if r.action == "swap_in"]
    for rid in granted:
        assert all(rank[rid] < other for other in left_out), rid


def check_consistent(before: dict[str, SeqState], plan: StepPlan) -> None:
    """Each instruction fits the state of the request it names."""
    for d in plan.decode:
        assert not before[d.request_id].in_prefill
    for c in plan.prefill:
        seq = before[c.request_id]
        assert c.start == seq.prompt_done
        assert c.completes_prompt == (c.start + c.n_tokens == seq.request.prompt_tokens)
    assert all(before[s.request_id].state is RequestState.WAITING for s in plan.start)
    for r in plan.resume:
        seq = before[r.request_id]
        assert seq.state is RequestState.PREEMPTED
        assert (r.action == "swap_in") == (not seq.resident)
    assert all(before[p.request_id].slot == p.slot for p in plan.preempt)
    assert {b.request_id for b in plan.blocked} == set(before) - plan.scheduled


# -- the pure policy over random states -------------------------------------------
configs = st.builds(
    lambda n, extra, kv, queue, rate, yield_on: SchedulerConfig(
        n_seq_max=n,
        step_token_budget=n + extra,
        kv_budget_tokens=kv,
        max_queue=queue,
        aging_rate=rate,
        deadline_horizon_s=0.5,
        yield_class=BG if yield_on else None,
    ),
    st.integers(1, 4),
    st.integers(0, 24),
    st.integers(24, 120),
    st.integers(1, 8),
    st.sampled_from([0.0, 0.5, 2.0]),
    st.booleans(),
)
PHASES = ["waiting", "prefilling", "decoding", "kept", "swapped"]


@st.composite
def seq_states(draw: st.DrawFn, config: SchedulerConfig, index: int) -> SeqState:
    """One request in any phase of its life; residency is settled by the caller."""
    prompt, max_tokens = draw(st.integers(1, 40)), draw(st.integers(2, 24))
    deadline = draw(st.one_of(st.none(), st.floats(-1.0, 3.0)))
    waited = draw(st.floats(0.0, 5.0))
    request = req(
        f"r{index}",
        draw(st.sampled_from(list(Priority))),
        prompt,
        max_tokens,
        arrival=NOW - waited - draw(st.floats(0.0, 5.0)),
        deadline=None if deadline is None else NOW + deadline,
    )
    phase = draw(st.sampled_from(PHASES))
    if phase == "waiting":
        return SeqState.waiting(request)
    done = draw(st.integers(1, prompt))
    generated = draw(st.integers(1, max_tokens - 1)) if done == prompt else 0
    running = phase in ("prefilling", "decoding")
    state = RequestState.PREEMPTED
    if running:
        state = RequestState.PREFILLING if done < prompt else RequestState.DECODING
    return SeqState(
        request,
        state,
        prompt_done=done,
        generated=generated,
        swapped=phase == "swapped",
        waited_s=waited if running else 0.0,
        waiting_since=None if running else NOW - waited,
    )


@st.composite
def live_mixes(draw: st.DrawFn) -> tuple[SchedulerConfig, list[SeqState]]:
    """A config and a consistent set of live requests: slots and KV within budget."""
    config = draw(configs)
    seqs, kv_free = [], config.kv_budget_tokens
    free_slots = list(range(config.n_seq_max))
    for index in range(draw(st.integers(0, 8))):
        seq = draw(seq_states(config, index))
        if seq.request.max_kv_tokens > config.kv_budget_tokens:
            continue  # admission would have refused it
        if seq.state is not RequestState.WAITING and not seq.swapped:
            if free_slots and seq.request.prompt_tokens <= kv_free:
                seq.slot = free_slots.pop(draw(st.integers(0, len(free_slots) - 1)))
                kv_free -= seq.kv_claim()
            else:  # no room: it was swapped out
                seq.state, seq.swapped = RequestState.PREEMPTED, True
                seq.waiting_since = seq.waiting_since or NOW
        seqs.append(seq)
    return config, seqs


@settings(max_examples=200, deadline=None)
@given(live_mixes())
def test_plan_step_over_random_mixes(mix: tuple[SchedulerConfig, list[SeqState]]) -> None:
    config, seqs = mix
    copies = [replace(s) for s in seqs]

    plan = plan_step(NOW, seqs, config)

    assert seqs == copies, "plan_step changed its input"
    before = {s.request_id: s for s in seqs}
    check_consistent(before, plan)
    check_budgets(before, plan, config)
    check_priorities(before, plan, config)
    check_slot_order(before, plan, config)


# -- the Scheduler over random runs ------------------------------------------------
adds = st.tuples(
    st.just("add"),
    st.sampled_from(list(Priority)),
    st.integers(1, 40),
    st.integers(1, 24),
    st.one_of(st.none(), st.floats(-1.0, 3.0)),
)
acts = st.tuples(st.sampled_from(["cancel", "stop", "error"]), st.integers(0, 7))
steps = st.lists(st.lists(st.one_of(adds, adds, acts), max_size=3), min_size=5, max_size=40)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def drive(config: SchedulerConfig, script: list[list[tuple[object, ...]]]) -> Driver:
    driver = Driver(config)
    for actions in script:
        for action in actions:
            if action[0] == "add":
                _, prio, prompt, max_tokens, deadline = action
                driver.add(prio, prompt, max_tokens, deadline)  # type: ignore[arg-type]
            else:
                driver.act(action[0], action[1])  # type: ignore[arg-type]
        driver.step()
    return driver


@FAST
@given(configs, steps)
def test_scheduler_runs_keep_budgets_and_order(
    config: SchedulerConfig,
    script: list[list[tuple[object, ...]]],
) -> None:
    driver = drive(config, script)  # FakeContext checks slots and real KV cells each step

    for snap in driver.history:
        slots = [s.slot for s in snap.after.values() if s.slot is not None]
        assert len(slots) == len(set(slots)) <= config.n_seq_max
        check_consistent(snap.before, snap.plan)
        check_budgets(snap.before, snap.plan, config)
        check_priorities(snap.before, snap.plan, config)
        check_slot_order(snap.before, snap.plan, config)


@FAST
@given(configs, steps)
def test_life_cycles_only_go_forward(
    config: SchedulerConfig,
    script: list[list[tuple[object, ...]]],
) -> None:
    driver = drive(config, script)

    last: dict[str, RequestState] = {}
    for rid, old, new in driver.events:
        assert last.get(rid, RequestState.WAITING) is old
        assert new in TRANSITIONS[old]
        assert new >= old or (old is RequestState.PREEMPTED and new.is_running)
        last[rid] = new
    progress: dict[str, tuple[int, int]] = {}
    for snap in driver.history:
        for rid, seq in snap.after.items():
            assert (seq.prompt_done, seq.generated) >= progress.get(rid, (0, 0))
            progress[rid] = (seq.prompt_done, seq.generated)
    assert set(driver.done_at) == {r for r, s in last.items() if s.is_finished}
    assert not {s.request_id for s in driver.sched.live()} & set(driver.done_at)


# -- no starvation ----------------------------------------------------------
STARVE_CFG = SchedulerConfig(
    n_seq_max=2,
    step_token_budget=12,
    kv_budget_tokens=80,
    max_queue=64,
    aging_rate=1.0,
    deadline_horizon_s=0.5,
)
DT = 0.1
GAP = 15  # steps between arrivals: below capacity, so the queue stays bounded
MAX_PROMPT, MAX_NEW = 40, 16


def starvation_bound(config: SchedulerConfig) -> int:
    """Steps within which any request finishes under the arrival rates used here.

    A request ages one class per 1/aging_rate seconds; after climbing from
    background past a deadline-promoted interactive newcomer (four
    classes) it outranks every request that arrived after it. It then
    waits at most for the work already ahead of it: requests that arrived
    in that window, one every GAP steps, each finishing within its own
    service time (a whole prompt in budget-sized chunks plus its tokens),
    served in the worst case one at a time.
    """
    climb = math.ceil(4 / (config.aging_rate * DT))
    service = math.ceil(MAX_PROMPT / (config.step_token_budget - config.n_seq_max + 1)) + MAX_NEW
    ahead = math.ceil(climb / GAP) + config.n_seq_max
    return climb + (ahead + 1) * service


def drain(driver: Driver, bound: int) -> None:
    for _ in range(bound):
        if not len(driver.sched):
            return
        driver.step()


def assert_all_finished_within(driver: Driver, bound: int) -> None:
    assert set(driver.done_at) == set(driver.added_at), "a request never finished"
    waits = {r: driver.done_at[r] - driver.added_at[r] for r in driver.added_at}
    assert max(waits.values()) <= bound, waits


arrivals = st.lists(
    st.tuples(
        st.integers(GAP, 2 * GAP),
        st.sampled_from(list(Priority)),
        st.integers(1, MAX_PROMPT),
        st.integers(1, MAX_NEW),
        st.one_of(st.none(), st.floats(0.0, 3.0)),
    ),
    min_size=1,
    max_size=16,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrivals)
def test_nothing_starves_under_a_bounded_arrival_rate(
    plan: list[tuple[int, Priority, int, int, float | None]],
) -> None:
    driver = Driver(STARVE_CFG, dt=DT)
    for gap, prio, prompt, max_tokens, deadline in plan:
        driver.add(prio, prompt, max_tokens, deadline)
        for _ in range(gap):
            driver.step()
    bound = starvation_bound(STARVE_CFG)
    drain(driver, bound)

    assert len(driver.added_at) == len(plan)
    assert_all_finished_within(driver, bound)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(8, 14),
    st.lists(st.integers(0, 100), min_size=12, max_size=12),
    st.integers(1, MAX_PROMPT),
    st.integers(1, MAX_NEW),
)
def test_background_finishes_under_a_continuous_interactive_stream(
    gap: int, lengths: list[int], prompt: int, max_tokens: int
) -> None:
    """Interactive work is live at every step, yet the background request ages and runs.

    Each interactive request lives from gap + 1 to 2 * gap - 2 steps, so one
    is always live and never more than two: within capacity, and without
    aging the background request would yield for ever.
    """
    driver = Driver(STARVE_CFG, dt=DT)
    driver.add(BG, prompt, max_tokens, None)
    for pick in lengths:
        driver.add(INT, 4, gap + 1 + pick % (gap - 2), None)
        for _ in range(gap):
            driver.step()
    bound = starvation_bound(STARVE_CFG)
    drain(driver, bound)

    assert_all_finished_within(driver, bound)
