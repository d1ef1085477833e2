"""``soloist models``: the local model catalog, recommendations and downloads.

soloist models list [--json] [--hash]       the GGUF files of the models folder
soloist models recommended [--json]         small instruct models for first run
soloist models download TARGET [--sha256]   TARGET: a recommended name, a URL,
                                            or REPO/FILE on Hugging Face

Downloads resume: run the same command again after a cut or Ctrl-C. A token
for gated Hugging Face repositories is read from ``HF_TOKEN``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from app import paths
from app.engine.catalog import (
    RECOMMENDED,
    CatalogScan,
    ModelCatalog,
    find_recommended,
    hf_url,
    read_model_info,
)
from app.engine.errors import EngineError

if TYPE_CHECKING:  # the downloader (and httpx) load only for a download
    from app.engine.downloads import DownloadProgress

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``models`` and its sub-commands to the ``soloist`` parser."""
    models = subparsers.add_parser("models", help="list, recommend and download GGUF models")
    models.add_argument("--dir", default=None, help="models folder (default: <data dir>/models)")
    sub = models.add_subparsers(dest="models_command", required=True)
    listing = sub.add_parser("list", help="the models in the models folder")
    listing.add_argument("--json", action="store_true", help="print one JSON document")
    listing.add_argument("--hash", action="store_true", help="compute missing SHA-256 digests")
    recommended = sub.add_parser("recommended", help="small instruct models for first run")
    recommended.add_argument("--json", action="store_true", help="print one JSON document")
    fetch = sub.add_parser(
        "download",
        help="download a model into the models folder (resumes an interrupted one)",
        description="TARGET is a recommended model's name (see `soloist models recommended`), "
        "an http(s) URL, or REPO/FILE on Hugging Face (e.g. Qwen/Qwen2.5-0.5B-Instruct-GGUF/"
        "qwen2.5-0.5b-instruct-q4_k_m.gguf).",
    )
    fetch.add_argument("target", help="recommended name, URL, or REPO/FILE")
    fetch.add_argument("--sha256", default=None, help="expected SHA-256 of the file")
    fetch.add_argument("--revision", default="main", help="Hugging Face revision for REPO/FILE")


def run(args: argparse.Namespace) -> int:
    """Run a ``soloist models`` command; returns the exit status."""
    folder = Path(args.dir) if args.dir else paths.models_dir()
    if args.models_command == "list":
        return _list(folder, as_json=args.json, hash_files=args.hash)
    if args.models_command == "recommended":
        return _recommended(as_json=args.json)
    return _download(folder, args)


# --- list --------------------------------------------------------------------


def _list(folder: Path, *, as_json: bool, hash_files: bool) -> int:
    scan = ModelCatalog(folder).scan(hash=hash_files)
    if as_json:
        print(json.dumps(_scan_doc(folder, scan), indent=2))
        return 0
    if not scan.models and not scan.broken:
        print(f"No models in {folder}. Try `soloist models recommended`.")
        return 0
    for m in scan.models:
        template = "chat template" if m.has_chat_template else "no chat template"
        digest = m.sha256[:12] if m.sha256 else "not hashed"
        print(
            f"{Path(m.path).name}  {m.architecture} · {_count(m.parameters)} parameters · "
            f"{m.quantisation} · {m.context_length:,} context · {template} · "
            f"{_size(m.file_size)} · sha256 {digest}"
        )
    for b in scan.broken:
        print(f"{Path(b.path).name}  BROKEN: {b.reason}")
    return 0


def _scan_doc(folder: Path, scan: CatalogScan) -> dict[str, Any]:
    return {
        "models_dir": str(folder),
        "models": [asdict(m) for m in scan.models],
        "broken": [asdict(b) for b in scan.broken],
    }


# --- recommended ---------------------------------------------------------------


def _recommended(*, as_json: bool) -> int:
    if as_json:
        doc = [asdict(m) | {"key": m.key, "url": m.url} for m in RECOMMENDED]
        print(json.dumps(doc, indent=2))
        return 0
    for m in RECOMMENDED:
        size = _size(m.size_bytes) if m.size_bytes else "size unknown"
        check = "verified download" if m.verified else "UNVERIFIED (no published checksum)"
        print(f"{m.key:<24} {m.parameters:>5} {m.quantisation} · {size} · {m.licence} · {check}")
        print(f"{'':<24} {m.notes}")
    return 0


