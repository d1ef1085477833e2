"""One running Soloist per data directory.

The first instance takes a ``QLockFile`` in the data directory and listens
on a ``QLocalServer`` whose name is derived from that directory, so offices
in different directories (tests) never meet. A second start finds the lock
held by a live process, connects, sends ``show`` and exits once the first
answers ``ok``. A lock left by a crashed process (its PID is dead) is
stale: ``QLockFile`` removes it, and the stale socket is removed before
listening, since holding the lock proves nobody else is listening.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

from PySide6.QtCore import QByteArray, QLockFile, QObject, Signal, Slot
from PySide6.QtNetwork import QLocalServer, QLocalSocket

log = logging.getLogger("soloist.ui")

LOCK_NAME = "soloist.lock"
SHOW = b"show\n"
ACK = b"ok\n"
CONNECT_TIMEOUT_MS = 1_000
ANSWER_TIMEOUT_MS = 5_000
CONNECT_ATTEMPTS = 5
RETRY_PAUSE_S = 0.3


def server_name(data_dir: Path) -> str:
    """The local server's name for this data directory (short: it is a socket path)."""
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]
    return f"soloist-{digest}"


class SingleInstance(QObject):
    """Holds the lock and the server; emits ``activation_requested`` on ``show``."""

    activation_requested = Signal()

    def __init__(self, data_dir: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = server_name(data_dir)
        self.lock_path = data_dir / LOCK_NAME
        self._lock = QLockFile(str(self.lock_path))
        self._lock.setStaleLockTime(0)  # stale only when its process is gone, never by age
        self._server: QLocalServer | None = None

    def acquire(self) -> bool:
        """Take the lock and listen; False when a live instance holds it."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        if not self._lock.tryLock(0):
            log.info("lock held by another instance (%s)", self._lock.error().name)
            return False
        QLocalServer.removeServer(self.name)  # a socket left by a crash
        server = QLocalServer(self)
        server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        if not server.listen(self.name):
            log.error("cannot listen on %s: %s", self.name, server.errorString())
        server.newConnection.connect(self._on_new_connection)
        self._server = server
        return True

    def release(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self._lock.unlock()

    def ask_running_to_show(self) -> bool:
        """Ask the running instance to show its window; True when it answered."""
        for _ in range(CONNECT_ATTEMPTS):  # it may hold the lock but not listen yet
            socket = QLocalSocket()
            socket.connectToServer(self.name)
            if socket.waitForConnected(CONNECT_TIMEOUT_MS):
                return _request_show(socket)
            log.info("running instance not answering yet: %s", socket.errorString())
            time.sleep(RETRY_PAUSE_S)
        return False

    @Slot()
    def _on_new_connection(self) -> None:
        assert self._server is not None
        while (socket := self._server.nextPendingConnection()) is not None:
            socket.disconnected.connect(socket.deleteLater)
            socket.readyRead.connect(lambda s=socket: self._on_ready_read(s))

    def _on_ready_read(self, socket: QLocalSocket) -> None:
        if not socket.canReadLine():
            return
        request = bytes(socket.readLine().data())
        if request == SHOW:
            log.info("activation request")
            self.activation_requested.emit()
            socket.write(QByteArray(ACK))
            socket.flush()
        socket.disconnectFromServer()


def _request_show(socket: QLocalSocket) -> bool:
    socket.write(QByteArray(SHOW))
    if not socket.waitForBytesWritten(ANSWER_TIMEOUT_MS):
        return False
    while not socket.canReadLine():
        if not socket.waitForReadyRead(ANSWER_TIMEOUT_MS):
            return False
    return bytes(socket.readLine().data()) == ACK
