"""Downloads against a real HTTP server on 127.0.0.1 serving a generated GGUF."""

from __future__ import annotations

import argparse
import hashlib
import http.server
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from app import cli_models
from app.engine.catalog import ModelCatalog, read_model_info
from app.engine.downloads import (
    ChecksumMismatchError,
    DownloadCancelledError,
    Downloader,
    DownloadError,
    DownloadForbiddenError,
    DownloadNetworkError,
    DownloadNotFoundError,
    DownloadProgress,
    DownloadState,
    InsufficientDiskError,
    download,
    part_path,
    safe_url,
)
from app.engine.errors import EngineError

CHUNK = 16 * 1024


@dataclass
class Served:
    """What the test server does; tests flip these switches."""

    body: bytes
    etag: str
    ranges: bool = True  # honour Range (206); False: always the whole file (200)
    status: int = 200  # 404, 403, 500... instead of the file
    cut_after: int | None = None  # close the socket after this many body bytes...
    cuts: int = 0  # ...this many times
    delay_s: float = 0.0  # pause between 16 KiB pieces
    requests: list[dict[str, str]] = field(default_factory=list)
    sent: int = 0  # body bytes written, over all requests


class _Handler(http.server.BaseHTTPRequestHandler):
    served: ClassVar[Served]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        s = self.served
        s.requests.append(dict(self.headers.items()))
        if s.status != 200:
            self.send_error(s.status)
            return
        start = self._range_start(s)
        body = s.body[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(s.body) - 1}/{len(s.body)}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", s.etag)
        self.send_header("Accept-Ranges", "bytes" if s.ranges else "none")
        self.end_headers()
        self._send(s, body)

    def _range_start(self, s: Served) -> int:
        asked = self.headers.get("Range", "")
        if not s.ranges or not asked.startswith("bytes="):
            return 0
        if_range = self.headers.get("If-Range")
        if if_range is not None and if_range != s.etag:
            return 0  # the file changed: send all of it
        return int(asked.removeprefix("bytes=").split("-")[0])

    def _send(self, s: Served, body: bytes) -> None:
        limit = len(body)
        if s.cuts > 0 and s.cut_after is not None:
            s.cuts -= 1
            limit = min(limit, s.cut_after)
        try:
            for i in range(0, limit, CHUNK):
                piece = body[i : min(i + CHUNK, limit)]
                self.wfile.write(piece)
                s.sent += len(piece)
                if s.delay_s:
                    time.sleep(s.delay_s)
            if limit < len(body):
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away (a cancel): nothing to do


@pytest.fixture(scope="module")
def model_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    from app.devtools.testmodels import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("dl") / "tiny.gguf").read_bytes()


@pytest.fixture
def served(model_bytes: bytes) -> Iterator[tuple[Served, str]]:
    """A server on 127.0.0.1; yields its switches and the model's URL."""
    state = Served(body=model_bytes, etag=f'"{hashlib.sha256(model_bytes).hexdigest()[:16]}"')
    handler = type("Handler", (_Handler,), {"served": state})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}/models/tiny.gguf"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fast(**kwargs: Any) -> Downloader:
    """A downloader with small chunks and no backoff wait."""
    return Downloader(chunk_size=CHUNK, backoff_s=0.0, **kwargs)


