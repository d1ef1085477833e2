"""What a long-term memory is about and where it came from.

Pure values and checks, no database: the kinds a memory can be, the scopes
it can live in, the provenance every version carries, and the content hash
used to find duplicates.

Scopes are strings so they can be stored, compared and typed by hand:

- ``global``: the whole office;
- ``agent:<id>``: one agent's own memory;
- ``contact:<id>``: what the office knows about one contact.

An id is 1 to 200 printable characters without whitespace.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass

KINDS = frozenset({"fact", "note", "document_chunk", "email_summary", "crm_fact"})

GLOBAL_SCOPE = "global"
_SCOPE = re.compile(r"global|(?:agent|contact):\S{1,200}")


@dataclass(frozen=True, slots=True)
class Provenance:
    """Who and what produced a memory version; the store adds when.

    Every field is optional: an empty ``Provenance()`` is the owner typing
    by hand. ``step_seq`` is the session seq of the run's step, so it needs
    ``run_id``. ``message_id`` names a chat message as
    ``<conversation id>/<seq>``.
    """

    agent_id: str | None = None
    run_id: str | None = None
    step_seq: int | None = None
    tool: str | None = None
    message_id: str | None = None
    source_file: str | None = None
    source_url: str | None = None

    def __post_init__(self) -> None:
        if self.step_seq is not None and self.run_id is None:
            raise ValueError("a provenance with a step_seq needs the run_id of that step")
        if self.step_seq is not None and self.step_seq < 1:
            raise ValueError(f"step_seq must be 1 or more, got {self.step_seq}")

    def as_row(self) -> tuple[str | int | None, ...]:
        """The values in the order of the ``memory_versions`` provenance columns."""
        return (
            self.agent_id,
            self.run_id,
            self.step_seq,
            self.tool,
            self.message_id,
            self.source_file,
            self.source_url,
        )


PROVENANCE_COLUMNS = "agent_id, run_id, step_seq, tool, message_id, source_file, source_url"


def check_kind(kind: str) -> str:
    """``kind`` if it is one of ``KINDS``; ``ValueError`` otherwise."""
    if kind not in KINDS:
        raise ValueError(f"unknown memory kind {kind!r}; expected one of {sorted(KINDS)}")
    return kind


def check_scope(scope: str) -> str:
    """``scope`` if it is well formed (see the module docstring); ``ValueError`` otherwise."""
    if not isinstance(scope, str) or not scope.isprintable() or not _SCOPE.fullmatch(scope):
        raise ValueError(
            f"invalid memory scope {scope!r}; expected 'global', 'agent:<id>' or 'contact:<id>'"
        )
    return scope


def agent_scope(agent_id: str) -> str:
    """The scope of one agent's own memories."""
    return check_scope(f"agent:{agent_id}")


def contact_scope(contact_id: str) -> str:
    """The scope of what the office knows about one contact."""
    return check_scope(f"contact:{contact_id}")


def normalise_text(text: str) -> str:
    """The text as the content hash sees it: NFC, whitespace runs as one space, trimmed.

    Case is kept: "May" the month and "may" the verb are different facts.
    The same rule as ``app.memory.documents.content_sha256``, so a document
    chunk and a memory of the same text share a hash.
    """
    return " ".join(unicodedata.normalize("NFC", text).split())


def content_hash(text: str) -> str:
    """sha256 hex of the normalised text: equal for texts that differ only in spacing."""
    return hashlib.sha256(normalise_text(text).encode("utf-8", "surrogatepass")).hexdigest()
