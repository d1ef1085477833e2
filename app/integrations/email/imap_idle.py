"""IMAP IDLE (RFC 2177) over ``imaplib``'s socket, which has no ``idle()`` in 3.11.

The exchange: send ``<tag> IDLE``, read the ``+`` continuation, then wait
for untagged lines; ``EXISTS``, ``EXPUNGE`` or ``FETCH`` means the folder
changed. Either way we end with ``DONE`` and read up to the tagged reply, so
the connection is left ready for the next command.

Waiting must notice a stop request and a deadline without a blocking read
that cannot be interrupted, and without a socket timeout (after a timeout
``socket.makefile`` refuses every later read). So we poll: with the socket
briefly non-blocking, ``peek`` at ``imaplib``'s buffered reader (which also
drains TLS bytes already decrypted); if nothing is there, ``select`` on the
socket for a short slice. A whole line is then read in blocking mode: a
server sends its lines whole.
"""

from __future__ import annotations

import imaplib
import itertools
import select
import ssl
import threading
import time
from typing import IO, Any

WAKE_WORDS = (b"EXISTS", b"EXPUNGE", b"FETCH", b"RECENT")
POLL_SLICE_S = 0.25
_tags = itertools.count(1)


class IdleRefusedError(Exception):
    """The server answered IDLE with something other than a continuation."""


def run_idle(
    imap: imaplib.IMAP4, timeout_s: float, stop: threading.Event, reply_timeout_s: float
) -> list[bytes]:
    """IDLE until a change, ``timeout_s`` or ``stop``; the untagged lines that woke us.

    Raises ``OSError`` or ``imaplib.IMAP4.abort`` when the connection breaks
    and :class:`IdleRefusedError` when the server will not idle.
    """
    tag = f"SIDLE{next(_tags)}".encode()
    imap.send(tag + b" IDLE\r\n")
    first = _readline(imap)
    if not first.startswith(b"+"):
        _read_until_tagged(imap, tag, [first])
        raise IdleRefusedError(first[:80].decode("ascii", "replace"))
    seen: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    while not stop.is_set() and not seen:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        if _line_ready(imap, min(POLL_SLICE_S, remaining)):
            line = _readline(imap)
            if line.startswith(b"*") and any(word in line for word in WAKE_WORDS):
                seen.append(line.strip())
    imap.send(b"DONE\r\n")
    imap.socket().settimeout(reply_timeout_s)
    _read_until_tagged(imap, tag, seen)
    return seen


def _readline(imap: imaplib.IMAP4) -> bytes:
    line = imap.readline()
    if not line:
        raise imaplib.IMAP4.abort("socket error: EOF during IDLE")
    return bytes(line)


def _read_until_tagged(imap: imaplib.IMAP4, tag: bytes, seen: list[bytes]) -> None:
    while True:
        line = _readline(imap)
        if line.startswith(tag + b" "):
            if not line[len(tag) + 1 :].upper().startswith(b"OK"):
                raise IdleRefusedError(line[:80].decode("ascii", "replace"))
            return
        if any(word in line for word in WAKE_WORDS):
            seen.append(line.strip())


def _line_ready(imap: imaplib.IMAP4, wait_s: float) -> bool:
    """True when bytes are buffered or arrive within ``wait_s``; abort on EOF."""
    sock = imap.socket()
    file: IO[Any] = imap.file
    if _peek_nonblocking(sock, file):
        return True
    readable, _, _ = select.select([sock], [], [], wait_s)
    if not readable:
        return False
    data = _peek_nonblocking(sock, file)
    if data == b"":
        raise imaplib.IMAP4.abort("socket error: EOF during IDLE")
    return bool(data)


def _peek_nonblocking(sock: Any, file: IO[Any]) -> bytes | None:
    """Buffered or readable bytes; ``b""`` at end of stream; None when nothing is there."""
    timeout = sock.gettimeout()
    sock.settimeout(0.0)
    try:
        data: bytes | None = file.peek(1)  # type: ignore[attr-defined]
    except (BlockingIOError, ssl.SSLWantReadError):
        return None
    finally:
        sock.settimeout(timeout)
    return data
