"""Plain, serialisable data that crosses the engine boundary.

Requests, chunks and results are frozen dataclasses of builtins only, so the
same values can later travel over IPC to an engine child process.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any


class Priority(enum.IntEnum):
    """Priority class of a request; a lower value is served first."""

    INTERACTIVE = 0
    STANDARD = 1
    BACKGROUND = 2


class FinishReason(enum.StrEnum):
    """Why a stream ended."""

    STOP = "stop"  # end-of-generation token or a stop string
    LENGTH = "length"  # max_tokens reached
    CANCELLED = "cancelled"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message."""

    role: str  # "system" | "user" | "assistant"
    content: str

    def __repr__(self) -> str:  # never log message text
        return f"Message(role={self.role!r}, chars={len(self.content)})"


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How the next token is chosen."""

    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    seed: int = 0xC0FFEE
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    grammar: str | None = None  # GBNF; the reply must match it
    json_schema: str | None = None  # JSON Schema text, turned into a grammar


def _new_request_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True, slots=True)
class GenerateRequest:
    """One generation: a chat to continue on one model."""

    model_path: str
    messages: tuple[Message, ...]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    priority: Priority = Priority.INTERACTIVE
    agent_id: str = "assistant"
    session_id: str = ""
    deadline_s: float | None = None  # wanted within this many seconds of submission
    # Models to fall back to, in order, when ``model_path`` cannot be loaded.
    fallback_models: tuple[str, ...] = ()
    request_id: str = field(default_factory=_new_request_id)

    def __repr__(self) -> str:  # the prompt stays out of logs
        return (
            f"GenerateRequest(id={self.request_id}, model={self.model_path!r}, "
            f"messages={len(self.messages)}, priority={self.priority.name})"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Timings:
    """Timings of one finished request, in seconds and tokens."""

    prompt_tokens: int
    completion_tokens: int
    time_to_first_token_s: float
    total_s: float
    queue_s: float = 0.0  # waiting before the engine took it (includes model load)
    preemptions: int = 0  # times it was paused for more urgent work
    cached_tokens: int = 0  # prompt tokens restored or shared instead of prefilled

    @property
    def tokens_per_s(self) -> float:
        """Decode speed: tokens after the first, over the time after the first."""
        decode_s = self.total_s - self.time_to_first_token_s
        if self.completion_tokens <= 1 or decode_s <= 0:
            return 0.0
        return (self.completion_tokens - 1) / decode_s


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of a streamed reply.

    Text chunks carry ``text``; the last chunk of every stream carries
    ``finish_reason`` and ``timings`` (and ``error`` when it failed).
    """

    request_id: str
    index: int
    text: str = ""
    finish_reason: FinishReason | None = None
    timings: Timings | None = None
    error: str | None = None

    @property
    def is_final(self) -> bool:
        return self.finish_reason is not None

    def __repr__(self) -> str:
        return (
            f"Chunk(id={self.request_id}, index={self.index}, chars={len(self.text)}, "
            f"finish={self.finish_reason})"
        )