# --- download ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Target:
    url: str
    filename: str
    sha256: str | None
    size: int | None


def _resolve(target: str, sha256: str | None, revision: str) -> _Target | None:
    """A recommended name, a URL, or REPO/FILE; None when it is none of these."""
    model = find_recommended(target)
    if model is not None:
        return _Target(model.url, model.filename, sha256 or model.sha256, model.size_bytes)
    if target.startswith(("http://", "https://")):
        name = unquote(urlsplit(target).path.rsplit("/", 1)[-1])
        return _Target(target, name, sha256, None) if name else None
    parts = target.strip("/").split("/")
    if len(parts) >= 3 and all(parts):
        repo, filename = "/".join(parts[:2]), "/".join(parts[2:])
        return _Target(hf_url(repo, filename, revision), parts[-1], sha256, None)
    return None


def _download(folder: Path, args: argparse.Namespace) -> int:
    from app.engine.downloads import download

    target = _resolve(args.target, args.sha256, args.revision)
    if target is None:
        print(
            f"soloist: {args.target!r} is not a recommended model, a URL or REPO/FILE; "
            "see `soloist models recommended`.",
            file=sys.stderr,
        )
        return EXIT_USAGE
    dest = folder / target.filename
    catalog = ModelCatalog(folder)
    if dest.exists():
        return _already_there(catalog, dest, target)
    token = os.environ.get("HF_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else None
    line = _ProgressLine(target.filename)
    try:
        result = download(
            target.url,
            dest,
            expected_sha256=target.sha256,
            expected_size=target.size,
            on_progress=line.show,
            headers=headers,
        )
    except KeyboardInterrupt:
        line.end()
        print("Download paused; run the same command again to resume.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except EngineError as exc:
        line.end()
        print(f"soloist: {exc}", file=sys.stderr)
        return EXIT_FAILED
    line.end()
    catalog.record_sha256(dest, result.sha256)
    how = "SHA-256 verified" if result.verified else f"unverified, SHA-256 {result.sha256}"
    print(f"Saved {dest} ({_size(result.size)}, {how}).", file=sys.stderr)
    return _describe(dest)


def _already_there(catalog: ModelCatalog, dest: Path, target: _Target) -> int:
    if target.sha256 is not None and catalog.sha256(dest) != target.sha256.lower():
        print(
            f"soloist: {dest} already exists but is not the expected file; "
            "move it away and download again.",
            file=sys.stderr,
        )
        return EXIT_FAILED
    print(f"{dest} is already here.", file=sys.stderr)
    return 0


def _describe(dest: Path) -> int:
    try:
        info = read_model_info(dest)
    except EngineError as exc:
        print(f"soloist: the download finished but the file is not usable: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(
        f"{info.name}: {info.architecture}, {_count(info.parameters)} parameters, "
        f"{info.quantisation}, {info.context_length:,} context.",
        file=sys.stderr,
    )
    return 0


class _ProgressLine:
    """One line on stderr, redrawn in place: percent, size, rate, time left."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.width = 0
        self.shown = False

    def show(self, p: DownloadProgress) -> None:
        done = _size(p.bytes_done)
        if p.bytes_total:
            pct = 100 * p.bytes_done / p.bytes_total
            done = f"{pct:5.1f}% {done} of {_size(p.bytes_total)}"
        text = f"{self.name}: {done} · {_size(int(p.rate_bps))}/s"
        if p.eta_s is not None:
            text += f" · {time.strftime('%H:%M:%S', time.gmtime(p.eta_s))} left"
        if p.state.value not in ("downloading", "done"):
            text += f" · {p.state.value}"
        sys.stderr.write("\r" + text.ljust(self.width))
        sys.stderr.flush()
        self.width, self.shown = len(text), True

    def end(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
            self.shown = False


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _count(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)
