"""Errors of the agent runtime: definitions, life cycle, tools, budgets and the loop.

They extend the tree drawn in ``app.agents.errors`` (kept in their own
module so the runtime and the outbox can grow apart)::

    AgentError
    ├── UnknownAgentError           no agent with that id is defined
    ├── AgentStateError             a life-cycle change the agent's table does not allow
    ├── AgentBusyError              the agent is paused, or its queue is full
    ├── ToolError                   a tool could not be called
    │   ├── ToolNotAllowedError     the agent was not granted that tool
    │   ├── ToolArgumentsError      the arguments do not fit the tool's schema
    │   ├── ToolTimeoutError        a read-only tool took longer than its limit
    │   └── ToolFailedError         the tool raised (the connector's error is its cause)
    └── BudgetExceededError         a run would exceed the agent's tokens per day or runs per hour

Messages name ids, tools and numbers, never the text of a prompt, an email
or a tool's result.
"""

from __future__ import annotations

from app.agents.errors import AgentError

__all__ = [
    "AgentBusyError",
    "AgentStateError",
    "BudgetExceededError",
    "ToolArgumentsError",
    "ToolError",
    "ToolFailedError",
    "ToolNotAllowedError",
    "ToolTimeoutError",
    "UnknownAgentError",
]


class UnknownAgentError(AgentError):
    """No agent with that id is defined."""

    def __init__(self, agent_id: str) -> None:
        super().__init__(f"There is no agent {agent_id!r}; see `soloist agents list`.")
        self.agent_id = agent_id


class AgentStateError(AgentError):
    """An agent life-cycle change its transition table does not allow."""

    def __init__(self, agent_id: str, current: str, wanted: str) -> None:
        super().__init__(f"Agent {agent_id} cannot go from {current} to {wanted}.")
        self.agent_id = agent_id
        self.current = current
        self.wanted = wanted


class AgentBusyError(AgentError):
    """The agent cannot take a run now (paused, or too many waiting)."""


class ToolError(AgentError):
    """A tool could not be called."""


class ToolNotAllowedError(ToolError):
    """The agent was not granted the tool (the grammar's second lock)."""

    def __init__(self, tool: str) -> None:
        super().__init__(f"This agent may not call {tool!r}; it was not granted that tool.")
        self.tool = tool


class ToolArgumentsError(ToolError):
    """The arguments do not fit the tool's parameter schema."""


class ToolTimeoutError(ToolError):
    """A read-only tool took longer than its limit; its result is ignored."""


class ToolFailedError(ToolError):
    """The tool raised; the original error is ``__cause__``."""


class BudgetExceededError(AgentError):
    """A run would go over the agent's budget; nothing was started."""

    def __init__(self, agent_id: str, what: str, used: float, limit: float) -> None:
        super().__init__(
            f"Agent {agent_id} has used {used:g} of its {limit:g} {what}; "
            "the run was not started. Raise the budget or wait."
        )
        self.agent_id = agent_id
        self.what = what
        self.used = used
        self.limit = limit
