"""Pure parsers for the IMAP responses ``imaplib`` hands back, and UID set syntax.

``imaplib`` returns raw response lines (and ``(header, literal)`` tuples for
literals); turning them into values is kept here, apart from the socket, so
it is tested table-driven without a server.
"""

from __future__ import annotations

import imaplib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

_LIST = re.compile(rb'\((?P<flags>[^)]*)\)\s+(?P<delim>"(?:[^"\\]|\\.)*"|NIL)\s+(?P<name>.*)$')
_UID = re.compile(rb"\bUID (\d+)")
_FLAGS = re.compile(rb"\bFLAGS \(([^)]*)\)")
_INTERNALDATE = re.compile(rb'\bINTERNALDATE "([^"]+)"')
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")
_MODSEQ = re.compile(rb"\bMODSEQ \((\d+)\)")
_STATUS_ITEM = re.compile(rb"(MESSAGES|UIDNEXT|UIDVALIDITY|UNSEEN) (\d+)")
_APPENDUID = re.compile(rb"\[APPENDUID (\d+) (\d+)\]")
SPECIAL_USES = ("\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive", "\\All", "\\Flagged")
# Fallback when a server does not advertise special-use: common names, lower case.
_NAME_FALLBACK = {
    "\\Sent": ("sent", "sent items", "sent messages", "sent mail", "gesendet", "envoyés"),
    "\\Drafts": ("drafts", "draft", "entwürfe", "brouillons"),
    "\\Trash": ("trash", "deleted items", "deleted messages", "papierkorb", "corbeille"),
    "\\Junk": ("junk", "spam", "junk e-mail", "junk email"),
}


@dataclass(frozen=True, slots=True)
class FolderInfo:
    """One mailbox from LIST."""

    name: str
    delimiter: str | None
    flags: frozenset[str]

    @property
    def selectable(self) -> bool:
        return not ({"\\noselect", "\\nonexistent"} & {f.lower() for f in self.flags})

    @property
    def special_use(self) -> str | None:
        lowered = {f.lower() for f in self.flags}
        for use in SPECIAL_USES:
            if use.lower() in lowered:
                return use
        return None


@dataclass(frozen=True, slots=True)
class SelectedFolder:
    name: str
    uidvalidity: int
    uidnext: int | None
    exists: int
    highestmodseq: int | None


@dataclass(frozen=True, slots=True)
class FetchedMessage:
    uid: int
    flags: str
    internal_date: datetime | None
    size: int
    raw: bytes

    def __repr__(self) -> str:  # never the message text
        return f"FetchedMessage(uid={self.uid}, size={self.size})"


