"""Per-request metrics in a fixed-size ring buffer, and queries over it.

The engine writes one :class:`RequestRecord` when a request finishes, from
whichever thread finished it; the office reads summaries for the UI and
persists the records. The buffer has a fixed capacity so a long-running
engine holds bounded memory: the oldest records fall out first, and the
office is expected to have persisted them by then.

Percentiles use the **nearest-rank** method: the p-th percentile of ``n``
sorted values is the value at rank ``ceil(p / 100 * n)``. It always returns
a value that was observed (no invented latencies between two samples) and
is well defined for tiny samples: with one sample, every percentile is it.

Everything a query returns is builtins only (str, int, float, None, dicts,
lists, tuples as keys), so it can cross a process boundary unchanged.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, TypedDict

from app.engine.types import FinishReason, GenerateRequest, Timings

log = logging.getLogger("soloist.engine.metrics")

DEFAULT_CAPACITY = 10_000
PERCENTILES = (50, 95, 99)


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """What one finished request cost and how it went; no prompt text.

    Durations are seconds; ``at`` is when it finished, in seconds on the
    clock the caller uses for ``since`` (wall time, so records persisted by
    the office stay comparable across restarts). ``None`` means "did not
    happen": a request that failed before its first token has no TTFT.
    """

    request_id: str
    model: str
    priority: str  # "interactive" | "standard" | "background"
    agent_id: str
    queue_wait_s: float
    time_to_first_token_s: float | None
    tokens_per_s: float | None
    prompt_tokens: int
    completion_tokens: int
    preemptions: int
    snapshot_bytes: int
    finish_reason: str
    at: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


FIELDS = frozenset(f.name for f in fields(RequestRecord))
NUMERIC_FIELDS = frozenset(
    {
        "queue_wait_s",
        "time_to_first_token_s",
        "tokens_per_s",
        "prompt_tokens",
        "completion_tokens",
        "preemptions",
        "snapshot_bytes",
    }
)


class Summary(TypedDict):
    """Percentiles of one group; ``count`` is how many values they summarise."""

    p50: float
    p95: float
    p99: float
    count: int


def record_from(
    request: GenerateRequest,
    timings: Timings | None,
    finish_reason: FinishReason,
    *,
    at: float,
    model: str | None = None,
    preemptions: int = 0,
    snapshot_bytes: int = 0,
) -> RequestRecord:
    """The record of a finished request, from what its final chunk carries."""
    produced = timings.completion_tokens if timings else 0
    return RequestRecord(
        request_id=request.request_id,
        model=model if model is not None else request.model_path,
        priority=request.priority.name.lower(),
        agent_id=request.agent_id,
        queue_wait_s=timings.queue_s if timings else 0.0,
        time_to_first_token_s=timings.time_to_first_token_s if timings and produced else None,
        tokens_per_s=timings.tokens_per_s if timings and produced > 1 else None,
        prompt_tokens=timings.prompt_tokens if timings else 0,
        completion_tokens=produced,
        preemptions=preemptions,
        snapshot_bytes=snapshot_bytes,
        finish_reason=str(finish_reason),
        at=at,
    )


def nearest_rank(sorted_values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0 < p <= 100) of ascending, non-empty values."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def summarise(values: Iterable[float]) -> Summary:
    """p50, p95, p99 and count of ``values`` (which must not be empty)."""
    ordered = sorted(values)
    p50, p95, p99 = (float(nearest_rank(ordered, p)) for p in PERCENTILES)
    return Summary(p50=p50, p95=p95, p99=p99, count=len(ordered))


def _check_names(field: str, by: Sequence[str]) -> None:
    if field not in NUMERIC_FIELDS:
        raise ValueError(f"{field!r} is not a numeric metric; one of {sorted(NUMERIC_FIELDS)}")
    unknown = [name for name in by if name not in FIELDS]
    if unknown:
        raise ValueError(f"cannot group by {unknown}: not fields of a request record")


class MetricsRing:
    """A thread-safe ring of the last ``capacity`` request records."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self.capacity = capacity
        self._records: deque[RequestRecord] = deque(maxlen=capacity)
        self._lock = threading.Lock()
        self._dropped = 0

    def add(self, record: RequestRecord) -> None:
        """Append ``record``; the oldest one falls out when the ring is full."""
        with self._lock:
            if len(self._records) == self.capacity:
                self._dropped += 1
            self._records.append(record)

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    @property
    def dropped(self) -> int:
        """How many records fell out of the ring since it was made."""
        with self._lock:
            return self._dropped

    def _copy(self, since: float | None = None) -> list[RequestRecord]:
        """The records, oldest first, copied under the lock (writers keep going)."""
        with self._lock:
            records = list(self._records)
        return records if since is None else [r for r in records if r.at >= since]

    def recent(self, n: int) -> list[dict[str, Any]]:
        """The last ``n`` records as plain dicts, oldest first."""
        return [r.to_dict() for r in self._copy()[-n:]] if n > 0 else []

    def snapshot(self) -> list[dict[str, Any]]:
        """Every record in the ring as plain dicts, oldest first."""
        return [r.to_dict() for r in self._copy()]

    def percentiles(
        self,
        field: str,
        by: Sequence[str] = ("model", "priority"),
        since: float | None = None,
    ) -> dict[tuple[Any, ...], Summary]:
        """Nearest-rank p50/p95/p99 of ``field`` per group of the ``by`` fields.

        Groups are keyed by the tuple of their ``by`` values (``()`` for
        ``by=()``: one group of everything). Only records with ``at >=
        since`` count, and a record whose ``field`` is ``None`` does not
        count at all; a group with no values is left out.
        """
        _check_names(field, by)
        groups: dict[tuple[Any, ...], list[float]] = {}
        for record in self._copy(since):
            value = getattr(record, field)
            if value is not None:
                key = tuple(getattr(record, name) for name in by)
                groups.setdefault(key, []).append(value)
        return {key: summarise(values) for key, values in groups.items()}
