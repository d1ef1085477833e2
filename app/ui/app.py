"""The desktop app: start-up in a fixed, logged order and shutdown in reverse.

``run(argv)`` is what ``soloist`` with no command calls. A second start on
the same data directory hands over to the running instance and exits 0.

The app announces its state on stderr with lines a supervisor (or a test)
can wait for: ``soloist: first paint after N ms`` (the cold start time),
``soloist: ready`` once the window is shown and the office is
open, and ``soloist: activation request`` when a second start asked it to
show its window.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import QSize, QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication, QWidget

from app import __version__, assets, logs, paths
from app.ui import theme
from app.ui.first_paint import FIRST_PAINT, FirstPaintProbe
from app.ui.main_window import MainWindow
from app.ui.notifications import Notifier, notifier_for
from app.ui.office_bridge import OfficeBridge
from app.ui.shutdown_signals import install_quit_on_signals
from app.ui.single_instance import SingleInstance
from app.ui.tray import Tray, create_tray

if TYPE_CHECKING:
    from app.office import Office

DRAFT_REPLY_PROMPT = "Draft a short, polite reply to this email for me to review:\n\n"
log = logging.getLogger("soloist.ui")

READY = "soloist: ready"
ACTIVATION = "soloist: activation request"
HANDED_OVER = "Soloist is already running; showing its window."
NOT_ANSWERING = "Soloist seems to be running but does not answer; try again in a moment."
EXIT_NOT_ANSWERING = 1


def run(argv: list[str], minimized: bool = False) -> int:
    """Run the desktop app until it quits; return the exit status.

    ``minimized`` (start at login) keeps the window hidden when there is a
    tray icon to open it from.
    """
    logs.setup("soloist")
    log.info("Soloist %s starting", __version__)
    qt_app = _application(argv)
    instance = SingleInstance(paths.ensure_data_dir())
    if not instance.acquire():
        return _hand_over(instance)
    return DesktopApp(qt_app, instance, minimized).run()


def open_office() -> Office:
    """Open the office of the data directory (run on the bridge's worker thread)."""
    from app.office import Office  # DuckDB, the memory and agent layers: after the paint

    return Office()


def announce(line: str) -> None:
    """One line on stderr (absent under pythonw, where there is no stderr)."""
    if sys.stderr is not None:
        print(line, file=sys.stderr, flush=True)


def app_icon() -> QIcon:
    icon = QIcon()
    for size, path in assets.icon_pngs().items():
        if path.exists():
            icon.addFile(str(path), QSize(size, size))
    return icon if not icon.isNull() else QIcon(str(assets.icon_svg()))


def _application(argv: list[str]) -> QApplication:
    existing = QApplication.instance()
    qt_app = existing if isinstance(existing, QApplication) else QApplication(argv)
    qt_app.setApplicationName("Soloist")
    qt_app.setApplicationVersion(__version__)
    qt_app.setDesktopFileName("soloist")
    qt_app.setWindowIcon(app_icon())
    theme.install(qt_app)
    return qt_app


def _hand_over(instance: SingleInstance) -> int:
    if instance.ask_running_to_show():
        log.info("handed over to the running instance")
        announce(HANDED_OVER)
        return 0
    log.warning("the running instance did not answer")
    announce(NOT_ANSWERING)
    return EXIT_NOT_ANSWERING


class DesktopApp:
    """The running app's parts, started in order and stopped in reverse."""

    def __init__(
        self, qt_app: QApplication, instance: SingleInstance, minimized: bool = False
    ) -> None:
        self.qt_app = qt_app
        self.minimized = minimized
        self.instance = instance
        self.bridge = OfficeBridge()
        self.window = MainWindow(self.bridge)
        self.tray: Tray | None = None
        self.notifier: Notifier = Notifier(None)
        self._stops: list[tuple[str, Callable[[], None]]] = []
        self._restore_signals: Callable[[], None] = lambda: None
        self._office_started = False

    def run(self) -> int:
        self._start("single instance", lambda: None, self.instance.release)
        self._start("office bridge", lambda: None, self.bridge.shutdown)
        FirstPaintProbe(self.window, self._on_first_paint)
        if not self.minimized:
            self._start("main window", self.window.show, self._hide_window)
        self._start("tray", self._start_tray, self._stop_tray)
        if self.minimized:
            self._start_minimized()
        self._start("signal handlers", self._start_signal_handlers, self._stop_signal_handlers)
        self._connect_signals()
        self.window.status.show_info("Opening the office…")
        try:
            status = self.qt_app.exec()
        finally:
            self._stop_all()
        log.info("Soloist stopped (exit status %d)", status)
        return status

    def _connect_signals(self) -> None:
        self.instance.activation_requested.connect(self._on_activation)
        self.window.quit_requested.connect(self.qt_app.quit)
        self.bridge.opened.connect(self._on_opened)
        self.bridge.open_failed.connect(self._on_open_failed)
        if self.tray is not None:
            self.tray.show_requested.connect(self.window.bring_to_front)
            self.tray.new_chat_requested.connect(self._new_chat_from_tray)
            self.tray.quit_requested.connect(self.qt_app.quit)
            self.tray.ask_clipboard_requested.connect(self._ask_from_tray)
            self.tray.draft_reply_requested.connect(self._draft_reply_from_tray)
            self.tray.briefing_requested.connect(self._briefing_from_tray)
            self.tray.approvals_requested.connect(lambda: self._open_item("approvals", ""))
            self.tray.pause_toggled.connect(self._set_background_paused)
        self.window.pages.page_built.connect(self._on_page_built)
        self.notifier.open_item_requested.connect(self._open_item)

    def _on_page_built(self, key: str, page: QWidget) -> None:
        from app.ui.sections.approvals import ApprovalsSection  # built, so imported

        if key != "approvals" or not isinstance(page, ApprovalsSection):
            return
        if self.tray is not None:
            page.pending_count_changed.connect(self.tray.set_pending)
        page.new_pending.connect(self.notifier.approvals)
        page.new_failures.connect(self.notifier.failures)

    # -- steps ---------------------------------------------------------
    def _start(self, name: str, start: Callable[[], None], stop: Callable[[], None]) -> None:
        log.info("start: %s", name)
        start()
        self._stops.append((name, stop))

    def _stop_all(self) -> None:
        while self._stops:
            name, stop = self._stops.pop()
            log.info("stop: %s", name)
            try:
                stop()
            except Exception:  # keep stopping the rest; the log has the bug
                log.exception("stopping %s failed", name)

    def _hide_window(self) -> None:
        self.window.save_state()
        self.window.hide()

    def _start_tray(self) -> None:
        self.tray = create_tray(self.qt_app.windowIcon(), self.qt_app)
        self.notifier = notifier_for(self.tray, self.qt_app)
        has_tray = self.tray is not None
        self.qt_app.setQuitOnLastWindowClosed(not has_tray)
        self.window.set_hide_on_close(has_tray)

    def _stop_tray(self) -> None:
        if self.tray is not None:
            self.tray.hide()

    def _start_signal_handlers(self) -> None:
        self._restore_signals = install_quit_on_signals(self.qt_app)

    def _stop_signal_handlers(self) -> None:
        self._restore_signals()

    # -- reactions -----------------------------------------------------
    def _on_first_paint(self, age_ms: float) -> None:
        """The window is on screen: now the office, then the section pages."""
        announce(f"{FIRST_PAINT} {age_ms:.0f} ms")
        QTimer.singleShot(0, self._after_first_paint)

    def _start_minimized(self) -> None:
        if self.tray is None:  # nothing to open the window from: show it after all
            log.info("no tray: showing the window although asked to start minimised")
            self._start("main window", self.window.show, self._hide_window)
            return
        log.info("starting in the tray")
        self._stops.append(("main window", self._hide_window))
        QTimer.singleShot(0, self._after_first_paint)

    def _after_first_paint(self) -> None:
        if self._office_started:  # a window first shown from the tray paints later
            return
        self._office_started = True
        self._start("office", lambda: self.bridge.open(open_office), lambda: None)
        self.window.build_sections()

    def _on_opened(self) -> None:
        log.info("ready")
        announce(READY)

    def _on_open_failed(self, text: str) -> None:
        log.error("the office could not be opened")
        self.window.status.show_error(text)
        announce(f"soloist: the office could not be opened: {text}")

    def _on_activation(self) -> None:
        announce(ACTIVATION)
        self.window.bring_to_front()

    def _open_item(self, section: str, item_id: str) -> None:
        self.window.bring_to_front()
        self.window.show_section(section)
        page = self.window.page(section)
        select = getattr(page, "select", None)
        if item_id and callable(select):
            select(item_id)

    def _ask_from_tray(self, text: str) -> None:
        self.window.bring_to_front()
        self.window.new_chat_with(text)

    def _draft_reply_from_tray(self, text: str) -> None:
        self._ask_from_tray(DRAFT_REPLY_PROMPT + text if text.strip() else "")

    def _briefing_from_tray(self) -> None:
        self.window.bring_to_front()
        self.window.show_section("home")

        def run(office: Office) -> None:
            if office.agents is not None:
                office.agents.run_now("daily-briefing")

        self.bridge.call(run, lambda _: self.window.status.show_info("Writing today's briefing…"))

    def _set_background_paused(self, paused: bool) -> None:
        def apply(office: Office) -> None:
            agents = office.agents
            if agents is None:
                return
            if paused:
                agents.manager.pause_all_background()
            else:
                agents.manager.resume_all()

        done = "Background work paused." if paused else "Background work resumed."
        self.bridge.call(apply, lambda _: self.window.status.show_info(done))

    def _new_chat_from_tray(self) -> None:
        self.window.bring_to_front()
        self.window.new_chat()
