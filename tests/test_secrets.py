"""The secret store: a real GNOME Keyring on a private D-Bus, and its refusals.

The real-daemon tests start their own ``dbus-daemon`` (a config of our own,
so nothing on the bus is D-Bus-activated behind our back) and a
``gnome-keyring-daemon --unlock`` on it, with HOME and XDG dirs in a
temporary folder; both are stopped after each test.

The fake backends below are plain classes, not ``KeyringBackend``
subclasses: keyring registers every subclass globally, and a fake with a
priority could then become the process's default keyring in later tests.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from keyring.backends import fail, null
from keyring.backends.chainer import ChainerBackend
from keyring.backends.SecretService import Keyring as SecretServiceKeyring
from keyring.errors import KeyringError, KeyringLocked
from keyring_service import NEEDS_DAEMON

from app.secrets import (
    API_TOKEN,
    SecretNotFoundError,
    SecretRef,
    SecretsError,
    SecretStore,
    SecretsUnavailableError,
    api_key_for,
    choose_backend,
    refusal,
)

SECRET = "sk-test-4f7c1e9a-do-not-leak"


@pytest.fixture
def store(secret_service: str) -> SecretStore:
    return SecretStore(SecretServiceKeyring())


# -------------------------------------------------------------- fake backends


class _Recorder:
    """A duck-typed keyring backend that keeps secrets in a dict."""

    priority: float = 1.0

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], str] = {}
        self.calls: list[str] = []

    def get_password(self, service: str, username: str) -> str | None:
        self.calls.append("get")
        return self.data.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.calls.append("set")
        self.data[service, username] = password

    def delete_password(self, service: str, username: str) -> None:
        self.calls.append("delete")
        del self.data[service, username]


class MemoryVault(_Recorder):
    """Stands for an acceptable OS keyring."""


class PlaintextKeyring(_Recorder):
    """Named like keyrings.alt.file.PlaintextKeyring, and as eager to be used."""

    priority = 2.0


class EncryptedKeyring(_Recorder):
    """Stands for keyrings.alt's encrypted file: still a file of ours, refused."""

    priority = 2.0


EncryptedKeyring.__module__ = "keyrings.alt.file"


class ProbeFailsKeyring(_Recorder):
    """A backend whose priority check raises: it says it cannot work here."""

    @property
    def priority(self) -> float:  # type: ignore[override]
        raise RuntimeError("no such service")


class LeakyFailingKeyring(_Recorder):
    """Fails with library errors that quote the secret."""

    def set_password(self, service: str, username: str, password: str) -> None:
        raise KeyringError(f"could not store {password!r}")

    def get_password(self, service: str, username: str) -> str | None:
        raise KeyringLocked(f"locked; last value was {SECRET}")


# ------------------------------------------------------------ the real daemon


@NEEDS_DAEMON
def test_round_trip_through_gnome_keyring(store: SecretStore) -> None:
    ref = SecretRef.remote("office-server")
    assert store.check() == "keyring.backends.SecretService.Keyring"
    assert store.find(ref) is None

    store.set(ref, SECRET)
    assert store.get(ref) == SECRET
    assert SecretStore(SecretServiceKeyring()).get(ref) == SECRET  # persisted, not cached

    store.delete(ref)
    assert store.find(ref) is None
    with pytest.raises(SecretNotFoundError, match="remote:office-server"):
        store.get(ref)
    with pytest.raises(SecretNotFoundError):
        store.delete(ref)


@NEEDS_DAEMON
def test_set_replaces_and_keys_stay_apart(store: SecretStore) -> None:
    store.set(SecretRef.remote("a"), "first")
    store.set(SecretRef.remote("a"), "second")
    store.set(SecretRef.remote("b"), "other")
    store.set(API_TOKEN, "token-value")

    assert store.get(SecretRef.remote("a")) == "second"
    assert store.get(SecretRef.remote("b")) == "other"
    assert store.get(API_TOKEN) == "token-value"
    assert SecretStore(SecretServiceKeyring(), service="another-app").find(API_TOKEN) is None


@NEEDS_DAEMON
def test_api_key_for_a_remote_endpoint(store: SecretStore) -> None:
    store.set(SecretRef.remote("gpu-box"), SECRET)

    assert api_key_for("gpu-box", store) == SECRET
    assert api_key_for("laptop", store) is None


