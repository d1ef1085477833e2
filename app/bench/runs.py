"""What one measured generation produced, the same shape for both sides."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from app.engine.metrics import summarise


class BenchError(Exception):
    """A measured run did not do what it was asked (an engine error, a lost stream)."""


@dataclass(frozen=True, slots=True)
class StreamRun:
    """One stream's tokens and times, in seconds.

    ``ttft_s`` runs from the start of its prefill to its first token;
    ``queue_s`` is what it waited before that (always 0 on the raw side);
    ``wall_s`` is the caller's view, from submitting to the last chunk.
    ``marks`` are (``perf_counter()``, tokens so far) pairs as tokens came
    out: every token on the raw side, every chunk on the engine side.
    """

    tokens: int
    ttft_s: float
    total_s: float
    queue_s: float = 0.0
    wall_s: float = 0.0
    first_chunk_s: float | None = None  # caller side: submit to first text chunk
    finish: str = "length"
    preemptions: int = 0
    prompt_tokens: int = 0
    marks: tuple[tuple[float, int], ...] = field(default=(), repr=False)

    @property
    def decode_tok_s(self) -> float:
        """Tokens after the first over the time after the first (as ``Timings``)."""
        decode_s = self.total_s - self.ttft_s
        if self.tokens <= 1 or decode_s <= 0:
            return 0.0
        return (self.tokens - 1) / decode_s

    @property
    def submit_to_first_token_s(self) -> float:
        return self.queue_s + self.ttft_s

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["marks"]  # hundreds of pairs; the figures below sum them up
        data["decode_tok_s"] = self.decode_tok_s
        return data

    def tokens_at(self, when: float) -> int:
        """Tokens this stream had produced by ``when`` (a ``perf_counter()`` time)."""
        done = 0
        for at, n in self.marks:
            if at > when:
                break
            done = n
        return done


@dataclass(frozen=True, slots=True)
class BatchRun:
    """Several streams run together: each stream, and the wall time of all."""

    streams: tuple[StreamRun, ...]
    wall_s: float

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self.streams)

    @property
    def aggregate_tok_s(self) -> float:
        return self.tokens / self.wall_s if self.wall_s > 0 else 0.0

    def decode_phase(self) -> tuple[int, float]:
        """Tokens and seconds from when every stream had its first token to the end.

        The steady state with every stream decoding; (0, 0.0) without marks.
        """
        if not self.streams or not all(s.marks for s in self.streams):
            return 0, 0.0
        start = max(s.marks[0][0] for s in self.streams)
        end = max(s.marks[-1][0] for s in self.streams)
        tokens = sum(s.tokens - s.tokens_at(start) for s in self.streams)
        return tokens, end - start

    @property
    def decode_phase_tok_s(self) -> float:
        tokens, seconds = self.decode_phase()
        return tokens / seconds if seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        tokens, seconds = self.decode_phase()
        return {
            "wall_s": self.wall_s,
            "tokens": self.tokens,
            "aggregate_tok_s": self.aggregate_tok_s,
            "decode_phase_tokens": tokens,
            "decode_phase_s": seconds,
            "decode_phase_tok_s": self.decode_phase_tok_s,
            "streams": [s.to_dict() for s in self.streams],
        }


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """Nearest-rank p50/p95 (as the engine's metrics), with min, max and count."""
    if not values:
        return {"p50": 0.0, "p95": 0.0, "min": 0.0, "max": 0.0, "count": 0}
    summary = summarise(values)
    return {
        "p50": summary["p50"],
        "p95": summary["p95"],
        "min": min(values),
        "max": max(values),
        "count": len(values),
    }


def ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if numerator > 0 and denominator > 0 else None
