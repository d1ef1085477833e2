"""Errors of the scheduler.

::

    SchedulerError                 anything the scheduler raises
    ├── InvalidTransitionError     a request state change the life cycle forbids
    └── UnknownRequestError        an id the scheduler does not hold

Both are bugs in the caller (the engine loop), not conditions a user can
fix: work the scheduler will not take is *refused* through a typed
``AdmissionDecision``, never raised.
"""

from __future__ import annotations


class SchedulerError(Exception):
    """Base of every error the scheduler raises."""


class InvalidTransitionError(SchedulerError):
    """A request was asked to move along an edge the life cycle forbids."""


class UnknownRequestError(SchedulerError, KeyError):
    """The request id is not live in the scheduler."""
