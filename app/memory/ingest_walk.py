"""Finding a source's files, and deciding what to do with each: no database here.

``walk_folder`` lists the files under a root: hidden names (``.git``,
``.DS_Store``) are left out, linked folders are followed but each real
folder is entered once (so a symlink loop ends), and folders the OS will
not list are passed over. ``decide`` compares one file with its stored row
(a pure function, tested by table); ``plan`` applies it to a whole folder.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from app.memory.documents import SUPPORTED_SUFFIXES
from app.memory.ingest_types import FileStatus, IngestFile

log = logging.getLogger("soloist.memory")

# Reasons worth trying again when the file has not changed: the OS refused
# it (locked by another program, permissions since fixed).
RETRIED_REASONS = frozenset({"unreadable"})


@dataclass(frozen=True, slots=True)
class FoundFile:
    """A regular file the walk found, with what ``stat`` said of it then."""

    path: str
    size: int
    mtime_ns: int

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    @property
    def supported(self) -> bool:
        return Path(self.path).suffix.lower() in SUPPORTED_SUFFIXES


class Action(StrEnum):
    """What a run does with one found file."""

    UNCHANGED = "unchanged"  # same size and mtime as stored: not read
    INDEX = "index"  # new, changed, pending, or worth retrying: read it
    UNSUPPORTED = "unsupported"  # not a format Soloist reads: record it as skipped


def decide(found: FoundFile, stored: IngestFile | None) -> Action:
    """What to do with ``found``, given its stored row (None if never seen)."""
    same_stat = (
        stored is not None and stored.size == found.size and stored.mtime_ns == found.mtime_ns
    )
    if not found.supported:
        unchanged = same_stat and stored is not None and stored.status is FileStatus.SKIPPED
        return Action.UNCHANGED if unchanged else Action.UNSUPPORTED
    if stored is None or not same_stat:
        return Action.INDEX
    if stored.status is FileStatus.INDEXED:
        return Action.UNCHANGED
    if stored.status is FileStatus.SKIPPED and stored.reason not in RETRIED_REASONS:
        return Action.UNCHANGED
    return Action.INDEX  # pending, removed and back, or a retried skip


@dataclass(slots=True)
class Plan:
    """One source's files sorted by what a run does with them."""

    to_index: list[FoundFile] = field(default_factory=list)
    unsupported: list[FoundFile] = field(default_factory=list)
    unchanged: list[FoundFile] = field(default_factory=list)
    removed: list[IngestFile] = field(default_factory=list)  # stored, no longer found

    @property
    def files_seen(self) -> int:
        return len(self.to_index) + len(self.unsupported) + len(self.unchanged)

    @property
    def bytes_to_read(self) -> int:
        return sum(f.size for f in self.to_index)


def plan(found: Iterable[FoundFile], stored: Mapping[str, IngestFile]) -> Plan:
    """Sort the found files by ``decide``; stored live rows not found are removed."""
    result = Plan()
    seen: set[str] = set()
    for file in found:
        seen.add(file.path)
        action = decide(file, stored.get(file.path))
        if action is Action.INDEX:
            result.to_index.append(file)
        elif action is Action.UNSUPPORTED:
            result.unsupported.append(file)
        else:
            result.unchanged.append(file)
    result.removed = [
        row
        for path, row in sorted(stored.items())
        if path not in seen and row.status is not FileStatus.REMOVED
    ]
    return result


def walk_folder(root: str | os.PathLike[str]) -> Iterator[FoundFile]:
    """Every regular file under ``root``, depth first, names in sorted order."""
    top = os.fspath(root)
    visited: set[tuple[int, int]] = set()
    pending = [top]
    unlistable = 0
    while pending:
        folder = pending.pop()
        try:
            info = os.stat(folder)
            if (info.st_dev, info.st_ino) in visited:
                continue  # reached again through a link: a loop, or a second way in
            visited.add((info.st_dev, info.st_ino))
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda e: e.name)
        except OSError:
            unlistable += 1
            continue
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            found = _examine(entry)
            if isinstance(found, FoundFile):
                yield found
            elif found:
                subfolders.append(entry.path)
        pending.extend(reversed(subfolders))
    if unlistable:
        log.info("walk: %d folders could not be listed", unlistable)


def _examine(entry: os.DirEntry[str]) -> FoundFile | bool:
    """The file ``entry`` is, True for a folder to enter, False for anything else.

    Links are followed; a dangling one, a FIFO or a device is passed over.
    """
    try:
        info = entry.stat(follow_symlinks=True)
    except OSError:
        return False
    if stat.S_ISDIR(info.st_mode):
        return True
    if stat.S_ISREG(info.st_mode):
        return FoundFile(entry.path, info.st_size, info.st_mtime_ns)
    return False
