"""``soloist memory`` end to end on the test's data directory (SOLOIST_HOME).

The commands run in this process through ``cli_memory.add_parser`` and
``run``, as ``app.cli`` calls them; ``make_embedder`` is the seam that
swaps the real model for ``HashEmbedder`` except in the one test that
runs all-MiniLM-L6-v2.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
from holders import database_held_by_another_process
from test_search import HashEmbedder

from app import cli_memory, paths
from app.memory.db import Database
from app.memory.longterm import MemoryStore
from app.memory.provenance import Provenance


def soloist_memory(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="soloist")
    cli_memory.add_parser(parser.add_subparsers(dest="command"))
    return cli_memory.run(parser.parse_args(["memory", *argv]))


def as_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    capsys.readouterr()
    assert soloist_memory(*argv, "--json") == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> HashEmbedder:
    embedder = HashEmbedder()
    monkeypatch.setattr(cli_memory, "make_embedder", lambda: embedder)
    return embedder


@pytest.mark.usefixtures("hashed")
def test_add_search_history_and_rollback(capsys: pytest.CaptureFixture[str]) -> None:
    assert soloist_memory("add", "Anna's bakery pays invoices late", "--kind", "fact") == 0
    assert soloist_memory("add", "Invoices go out on the first", "--scope", "contact:anna") == 0
    assert "Remembered" in capsys.readouterr().out

    found = as_json(capsys, "search", "invoices", "--scope", "contact:anna")
    assert found["keyword_searched"] and found["vector_searched"]
    assert [h["text"] for h in found["hits"]] == ["Invoices go out on the first"]
    hit = found["hits"][0]
    assert hit["scope"] == "contact:anna" and hit["kind"] == "note"
    assert hit["provenance"]["tool"] == "cli"
    memory_id = hit["memory_id"]

    with Database.open(_db_path()) as db:  # a change made elsewhere, e.g. by an agent
        MemoryStore(db).update(memory_id, "Invoices go out on the fifth", Provenance())

    history = as_json(capsys, "history", memory_id)
    assert [(v["version"], v["text"], v["current"]) for v in history] == [
        (1, "Invoices go out on the first", False),
        (2, "Invoices go out on the fifth", True),
    ]
    assert soloist_memory("rollback", memory_id, "1") == 0
    assert "as it was in version 1" in capsys.readouterr().out
    again = as_json(capsys, "search", "invoices first", "--scope", "contact:anna")
    assert again["hits"][0]["text"] == "Invoices go out on the first"

    assert soloist_memory("history", memory_id) == 0
    shown = capsys.readouterr().out
    assert "* v3" in shown and "restore" in shown and "v1" in shown


@pytest.mark.usefixtures("hashed")
def test_search_prints_hits_and_filters_by_kind(capsys: pytest.CaptureFixture[str]) -> None:
    soloist_memory("add", "Rye flour comes on Tuesdays", "--kind", "fact")
    soloist_memory("add", "Rye bread sells out by noon")
    capsys.readouterr()

    assert soloist_memory("search", "rye", "--kind", "fact", "--k", "5") == 0
    shown = capsys.readouterr().out
    assert " 1. " in shown and "Rye flour comes on Tuesdays" in shown
    assert "sells out" not in shown


@pytest.mark.usefixtures("hashed")
def test_ingest_shows_progress_and_search_finds_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "suppliers.txt").write_text("Mill Ostrowski delivers spelt every other Thursday.\n")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7 this is not really a pdf")

    assert soloist_memory("ingest", str(folder)) == 0
    captured = capsys.readouterr()
    assert "Indexing: 2/2 files" in captured.err
    assert "1 files indexed" in captured.out and "1 skipped" in captured.out
    assert "skipped " in captured.out and "broken.pdf" in captured.out

    found = as_json(capsys, "search", "Ostrowski spelt", "--source", str(folder))
    source = str((folder / "suppliers.txt").resolve())
    assert found["hits"][0]["provenance"]["source_file"] == source
    assert found["hits"][0]["kind"] == "document_chunk"
    elsewhere = as_json(capsys, "search", "Ostrowski", "--source", str(tmp_path / "nowhere"))
    assert elsewhere["hits"] == []


@pytest.mark.usefixtures("hashed")
def test_failures_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert soloist_memory("search", "   ") == 1
    assert soloist_memory("history", "0" * 32) == 1
    assert soloist_memory("ingest", str(tmp_path / "missing")) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("soloist: ") for line in lines)
    assert "query is empty" in lines[0]
    assert "no memory with id" in lines[1]
    assert "no such folder" in lines[2]


@pytest.mark.parametrize(
    "argv",
    [
        ("search", "x", "--scope", "everyone"),
        ("search", "x", "--k", "0"),
        ("add", "x", "--kind", "gossip"),
        ("rollback", "abc", "zero"),
    ],
)
def test_usage_errors_exit_2(argv: tuple[str, ...]) -> None:
    with pytest.raises(SystemExit) as caught:
        soloist_memory(*argv)
    assert caught.value.code == 2


@pytest.mark.usefixtures("hashed")
def test_refuses_while_another_process_holds_the_database(
    capsys: pytest.CaptureFixture[str],
) -> None:
    soloist_memory("add", "kept safe while the office runs")
    db_path = _db_path()
    with database_held_by_another_process(db_path) as holder:
        before = {f.name: f.read_bytes() for f in db_path.parent.iterdir() if f.is_file()}
        capsys.readouterr()
        assert soloist_memory("add", "should not be written") == 1
        assert soloist_memory("search", "kept") == 1
        after = {f.name: f.read_bytes() for f in db_path.parent.iterdir() if f.is_file()}
        assert after == before
    err = capsys.readouterr().err
    assert f"in use by another Soloist process (pid {holder.pid})" in err
    assert "Nothing was changed" in err


@pytest.mark.slow
def test_end_to_end_with_the_real_model(capsys: pytest.CaptureFixture[str]) -> None:
    for text in (
        "The van's MOT is due in March.",
        "Customers love the cardamom buns.",
        "The accountant needs the VAT receipts by Friday.",
    ):
        assert soloist_memory("add", text) == 0
    found = as_json(capsys, "search", "tax paperwork deadline", "--k", "3")
    assert found["hits"][0]["text"] == "The accountant needs the VAT receipts by Friday."


def _db_path() -> Path:
    return paths.db_path()
