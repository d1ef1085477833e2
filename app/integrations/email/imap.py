"""A small IMAP client over ``imaplib``: connect safely, run commands, map errors.

``imaplib`` speaks the protocol; this wrapper decides how to connect (implicit
TLS, STARTTLS, or plain on loopback only, see :mod:`.transport`) and turns
its exceptions into the connector error tree at one place,
:meth:`ImapClient._command`:

- a ``NO``/``BAD`` to LOGIN is :class:`ConnectorAuthError`;
- ``imaplib.IMAP4.abort`` or a socket error after the connection was up is
  :class:`ConnectionLostError` (the client is then unusable and closed);
- any other ``NO``/``BAD`` is :class:`RemoteRejectedError`.

Responses are parsed by :mod:`.imap_parse`; IDLE lives in :mod:`.imap_idle`
because ``imaplib`` (3.11) has no ``idle()``.
"""

from __future__ import annotations

import imaplib
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from app.integrations.email import imap_idle, imap_parse
from app.integrations.email.imap_parse import FetchedMessage, FolderInfo, SelectedFolder
from app.integrations.email.transport import (
    Endpoint,
    Security,
    connection_lost,
    map_connect_error,
    tls_context,
)
from app.integrations.errors import (
    ConnectionLostError,
    ConnectorAuthError,
    ConnectorError,
    RemoteRejectedError,
)

log = logging.getLogger("soloist.integrations.email")

FETCH_ITEMS = "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])"


@dataclass(frozen=True, slots=True)
class ImapLogin:
    """Who logs in; ``__repr__`` hides the password."""

    username: str
    password: str

    def __repr__(self) -> str:
        return f"ImapLogin(username={self.username!r})"


