"""Real mail servers on loopback for the email connector's tests.

- :func:`dovecot`: Dovecot 2.3 (``/usr/sbin/dovecot``) in the foreground with
  a config of its own in a temp folder: IMAP with STARTTLS on one port and
  implicit TLS on another, a certificate from a private ``trustme`` CA, a
  passwd-file of test users and maildirs. Session-wide; each test takes a
  fresh user (:func:`mail_user`) so tests never see each other's mail.
- :func:`smtp_server`: aiosmtpd requiring AUTH, with STARTTLS on one port
  and implicit TLS on another; it delivers each accepted message into the
  recipient's Dovecot maildir, so a sent mail can be read back over IMAP.
- :class:`CuttingProxy`: a TCP proxy in front of Dovecot's plain port that
  closes the connection once the server has sent a marker, to lose a
  connection in the middle of a FETCH deterministically.

Run as root (CI), Dovecot refuses mail uid 0 and a root login process, so
mail belongs to ``nobody`` and logins run as ``dovenull``; as a normal user
everything runs as that user.
"""

from __future__ import annotations

import contextlib
import itertools
import mailbox
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
from servers import free_port

DOVECOT = Path("/usr/sbin/dovecot")
MAIL_DOMAIN = "example.test"
_user_numbers = itertools.count(1)


@dataclass(frozen=True)
class MailUser:
    name: str
    password: str

    @property
    def email(self) -> str:
        return f"{self.name}@{MAIL_DOMAIN}"


