"""Download model files: resumable, verified, cancellable.

A download writes ``<dest>.part`` beside a small JSON sidecar
``<dest>.part.json`` (address, ETag / Last-Modified, expected digest). A later
call for the same address resumes with ``Range: bytes=N-`` and ``If-Range``;
a server that answers 200 instead of 206 (no Range support, or the file
changed) is followed from byte 0, cleanly. The SHA-256 is computed as bytes
arrive (the existing part is re-hashed on resume) and checked, with the size,
*before* the file is moved into place with ``os.replace``; nothing half-made
ever sits at ``dest``.

::

    DownloadError (EngineError)   a download did not finish
    ├── DownloadNotFoundError     HTTP 404/410: no file at that address
    ├── DownloadForbiddenError    HTTP 401/403: a token or licence acceptance is needed
    ├── DownloadNetworkError      the connection failed, even after retries
    ├── ChecksumMismatchError     the bytes are not the expected file (part deleted)
    ├── InsufficientDiskError     not enough free space (checked first, and ENOSPC)
    └── DownloadCancelledError    the caller cancelled (part kept for a resume)

Headers (a Hugging Face token) are never logged, and addresses are logged
without their query string.
"""

from __future__ import annotations

import enum
import errno
import hashlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

import httpx

from app.engine.errors import EngineError

log = logging.getLogger("soloist.downloads")

_DISK_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))

CHUNK_SIZE = 1 << 20
DISK_MARGIN = 64 << 20  # keep this much free beyond the file itself
PROGRESS_INTERVAL_S = 0.1
RETRIES = 3
BACKOFF_S = 1.0


class DownloadError(EngineError):
    """A download did not finish; the message says why and what to do."""


class DownloadNotFoundError(DownloadError):
    """The server has no file at that address."""


class DownloadForbiddenError(DownloadError):
    """The server refused: a token or an accepted licence is needed."""


class DownloadNetworkError(DownloadError):
    """The connection failed and retrying did not help."""


class ChecksumMismatchError(DownloadError):
    """The downloaded bytes are not the expected file."""


class InsufficientDiskError(DownloadError):
    """There is not enough free disk space for the file."""


class DownloadCancelledError(DownloadError):
    """The caller cancelled the download; the partial file is kept."""


class DownloadState(enum.Enum):
    """Where a download is; each change is reported as a progress event."""

    CONNECTING = "connecting"
    DOWNLOADING = "downloading"
    RETRYING = "retrying"  # the connection was lost; waiting to resume
    DONE = "done"  # verified and moved into place


@dataclass(frozen=True, slots=True)
class DownloadProgress:
    """One progress event: at most every ~100 ms, plus one on each state change."""

    bytes_done: int
    bytes_total: int | None
    rate_bps: float
    eta_s: float | None
    resumed_from: int
    state: DownloadState = DownloadState.DOWNLOADING


@dataclass(frozen=True, slots=True)
class DownloadResult:
    """A finished download: the file is at ``path``."""

    path: Path
    sha256: str
    size: int
    verified: bool  # the digest matched an expected SHA-256
    resumed_from: int


class DiskUsage(Protocol):
    @property
    def free(self) -> int: ...


ProgressFn = Callable[[DownloadProgress], None]


def part_path(dest: str | Path) -> Path:
    """Where the unfinished bytes of ``dest`` are kept."""
    dest = Path(dest)
    return dest.with_name(dest.name + ".part")


