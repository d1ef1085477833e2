"""What the office waits on from the engine child, and the record of each request.

:class:`InFlight` holds three tables, all guarded by the supervisor's lock
(nothing here locks by itself):

- the generations in flight (queued, sent, or waiting for a restarted
  child). It answers :meth:`InFlight.queue_by_priority` for the UI, and each
  request that leaves it through :meth:`InFlight.settle` leaves a
  :class:`~app.engine.metrics.RequestRecord` in the engine's
  :class:`~app.engine.metrics.MetricsRing`, built from the final chunk the
  caller receives (its :class:`~app.engine.types.Timings`) or from the error
  it gets. So metrics need no message of their own: the chunks carry them.
- :class:`PendingEmbed`: embedding batches.
- :class:`PendingControl`: an owner's residency action (unload, pin, unpin)
  waiting for the child's ``done`` or ``error``.

A record holds the model's file name, never a prompt.
"""

from __future__ import annotations

import queue
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.engine.errors import EngineRestartedError, EngineUnavailableError
from app.engine.metrics import MetricsRing, RequestRecord, record_from
from app.engine.process import wire
from app.engine.types import Chunk, FinishReason, GenerateRequest, Priority


@dataclass(frozen=True, slots=True)
class Embeddings:
    """Vectors from the engine child's embedding model, with its name and dimension."""

    model: str
    dimension: int
    vectors: list[list[float]]


@dataclass
class PendingEmbed:
    message: dict[str, Any]
    out: queue.Queue[Embeddings | BaseException] = field(default_factory=queue.Queue)
    generation: int = -1
    attempts: int = 0


@dataclass
class PendingControl:
    """A residency action sent to the child of ``generation``; its reply arrives in ``out``."""

    generation: int
    out: queue.Queue[dict[str, Any] | BaseException] = field(default_factory=queue.Queue)

    def wait(self, timeout_s: float) -> dict[str, Any]:
        """The child's ``done`` message; its error raised."""
        try:
            reply = self.out.get(timeout=timeout_s)
        except queue.Empty:
            raise EngineUnavailableError(
                f"The engine did not answer within {timeout_s:.0f} s."
            ) from None
        if isinstance(reply, BaseException):
            raise reply
        return reply


@dataclass
class Pending:
    request: GenerateRequest
    out: queue.Queue[Chunk | BaseException] = field(default_factory=queue.Queue)
    generation: int = -1  # the child it was sent to; -1: waiting to be sent
    attempts: int = 0
    delivered: int = 0  # chunks that reached the caller
    cancelled: bool = False

    @property
    def request_id(self) -> str:
        return self.request.request_id


def record_of(request: GenerateRequest, item: Chunk | BaseException, at: float) -> RequestRecord:
    """How ``request`` went, from what its caller received last (a final chunk or an error)."""
    if isinstance(item, Chunk):
        timings, reason = item.timings, item.finish_reason or FinishReason.ERROR
    else:
        timings, reason = None, FinishReason.ERROR
    return record_from(
        request,
        timings,
        reason,
        at=at,
        model=Path(request.model_path).name,
        preemptions=timings.preemptions if timings is not None else 0,
    )


