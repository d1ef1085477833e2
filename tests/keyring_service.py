"""A real Secret Service for tests: a private D-Bus and an unlocked GNOME Keyring.

``secret_service`` starts its own ``dbus-daemon`` (a config of our own, so
nothing on the bus is D-Bus-activated behind our back) and a
``gnome-keyring-daemon --unlock`` on it, with HOME and XDG dirs in a
temporary folder; both are stopped after the test. Import the fixture into
a test module to use it.

``MemoryKeyring`` is the in-memory backend for the logic tests, shared by
every test module that needs a keyring but not the real one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

NEEDS_DAEMON = pytest.mark.skipif(
    shutil.which("gnome-keyring-daemon") is None or shutil.which("dbus-daemon") is None,
    reason="gnome-keyring-daemon or dbus-daemon not on PATH "
    "(apt-get install gnome-keyring dbus-daemon; .ci/run installs them)",
)

_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


class MemoryKeyring:
    """A duck-typed keyring backend kept in a dict (the real one is ``secret_service``).

    ``priority`` is what ``SecretStore`` checks before using a backend; a
    subclass named like a file backend (``PlaintextKeyring``) is refused by
    that name, as the real ones are.
    """

    priority: float = 1.0

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.values.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.values[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        from keyring.errors import PasswordDeleteError

        if self.values.pop((service, username), None) is None:
            raise PasswordDeleteError(username)


# ------------------------------------------------------------------ fixtures


def stop_process(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    for pipe in (process.stdin, process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()


def _start_bus(root: Path) -> tuple[subprocess.Popen[str], str]:
    config = root / "bus.conf"
    config.write_text(_BUS_CONFIG.format(socket=root / "bus"), encoding="utf-8")
    bus = subprocess.Popen(
        ["dbus-daemon", f"--config-file={config}", "--nofork", "--nopidfile", "--print-address=1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert bus.stdout is not None
    address = bus.stdout.readline().strip()
    if not address:
        stop_process(bus)
        pytest.fail("dbus-daemon did not start")
    return bus, address


def _wait_for_secret_service(deadline_s: float) -> None:
    import secretstorage

    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        connection = secretstorage.dbus_init()
        try:
            if secretstorage.check_service_availability(connection):
                return
        finally:
            connection.close()
        time.sleep(0.05)
    pytest.fail("gnome-keyring-daemon did not claim org.freedesktop.secrets")


@pytest.fixture
def secret_service(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A private session bus with an unlocked GNOME Keyring; yields the bus address."""
    root = Path(tempfile.mkdtemp(prefix="soloist-kr-"))  # short: a socket path has a limit
    root.chmod(0o700)
    bus, address = _start_bus(root)
    env = {
        "HOME": str(root),
        "XDG_RUNTIME_DIR": str(root),
        "XDG_DATA_HOME": str(root / "data"),
        "XDG_CONFIG_HOME": str(root / "config"),
        "XDG_CACHE_HOME": str(root / "cache"),
        "DBUS_SESSION_BUS_ADDRESS": address,
    }
    daemon = subprocess.Popen(
        ["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **env},
    )
    try:
        assert daemon.stdin is not None
        daemon.stdin.write(b"login-keyring-password")  # --unlock reads it up to EOF
        daemon.stdin.close()
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        _wait_for_secret_service(30)
        yield address
    finally:
        stop_process(daemon)
        stop_process(bus)
        shutil.rmtree(root, ignore_errors=True)
