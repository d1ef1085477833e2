"""Multi-sequence scheduling for one llama.cpp context: the policy only.

Pure decisions (``admit``, ``plan_step``, ``effective_priority``) over plain
state (``SeqState``), a plain decision (``StepPlan``) for the mechanism to
carry out, and ``Scheduler``, the bookkeeping that ties them together. How
a batch is decoded or KV is swapped is the mechanism's business, not this
package's; nothing here imports llama.cpp or starts a thread.
"""

from __future__ import annotations

from app.engine.scheduler.admission import Admission, AdmissionDecision, admit
from app.engine.scheduler.config import SchedulerConfig
from app.engine.scheduler.errors import (
    InvalidTransitionError,
    SchedulerError,
    UnknownRequestError,
)
from app.engine.scheduler.plan import (
    Blocked,
    Decode,
    PreemptAction,
    Preemption,
    PrefillChunk,
    Release,
    Resume,
    ResumeAction,
    Start,
    StepPlan,
    WaitReason,
)
from app.engine.scheduler.policy import plan_step
from app.engine.scheduler.priority import (
    deadline_urgency,
    effective_priority,
    priority_band,
    rank_key,
)
from app.engine.scheduler.scheduler import Scheduler, TransitionListener
from app.engine.scheduler.state import (
    FINISHED_STATES,
    TRANSITIONS,
    RequestState,
    SchedRequest,
    SeqState,
    check_transition,
)

__all__ = [
    "FINISHED_STATES",
    "TRANSITIONS",
    "Admission",
    "AdmissionDecision",
    "Blocked",
    "Decode",
    "InvalidTransitionError",
    "PreemptAction",
    "Preemption",
    "PrefillChunk",
    "Release",
    "RequestState",
    "Resume",
    "ResumeAction",
    "SchedRequest",
    "Scheduler",
    "SchedulerConfig",
    "SchedulerError",
    "SeqState",
    "Start",
    "StepPlan",
    "TransitionListener",
    "UnknownRequestError",
    "WaitReason",
    "admit",
    "check_transition",
    "deadline_urgency",
    "effective_priority",
    "plan_step",
    "priority_band",
    "rank_key",
]