class ImapClient:
    """One authenticated IMAP connection; use as a context manager or call close()."""

    def __init__(self, endpoint: Endpoint, login: ImapLogin) -> None:
        self.endpoint = endpoint
        self._login = login
        self._imap: imaplib.IMAP4 | None = None
        self._lock = threading.RLock()
        self.capabilities: frozenset[str] = frozenset()
        self.selected: SelectedFolder | None = None
        self.condstore = False

    # -- life cycle -----------------------------------------------------
    def connect(self) -> ImapClient:
        started = time.perf_counter()
        imap = self._open()
        self._imap = imap
        try:
            self._authenticate(imap)
            self.capabilities = self._read_capabilities()
            if "CONDSTORE" in self.capabilities:
                self._command("ENABLE", lambda i: i.enable("CONDSTORE"))
                self.condstore = True
        except BaseException:
            self.close()
            raise
        log.info(
            "imap connected to %s in %.0f ms (idle=%s, condstore=%s)",
            self.endpoint.describe(),
            (time.perf_counter() - started) * 1000,
            self.has_idle,
            self.condstore,
        )
        return self

    def _open(self) -> imaplib.IMAP4:
        endpoint = self.endpoint
        imap: imaplib.IMAP4 | None = None
        try:
            if endpoint.security is Security.TLS:
                return imaplib.IMAP4_SSL(
                    endpoint.host,
                    endpoint.port,
                    ssl_context=tls_context(endpoint.ca_file),
                    timeout=endpoint.timeout_s,
                )
            imap = imaplib.IMAP4(endpoint.host, endpoint.port, timeout=endpoint.timeout_s)
            if endpoint.security is Security.STARTTLS:
                self._starttls(imap)
            return imap
        except (OSError, imaplib.IMAP4.error) as exc:
            if imap is not None:
                _shutdown_quietly(imap)
            raise _map_open_error(exc, endpoint) from exc

    def _starttls(self, imap: imaplib.IMAP4) -> None:
        if "STARTTLS" not in imap.capabilities:
            raise ConnectorError(
                f"the IMAP server {self.endpoint.describe()} does not offer STARTTLS; "
                "nothing was sent. Choose tls (port 993) instead"
            )
        imap.starttls(tls_context(self.endpoint.ca_file))

    def _authenticate(self, imap: imaplib.IMAP4) -> None:
        try:
            imap.login(self._login.username, self._login.password)
        except imaplib.IMAP4.abort as exc:
            raise connection_lost("IMAP", self.endpoint, "login") from exc
        except imaplib.IMAP4.error as exc:
            raise ConnectorAuthError(
                f"the IMAP server {self.endpoint.describe()} refused the login of "
                f"{self._login.username}; check the user name and password"
            ) from exc
        except OSError as exc:
            raise connection_lost("IMAP", self.endpoint, "login") from exc

    def _read_capabilities(self) -> frozenset[str]:
        data = self._command("CAPABILITY", lambda i: i.capability())
        return imap_parse.parse_capabilities(data)

    def close(self) -> None:
        """Log out politely when possible; always release the socket."""
        with self._lock:
            imap, self._imap = self._imap, None
            self.selected = None
        if imap is None:
            return
        try:
            imap.logout()
        except (OSError, imaplib.IMAP4.error):
            _shutdown_quietly(imap)

    def __enter__(self) -> ImapClient:
        return self.connect() if self._imap is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return self._imap is not None

    @property
    def has_idle(self) -> bool:
        return "IDLE" in self.capabilities

    # -- commands -------------------------------------------------------
    def _command(self, name: str, call: Callable[[imaplib.IMAP4], tuple[str, Any]]) -> list[Any]:
        """Run one imaplib call; map its errors; return the data of an OK."""
        with self._lock, self._mapped(name) as imap:
            typ, data = call(imap)
            if typ != "OK":
                raise RemoteRejectedError(
                    f"the IMAP server refused {name} ({_first_line(data)}); try again later"
                )
            return list(data or [])

    @contextmanager
    def _mapped(self, name: str) -> Iterator[imaplib.IMAP4]:
        imap = self._imap
        if imap is None:
            raise ConnectionLostError("the IMAP connection is closed; connect again")
        try:
            yield imap
        except imaplib.IMAP4.abort as exc:
            self._drop(imap)
            raise connection_lost("IMAP", self.endpoint, name) from exc
        except (OSError, EOFError) as exc:
            self._drop(imap)
            raise connection_lost("IMAP", self.endpoint, name) from exc
        except imaplib.IMAP4.error as exc:
            raise RemoteRejectedError(
                f"the IMAP server refused {name} ({_safe(str(exc))}); try again later"
            ) from exc

    def _drop(self, imap: imaplib.IMAP4) -> None:
        self._imap = None
        self.selected = None
        _shutdown_quietly(imap)

    @property
    def raw(self) -> imaplib.IMAP4:
        """The imaplib object (for :mod:`.imap_idle`); ConnectionLostError when closed."""
        if self._imap is None:
            raise ConnectionLostError("the IMAP connection is closed; connect again")
        return self._imap

    def list_folders(self) -> list[FolderInfo]:
        data = self._command("LIST", lambda i: i.list())
        return imap_parse.parse_list(data)

    def select(self, folder: str, readonly: bool = True) -> SelectedFolder:
        """SELECT (or EXAMINE) ``folder``; its UIDVALIDITY, UIDNEXT, EXISTS and HIGHESTMODSEQ."""

        def run(imap: imaplib.IMAP4) -> tuple[str, Any]:
            typ, data = imap.select(imap_parse.quote(folder), readonly=readonly)
            return typ, [*data, *imap_parse.select_codes(imap)]

        data = self._command("SELECT", run)
        self.selected = imap_parse.parse_select(folder, data)
        return self.selected

    def uid_search(self, *criteria: str) -> list[int]:
        data = self._command("SEARCH", lambda i: i.uid("SEARCH", *criteria))
        return imap_parse.parse_search(data)

    def fetch_messages(self, uids: Sequence[int]) -> list[FetchedMessage]:
        """Flags, date, size and the whole message of ``uids`` in the selected folder."""
        if not uids:
            return []
        uid_set = imap_parse.uid_set(uids)
        data = self._command("FETCH", lambda i: i.uid("FETCH", uid_set, FETCH_ITEMS))
        return imap_parse.parse_fetch(data)

    def fetch_flags(self, uid_range: str, changed_since: int | None = None) -> dict[int, str]:
        """UID -> flags for ``uid_range``; with CONDSTORE only those changed since a modseq."""
        items = "(UID FLAGS)"
        if changed_since is not None:
            items = f"(UID FLAGS) (CHANGEDSINCE {changed_since})"
        data = self._command("FETCH", lambda i: i.uid("FETCH", uid_range, items))
        return imap_parse.parse_flags(data)

    def append(self, folder: str, flags: str, message: bytes) -> int | None:
        """APPEND ``message`` to ``folder``; the new UID when the server says (UIDPLUS)."""
        data = self._command(
            "APPEND",
            lambda i: i.append(imap_parse.quote(folder), flags, None, message),
        )
        return imap_parse.parse_appenduid(data)

    def create_folder(self, folder: str) -> None:
        self._command("CREATE", lambda i: i.create(imap_parse.quote(folder)))

    def noop(self) -> list[Any]:
        return self._command("NOOP", lambda i: i.noop())

    def idle(self, timeout_s: float, stop: threading.Event) -> list[bytes]:
        """IDLE on the selected folder until it changes; the lines that said so.

        An empty list means the timeout passed or ``stop`` was set.
        """
        with self._lock, self._mapped("IDLE") as imap:
            try:
                return imap_idle.run_idle(imap, timeout_s, stop, self.endpoint.timeout_s)
            except imap_idle.IdleRefusedError as exc:
                raise RemoteRejectedError(
                    f"the IMAP server refused IDLE ({exc}); polling is used instead"
                ) from exc

    def status(self, folder: str) -> dict[str, int]:
        data = self._command(
            "STATUS", lambda i: i.status(imap_parse.quote(folder), "(MESSAGES UIDNEXT)")
        )
        return imap_parse.parse_status(data)


def _map_open_error(exc: BaseException, endpoint: Endpoint) -> ConnectorError:
    if isinstance(exc, imaplib.IMAP4.error) and not isinstance(exc, imaplib.IMAP4.abort):
        return RemoteRejectedError(
            f"the IMAP server {endpoint.describe()} refused STARTTLS; choose tls instead"
        )
    if isinstance(exc, ssl.SSLError | OSError):
        return map_connect_error(exc, endpoint, "IMAP")
    return connection_lost("IMAP", endpoint, "the greeting")


def _shutdown_quietly(imap: imaplib.IMAP4) -> None:
    try:
        imap.shutdown()
    except OSError:
        log.debug("imap socket was already closed")


def _first_line(data: object) -> str:
    if isinstance(data, list) and data and isinstance(data[0], bytes):
        return _safe(data[0].decode("utf-8", "replace"))
    return "no detail"


def _safe(text: str) -> str:
    """One short line of a server's reply (they never echo a password back)."""
    return " ".join(text.split())[:160]