class TickingClock:
    """A clock a second ahead at each reading: every chunk reports progress."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def cancel_after_first_bytes(cancel: threading.Event) -> Any:
    def on_progress(p: DownloadProgress) -> None:
        if p.bytes_done > 0:
            cancel.set()

    return on_progress


def test_full_download_is_verified_and_moved_into_place(
    served: tuple[Served, str], tmp_path: Path, model_bytes: bytes
) -> None:
    state, url = served
    events: list[DownloadProgress] = []
    dest = tmp_path / "models" / "tiny.gguf"
    result = download(
        url, dest, expected_sha256=sha(model_bytes).upper(), on_progress=events.append
    )
    assert dest.read_bytes() == model_bytes
    assert result.verified and result.sha256 == sha(model_bytes) and result.size == len(model_bytes)
    assert not part_path(dest).exists() and not dest.with_name("tiny.gguf.part.json").exists()
    assert "Range" not in state.requests[0]
    final = events[-1]
    assert final.state is DownloadState.DONE
    assert final.bytes_done == final.bytes_total == len(model_bytes)
    assert final.eta_s == 0 and final.rate_bps > 0 and final.resumed_from == 0
    assert read_model_info(dest).architecture == "llama"


def test_connection_cut_half_way_resumes_without_starting_over(
    served: tuple[Served, str], tmp_path: Path, model_bytes: bytes
) -> None:
    state, url = served
    state.cut_after, state.cuts = len(model_bytes) // 2, 1
    events: list[DownloadProgress] = []
    dest = tmp_path / "tiny.gguf"
    result = fast().download(url, dest, expected_sha256=sha(model_bytes), on_progress=events.append)
    assert dest.read_bytes() == model_bytes and result.verified
    assert len(state.requests) == 2
    resumed_at = int(state.requests[1]["Range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= len(model_bytes) // 2
    assert state.requests[1]["If-Range"] == state.etag
    assert state.sent == len(model_bytes) // 2 + len(model_bytes) - resumed_at
    assert DownloadState.RETRYING in {e.state for e in events}


def test_cancel_keeps_the_part_and_a_later_call_resumes(
    served: tuple[Served, str], tmp_path: Path, model_bytes: bytes
) -> None:
    state, url = served
    dest = tmp_path / "tiny.gguf"
    cancel = threading.Event()
    with pytest.raises(DownloadCancelledError, match="kept"):
        fast(clock=TickingClock()).download(
            url, dest, on_progress=cancel_after_first_bytes(cancel), cancel=cancel
        )
    kept = part_path(dest).stat().st_size
    assert kept == CHUNK and not dest.exists()  # stopped within one chunk

    events: list[DownloadProgress] = []
    result = fast().download(url, dest, expected_sha256=sha(model_bytes), on_progress=events.append)
    assert dest.read_bytes() == model_bytes and result.resumed_from == kept
    assert state.requests[-1]["Range"] == f"bytes={kept}-"
    assert events[-1].resumed_from == kept


def test_a_complete_part_is_finished_without_a_request(
    served: tuple[Served, str], tmp_path: Path, model_bytes: bytes
) -> None:
    state, url = served
    dest = tmp_path / "tiny.gguf"

    class CrashError(Exception):
        pass

    def crash_when_all_arrived(p: DownloadProgress) -> None:
        if p.bytes_done == len(model_bytes):
            raise CrashError  # the process dies between the last byte and the rename

    with pytest.raises(CrashError):
        fast(clock=TickingClock()).download(url, dest, on_progress=crash_when_all_arrived)
    assert part_path(dest).stat().st_size == len(model_bytes) and not dest.exists()
    result = fast().download(url, dest, expected_sha256=sha(model_bytes))
    assert result.verified and result.resumed_from == len(model_bytes)
    assert len(state.requests) == 1


def test_cancel_from_another_thread_stops_a_slow_download(
    served: tuple[Served, str], tmp_path: Path
) -> None:
    state, url = served
    state.delay_s = 0.02
    cancel = threading.Event()
    started = threading.Event()

    def watch(p: DownloadProgress) -> None:
        if p.bytes_done:
            started.set()

    def stop() -> None:
        started.wait(10)
        cancel.set()

    stopper = threading.Thread(target=stop)
    stopper.start()
    try:
        with pytest.raises(DownloadCancelledError):
            fast().download(url, tmp_path / "tiny.gguf", on_progress=watch, cancel=cancel)
    finally:
        stopper.join(10)
    assert part_path(tmp_path / "tiny.gguf").is_file()


def test_wrong_sha256_deletes_the_part_and_places_nothing(
    served: tuple[Served, str], tmp_path: Path
) -> None:
    _, url = served
    dest = tmp_path / "tiny.gguf"
    with pytest.raises(ChecksumMismatchError, match="not the expected file") as err:
        fast().download(url, dest, expected_sha256="0" * 64)
    assert isinstance(err.value, DownloadError) and isinstance(err.value, EngineError)
    assert not dest.exists() and not part_path(dest).exists()
    assert not dest.with_name("tiny.gguf.part.json").exists()


def test_wrong_expected_size_fails_before_the_body(
    served: tuple[Served, str], tmp_path: Path, model_bytes: bytes
) -> None:
    state, url = served
    with pytest.raises(ChecksumMismatchError, match="bytes, not the expected"):
        fast().download(url, tmp_path / "tiny.gguf", expected_size=len(model_bytes) + 1)
    assert len(state.requests) == 1
    assert not part_path(tmp_path / "tiny.gguf").exists()


@dataclass(frozen=True)
class _Usage:
    free: int


def test_disk_full_is_refused_before_any_request(
    served: tuple[Served, str], tmp_path: Path, model_bytes: bytes
) -> None:
    state, url = served
    tiny_disk = fast(disk_usage=lambda _p: _Usage(free=1000), disk_margin=0)
    with pytest.raises(InsufficientDiskError, match="Not enough disk space"):
        tiny_disk.download(url, tmp_path / "tiny.gguf", expected_size=len(model_bytes))
    assert state.requests == []
    assert not part_path(tmp_path / "tiny.gguf").exists()


def test_disk_full_is_refused_once_the_size_is_known(
    served: tuple[Served, str], tmp_path: Path, model_bytes: bytes
) -> None:
    state, url = served
    seen: list[Path] = []

    def usage(path: Path) -> _Usage:
        seen.append(path)
        return _Usage(free=len(model_bytes) + 10)  # enough for the file, not the margin

    with pytest.raises(InsufficientDiskError, match="to spare"):
        fast(disk_usage=usage, disk_margin=1 << 20).download(url, tmp_path / "tiny.gguf")
    assert seen == [tmp_path] and len(state.requests) == 1
    assert not (tmp_path / "tiny.gguf").exists() and not part_path(tmp_path / "tiny.gguf").exists()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full")
def test_enospc_while_writing_is_a_typed_error(served: tuple[Served, str], tmp_path: Path) -> None:
    _, url = served
    dest = tmp_path / "tiny.gguf"
    part_path(dest).symlink_to("/dev/full")  # every write fails with ENOSPC
    with pytest.raises(InsufficientDiskError, match="disk filled up"):
        fast().download(url, dest)
    assert not dest.exists()


def test_server_without_range_support_restarts_cleanly(
    served: tuple[Served, str], tmp_path: Path, model_bytes: bytes
) -> None:
    state, url = served
    state.ranges = False
    state.cut_after, state.cuts = len(model_bytes) // 2, 1
    dest = tmp_path / "tiny.gguf"
    result = fast().download(url, dest, expected_sha256=sha(model_bytes))
    assert dest.read_bytes() == model_bytes and result.verified
    assert len(state.requests) == 2 and "Range" in state.requests[1]  # asked, was refused
    assert result.resumed_from == 0


def test_changed_file_on_the_server_is_fetched_again_whole(
    served: tuple[Served, str], tmp_path: Path, model_bytes: bytes
) -> None:
    state, url = served
    dest = tmp_path / "tiny.gguf"
    cancel = threading.Event()
    with pytest.raises(DownloadCancelledError):
        fast(clock=TickingClock()).download(
            url, dest, cancel=cancel, on_progress=cancel_after_first_bytes(cancel)
        )
    assert part_path(dest).stat().st_size == CHUNK
    new_body = model_bytes[::-1]
    state.body, state.etag = new_body, '"changed"'
    result = fast().download(url, dest, expected_sha256=sha(new_body))
    assert dest.read_bytes() == new_body and result.resumed_from == 0
    assert state.requests[-1]["Range"] == f"bytes={CHUNK}-"
    assert state.requests[-1]["If-Range"] != '"changed"'  # the old validator was sent


@pytest.mark.parametrize(
    ("status", "error", "words"),
    [
        (404, DownloadNotFoundError, "There is no file at"),
        (403, DownloadForbiddenError, "token"),
        (401, DownloadForbiddenError, "licence"),
    ],
)
def test_http_errors_are_typed_with_clear_messages(
    served: tuple[Served, str], tmp_path: Path, status: int, error: type[Exception], words: str
) -> None:
    state, url = served
    state.status = status
    with pytest.raises(error, match=words) as err:
        fast().download(url + "?token=secret", tmp_path / "tiny.gguf")
    assert "secret" not in str(err.value) and f"HTTP {status}" in str(err.value)
    assert "\n" not in str(err.value)
    assert len(state.requests) == 1  # not retried
    assert not part_path(tmp_path / "tiny.gguf").exists()


def test_server_errors_are_retried_then_reported(
    served: tuple[Served, str], tmp_path: Path
) -> None:
    state, url = served
    state.status = 503
    with pytest.raises(DownloadNetworkError, match="kept failing"):
        fast(retries=2).download(url, tmp_path / "tiny.gguf")
    assert len(state.requests) == 3


def test_connection_refused_is_a_network_error(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nobody listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DownloadNetworkError, match="could not connect") as err:
        fast(retries=1).download(f"http://127.0.0.1:{port}/x.gguf", tmp_path / "x.gguf")
    assert "2 tries" in str(err.value)
    assert not part_path(tmp_path / "x.gguf").exists()


def test_repeated_cuts_give_up_after_the_retries(
    served: tuple[Served, str], tmp_path: Path
) -> None:
    state, url = served
    state.cut_after, state.cuts = 0, 10  # headers, then nothing, every time
    with pytest.raises(DownloadNetworkError, match="connection was lost"):
        fast(retries=2).download(url, tmp_path / "tiny.gguf")
    assert len(state.requests) == 3


def test_a_part_from_another_address_is_not_resumed(
    served: tuple[Served, str], tmp_path: Path, model_bytes: bytes
) -> None:
    state, url = served
    dest = tmp_path / "tiny.gguf"
    part_path(dest).write_bytes(b"junk from somewhere else")
    result = fast().download(url, dest, expected_sha256=sha(model_bytes))
    assert result.resumed_from == 0 and "Range" not in state.requests[0]
    assert dest.read_bytes() == model_bytes


def test_given_client_and_headers_are_used(
    served: tuple[Served, str], tmp_path: Path, model_bytes: bytes
) -> None:
    state, url = served
    with httpx.Client() as client:
        result = download(
            url, tmp_path / "tiny.gguf", client=client, headers={"Authorization": "Bearer hf_x"}
        )
    assert result.size == len(model_bytes) and not result.verified
    assert state.requests[0]["Authorization"] == "Bearer hf_x"


def test_invalid_addresses_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="http"):
        download("ftp://example.org/x.gguf", tmp_path / "x.gguf")
    assert not part_path(tmp_path / "x.gguf").exists()


def test_safe_url_hides_query_and_credentials() -> None:
    assert safe_url("https://u:p@host/a/b.gguf?token=1#x") == "https://host/a/b.gguf"


# --- the `soloist models download` command -----------------------------------


def _args(**kwargs: Any) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli_models.add_parser(parser.add_subparsers(dest="command"))
    argv = ["models", *kwargs.pop("argv")]
    return parser.parse_args(argv)


def test_cli_download_by_url_records_the_digest(
    served: tuple[Served, str],
    soloist_home: Path,
    model_bytes: bytes,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, url = served
    args = _args(argv=["download", url, "--sha256", sha(model_bytes)])
    assert cli_models.run(args) == 0
    dest = soloist_home / "models" / "tiny.gguf"
    assert dest.read_bytes() == model_bytes
    err = capsys.readouterr().err
    assert "SHA-256 verified" in err and "100.0%" in err
    cache = ModelCatalog(dest.parent).scan()
    assert cache.models[0].sha256 == sha(model_bytes)  # recorded, not recomputed


def test_cli_download_reports_errors_in_one_line(
    served: tuple[Served, str], soloist_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state, url = served
    state.status = 404
    assert cli_models.run(_args(argv=["download", url])) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("soloist: There is no file at")


def test_cli_unknown_name_is_a_usage_error(
    soloist_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_models.run(_args(argv=["download", "no-such-model"])) == 2
    assert "recommended" in capsys.readouterr().err


def test_cli_download_skips_a_file_already_in_place(
    served: tuple[Served, str], soloist_home: Path, model_bytes: bytes
) -> None:
    state, url = served
    assert cli_models.run(_args(argv=["download", url])) == 0
    assert cli_models.run(_args(argv=["download", url, "--sha256", sha(model_bytes)])) == 0
    assert len(state.requests) == 1
    assert cli_models.run(_args(argv=["download", url, "--sha256", "1" * 64])) == 1


def test_cli_targets_resolve_to_urls_and_checksums() -> None:
    from app.engine.catalog import RECOMMENDED

    model = RECOMMENDED[0]
    named = cli_models._resolve(model.key, None, "main")
    assert named is not None
    assert (named.url, named.sha256, named.size) == (model.url, model.sha256, model.size_bytes)
    by_url = cli_models._resolve("https://example.org/files/My%20Model.gguf?x=1", "ab", "main")
    assert by_url is not None and (by_url.filename, by_url.sha256) == ("My Model.gguf", "ab")
    on_hub = cli_models._resolve("org/repo/sub/m.gguf", None, "v1")
    assert on_hub is not None and on_hub.filename == "m.gguf"
    assert on_hub.url == "https://huggingface.co/org/repo/resolve/v1/sub/m.gguf"
    assert cli_models._resolve("just-a-word", None, "main") is None