class InFlight:
    """What the office waits on from the child: generations, embeddings, residency actions.

    Generations are kept by request id; settling one records its metrics.
    Every method is called under the supervisor's lock. Items put on a
    caller's queue here never block (the queues are unbounded).
    """

    def __init__(self, metrics: MetricsRing) -> None:
        self.metrics = metrics
        self._requests: dict[str, Pending] = {}
        self.embeds: dict[str, PendingEmbed] = {}
        self.controls: dict[str, PendingControl] = {}  # unload and pin, by message id

    # -- generations -------------------------------------------------------
    def add(self, pending: Pending) -> None:
        self._requests[pending.request_id] = pending

    def get(self, request_id: str) -> Pending | None:
        return self._requests.get(request_id)

    def holds(self, pending: Pending) -> bool:
        """True while ``pending`` itself (not a later request of the same id) is in flight."""
        return self._requests.get(pending.request_id) is pending

    def values(self) -> list[Pending]:
        return list(self._requests.values())

    def sent_to(self, generation: int) -> list[Pending]:
        """The requests sent to the child of ``generation`` (-1: waiting for one)."""
        return [p for p in self._requests.values() if p.generation == generation]

    def settle(self, pending: Pending, item: Chunk | BaseException, *, put: bool = False) -> None:
        """Forget ``pending`` and record how it ended: ``item`` is what its caller gets last.

        ``put``: hand ``item`` to the caller now; else the supervisor does,
        after its lock. A request already settled is not recorded twice.
        """
        if self._requests.get(pending.request_id) is not pending:
            return
        del self._requests[pending.request_id]
        self.metrics.add(record_of(pending.request, item, time.time()))
        if put:
            pending.out.put(item)

    # -- residency actions -------------------------------------------------
    def open_control(self, generation: int) -> tuple[str, PendingControl]:
        """A new action for the child of ``generation``: its message id and its waiter."""
        control_id = uuid.uuid4().hex
        control = self.controls[control_id] = PendingControl(generation)
        return control_id, control

    def answer_control(self, generation: int, message: dict[str, Any]) -> None:
        """Hand the child's ``done`` or ``error`` to the action waiting for it."""
        control = self.controls.get(message["id"])
        if control is None or control.generation != generation:
            return  # nobody waits (a pin sent to a new child) or a stale reply
        control.out.put(message if message["t"] == "done" else wire.error_from_dict(message))

    def queue_by_priority(self) -> dict[str, int]:
        """Requests in flight (queued or running) per priority class name."""
        counts = Counter(p.request.priority.name.lower() for p in self._requests.values())
        return {cls.name.lower(): counts[cls.name.lower()] for cls in Priority}

    # -- endings in bulk ---------------------------------------------------
    def child_lost(self, generation: int, reason: str) -> tuple[int, int]:
        """Settle what the child of ``generation`` had when it died; (retried, failed).

        A request that delivered nothing and was sent once waits for the next
        child; a cancelled one ends cancelled; any other fails with
        :class:`EngineRestartedError` (its caller saw part of a reply).
        Embeddings are sent again once; residency actions fail.
        """
        retried = failed = 0
        for pending in self.sent_to(generation):
            if pending.cancelled:
                self.settle(pending, cancelled_chunk(pending), put=True)
            elif pending.delivered == 0 and pending.attempts < 2:
                pending.generation = -1  # sent again to the next child
                retried += 1
            else:
                error = EngineRestartedError(
                    f"The engine process {reason} while this request ran and was "
                    "restarted; the reply is incomplete. Try again."
                )
                self.settle(pending, error, put=True)
                failed += 1
        for control in self.controls.values():
            if control.generation == generation:
                control.out.put(EngineRestartedError(f"The engine process {reason}; try again."))
        for embed in self.embeds.values():
            if embed.generation != generation:
                continue
            if embed.attempts < 2:
                embed.generation = -1
            else:
                embed.out.put(
                    EngineRestartedError(f"The engine process {reason} twice while embedding.")
                )
        return retried, failed

    def fail_waiting(self, why: str) -> None:
        """No child could be started: fail what waits for one."""
        for pending in self.sent_to(-1):
            self.settle(
                pending, EngineUnavailableError(f"The engine is unavailable: {why}."), put=True
            )
        for embed in self.embeds.values():
            if embed.generation == -1:
                embed.out.put(EngineUnavailableError(f"The engine is unavailable: {why}."))

    def close(self) -> None:
        """The engine shuts down: generations end cancelled, the rest fail."""
        for pending in self.values():
            self.settle(pending, cancelled_chunk(pending), put=True)
        for embed in self.embeds.values():
            embed.out.put(EngineUnavailableError("The engine is shutting down."))
        for control in self.controls.values():
            control.out.put(EngineUnavailableError("The engine is shutting down."))

    def __len__(self) -> int:
        return len(self._requests)


def cancelled_chunk(pending: Pending) -> Chunk:
    return Chunk(pending.request_id, 0, finish_reason=FinishReason.CANCELLED)