def quote(name: str) -> str:
    """A mailbox name as an IMAP quoted string."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unquote(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace").strip()
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


def parse_capabilities(data: Sequence[Any]) -> frozenset[str]:
    words: list[str] = []
    for item in data:
        if isinstance(item, bytes):
            words += item.decode("ascii", "replace").upper().split()
    return frozenset(words)


def parse_list(data: Sequence[Any]) -> list[FolderInfo]:
    folders: list[FolderInfo] = []
    for item in data:
        if item is None:
            continue
        if isinstance(item, tuple):  # the name came as a literal
            head, literal = item
            match = _LIST.match(head.strip())
            name = literal.decode("utf-8", "replace") if match else None
        else:
            match = _LIST.match(item.strip())
            name = _unquote(match.group("name")) if match else None
        if match is None or name is None:
            continue
        delim = match.group("delim")
        folders.append(
            FolderInfo(
                name=name,
                delimiter=None if delim == b"NIL" else _unquote(delim),
                flags=frozenset(match.group("flags").decode("ascii", "replace").split()),
            )
        )
    return folders


def special_folder(folders: Iterable[FolderInfo], use: str) -> str | None:
    """The folder flagged ``use`` (``\\Sent``...), else one with a usual name for it."""
    listed = [f for f in folders if f.selectable]
    for folder in listed:
        if folder.special_use == use:
            return folder.name
    names = _NAME_FALLBACK.get(use, ())
    for folder in listed:
        leaf = folder.name.rsplit(folder.delimiter, 1)[-1] if folder.delimiter else folder.name
        if leaf.lower() in names:
            return folder.name
    return None


def select_codes(imap: imaplib.IMAP4) -> list[bytes]:
    """The response codes of the last SELECT, as ``b"CODE value"`` items."""
    codes: list[bytes] = []
    for code in ("UIDVALIDITY", "UIDNEXT", "HIGHESTMODSEQ"):
        _, values = imap.response(code)
        for value in values or ():
            if isinstance(value, bytes):
                codes.append(code.encode() + b" " + value)
    return codes


def parse_select(folder: str, data: Sequence[Any]) -> SelectedFolder:
    exists = 0
    codes: dict[str, int] = {}
    for item in data:
        if not isinstance(item, bytes):
            continue
        parts = item.split()
        if len(parts) == 1 and parts[0].isdigit():
            exists = int(parts[0])
        elif len(parts) == 2 and parts[1].isdigit():
            codes[parts[0].decode()] = int(parts[1])
    if "UIDVALIDITY" not in codes:
        raise ValueError(f"SELECT of {folder!r} returned no UIDVALIDITY")
    return SelectedFolder(
        name=folder,
        uidvalidity=codes["UIDVALIDITY"],
        uidnext=codes.get("UIDNEXT"),
        exists=exists,
        highestmodseq=codes.get("HIGHESTMODSEQ"),
    )


def parse_search(data: Sequence[Any]) -> list[int]:
    uids: list[int] = []
    for item in data:
        if isinstance(item, bytes):
            # ESEARCH-less servers answer "1 2 3"; CONDSTORE adds "(MODSEQ n)".
            text = re.sub(rb"\(MODSEQ \d+\)", b"", item)
            uids += [int(word) for word in text.split() if word.isdigit()]
    return sorted(set(uids))


def parse_fetch(data: Sequence[Any]) -> list[FetchedMessage]:
    """Messages from a ``UID FETCH ... BODY.PEEK[]`` (unsolicited FETCHes are skipped)."""
    messages: list[FetchedMessage] = []
    for item in data:
        if not isinstance(item, tuple) or len(item) != 2:
            continue
        head, raw = item
        uid = _UID.search(head)
        if uid is None or not isinstance(raw, bytes):
            continue
        flags = _FLAGS.search(head)
        size = _SIZE.search(head)
        messages.append(
            FetchedMessage(
                uid=int(uid.group(1)),
                flags=_norm_flags(flags.group(1) if flags else b""),
                internal_date=_internal_date(head),
                size=int(size.group(1)) if size else len(raw),
                raw=raw,
            )
        )
    return messages


def parse_flags(data: Sequence[Any]) -> dict[int, str]:
    """UID -> flags from a ``UID FETCH ... (UID FLAGS)``."""
    result: dict[int, str] = {}
    for item in data:
        head = item[0] if isinstance(item, tuple) else item
        if not isinstance(head, bytes):
            continue
        uid, flags = _UID.search(head), _FLAGS.search(head)
        if uid is not None and flags is not None:
            result[int(uid.group(1))] = _norm_flags(flags.group(1))
    return result


def parse_status(data: Sequence[Any]) -> dict[str, int]:
    result: dict[str, int] = {}
    for item in data:
        if isinstance(item, bytes):
            for key, value in _STATUS_ITEM.findall(item):
                result[key.decode()] = int(value)
    return result


def parse_appenduid(data: Sequence[Any]) -> int | None:
    for item in data:
        if isinstance(item, bytes) and (match := _APPENDUID.search(item)):
            return int(match.group(2))
    return None


def parse_modseq(head: bytes) -> int | None:
    match = _MODSEQ.search(head)
    return int(match.group(1)) if match else None


def _norm_flags(raw: bytes) -> str:
    """Sorted flags without ``\\Recent``, which belongs to one session, not the message."""
    flags = raw.decode("ascii", "replace").split()
    return " ".join(sorted(f for f in flags if f.lower() != "\\recent"))


def _internal_date(head: bytes) -> datetime | None:
    match = _INTERNALDATE.search(head)
    if match is None:
        return None
    try:
        moment = datetime.strptime(match.group(1).decode().strip(), "%d-%b-%Y %H:%M:%S %z")
    except ValueError:
        return None
    return moment.astimezone(UTC)


def uid_set(uids: Iterable[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1:3,7"`` (compact UID set for a command line)."""
    ordered = sorted(set(uids))
    if not ordered:
        raise ValueError("an empty UID set")
    runs: list[str] = []
    start = prev = ordered[0]
    for uid in ordered[1:]:
        if uid == prev + 1:
            prev = uid
            continue
        runs.append(f"{start}:{prev}" if start != prev else str(start))
        start = prev = uid
    runs.append(f"{start}:{prev}" if start != prev else str(start))
    return ",".join(runs)
