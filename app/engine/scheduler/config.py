"""The knobs of the scheduling policy, checked once when made."""

from __future__ import annotations

from dataclasses import dataclass

from app.engine.types import Priority


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """Limits of one llama.cpp context and how urgency changes with time.

    - ``n_seq_max``: sequence slots in the context (llama.cpp ``n_seq_max``).
    - ``step_token_budget``: tokens one batch may carry. At least
      ``n_seq_max`` so that every active sequence can always make one token
      of progress; the most urgent prefill is then guaranteed at least
      ``step_token_budget - n_seq_max + 1`` tokens per step.
    - ``kv_budget_tokens``: KV cells shared by the resident sequences.
    - ``max_queue``: admitted requests that may wait to start; past it new
      ones are refused.
    - ``aging_rate``: classes of urgency gained per second spent waiting
      (1/30: a background request that waited 60 s ranks as a new
      interactive one), so nothing starves.
    - ``deadline_horizon_s``: a request this close to (or past) its
      deadline counts one class more urgent.
    - ``yield_class``: while interactive-class work is live, sequences of
      this class or less urgent pause (at the next token boundary) so the
      owner's request gets the device; None turns that off, leaving
      preemption to slot and KV pressure only.
    """

    n_seq_max: int = 4
    step_token_budget: int = 512
    kv_budget_tokens: int = 8192
    max_queue: int = 64
    aging_rate: float = 1 / 30
    deadline_horizon_s: float = 5.0
    yield_class: Priority | None = Priority.BACKGROUND

    def __post_init__(self) -> None:
        problems = [
            msg
            for bad, msg in (
                (self.n_seq_max < 1, "n_seq_max must be at least 1"),
                (
                    self.step_token_budget < self.n_seq_max,
                    "step_token_budget must be at least n_seq_max "
                    "(every active sequence needs one token per step)",
                ),
                (self.kv_budget_tokens < 1, "kv_budget_tokens must be at least 1"),
                (self.max_queue < 1, "max_queue must be at least 1"),
                (self.aging_rate < 0, "aging_rate must not be negative"),
                (self.deadline_horizon_s < 0, "deadline_horizon_s must not be negative"),
            )
            if bad
        ]
        if problems:
            raise ValueError("; ".join(problems))
