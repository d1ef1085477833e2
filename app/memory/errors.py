"""Errors raised by the memory store.

::

    StoreError                        anything the store reports
    ├── DatabaseOpenError             the office database cannot be opened
    │   ├── DatabaseLockedError       another process holds the file
    │   ├── DatabaseCorruptError      the file is damaged or not a DuckDB database
    │   ├── SchemaTooNewError         a newer Soloist wrote the file
    │   └── MigrationError            an upgrade failed and was rolled back
    ├── DatabaseClosedError           the database was used after close()
    ├── QueryError                    DuckDB failed on a statement
    ├── BackupError                   a backup could not be made (nothing lost)
    ├── RestoreError                  a backup could not be restored
    ├── ConversationNotFoundError     no conversation has that id
    ├── SessionNotFoundError          no session has that id
    ├── RunNotFoundError              no agent run has that id
    ├── RunFinishedError              the run is finished; it takes no more events
    ├── AgentStateConflictError       agent state changed since the writer read it
    ├── MemoryNotFoundError           no memory has that id
    ├── MemoryVersionNotFoundError    no such version of a memory
    ├── MemoryDeletedError            the memory is deleted (a tombstone is current)
    ├── MemoryConflictError           the memory changed since the writer read it
    └── VectorDimensionError          a vector's length is not its model's dimension

Every error is a *known* error: ``str(err)`` is one line a user can read,
saying what happened, what was kept safe and what to do next. DuckDB's own
exceptions never leave this package; they are mapped at the boundary with
``raise ... from exc`` so the original stays in the traceback.

The constructors take plain values and pass them all to
``Exception.__init__`` so the errors survive pickling (a CLI or a child
process may relay them), and ``__str__`` builds the message from them.
"""

from __future__ import annotations

from datetime import datetime

NOT_A_DATABASE = "not a valid DuckDB database (damaged, or another kind of file)"
NOTHING_CHANGED = "Nothing was changed."


class StoreError(Exception):
    """Base of every error the memory store raises."""


class DatabaseOpenError(StoreError):
    """The office database cannot be opened; ``detail`` says why."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(path, detail)
        self.path = path
        self.detail = detail

    def __str__(self) -> str:
        return f"Cannot open the office database {self.path}: {self.detail}"


class DatabaseLockedError(DatabaseOpenError):
    """Another process holds DuckDB's lock on the file.

    DuckDB lets one process write a file, and while it does no other process
    can even read it. ``pid`` is the holder's process id when DuckDB says it.
    """

    def __init__(self, path: str, pid: int | None) -> None:
        super().__init__(path, "in use by another process")
        self.args = (path, pid)
        self.pid = pid

    def __str__(self) -> str:
        holder = f" (pid {self.pid})" if self.pid is not None else ""
        return (
            f"The office database is in use by another Soloist process{holder}: "
            f"{self.path}. Nothing was changed; close the other Soloist or wait "
            "for it to finish, then try again."
        )


class DatabaseCorruptError(DatabaseOpenError):
    """The file is damaged (failed checksum, cut short) or not a DuckDB database.

    ``newest_backup`` and ``newest_backup_at`` name the newest backup found
    beside it, the way out; both are None when there is none.
    """

    def __init__(
        self,
        path: str,
        detail: str = NOT_A_DATABASE,
        newest_backup: str | None = None,
        newest_backup_at: datetime | None = None,
    ) -> None:
        super().__init__(path, detail)
        self.args = (path, detail, newest_backup, newest_backup_at)
        self.newest_backup = newest_backup
        self.newest_backup_at = newest_backup_at

    def __str__(self) -> str:
        if self.newest_backup is None:
            way_out = (
                "No backup was found: move it aside to start a new office, and keep "
                "it, as it may still be recovered."
            )
        else:
            when = f", {self.newest_backup_at:%Y-%m-%d %H:%M} UTC" if self.newest_backup_at else ""
            way_out = (
                "Restore the last good backup with `soloist restore --latest` "
                f"(newest: {self.newest_backup}{when})."
            )
        return (
            f"The office database {self.path} is damaged: {self.detail}. "
            f"It was left as it is. {way_out}"
        )


class SchemaTooNewError(DatabaseOpenError):
    """The file's schema version is newer than this code knows.

    Opening it anyway could corrupt data written by the newer version, so
    the file is refused and left byte-for-byte untouched.
    """

    def __init__(self, path: str, file_version: int, known_version: int) -> None:
        super().__init__(path, "schema too new")
        self.args = (path, file_version, known_version)
        self.file_version = file_version
        self.known_version = known_version

    def __str__(self) -> str:
        return (
            f"The office database {self.path} has schema version {self.file_version}, "
            f"but this Soloist knows versions up to {self.known_version}. The file "
            "was left untouched; update Soloist to open it."
        )


class MigrationError(DatabaseOpenError):
    """A migration failed; the whole upgrade was rolled back."""

    def __init__(self, path: str, version: int, description: str, detail: str) -> None:
        super().__init__(path, detail)
        self.args = (path, version, description, detail)
        self.version = version
        self.description = description

    def __str__(self) -> str:
        return (
            f"Upgrading the office database {self.path} failed at schema version "
            f"{self.version} ({self.description}): {self.detail}. The upgrade was "
            "rolled back and the data is as it was; please report this as a bug."
        )


class DatabaseClosedError(StoreError):
    """The database was used after ``close()``: a bug in the caller."""

    def __str__(self) -> str:
        return "The office database is already closed."


class QueryError(StoreError):
    """DuckDB failed on a statement (disk full, constraint, bad SQL)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def __str__(self) -> str:
        return (
            f"The office database could not complete an operation: {self.detail}. "
            "Any change in progress was rolled back."
        )


