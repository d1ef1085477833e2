"""A real Radicale CardDAV/CalDAV server on loopback for the DAV tests.

``radicale_server`` starts ``python -m radicale`` with a config in a temp
directory (plain htpasswd, owner-only rights, filesystem storage), waits
until it answers, creates one address book and one calendar for the test
user, and stops the process at teardown.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from servers import free_port

USER = "ana"
PASSWORD = "s3cret-Pa55"

_CONFIG = """\
[server]
hosts = 127.0.0.1:{port}
[auth]
type = htpasswd
htpasswd_filename = {htpasswd}
htpasswd_encryption = plain
delay = 0
[storage]
filesystem_folder = {storage}
[rights]
type = owner_only
[logging]
level = warning
mask_passwords = True
"""

_MKCOL_BOOK = """<?xml version="1.0" encoding="utf-8"?>
<mkcol xmlns="DAV:" xmlns:CR="urn:ietf:params:xml:ns:carddav"><set><prop>
<resourcetype><collection/><CR:addressbook/></resourcetype>
<displayname>Contacts</displayname></prop></set></mkcol>"""

_MKCALENDAR = """<?xml version="1.0" encoding="utf-8"?>
<C:mkcalendar xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><set><prop>
<displayname>Work</displayname>
<C:supported-calendar-component-set><C:comp name="VEVENT"/></C:supported-calendar-component-set>
</prop></set></C:mkcalendar>"""


@dataclass(frozen=True, slots=True)
class DavServer:
    url: str  # http://127.0.0.1:port/
    user: str
    password: str
    book_url: str
    calendar_url: str


def _wait_until_up(url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"radicale exited early: {log_path.read_text(errors='replace')[-2000:]}")
        try:
            with httpx.Client(timeout=1) as client:
                if client.get(url).status_code < 500:
                    return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    pytest.fail("radicale did not answer within 30 s")


def _create_collections(server: DavServer) -> None:
    with httpx.Client(auth=(server.user, server.password), timeout=10) as client:
        book = client.request("MKCOL", server.book_url, content=_MKCOL_BOOK)
        cal = client.request("MKCALENDAR", server.calendar_url, content=_MKCALENDAR)
    assert book.status_code == 201, book.text
    assert cal.status_code == 201, cal.text


def start_radicale(workdir: Path) -> tuple[subprocess.Popen[bytes], DavServer, Path]:
    """Start a server in ``workdir``; the caller stops the process."""
    port = free_port()
    htpasswd = workdir / "users"
    htpasswd.write_text(f"{USER}:{PASSWORD}\n")
    storage = workdir / "collections"
    config = workdir / "radicale.conf"
    config.write_text(_CONFIG.format(port=port, htpasswd=htpasswd, storage=storage))
    log_path = workdir / "radicale.log"
    url = f"http://127.0.0.1:{port}/"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "radicale", "--config", str(config)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    return (
        proc,
        DavServer(url, USER, PASSWORD, f"{url}{USER}/book/", f"{url}{USER}/work/"),
        log_path,
    )


@pytest.fixture
def radicale(tmp_path: Path) -> Iterator[DavServer]:
    """A fresh Radicale with the test user's address book and calendar."""
    workdir = tmp_path / "radicale"
    workdir.mkdir()
    proc, server, log_path = start_radicale(workdir)
    try:
        _wait_until_up(server.url, proc, log_path)
        _create_collections(server)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
