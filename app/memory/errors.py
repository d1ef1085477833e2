"""Errors raised by the memory store.

::

    StoreError                        anything the store reports
    ├── DatabaseOpenError             the office database cannot be opened
    │   ├── DatabaseLockedError       another process holds the file
    │   ├── DatabaseCorruptError      the file is not a DuckDB database
    │   ├── SchemaTooNewError         a newer Soloist wrote the file
    │   └── MigrationError            an upgrade failed and was rolled back
    ├── DatabaseClosedError           the database was used after close()
    ├── QueryError                    DuckDB failed on a statement
    └── ConversationNotFoundError     no conversation has that id

Every error is a *known* error: ``str(err)`` is one line a user can read,
saying what happened, what was kept safe and what to do next. DuckDB's own
exceptions never leave this package; they are mapped at the boundary with
``raise ... from exc`` so the original stays in the traceback.

The constructors take plain values and pass them all to
``Exception.__init__`` so the errors survive pickling (a CLI or a child
process may relay them), and ``__str__`` builds the message from them.
"""

from __future__ import annotations


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
    """The file exists but is not a DuckDB database (or is damaged)."""

    def __init__(self, path: str) -> None:
        super().__init__(path, "not a DuckDB database")
        self.args = (path,)

    def __str__(self) -> str:
        return (
            f"The office database {self.path} is not a valid DuckDB database "
            "(damaged, or another kind of file). It was left as it is; restore "
            "it from a backup or move it aside to start a new office."
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


class ConversationNotFoundError(StoreError):
    """No conversation has the given id."""

    def __init__(self, conversation_id: str) -> None:
        super().__init__(conversation_id)
        self.conversation_id = conversation_id

    def __str__(self) -> str:
        return f"There is no conversation with id {self.conversation_id}."
