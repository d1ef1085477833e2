"""Errors raised by the agents' runtime, the approvals and the outbox.

::

    AgentError                      anything the agents' runtime reports
    ├── ActionNotFoundError         no action with that id in the outbox
    ├── ActionNotAllowedError       the action may not do that now (its state or a policy)
    │   └── IllegalTransitionError  a life-cycle change the transition table does not allow
    ├── ApprovalError               an approval, edit or rejection cannot be recorded
    │   └── StaleApprovalError      the payload's content hash changed since it was approved
    └── NotOwnerError               the owner's authority was asked for and not given

Every error is a *known* error: ``str(err)`` is one line a user can read that
names ids and states, never the text of a payload, an email or a secret.
Errors from lower layers (``ConnectorError``, ``QueryError``) are caught at
the outbox's boundary and recorded on the action, or mapped with ``from exc``.
"""

from __future__ import annotations


class AgentError(Exception):
    """Base of every error the agents' runtime raises."""


class ActionNotFoundError(AgentError):
    """The outbox holds no action with that id."""


class ActionNotAllowedError(AgentError):
    """The action may not do that in its current state, or a policy forbids it."""


class IllegalTransitionError(ActionNotAllowedError):
    """A state change that the life-cycle table does not allow."""


class ApprovalError(AgentError):
    """An approval, an edit or a rejection cannot be recorded."""


class StaleApprovalError(ApprovalError):
    """What would run is not what was approved (the content hash changed)."""


class NotOwnerError(AgentError):
    """Only the owner, through the UI or the CLI, may do this."""
