"""Real servers that tests start on loopback."""

from __future__ import annotations

import contextlib
import importlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def llama_cpp_server(model: Path, workdir: Path, api_key: str | None = None) -> Iterator[str]:
    """``python -m llama_cpp.server`` on ``model``; yields its base URL."""
    # The dev extra installs the server's packages: a missing one is a failure, not a skip.
    importlib.import_module("llama_cpp.server.app")
    port = free_port()
    log_path = workdir / "server.log"
    cmd = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(model),
        "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "512",
    ]  # fmt: skip
    if api_key:
        cmd += ["--api_key", api_key]
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_until_up(url, proc, log_path, headers)
            yield url
        finally:
            proc.kill()
            proc.wait(timeout=10)


def _wait_until_up(
    url: str, proc: subprocess.Popen[bytes], log_path: Path, headers: dict[str, str]
) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"llama_cpp.server exited early; see {log_path}")
        try:
            if httpx.get(f"{url}/v1/models", headers=headers, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"llama_cpp.server did not answer within 60 s; see {log_path}")