@NEEDS_DAEMON
def test_the_value_stays_out_of_repr_and_logs(
    store: SecretStore, caplog: pytest.LogCaptureFixture
) -> None:
    ref = SecretRef.remote("office-server")
    with caplog.at_level(logging.DEBUG):
        store.set(ref, SECRET)
        store.get(ref)
        store.delete(ref)
        with pytest.raises(SecretNotFoundError) as missing:
            store.get(ref)

    assert "remote:office-server" in caplog.text  # the log says what happened...
    assert SECRET not in caplog.text  # ...never with what
    assert SECRET not in repr(store)
    assert SECRET not in repr(ref)
    assert SECRET not in str(missing.value)


# ------------------------------------------------------- failing closed, here


def test_no_session_bus_fails_closed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path}/no-bus")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    store = SecretStore(SecretServiceKeyring())

    with pytest.raises(SecretsUnavailableError, match="gnome-keyring") as err:
        store.set(API_TOKEN, SECRET)
    with pytest.raises(SecretsUnavailableError):
        store.find(API_TOKEN)
    with pytest.raises(SecretsUnavailableError):
        api_key_for("gpu-box", store)
    assert "never in a file" in str(err.value)
    assert SECRET not in str(err.value)


@pytest.mark.parametrize(
    "backend",
    [fail.Keyring(), null.Keyring(), PlaintextKeyring(), EncryptedKeyring(), ProbeFailsKeyring()],
    ids=["fail", "null", "plaintext", "keyrings.alt", "not-viable"],
)
def test_unusable_backends_are_refused_before_any_call(backend: Any) -> None:
    store = SecretStore(backend)

    assert refusal(backend) is not None
    with pytest.raises(SecretsUnavailableError, match="No usable keyring"):
        store.set(API_TOKEN, SECRET)
    with pytest.raises(SecretsUnavailableError):
        store.get(API_TOKEN)
    assert getattr(backend, "calls", []) == []  # not even tried


def test_an_acceptable_backend_is_used() -> None:
    vault = MemoryVault()
    store = SecretStore(vault)  # type: ignore[arg-type]

    store.set(API_TOKEN, SECRET)

    assert refusal(vault) is None  # type: ignore[arg-type]
    assert vault.data == {("soloist", "api:token"): SECRET}
    assert store.get(API_TOKEN) == SECRET


def chain_of(*backends: object) -> ChainerBackend:
    """A ChainerBackend over ``backends``, without asking the real ones for their priority
    (patching ``ChainerBackend.backends`` would: a Secret Service cached by an earlier
    test then fails when its private bus is gone)."""

    class Chain(ChainerBackend):
        pass

    Chain.backends = list(backends)  # type: ignore[assignment,misc]
    return Chain()


def test_a_chain_skips_its_file_backends() -> None:
    vault, plaintext = MemoryVault(), PlaintextKeyring()

    assert choose_backend(chain_of(plaintext, vault)) is vault
    with pytest.raises(SecretsUnavailableError, match="PlaintextKeyring"):
        choose_backend(chain_of(plaintext))


def test_keyring_default_choice_is_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    import keyring

    monkeypatch.setattr(keyring, "get_keyring", fail.Keyring)
    with pytest.raises(SecretsUnavailableError, match=r"keyring\.backends\.fail"):
        SecretStore().check()


def test_backend_errors_are_mapped_without_their_text(caplog: pytest.LogCaptureFixture) -> None:
    store = SecretStore(LeakyFailingKeyring())  # type: ignore[arg-type]

    with caplog.at_level(logging.DEBUG):
        with pytest.raises(SecretsUnavailableError) as stored:
            store.set(API_TOKEN, SECRET)
        with pytest.raises(SecretsUnavailableError, match="locked") as read:
            store.get(API_TOKEN)

    assert isinstance(stored.value, SecretsError)
    assert "Nothing was changed" in str(stored.value)
    for text in (str(stored.value), str(read.value), caplog.text):
        assert SECRET not in text


@pytest.mark.parametrize("key", ["", "remote", "remote:", "Remote:x", "remote:has space", ":x"])
def test_bad_keys_are_rejected(key: str) -> None:
    with pytest.raises(ValueError, match="not a secret key"):
        SecretRef(key)


def test_empty_secrets_are_rejected() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        SecretStore(MemoryVault()).set(API_TOKEN, "")  # type: ignore[arg-type]
