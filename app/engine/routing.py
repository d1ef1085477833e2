"""Which engine serves a request: the local one, or a remote endpoint.

Placement policy as a pure function (``choose_backend``) and a small
``RoutingEngine`` that applies it: the owner can send a priority class or
an agent to a remote OpenAI-compatible server (how a user outgrows the
laptop), and a request whose local model cannot load degrades to the
remote endpoint instead of failing. Both sides implement the same
:class:`~app.engine.interface.Engine` protocol.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from app.engine.errors import ModelLoadError
from app.engine.interface import Engine
from app.engine.types import Chunk, GenerateRequest, Priority

log = logging.getLogger("soloist.engine.routing")


class Backend(enum.StrEnum):
    LOCAL = "local"
    REMOTE = "remote"


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    """What goes to the remote endpoint; everything else runs locally."""

    remote_priorities: frozenset[Priority] = frozenset()
    remote_agents: frozenset[str] = frozenset()
    fallback_to_remote: bool = True  # when the local model cannot be loaded


def choose_backend(request: GenerateRequest, policy: RoutePolicy, *, has_remote: bool) -> Backend:
    """Where ``request`` runs first (pure)."""
    if not has_remote:
        return Backend.LOCAL
    if request.priority in policy.remote_priorities or request.agent_id in policy.remote_agents:
        return Backend.REMOTE
    return Backend.LOCAL


@dataclass(frozen=True, slots=True)
class FallbackEvent:
    """A request left the local model for the remote endpoint."""

    request_id: str
    error: str


@dataclass
class RoutingEngine:
    """An Engine that sends each request to the local or the remote engine."""

    local: Engine
    remote: Engine | None = None
    policy: RoutePolicy = field(default_factory=RoutePolicy)
    events: deque[FallbackEvent] = field(default_factory=lambda: deque(maxlen=256))

    def generate(self, request: GenerateRequest) -> Iterator[Chunk]:
        backend = choose_backend(request, self.policy, has_remote=self.remote is not None)
        if backend is Backend.REMOTE and self.remote is not None:
            return self.remote.generate(request)
        if self.remote is not None and self.policy.fallback_to_remote:
            return self._local_then_remote(request, self.remote)
        return self.local.generate(request)

    def _local_then_remote(self, request: GenerateRequest, remote: Engine) -> Iterator[Chunk]:
        stream = self.local.generate(request)
        try:
            first = next(stream)
        except ModelLoadError as exc:
            self.events.append(FallbackEvent(request.request_id, type(exc).__name__))
            log.warning(
                "request %s: local model failed (%s); using the remote endpoint",
                request.request_id,
                type(exc).__name__,
            )
            yield from remote.generate(request)
            return
        yield first
        yield from stream

    def cancel(self, request_id: str) -> bool:
        cancelled = self.local.cancel(request_id)
        if self.remote is not None:
            cancelled = self.remote.cancel(request_id) or cancelled
        return cancelled

    def close(self) -> None:
        self.local.close()
        if self.remote is not None:
            self.remote.close()
