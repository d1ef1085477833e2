"""The office's engine wiring: the child process, a remote endpoint keyed from the
keyring, and the local OpenAI-compatible API turned on from settings.

Real pieces throughout: the engine child on the tiny model, GNOME Keyring on
a private D-Bus, ``llama_cpp.server`` as the remote endpoint, httpx as the
API's client.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from keyring.backends.SecretService import Keyring as SecretServiceKeyring
from servers import llama_cpp_server

from app.engine.llamacpp import LlamaCppEngine
from app.engine.process import ENGINE_MODE_ENV
from app.engine.process.supervisor import ProcessEngine
from app.engine.remote import RemoteAuthError
from app.engine.routing import RoutingEngine
from app.office import API_ENABLED_SETTING, Office, RemoteEndpoint
from app.secrets import API_TOKEN, SecretRef, SecretStore

pytestmark = pytest.mark.slow

KEY = "sk-office-remote-7d1f0c"


@pytest.fixture
def store(secret_service: str) -> SecretStore:
    return SecretStore(SecretServiceKeyring())


@pytest.fixture(scope="module")
def keyed_server(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with llama_cpp_server(tiny_model, tmp_path_factory.mktemp("keyed"), api_key=KEY) as url:
        yield url


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _reply(office: Office, text: str = "hello") -> str:
    conversation = office.new_conversation()
    turn = office.send(conversation.id, text, max_tokens=8)
    chunks = list(turn.chunks)
    assert chunks[-1].is_final
    return "".join(c.text for c in chunks)


def test_the_engine_runs_in_a_child_process_by_default(
    tiny_model: Path, soloist_home: Path, store: SecretStore
) -> None:
    office = Office(soloist_home, secrets=store)
    try:
        office.set_model_path(str(tiny_model))
        _reply(office)
        engine = office.engine
        assert isinstance(engine, ProcessEngine)
        pid = engine.pid
        assert pid is not None and pid != os.getpid()
    finally:
        office.close()
    assert not _alive(pid)


def test_the_inprocess_flag_keeps_llama_cpp_in_the_office(
    tiny_model: Path, soloist_home: Path, store: SecretStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENGINE_MODE_ENV, "inprocess")
    office = Office(soloist_home, secrets=store)
    try:
        office.set_model_path(str(tiny_model))
        _reply(office)
        assert isinstance(office.engine, LlamaCppEngine)
    finally:
        office.close()


def test_a_remote_endpoint_uses_the_key_from_the_keyring(
    keyed_server: str, soloist_home: Path, store: SecretStore, tmp_path: Path
) -> None:
    office = Office(soloist_home, secrets=store)
    try:
        # The local model is missing: the request degrades to the endpoint.
        office.set_model_path(str(tmp_path / "not-downloaded-yet.gguf"))
        office.set_remote_endpoint(RemoteEndpoint("lab", keyed_server), api_key=KEY)
        assert store.get(SecretRef.remote("lab")) == KEY
        assert _reply(office)
        assert isinstance(office.engine, RoutingEngine)
    finally:
        office.close()
    stored = b"".join(p.read_bytes() for p in soloist_home.glob("office.duckdb*"))
    assert KEY.encode() not in stored  # only the endpoint's id and address are in settings


def test_a_wrong_key_reaches_the_caller_as_an_auth_error(
    keyed_server: str, soloist_home: Path, store: SecretStore, tmp_path: Path
) -> None:
    office = Office(soloist_home, secrets=store)
    try:
        office.set_model_path(str(tmp_path / "absent.gguf"))
        office.set_remote_endpoint(RemoteEndpoint("lab", keyed_server), api_key="sk-wrong")
        with pytest.raises(RemoteAuthError):
            _reply(office)
        office.clear_remote_endpoint()
        assert store.find(SecretRef.remote("lab")) is None
    finally:
        office.close()


def test_remote_endpoint_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="http"):
        RemoteEndpoint("lab", "ftp://example")
    with pytest.raises(ValueError, match="priority"):
        RemoteEndpoint("lab", "http://127.0.0.1:1", priorities=("urgent",))
    endpoint = RemoteEndpoint("lab", "http://127.0.0.1:1", priorities=("background",))
    assert RemoteEndpoint.from_json(endpoint.to_json()) == endpoint
    assert RemoteEndpoint.from_json({"id": "x"}) is None


def test_the_local_api_is_turned_on_from_settings(
    tiny_model: Path, soloist_home: Path, store: SecretStore
) -> None:
    office = Office(soloist_home, secrets=store)
    try:
        office.set_model_path(str(tiny_model))
        office.enable_api(True, port=0)
        assert office.api is not None
        url, token = office.api.url, office.api_token()
        assert store.get(API_TOKEN) == token
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(timeout=60) as client:
            assert client.get(f"{url}/v1/models").status_code == 401
            ids = [m["id"] for m in client.get(f"{url}/v1/models", headers=auth).json()["data"]]
            assert tiny_model.stem in ids
            answer = client.post(
                f"{url}/v1/chat/completions",
                headers=auth,
                json={
                    "model": tiny_model.stem,
                    "messages": [{"role": "user", "content": "hi"}],
                    "max_tokens": 6,
                },
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["usage"]["completion_tokens"] >= 1
    finally:
        office.close()
    # Remembered: the next office serves again, with the same token.
    again = Office(soloist_home, secrets=store)
    try:
        assert again.settings.get(API_ENABLED_SETTING) is True
        assert again.api is not None
        with httpx.Client(timeout=30) as client:
            reply = client.get(f"{again.api.url}/v1/models", headers=auth)
            assert reply.status_code == 200
        again.enable_api(False)
        assert again.api is None
        assert again.settings.get(API_ENABLED_SETTING) is False
    finally:
        again.close()


def test_an_api_port_in_use_is_reported_not_raised(
    tiny_model: Path, soloist_home: Path, store: SecretStore
) -> None:
    first = Office(soloist_home, secrets=store)
    try:
        first.enable_api(True, port=0)
        assert first.api is not None
        port = int(first.api.url.rsplit(":", 1)[1])
        first.settings.set("api.port", port)
        second_home = soloist_home.parent / "second"
        second = Office(second_home, secrets=store)
        try:
            second.settings.set("api.port", port)
            started = time.monotonic()
            second.enable_api(True)
            assert second.api is None
            assert second.api_error is not None and "could not start" in second.api_error
            assert time.monotonic() - started < 30
        finally:
            second.close()
    finally:
        first.close()
