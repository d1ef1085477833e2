"""What every connector is: an account, a connection test, tools and actions.

A connector class registers itself with :func:`register`; the UI, the agents
and the PyInstaller spec read :func:`connector_classes` rather than a list of
their own.

Tools come in two kinds:

- :class:`Tool`: read-only (search mail, list events, look up an order). An
  agent's call runs directly.
- :class:`Action`: a side effect (send mail, create an event, refund). An
  agent's call is first *prepared*: arguments are checked, everything that
  must not change between approval and execution is fixed (the Message-ID of
  a mail, the UID of an event, an idempotency key) and a preview is written.
  The outbox (``app.agents``) keeps the :class:`PreparedAction`, waits for
  the owner's approval unless the agent has autonomy, then calls
  ``execute`` once. After a crash it calls ``reconcile``, which looks at the
  external system and says whether the effect already happened, so nothing
  runs twice.

Arguments and payloads are JSON values, so they can be stored, shown to the
owner exactly, edited and sent across processes.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, ClassVar, Protocol, TypeVar

from app.integrations.errors import ConnectorAuthError, ConnectorConfigError
from app.secrets import SecretNotFoundError, SecretRef, SecretStore

if TYPE_CHECKING:
    from app.memory.db import Database
    from app.memory.provenance import Provenance

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]
JsonObject = dict[str, JsonValue]


class Risk(IntEnum):
    """How much an action can hurt if it is wrong; the order means something."""

    LOW = 1  # reversible and private: save a draft, add a CRM note
    MEDIUM = 2  # seen by others but correctable: send a mail, create an event
    HIGH = 3  # money or destruction: refund, cancel an order, delete


@dataclass(frozen=True, slots=True)
class Account:
    """One configured connection: non-secret settings plus names of secrets.

    ``config`` holds host, port, user name, URLs... never a password or
    token; those live in the keyring under :meth:`secret_ref`.
    """

    id: str
    kind: str
    name: str
    config: Mapping[str, JsonValue] = field(default_factory=dict)

    def secret_ref(self, field_name: str = "password") -> SecretRef:
        """The keyring key of one secret of this account, e.g. ``email:work:password``."""
        return SecretRef(f"{self.kind}:{self.id}:{field_name}")

    def setting(self, key: str, default: JsonValue = None) -> JsonValue:
        return self.config.get(key, default)

    def __repr__(self) -> str:
        return f"Account(id={self.id!r}, kind={self.kind!r}, name={self.name!r})"


@dataclass(frozen=True, slots=True)
class ConnectionReport:
    """The result of ``test_connection()``: what worked, in a few words each."""

    ok: bool
    summary: str
    details: tuple[str, ...] = ()
    elapsed_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class ConnectorEvent:
    """Something that happened on an account (new mail, a changed event...).

    ``kind`` is dotted (``mail.received``); ``data`` holds ids and counts, not
    the text of a message: whoever wants the text reads it from the store.
    """

    kind: str
    account_id: str
    data: Mapping[str, JsonValue] = field(default_factory=dict)


EventSink = Callable[[ConnectorEvent], None]


class MemorySink(Protocol):
    """Where connectors write what the office should remember (``MemoryService``)."""

    def remember(
        self,
        text: str,
        kind: str = ...,
        scope: str = ...,
        provenance: Provenance | None = ...,
        metadata: dict[str, JsonValue] | None = ...,
    ) -> object: ...


@dataclass
class ConnectorContext:
    """What a connector is given: the database, the keyring and where to report."""

    db: Database
    secrets: SecretStore
    emit: EventSink = field(default=lambda event: None)
    memory: MemorySink | None = None
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True, slots=True)
class Tool:
    """A read-only tool an agent may call directly."""

    name: str  # dotted: "email.search"
    description: str
    parameters: JsonObject  # a JSON schema of type object
    run: Callable[[JsonObject], JsonValue]


@dataclass(frozen=True, slots=True)
class PreparedAction:
    """A side effect ready to be approved: the exact payload and how it reads.

    ``payload`` is what ``execute`` will send, nothing more; the owner sees
    ``preview`` and may edit the payload (which is then prepared again).
    ``idempotency_key`` is fixed here and used by ``execute`` and
    ``reconcile`` (the Message-ID of a mail, the UID of an event...).
    """

    action: str
    account_id: str
    payload: JsonObject
    preview: str
    risk: Risk
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    """What an executed (or reconciled) action did, in ids a user can follow."""

    done: bool
    summary: str
    external_id: str | None = None
    data: JsonObject = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Action:
    """A tool with a side effect; see the module docstring for its life cycle."""

    name: str
    description: str
    parameters: JsonObject
    risk: Risk
    prepare: Callable[[JsonObject], PreparedAction]
    execute: Callable[[PreparedAction], ActionOutcome]
    # None: the effect is not there (safe to execute); an outcome: it already happened.
    reconcile: Callable[[PreparedAction], ActionOutcome | None]


class Connector(ABC):
    """One account of one kind of service. Subclasses set ``kind`` and register."""

    kind: ClassVar[str]
    display_name: ClassVar[str]
    # The settings a user fills in to add an account: key -> description.
    settings_schema: ClassVar[Mapping[str, str]] = {}
    secret_fields: ClassVar[tuple[str, ...]] = ("password",)

    def __init__(self, account: Account, context: ConnectorContext) -> None:
        if account.kind != self.kind:
            raise ValueError(f"a {self.kind} connector was given a {account.kind} account")
        self.account = account
        self.context = context

    @abstractmethod
    def test_connection(self) -> ConnectionReport:
        """Connect, authenticate and read one small thing; never raises a ConnectorError."""

    def tools(self) -> Sequence[Tool]:
        return ()

    def actions(self) -> Sequence[Action]:
        return ()

    def close(self) -> None:  # noqa: B027  (most connectors hold nothing open)
        """Release connections; the connector may be used again afterwards."""

    def secret(self, field_name: str = "password") -> str:
        """A secret of this account from the keyring (``ConnectorAuthError`` if none)."""
        try:
            return self.context.secrets.get(self.account.secret_ref(field_name))
        except SecretNotFoundError as exc:
            raise ConnectorAuthError(
                f"no {field_name} is stored for {self.account.name}; enter it again in Connections"
            ) from exc

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.account!r})"


_REGISTRY: dict[str, type[Connector]] = {}
C = TypeVar("C", bound=type[Connector])


def register(cls: C) -> C:
    """Class decorator: make a connector kind known to the office, the UI and the bundle."""
    kind = cls.kind
    existing = _REGISTRY.get(kind)
    if existing is not None and existing is not cls:
        raise ValueError(f"connector kind {kind!r} registered twice ({existing.__name__})")
    _REGISTRY[kind] = cls
    return cls


def connector_classes() -> dict[str, type[Connector]]:
    """Every registered connector kind (importing ``app.integrations.catalog`` fills it)."""
    return dict(_REGISTRY)


def connector_class(kind: str) -> type[Connector]:
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise ConnectorConfigError(f"unknown connector kind {kind!r}") from None