@dataclass
class DovecotServer:
    root: Path
    imap_port: int  # plain greeting, STARTTLS offered
    imaps_port: int  # implicit TLS
    ca_file: str
    untrusted_ca_file: str  # a CA that did not sign the server's certificate
    mail_uid: int
    mail_gid: int
    host: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def mail_root(self) -> Path:
        return self.root / "mail"

    def add_user(self, prefix: str = "user") -> MailUser:
        user = MailUser(f"{prefix}{next(_user_numbers)}", f"pw-{os.urandom(6).hex()}")
        # One passwd-file per user, written whole before use: Dovecot caches a
        # passwd-file by mtime, so appending to a shared one races its reload.
        temp = self.root / "users" / f".{user.name}.tmp"
        temp.write_text(f"{user.name}:{{PLAIN}}{user.password}\n", encoding="utf-8")
        temp.rename(self.root / "users" / f"{user.name}.passwd")
        return user

    def password_of(self, name: str) -> str | None:
        path = self.root / "users" / f"{name}.passwd"
        if "/" in name or not path.exists():
            return None
        return path.read_text(encoding="utf-8").strip().split("{PLAIN}", 1)[1]

    def has_user(self, name: str) -> bool:
        return self.password_of(name) is not None

    def maildir(self, user: str, folder: str | None = None) -> Path:
        base = self.mail_root / user
        return base / f".{folder}" if folder and folder != "INBOX" else base

    def deliver(self, user: str, raw: bytes, folder: str | None = None) -> str:
        """Drop ``raw`` into the user's maildir ``new/``, as a local delivery agent would."""
        path = self.maildir(user, folder)
        box = mailbox.Maildir(path, factory=None, create=True)
        key = box.add(raw)
        if folder and folder != "INBOX":
            (path / "maildirfolder").touch()
        self._chown(self.mail_root / user)
        return key

    def _chown(self, top: Path) -> None:
        if os.getuid() != 0:
            return
        for dirpath, dirnames, filenames in os.walk(top):
            for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
                os.chown(name, self.mail_uid, self.mail_gid)

    def log_text(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


_CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
first_valid_uid = 1
first_valid_gid = 1
mail_uid = {mail_uid}
mail_gid = {mail_gid}
mail_location = maildir:{root}/mail/%u
mail_fsync = never
ssl = yes
ssl_cert = <{root}/server.pem
ssl_key = <{root}/server.key
ssl_min_protocol = TLSv1.2
auth_mechanisms = plain login
auth_failure_delay = 0
disable_plaintext_auth = no
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {root}/users/%n.passwd
}}
userdb {{
  driver = static
  args = uid={mail_uid} gid={mail_gid} home={root}/home/%u
}}
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Sent {{
    special_use = \\Sent
    auto = create
  }}
  mailbox Drafts {{
    special_use = \\Drafts
    auto = create
  }}
  mailbox Trash {{
    special_use = \\Trash
    auto = create
  }}
}}
protocol imap {{
  mail_max_userip_connections = 200
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
"""


def _users() -> dict[str, Any]:
    """Which accounts the Dovecot processes run as (see the module docstring)."""
    if os.getuid() == 0:
        nobody = pwd.getpwnam("nobody")
        return {
            "internal_user": "dovecot",
            "internal_group": "dovecot",
            "login_user": "dovenull",
            "mail_uid": nobody.pw_uid,
            "mail_gid": nobody.pw_gid,
        }
    me = pwd.getpwuid(os.getuid())
    return {
        "internal_user": me.pw_name,
        "internal_group": me.pw_name if _group_exists(me.pw_name) else str(me.pw_gid),
        "login_user": me.pw_name,
        "mail_uid": me.pw_uid,
        "mail_gid": me.pw_gid,
    }


def _group_exists(name: str) -> bool:
    import grp

    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def _write_certificates(root: Path) -> tuple[str, str]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_pem.write_to_path(str(root / "server.key"))
    cert.cert_chain_pems[0].write_to_path(str(root / "server.pem"))
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    trustme.CA().cert_pem.write_to_path(str(root / "other-ca.pem"))
    return str(root / "ca.pem"), str(root / "other-ca.pem")


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"dovecot exited early: {log.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    pytest.fail(f"dovecot did not listen on {port} in time")


@pytest.fixture(scope="session")
def dovecot() -> Iterator[DovecotServer]:
    """A Dovecot IMAP server on loopback, for the whole session."""
    if not DOVECOT.exists():
        pytest.skip("Dovecot is not installed (/usr/sbin/dovecot; apt install dovecot-imapd)")
    root = Path(tempfile.mkdtemp(prefix="soloist-dc-"))  # short: unix socket paths are limited
    root.chmod(0o755)
    ca_file, other_ca = _write_certificates(root)
    users = _users()
    server = DovecotServer(
        root, free_port(), free_port(), ca_file, other_ca, users["mail_uid"], users["mail_gid"]
    )
    for sub in ("mail", "home"):
        (root / sub).mkdir()
        if os.getuid() == 0:
            os.chown(root / sub, server.mail_uid, server.mail_gid)
    (root / "users").mkdir()
    config = _CONFIG.format(
        root=root, imap_port=server.imap_port, imaps_port=server.imaps_port, **users
    )
    (root / "dovecot.conf").write_text(config, encoding="utf-8")
    proc = subprocess.Popen(
        [str(DOVECOT), "-F", "-c", str(root / "dovecot.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server.process = proc
    try:
        _wait_for_port(server.imap_port, proc, root / "dovecot.log", 20)
        _wait_for_port(server.imaps_port, proc, root / "dovecot.log", 20)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def mail_user(dovecot: DovecotServer) -> MailUser:
    """A fresh Dovecot user with an empty mailbox."""
    return dovecot.add_user()


# ------------------------------------------------------------------ SMTP


@dataclass
class SmtpServer:
    host: str
    starttls_port: int
    tls_port: int
    ca_file: str
    received: list[bytes]
    rejected_prefix: str = "nobody"  # RCPT TO this local part is refused with 550


class _MaildirHandler:
    """aiosmtpd handler: refuse some recipients, deliver the rest into Dovecot."""

    def __init__(self, server: DovecotServer, received: list[bytes]) -> None:
        self._dovecot = server
        self.received = received

    async def handle_RCPT(  # noqa: N802  (aiosmtpd's hook name)
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any
    ) -> str:
        if address.split("@", 1)[0].startswith("nobody"):
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        raw = envelope.original_content or envelope.content
        self.received.append(bytes(raw))
        for rcpt in envelope.rcpt_tos:
            local, _, domain = rcpt.partition("@")
            if domain == MAIL_DOMAIN and self._dovecot.has_user(local):
                self._dovecot.deliver(local, bytes(raw))
        return "250 2.0.0 accepted"


def _authenticator(server: DovecotServer) -> Any:
    from aiosmtpd.smtp import AuthResult, LoginPassword

    def check(_smtp: Any, _session: Any, _envelope: Any, mechanism: str, data: Any) -> Any:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login, password = data.login.decode(), data.password.decode()
        # handled=False: aiosmtpd itself answers 535 on a failure.
        return AuthResult(success=server.password_of(login) == password, handled=False)

    return check


def _controllers(dovecot: DovecotServer, received: list[bytes]) -> tuple[Any, Any, SmtpServer]:
    from aiosmtpd.controller import Controller

    class ImplicitTlsController(Controller):  # type: ignore[misc]
        def factory(self) -> Any:
            smtp = super().factory()
            # aiosmtpd only counts STARTTLS as TLS; on this port the whole transport is TLS.
            smtp._auth_require_tls = False
            return smtp

    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(str(dovecot.root / "server.pem"), str(dovecot.root / "server.key"))
    handler = _MaildirHandler(dovecot, received)
    common = {"hostname": "127.0.0.1", "authenticator": _authenticator(dovecot)}
    starttls = Controller(
        handler,
        port=free_port(),
        tls_context=server_ctx,
        require_starttls=True,
        auth_required=True,
        **common,
    )
    implicit = ImplicitTlsController(
        handler, port=free_port(), ssl_context=server_ctx, auth_required=True, **common
    )
    info = SmtpServer("127.0.0.1", starttls.port, implicit.port, dovecot.ca_file, received)
    return starttls, implicit, info


@pytest.fixture
def smtp_server(dovecot: DovecotServer) -> Iterator[SmtpServer]:
    """aiosmtpd with AUTH, STARTTLS and implicit TLS, delivering into Dovecot."""
    received: list[bytes] = []
    starttls, implicit, info = _controllers(dovecot, received)
    starttls.start()
    try:
        implicit.start()
        try:
            yield info
        finally:
            implicit.stop()
    finally:
        starttls.stop()


# ------------------------------------------------------------------ proxy


class CuttingProxy:
    """Forwards TCP to a server; closes both sides once the server sent ``marker``.