class BackupError(StoreError):
    """A backup could not be made; the database and earlier backups are as they were."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def __str__(self) -> str:
        return (
            f"Backing up the office database failed: {self.detail}. The database was "
            "not changed and the earlier backups were kept."
        )


class RestoreError(StoreError):
    """A backup could not be restored; ``kept`` says where everything is."""

    def __init__(self, detail: str, kept: str = NOTHING_CHANGED) -> None:
        super().__init__(detail, kept)
        self.detail = detail
        self.kept = kept

    def __str__(self) -> str:
        return f"Restoring the office database failed: {self.detail}. {self.kept}"


class ConversationNotFoundError(StoreError):
    """No conversation has the given id."""

    def __init__(self, conversation_id: str) -> None:
        super().__init__(conversation_id)
        self.conversation_id = conversation_id

    def __str__(self) -> str:
        return f"There is no conversation with id {self.conversation_id}."


class SessionNotFoundError(StoreError):
    """No session has the given id."""

    def __init__(self, session_id: str) -> None:
        super().__init__(session_id)
        self.session_id = session_id

    def __str__(self) -> str:
        return f"There is no session with id {self.session_id}."


class RunNotFoundError(StoreError):
    """No agent run has the given id."""

    def __init__(self, run_id: str) -> None:
        super().__init__(run_id)
        self.run_id = run_id

    def __str__(self) -> str:
        return f"There is no agent run with id {self.run_id}."


class RunFinishedError(StoreError):
    """The run has finished, so it cannot finish again or take more steps."""

    def __init__(self, run_id: str, status: str) -> None:
        super().__init__(run_id, status)
        self.run_id = run_id
        self.status = status

    def __str__(self) -> str:
        return (
            f"The agent run {self.run_id} has already finished ({self.status}); "
            "nothing was written. Start a new run to continue."
        )


class AgentStateConflictError(StoreError):
    """Another writer saved the agent's state since this writer read it."""

    def __init__(self, agent_id: str, expected: int, actual: int) -> None:
        super().__init__(agent_id, expected, actual)
        self.agent_id = agent_id
        self.expected = expected
        self.actual = actual

    def __str__(self) -> str:
        return (
            f"The state of agent {self.agent_id} is at version {self.actual}, not "
            f"{self.expected}: someone else saved it meanwhile. Nothing was written; "
            "read the latest state and try again."
        )


