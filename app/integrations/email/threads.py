"""Which conversation a mail belongs to.

JWZ-lite: a message joins the thread of any already-stored message it names
in ``In-Reply-To`` or ``References`` (nearest first); otherwise it starts a
thread whose id is derived from its own Message-ID, so the id is stable
whichever order messages arrive in, as long as the parent comes first.
There is deliberately no merging by subject: "Invoice" or "Quick question"
from different people are different conversations, and joining them would
show an agent one customer's mail as context for another's.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from datetime import datetime

_PREFIX = re.compile(
    r"^\s*(?:(?:re|fw|fwd|aw|wg|sv|vs|antw|rif|tr|odp|ynt)\s*(?:\[\d+\])?\s*[:：]\s*|\[[^\]]{0,40}\]\s*)+",
    re.IGNORECASE,
)
_SPACE = re.compile(r"\s+")

Lookup = Callable[[Sequence[str]], "str | None"]


def normalise_subject(subject: str) -> str:
    """``subject`` without reply/forward prefixes and ``[list]`` tags, casefolded."""
    text = _PREFIX.sub("", subject)
    return _SPACE.sub(" ", text).strip().casefold()


def thread_id_for(  # noqa: PLR0917  (the fields of one message, in header order)
    message_id: str | None,
    in_reply_to: str | None,
    references: Sequence[str],
    subject: str,
    sender_email: str | None,
    date: datetime | None,
    lookup: Lookup,
) -> str:
    """The thread id of a message; ``lookup(ids)`` finds a stored message's thread."""
    parents = _parents(in_reply_to, references)
    if parents:
        known = lookup(parents)
        if known is not None:
            return known
        # Parent not stored (yet): the thread is named after the root the
        # message itself names, so siblings that arrive before it agree.
        return _digest(parents[-1].lower())
    if message_id:
        return _digest(message_id.strip().lower())
    stamp = date.isoformat() if date is not None else ""
    return _digest(f"{(sender_email or '').lower()}|{stamp}|{normalise_subject(subject)}")


def _parents(in_reply_to: str | None, references: Sequence[str]) -> list[str]:
    """Nearest first: In-Reply-To, then References from the last to the root."""
    ordered: list[str] = []
    seen: set[str] = set()
    for candidate in [in_reply_to, *reversed(references)]:
        text = (candidate or "").strip()
        if text and text.lower() not in seen:
            seen.add(text.lower())
            ordered.append(text)
    return ordered


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:16]


class ThreadIndex:
    """Message-ID to thread id in memory: what the mail store's lookup does, for tests.

    ``add`` files a message the way the sync does (``thread_id_for`` with this
    index as the lookup) and returns its thread id.
    """

    def __init__(self) -> None:
        self._threads: dict[str, str] = {}

    def lookup(self, ids: Sequence[str]) -> str | None:
        for message_id in ids:
            thread = self._threads.get(message_id.strip().lower())
            if thread is not None:
                return thread
        return None

    def add(  # noqa: PLR0917  (the same fields as thread_id_for)
        self,
        message_id: str | None,
        in_reply_to: str | None,
        references: Sequence[str],
        subject: str,
        sender_email: str | None,
        date: datetime | None,
    ) -> str:
        thread = thread_id_for(
            message_id, in_reply_to, references, subject, sender_email, date, self.lookup
        )
        if message_id:
            self._threads[message_id.strip().lower()] = thread
        return thread

    def __len__(self) -> int:
        return len(self._threads)
