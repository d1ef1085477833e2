"""Passwords, API keys and tokens, kept only in the OS keyring.

Soloist stores a secret under the service name ``soloist`` and a key such as
``remote:<endpoint-id>`` or ``api:token``. Settings and the database hold a
:class:`SecretRef` (the key, never the value). The store fails closed: when no
keyring backend is usable, or the only one is a file (``keyrings.alt``'s
plaintext or encrypted files, ``keyrings.cryptfile``...), every call raises
:class:`SecretsUnavailableError` with what to install; a secret is never
written to a file of our own or kept in memory as a fallback.

Errors, all known errors whose ``str()`` is one line a user can read and
never contains a secret::

    SecretsError                  anything the secret store reports
    ├── SecretsUnavailableError   no usable keyring (none, locked, a file backend)
    └── SecretNotFoundError       nothing is stored under that key

Logs carry keys and the backend's name, never a value.
"""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # keyring itself is imported on first use: ~0.2 s off start-up
    from keyring.backend import KeyringBackend

log = logging.getLogger("soloist.secrets")

SERVICE = "soloist"
_KEY_PATTERN = re.compile(r"[a-z][a-z0-9_-]*(:[A-Za-z0-9_.@-]+)+")
# Backends whose module or class name says they keep secrets in a file, or nowhere;
# refused by name, so an unknown backend with "file" in its name is refused too.
_FILE_MARKERS = ("plaintext", "file", "keyrings.alt", "cryptfile", "null", ".fail")


class SecretsError(Exception):
    """Base of the errors of the secret store."""


class SecretsUnavailableError(SecretsError):
    """No usable OS keyring: nothing can be stored or read."""


class SecretNotFoundError(SecretsError):
    """Nothing is stored under the key."""


@dataclass(frozen=True, slots=True)
class SecretRef:
    """The name of a secret: safe to keep in settings, the database and logs."""

    key: str

    def __post_init__(self) -> None:
        if not _KEY_PATTERN.fullmatch(self.key):
            raise ValueError(f"not a secret key: {self.key!r} (expected 'kind:name')")

    @classmethod
    def remote(cls, endpoint_id: str) -> SecretRef:
        """The API key of a remote engine endpoint."""
        return cls(f"remote:{endpoint_id}")

    def __str__(self) -> str:
        return self.key


API_TOKEN = SecretRef("api:token")


def backend_name(backend: KeyringBackend) -> str:
    cls = type(backend)
    return f"{cls.__module__}.{cls.__qualname__}"


def _install_hint() -> str:
    if sys.platform == "darwin":
        return "Soloist uses the macOS Keychain; check that it is unlocked."
    if sys.platform == "win32":
        return "Soloist uses the Windows Credential Manager; check that it is available."
    return (
        "Install and unlock a Secret Service keyring (GNOME Keyring: the gnome-keyring "
        "package, or KWallet) and log in to a desktop session so it runs."
    )


def _unavailable(why: str) -> SecretsUnavailableError:
    return SecretsUnavailableError(
        f"No usable keyring ({why}). Soloist keeps passwords and API keys only in the "
        f"system keyring, never in a file, so none was stored. {_install_hint()}"
    )


def _priority(backend: KeyringBackend) -> float:
    """The backend's priority; a backend raises to say it cannot work here."""
    try:
        return float(backend.priority)
    except Exception:
        return 0.0


def refusal(backend: KeyringBackend) -> str | None:
    """Why ``backend`` may not hold Soloist's secrets, or None when it may."""
    name = backend_name(backend)
    if any(marker in name.lower() for marker in _FILE_MARKERS):
        return f"{name} keeps secrets in a file or nowhere"
    if _priority(backend) <= 0:
        return f"{name} cannot work on this system"
    return None


def choose_backend(backend: KeyringBackend) -> KeyringBackend:
    """The backend to use: ``backend`` itself, or the best acceptable one it chains.

    Raises :class:`SecretsUnavailableError` when none is acceptable.
    """
    from keyring.backends.chainer import ChainerBackend

    candidates: list[KeyringBackend] = [backend]
    if isinstance(backend, ChainerBackend):
        chained: Any = backend.backends
        candidates = sorted(chained, key=_priority, reverse=True)
    reasons = []
    for candidate in candidates:
        reason = refusal(candidate)
        if reason is None:
            return candidate
        reasons.append(reason)
    raise _unavailable("; ".join(reasons) or f"{backend_name(backend)} chains no backend")