def safe_url(url: str) -> str:
    """The address without query string or credentials, for messages and logs."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "<invalid address>"
    return str(parsed.copy_with(query=None, fragment=None, username=None, password=None))


class Downloader:
    """Downloads files over HTTP(S); the transport, disk and clock are injectable."""

    def __init__(
        self,
        *,
        client: httpx.Client | None = None,
        chunk_size: int = CHUNK_SIZE,
        headers: Mapping[str, str] | None = None,
        retries: int = RETRIES,
        backoff_s: float = BACKOFF_S,
        disk_usage: Callable[[Path], DiskUsage] = shutil.disk_usage,
        disk_margin: int = DISK_MARGIN,
        clock: Callable[[], float] = time.monotonic,
        timeout_s: float = 30.0,
    ) -> None:
        self.client = client
        self.chunk_size = chunk_size
        self.headers = dict(headers or {})
        self.retries = retries
        self.backoff_s = backoff_s
        self.disk_usage = disk_usage
        self.disk_margin = disk_margin
        self.clock = clock
        self.timeout_s = timeout_s

    def download(
        self,
        url: str,
        dest: str | Path,
        *,
        expected_sha256: str | None = None,
        expected_size: int | None = None,
        on_progress: ProgressFn | None = None,
        cancel: threading.Event | None = None,
    ) -> DownloadResult:
        """Fetch ``url`` into ``dest``, resuming a ``.part`` left by an earlier call."""
        transfer = _Transfer(
            self,
            url,
            Path(dest),
            expected_sha256=expected_sha256,
            expected_size=expected_size,
            on_progress=on_progress,
            cancel=cancel,
        )
        if self.client is not None:
            return transfer.run(self.client)
        timeout = httpx.Timeout(self.timeout_s, connect=min(self.timeout_s, 10.0))
        with httpx.Client(follow_redirects=True, timeout=timeout) as client:
            return transfer.run(client)


def download(
    url: str,
    dest: str | Path,
    *,
    expected_sha256: str | None = None,
    expected_size: int | None = None,
    on_progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    client: httpx.Client | None = None,
    chunk_size: int = CHUNK_SIZE,
    headers: Mapping[str, str] | None = None,
) -> DownloadResult:
    """Download ``url`` to ``dest`` with the default settings; see ``Downloader``."""
    downloader = Downloader(client=client, chunk_size=chunk_size, headers=headers)
    return downloader.download(
        url,
        dest,
        expected_sha256=expected_sha256,
        expected_size=expected_size,
        on_progress=on_progress,
        cancel=cancel,
    )


class _RetryableError(Exception):
    """The attempt failed in a way worth retrying (lost connection, 5xx)."""


class _Transfer:
    """One call of ``Downloader.download``: the .part file, its hash, its progress."""

    def __init__(
        self,
        owner: Downloader,
        url: str,
        dest: Path,
        *,
        expected_sha256: str | None,
        expected_size: int | None,
        on_progress: ProgressFn | None,
        cancel: threading.Event | None,
    ) -> None:
        self.o = owner
        self.url, self.dest, self.part = url, dest, part_path(dest)
        self.meta = dest.with_name(dest.name + ".part.json")
        self.expected_sha256 = expected_sha256.strip().lower() if expected_sha256 else None
        self.expected_size = expected_size
        self.on_progress, self.cancel = on_progress, cancel
        self.hasher = hashlib.sha256()
        self.offset = self.resumed_from = self.received = 0
        self.total: int | None = None
        self.validator: str | None = None
        self.fh: IO[bytes] | None = None
        self.started = self.last_emit = 0.0

    # -- the whole download ---------------------------------------------------

    def run(self, client: httpx.Client) -> DownloadResult:
        _check_url(self.url)
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        self.started = self.o.clock()
        self._open_part()
        try:
            if self.expected_size is not None:
                self._check_disk(self.expected_size)
            if self.total is None or self.offset != self.total:  # else: stopped at the end
                self._fetch_with_retries(client)
            return self._finish()
        except BaseException:
            if self.offset == 0:  # nothing worth keeping for a resume
                self._discard()
            raise
        finally:
            if self.fh is not None:
                self.fh.close()

    def _fetch_with_retries(self, client: httpx.Client) -> None:
        failures = 0
        while True:
            self._check_cancel()
            before = self.offset
            try:
                self._fetch(client)
                return
            except (_RetryableError, httpx.TransportError) as exc:
                failures = 1 if self.offset > before else failures + 1
                if failures > self.o.retries:
                    raise self._network_error(exc) from exc
                delay = self.o.backoff_s * 2 ** (failures - 1)
                log.info(
                    "download of %s interrupted at %d bytes (%s); retry %d in %.1f s",
                    safe_url(self.url),
                    self.offset,
                    type(exc).__name__,
                    failures,
                    delay,
                )
                self._emit(DownloadState.RETRYING)
                self._wait(delay)
            except httpx.HTTPError as exc:  # too many redirects, undecodable body
                raise DownloadError(
                    f"Downloading from {safe_url(self.url)} failed: {type(exc).__name__}."
                ) from exc

    def _fetch(self, client: httpx.Client) -> None:
        headers = {**self.o.headers, "Accept-Encoding": "identity"}
        if self.offset:
            headers["Range"] = f"bytes={self.offset}-"
            if self.validator:
                headers["If-Range"] = self.validator
        self._emit(DownloadState.CONNECTING)
        with client.stream("GET", self.url, headers=headers, follow_redirects=True) as response:
            self._check_status(response)
            self._accept(response)
            for chunk in response.iter_bytes(self.o.chunk_size):
                self._check_cancel()
                self._write(chunk)
        if self.total is not None and self.offset < self.total:
            raise _RetryableError(f"the server sent {self.offset} of {self.total} bytes")

    def _finish(self) -> DownloadResult:
        assert self.fh is not None
        digest = self.hasher.hexdigest()
        wanted_size = self.expected_size if self.expected_size is not None else self.total
        if wanted_size is not None and self.offset != wanted_size:
            self._discard()
            raise ChecksumMismatchError(
                f"{self.dest.name} arrived with {self.offset:,} bytes instead of "
                f"{wanted_size:,}; the partial file was deleted. Try again."
            )
        if self.expected_sha256 is not None and digest != self.expected_sha256:
            self._discard()
            raise ChecksumMismatchError(
                f"{self.dest.name} is not the expected file: its SHA-256 is {digest[:12]}…, "
                f"not {self.expected_sha256[:12]}…. It was deleted; try again, or check "
                "the checksum you gave."
            )
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        os.replace(self.part, self.dest)
        self.meta.unlink(missing_ok=True)
        self._emit(DownloadState.DONE)
        log.info(
            "downloaded %s: %d bytes in %.1f s (resumed from %d)",
            self.dest.name,
            self.offset,
            self.o.clock() - self.started,
            self.resumed_from,
        )
        verified = self.expected_sha256 is not None
        return DownloadResult(self.dest, digest, self.offset, verified, self.resumed_from)

    # -- the .part file and its sidecar ---------------------------------------

    def _open_part(self) -> None:
        """Resume a .part that an earlier call for this address left, else start anew."""
        meta = self._load_meta()
        if meta is not None and self.part.is_file():
            self.validator = meta.get("etag") or meta.get("last_modified")
            self.total = meta.get("total") if isinstance(meta.get("total"), int) else None
            self.fh = self.part.open("ab", buffering=0)
            with self.part.open("rb") as existing:
                self.hasher = hashlib.file_digest(existing, "sha256")
            self.offset = self.resumed_from = self.part.stat().st_size
            log.info("resuming %s at %d bytes", self.dest.name, self.offset)
        else:
            self.meta.unlink(missing_ok=True)
            self.fh = self.part.open("wb", buffering=0)

    def _load_meta(self) -> dict[str, Any] | None:
        try:
            meta = json.loads(self.meta.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or meta.get("url") != self.url:
            return None
        known = meta.get("expected_sha256")
        if known and self.expected_sha256 and known != self.expected_sha256:
            return None  # another file is wanted now
        return meta

    def _save_meta(self, response: httpx.Response) -> None:
        etag = response.headers.get("ETag")
        meta = {
            "url": self.url,
            "etag": etag if etag and not etag.startswith("W/") else None,  # If-Range needs strong
            "last_modified": response.headers.get("Last-Modified"),
            "expected_sha256": self.expected_sha256,
            "total": self.total,
        }
        self.validator = meta["etag"] or meta["last_modified"]
        self.meta.write_text(json.dumps(meta), encoding="utf-8")

    def _restart(self) -> None:
        assert self.fh is not None
        self.fh.seek(0)
        self.fh.truncate()
        self.hasher = hashlib.sha256()
        self.offset = self.resumed_from = 0

    def _discard(self) -> None:
        if self.fh is not None:
            self.fh.close()
        self.part.unlink(missing_ok=True)
        self.meta.unlink(missing_ok=True)

    def _write(self, chunk: bytes) -> None:
        assert self.fh is not None
        try:
            _write_all(self.fh, chunk)
        except OSError as exc:
            if exc.errno in _DISK_FULL:
                raise InsufficientDiskError(
                    f"The disk filled up while downloading {self.dest.name}; the partial file "
                    "is kept. Free some space and run the download again to resume."
                ) from exc
            raise DownloadError(f"Could not write {self.part}: {exc.strerror or exc}.") from exc
        self.hasher.update(chunk)
        self.offset += len(chunk)
        self.received += len(chunk)
        self._emit(DownloadState.DOWNLOADING, throttle=True)

    # -- the response ---------------------------------------------------------

    def _check_status(self, response: httpx.Response) -> None:
        code, where = response.status_code, safe_url(self.url)
        if code in (200, 206):
            return
        if code in (404, 410):
            raise DownloadNotFoundError(
                f"There is no file at {where} (HTTP {code}). Check the repository and file name."
            )
        if code in (401, 403):
            raise DownloadForbiddenError(
                f"The server refused access to {where} (HTTP {code}). A gated Hugging Face "
                "model needs a token (HF_TOKEN) and its licence accepted on the model's page."
            )
        if code == 416 and self.offset:  # our part is longer than the file: start over
            self._restart()
            raise _RetryableError("HTTP 416")
        if code == 429 or code >= 500:
            raise _RetryableError(f"HTTP {code}")
        raise DownloadError(f"The server refused the download of {where} (HTTP {code}).")

    def _accept(self, response: httpx.Response) -> None:
        """Decide where the body starts, learn the total size, check the disk."""
        if response.status_code == 206:
            start, total = _content_range(response.headers.get("Content-Range"))
            if start != self.offset:
                self._restart()
                raise _RetryableError(f"the server resumed at byte {start}, not {self.offset}")
            self.total = total
        else:
            if self.offset:
                log.info("%s: the server sent the whole file; starting over", self.dest.name)
                self._restart()
            length = response.headers.get("Content-Length")
            self.total = int(length) if length and length.isdigit() else None
        if self.total is not None and self.expected_size not in (None, self.total):
            self._discard()
            raise ChecksumMismatchError(
                f"{safe_url(self.url)} is {self.total:,} bytes, not the expected "
                f"{self.expected_size:,}: it is not the expected file. Nothing was kept."
            )
        self._check_disk(self.total)
        self._save_meta(response)
        self._emit(DownloadState.DOWNLOADING)

    def _check_disk(self, total: int | None) -> None:
        if total is None:
            return
        remaining = max(total - self.offset, 0)
        free = self.o.disk_usage(self.dest.parent).free
        if free < remaining + self.o.disk_margin:
            raise InsufficientDiskError(
                f"Not enough disk space for {self.dest.name}: it needs {_mb(remaining)} more "
                f"(plus {_mb(self.o.disk_margin)} to spare) but {self.dest.parent} has "
                f"{_mb(free)} free. Free some space and try again."
            )

    # -- progress, cancel, errors ---------------------------------------------

    def _emit(self, state: DownloadState, *, throttle: bool = False) -> None:
        if self.on_progress is None:
            return
        now = self.o.clock()
        if throttle and now - self.last_emit < PROGRESS_INTERVAL_S:
            return
        self.last_emit = now
        elapsed = now - self.started
        rate = self.received / elapsed if elapsed > 0 else 0.0
        eta = None
        if self.total is not None and rate > 0:
            eta = max(self.total - self.offset, 0) / rate
        self.on_progress(
            DownloadProgress(self.offset, self.total, rate, eta, self.resumed_from, state)
        )

    def _check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise DownloadCancelledError(
                f"The download of {self.dest.name} was cancelled at {_mb(self.offset)}; "
                "the partial file is kept, so downloading it again resumes."
            )

    def _wait(self, delay: float) -> None:
        if self.cancel is not None:
            self.cancel.wait(delay)
            self._check_cancel()
        elif delay > 0:
            time.sleep(delay)

    def _network_error(self, exc: Exception) -> DownloadNetworkError:
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            what = "could not connect to the server"
        elif isinstance(exc, httpx.TimeoutException):
            what = "the server stopped answering"
        elif isinstance(exc, _RetryableError):
            what = f"the server kept failing ({exc})"
        else:
            what = "the connection was lost"
        kept = f"; {_mb(self.offset)} are kept and the next try resumes" if self.offset else ""
        return DownloadNetworkError(
            f"Downloading {self.dest.name} from {safe_url(self.url)} failed: {what} "
            f"({self.o.retries + 1} tries){kept}. Check the internet connection."
        )


def _check_url(url: str) -> None:
    try:
        scheme = httpx.URL(url).scheme
    except (httpx.InvalidURL, TypeError) as exc:
        raise DownloadError(f"{url!r} is not a valid download address.") from exc
    if scheme not in ("http", "https"):
        raise DownloadError(f"{safe_url(url)} is not an http(s) address.")


def _write_all(fh: IO[bytes], data: bytes) -> None:
    """Write every byte: an unbuffered file may take only part of a chunk."""
    view = memoryview(data)
    while view:
        written = fh.write(view)
        if not written:
            raise OSError(errno.EIO, "the file accepted no bytes")
        view = view[written:]


def _content_range(value: str | None) -> tuple[int, int | None]:
    """``bytes 100-999/1000`` -> (100, 1000); total ``*`` -> None."""
    try:
        unit, _, spec = (value or "").partition(" ")
        span, _, total = spec.partition("/")
        if unit.strip().lower() != "bytes":
            raise ValueError(value)
        return int(span.partition("-")[0]), (None if total.strip() == "*" else int(total))
    except ValueError as exc:
        raise _RetryableError(f"unreadable Content-Range {value!r}") from exc


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"