    Bytes up to the marker are forwarded, so the client sees a response cut
    in the middle. ``cuts`` counts the connections cut.
    """

    def __init__(self, target_port: int, marker: bytes | None = None) -> None:
        self.target_port = target_port
        self.marker = marker
        self.cuts = 0
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept_loop, daemon=True)
        self._accepter.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            thread = threading.Thread(target=self._pump, args=(client,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _pump(self, client: socket.socket) -> None:
        import selectors

        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        tail = b""
        with client, upstream, selectors.DefaultSelector() as sel:
            sel.register(client, selectors.EVENT_READ, upstream)
            sel.register(upstream, selectors.EVENT_READ, client)
            while not self._stop.is_set():
                for key, _ in sel.select(0.2):
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = source.recv(65536)
                    if not data:
                        return
                    if source is upstream and self.marker is not None:
                        window = tail + data
                        at = window.find(self.marker)
                        if at >= 0:
                            client.sendall(window[len(tail) : at] if at >= len(tail) else b"")
                            self.cuts += 1
                            return
                        tail = window[-len(self.marker) :]
                    key.data.sendall(data)

    def close(self) -> None:
        self._stop.set()
        self._accepter.join(5)
        self._listener.close()
        for thread in self._threads:
            thread.join(5)


@pytest.fixture
def cutting_proxy(dovecot: DovecotServer) -> Iterator[CuttingProxy]:
    """A proxy to Dovecot's plain port (STARTTLS not used through it); set ``.marker``."""
    proxy = CuttingProxy(dovecot.imap_port)
    try:
        yield proxy
    finally:
        proxy.close()