class MemoryNotFoundError(StoreError):
    """No memory has the given id."""

    def __init__(self, memory_id: str) -> None:
        super().__init__(memory_id)
        self.memory_id = memory_id

    def __str__(self) -> str:
        return f"There is no memory with id {self.memory_id}."


class MemoryVersionNotFoundError(StoreError):
    """No such version: ``ref`` names it (a version id, or memory and number)."""

    def __init__(self, ref: str) -> None:
        super().__init__(ref)
        self.ref = ref

    def __str__(self) -> str:
        return f"There is no memory version {self.ref}."


class MemoryDeletedError(StoreError):
    """The memory is deleted; only a rollback brings it back."""

    def __init__(self, memory_id: str) -> None:
        super().__init__(memory_id)
        self.memory_id = memory_id

    def __str__(self) -> str:
        return (
            f"The memory {self.memory_id} is deleted, so it was not changed. "
            "Roll it back to an earlier version to bring it back."
        )


class MemoryConflictError(StoreError):
    """The memory has a newer version than the one the writer read."""

    def __init__(self, memory_id: str, expected: int, actual: int) -> None:
        super().__init__(memory_id, expected, actual)
        self.memory_id = memory_id
        self.expected = expected
        self.actual = actual

    def __str__(self) -> str:
        return (
            f"The memory {self.memory_id} is at version {self.actual}, not "
            f"{self.expected}: someone else changed it meanwhile. Nothing was "
            "written; read it again and retry."
        )


class VectorDimensionError(StoreError):
    """A vector's length differs from the dimension its model was stored with."""

    def __init__(self, model: str, expected: int, actual: int) -> None:
        super().__init__(model, expected, actual)
        self.model = model
        self.expected = expected
        self.actual = actual

    def __str__(self) -> str:
        return (
            f"The embedding model {self.model} has {self.expected}-dimensional vectors, "
            f"but this one has {self.actual}. Nothing was written; a model with "
            "another dimension needs another model name."
        )


# -- ingestion (app.memory.ingest) -----------------------------------------
#   StoreError
#   ├── IngestSourceError             a folder cannot be added as a source
#   ├── IngestSourceNotFoundError     no ingestion source has that id
#   ├── IngestBusyError               a run is already going on this ingestor
#   └── IngestEmbeddingError          the embedder failed; the run stopped


class IngestSourceError(StoreError):
    """A folder cannot be an ingestion source (missing, or not a folder)."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(path, detail)
        self.path = path
        self.detail = detail

    def __str__(self) -> str:
        return (
            f"Cannot index {self.path}: {self.detail}. Nothing was added; choose an "
            "existing folder."
        )


class IngestSourceNotFoundError(StoreError):
    """No ingestion source has the given id."""

    def __init__(self, source_id: str) -> None:
        super().__init__(source_id)
        self.source_id = source_id

    def __str__(self) -> str:
        return f"There is no indexed folder with id {self.source_id}."


class IngestBusyError(StoreError):
    """A run is already going on this ingestor; runs do not overlap."""

    def __init__(self, run_id: str) -> None:
        super().__init__(run_id)
        self.run_id = run_id

    def __str__(self) -> str:
        return (
            f"Documents are already being indexed (run {self.run_id}). Nothing was "
            "started; wait for that run to finish or cancel it."
        )


class IngestEmbeddingError(StoreError):
    """The embedder failed or returned unusable vectors; the run stopped."""

    def __init__(self, model: str, detail: str) -> None:
        super().__init__(model, detail)
        self.model = model
        self.detail = detail

    def __str__(self) -> str:
        return (
            f"Indexing stopped: the embedding model {self.model} failed ({self.detail}). "
            "The files indexed before were kept and none was half-written; the next "
            "run continues where this one stopped."
        )
