"""``soloist memory``: search, add to, index into and look after long-term memory.

soloist memory search QUERY [--scope S]... [--kind K]... [--source PATH] [--agent ID]
                            [--k N] [--json]
soloist memory add TEXT [--kind K] [--scope S]
soloist memory ingest FOLDER [--scope S]
soloist memory history MEMORY_ID [--json]
soloist memory rollback MEMORY_ID VERSION

These open the office database directly. While Soloist runs it holds the
file, and DuckDB lets no other process even read it: they then refuse and
change nothing. The embedding model runs in this process (loading it takes
a few seconds).

Exit status: 0 done, 1 failed or refused, 2 usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app import paths
from app.memory.provenance import GLOBAL_SCOPE, KINDS, Provenance, check_scope

if TYPE_CHECKING:  # duckdb, numpy and torch load only when a command runs
    from app.engine.embeddings import Embedder
    from app.memory.ingest_types import IngestProgress, IngestReport
    from app.memory.longterm import MemoryVersion
    from app.memory.search import SearchHit, SearchResult
    from app.memory.service import MemoryService

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130
BY_HAND = Provenance(tool="cli")  # the owner, at the command line
_PREVIEW = 300


def make_embedder() -> Embedder:
    """The embedder the commands use (a seam for tests): all-MiniLM-L6-v2, in this process."""
    from app.engine.embeddings import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder()


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``memory`` and its subcommands to the ``soloist`` parser."""
    memory = subparsers.add_parser(
        "memory",
        help="search and look after long-term memory (with Soloist closed)",
        description="Long-term memory in the office database. Soloist must not be running.",
    )
    sub = memory.add_subparsers(dest="memory_command", required=True)
    search = sub.add_parser("search", help="find memories by meaning and by keywords")
    search.add_argument("query", help="what to look for")
    search.add_argument("--scope", action="append", type=_scope, help="repeat for several")
    search.add_argument("--kind", action="append", choices=sorted(KINDS), help="repeatable")
    search.add_argument("--source", default=None, help="only chunks of files under this path")
    search.add_argument("--agent", default=None, help="only memories this agent wrote")
    search.add_argument("--k", type=_positive, default=10, help="how many (default 10)")
    search.add_argument("--json", action="store_true", help="print one JSON document")
    add = sub.add_parser("add", help="remember a note")
    add.add_argument("text")
    add.add_argument("--kind", choices=sorted(KINDS), default="note")
    add.add_argument("--scope", type=_scope, default=GLOBAL_SCOPE)
    ingest = sub.add_parser("ingest", help="index a folder of documents (again: only changes)")
    ingest.add_argument("folder")
    ingest.add_argument("--scope", type=_scope, default=GLOBAL_SCOPE)
    history = sub.add_parser("history", help="every version of a memory, oldest first")
    history.add_argument("memory_id")
    history.add_argument("--json", action="store_true", help="print one JSON document")
    rollback = sub.add_parser("rollback", help="make an earlier version current again")
    rollback.add_argument("memory_id")
    rollback.add_argument("version", type=_positive)


def run(args: argparse.Namespace) -> int:
    """Run one ``soloist memory`` subcommand; returns the exit status."""
    from app.memory.db import Database
    from app.memory.errors import StoreError
    from app.memory.service import MemoryService

    command = _SUBCOMMANDS[args.memory_command]
    try:
        db = Database.open(paths.db_path())
    except StoreError as exc:  # in use by a running Soloist, damaged, too new
        return _fail(str(exc))
    try:
        service = MemoryService(db, make_embedder)
        try:
            return command(service, args)
        except StoreError as exc:
            return _fail(str(exc))
        finally:
            service.close()
    finally:
        db.close()


# -- subcommands ------------------------------------------------------------------
def _search(service: MemoryService, args: argparse.Namespace) -> int:
    from app.memory.search import SearchFilter

    where = SearchFilter(
        scopes=tuple(args.scope) if args.scope else None,
        kinds=tuple(args.kind) if args.kind else None,
        agent_id=args.agent,
        source_file_prefix=str(Path(args.source).expanduser().resolve()) if args.source else None,
    )
    service.start()
    service.wait_ready()
    result = service.search(args.query, k=args.k, where=where)
    if args.json:
        print(json.dumps(_result_doc(result), indent=2, ensure_ascii=False))
        return 0
    for side, used in (("vector", result.vector_searched), ("keyword", result.keyword_searched)):
        if not used:
            print(f"note: {side} search was not available for this query.", file=sys.stderr)
    if not result.hits:
        print("No memory matches.")
    for rank, hit in enumerate(result, 1):
        _print_hit(rank, hit)
    return 0


def _add(service: MemoryService, args: argparse.Namespace) -> int:
    written = service.remember(args.text, kind=args.kind, scope=args.scope, provenance=BY_HAND)
    print(f"Remembered {written.memory_id} ({written.kind}, {written.scope}).")
    return 0