class SecretStore:
    """Get, set and delete secrets in the OS keyring, failing closed.

    ``backend`` is the seam for tests and for a keyring chosen in settings;
    without one, keyring's own choice (``keyring.get_keyring()``) is checked
    on first use.
    """

    def __init__(self, backend: KeyringBackend | None = None, *, service: str = SERVICE) -> None:
        self._given = backend
        self._backend: KeyringBackend | None = None
        self.service = service

    def __repr__(self) -> str:
        given = self._backend or self._given
        name = backend_name(given) if given is not None else "default"
        return f"SecretStore(service={self.service!r}, backend={name})"

    @property
    def backend(self) -> KeyringBackend:
        """The backend in use; raises :class:`SecretsUnavailableError` when none is usable."""
        if self._backend is None:
            import keyring

            given = self._given if self._given is not None else keyring.get_keyring()
            self._backend = choose_backend(given)
            log.info("secrets kept in %s", backend_name(self._backend))
        return self._backend

    def check(self) -> str:
        """The name of the backend in use, or :class:`SecretsUnavailableError`."""
        return backend_name(self.backend)

    def find(self, ref: SecretRef) -> str | None:
        """The secret stored under ``ref``, or None."""
        backend = self.backend
        try:
            value = backend.get_password(self.service, ref.key)
        except Exception as exc:  # keyring, secretstorage, D-Bus and OS errors alike
            raise self._failed("read", ref, backend, exc) from exc
        log.debug("secret %s: %s", ref, "found" if value is not None else "absent")
        return None if value is None else str(value)

    def get(self, ref: SecretRef) -> str:
        """The secret stored under ``ref``; :class:`SecretNotFoundError` when none is."""
        value = self.find(ref)
        if value is None:
            raise SecretNotFoundError(
                f"No secret is stored for {ref} in the keyring. Enter it again in the settings."
            )
        return value

    def set(self, ref: SecretRef, value: str) -> None:
        """Store ``value`` under ``ref``, replacing what was there."""
        if not isinstance(value, str) or not value:
            raise ValueError(f"the secret for {ref} must be a non-empty string")
        backend = self.backend
        try:
            backend.set_password(self.service, ref.key, value)
        except Exception as exc:
            raise self._failed("store", ref, backend, exc) from exc
        log.info("secret %s stored (%d chars)", ref, len(value))

    def delete(self, ref: SecretRef) -> None:
        """Remove the secret under ``ref``; :class:`SecretNotFoundError` when none is."""
        from keyring.errors import PasswordDeleteError

        if self.find(ref) is None:
            raise SecretNotFoundError(f"No secret is stored for {ref} in the keyring.")
        backend = self.backend
        try:
            backend.delete_password(self.service, ref.key)
        except PasswordDeleteError as exc:
            raise SecretNotFoundError(f"No secret is stored for {ref} in the keyring.") from exc
        except Exception as exc:
            raise self._failed("delete", ref, backend, exc) from exc
        log.info("secret %s deleted", ref)

    def _failed(
        self, verb: str, ref: SecretRef, backend: KeyringBackend, exc: Exception
    ) -> SecretsUnavailableError:
        """The error to raise; the library's text is left out (it might quote a value)."""
        from keyring.errors import KeyringLocked

        log.warning("secret %s: could not %s (%s)", ref, verb, type(exc).__name__)
        locked = isinstance(exc, KeyringLocked)
        why = "it is locked" if locked else type(exc).__name__
        return SecretsUnavailableError(
            f"Could not {verb} the secret for {ref}: the keyring {backend_name(backend)} "
            f"failed ({why}). Nothing was changed. Check that the keyring runs and is "
            "unlocked, then try again."
        )


def api_key_for(endpoint_id: str, store: SecretStore) -> str | None:
    """The API key of a remote endpoint, for ``RemoteEngine(api_key=...)``.

    None when no key is stored (a server that needs none); raises
    :class:`SecretsUnavailableError` when there is no usable keyring.
    """
    return store.find(SecretRef.remote(endpoint_id))