def _ingest(service: MemoryService, args: argparse.Namespace) -> int:
    cancel = threading.Event()
    outcome: list[IngestReport | BaseException] = []

    def work() -> None:
        try:
            outcome.append(service.ingest(args.folder, args.scope, _progress_line(), cancel))
        except BaseException as exc:  # handed to the main thread, which reports it
            outcome.append(exc)

    worker = threading.Thread(target=work, name="soloist-cli-ingest", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(timeout=0.2)
    except KeyboardInterrupt:
        cancel.set()
        print("\nStopping after the current file…", file=sys.stderr)
        worker.join()
        return EXIT_INTERRUPTED
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return _print_report(Path(args.folder), outcome[0])


def _history(service: MemoryService, args: argparse.Namespace) -> int:
    versions = service.store.history(args.memory_id)
    if args.json:
        print(json.dumps([_version_doc(v) for v in versions], indent=2, ensure_ascii=False))
        return 0
    for version in versions:
        mark = "*" if version.is_current else " "
        what = "(deleted)" if version.tombstone else _preview(version.text)
        print(
            f"{mark} v{version.version:<3} {version.op.value:<8} {_when(version.valid_from)}  "
            f"{_source(version) or 'by hand'}\n      {what}"
        )
    return 0


def _rollback(service: MemoryService, args: argparse.Namespace) -> int:
    written = service.store.rollback_memory(args.memory_id, args.version, BY_HAND)
    if written.restored_from is None:
        print(f"Memory {args.memory_id} is at version {written.version} already; nothing written.")
    else:
        state = "deleted" if written.tombstone else "back"
        print(
            f"Memory {args.memory_id} is {state} as it was in version {args.version} "
            f"(written as version {written.version}; the history is kept)."
        )
    return 0


_SUBCOMMANDS: dict[str, Callable[[MemoryService, argparse.Namespace], int]] = {
    "search": _search,
    "add": _add,
    "ingest": _ingest,
    "history": _history,
    "rollback": _rollback,
}


# -- argument types ------------------------------------------------------------------
def _scope(value: str) -> str:
    try:
        return check_scope(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a number of 1 or more, got {value}")
    return number


# -- output --------------------------------------------------------------------------------
def _fail(message: str) -> int:
    print(f"soloist: {message}", file=sys.stderr)
    return EXIT_FAILED


def _progress_line() -> Callable[[IngestProgress], None]:
    """Progress on stderr: one line rewritten in place on a terminal, the last line otherwise."""
    live = sys.stderr.isatty()

    def show(event: IngestProgress) -> None:
        if not (live or event.final):
            return
        eta = f", about {event.eta_s:.0f} s left" if event.eta_s and not event.final else ""
        line = (
            f"Indexing: {event.files_done}/{event.files_total} files, {event.chunks_done} "
            f"chunks, {event.rate:.1f} chunks/s{eta}"
        )
        end = "\n" if event.final else ""
        print(f"\r{line:<79}" if live else line, end=end, file=sys.stderr, flush=True)

    return show


def _print_report(folder: Path, report: IngestReport) -> int:
    print(
        f"{report.status.value.capitalize()}: {folder} in {report.elapsed_s:.1f} s: "
        f"{report.files_indexed} files indexed, {report.files_unchanged} unchanged, "
        f"{report.files_skipped} skipped, {report.files_removed} removed; "
        f"{report.chunks_added} chunks added, {report.chunks_reused} reused, "
        f"{report.chunks_removed} removed."
    )
    for skipped in report.skipped:
        print(f"  skipped {skipped.path}: {skipped.detail}")
    return 0 if report.status.value == "succeeded" else EXIT_FAILED


def _print_hit(rank: int, hit: SearchHit) -> None:
    ranks = ", ".join(
        f"{side} #{place}"
        for side, place in (("vector", hit.vector_rank), ("keyword", hit.keyword_rank))
        if place is not None
    )
    print(
        f"{rank:>2}. {hit.memory_id}  {hit.kind}  {hit.scope}  {_when(hit.created_at)}  "
        f"score {hit.score:.4f} ({ranks})"
    )
    print(f"    {_preview(hit.text)}")
    source = hit.provenance.source_file or hit.provenance.source_url
    if source:
        print(f"    from {source}")


def _result_doc(result: SearchResult) -> dict[str, Any]:
    return {
        "vector_searched": result.vector_searched,
        "keyword_searched": result.keyword_searched,
        "hits": [
            {
                "memory_id": hit.memory_id,
                "version_id": hit.version_id,
                "text": hit.text,
                "kind": hit.kind,
                "scope": hit.scope,
                "score": hit.score,
                "vector_rank": hit.vector_rank,
                "keyword_rank": hit.keyword_rank,
                "created_at": hit.created_at.isoformat(),
                "provenance": _provenance_doc(hit.provenance),
                "metadata": hit.metadata,
            }
            for hit in result
        ],
    }


def _version_doc(version: MemoryVersion) -> dict[str, Any]:
    return {
        "version_id": version.id,
        "version": version.version,
        "op": version.op.value,
        "text": version.text,
        "deleted": version.tombstone,
        "restored_from": version.restored_from,
        "current": version.is_current,
        "valid_from": version.valid_from.isoformat(),
        "valid_to": None if version.valid_to is None else version.valid_to.isoformat(),
        "provenance": _provenance_doc(version.provenance),
    }


def _provenance_doc(provenance: Provenance) -> dict[str, Any]:
    fields = ("agent_id", "run_id", "step_seq", "tool", "message_id", "source_file", "source_url")
    return {name: getattr(provenance, name) for name in fields}


def _source(version: MemoryVersion) -> str:
    found = _provenance_doc(version.provenance)
    return ", ".join(f"{name} {value}" for name, value in found.items() if value is not None)


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _PREVIEW else flat[: _PREVIEW - 1] + "…"


def _when(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"
