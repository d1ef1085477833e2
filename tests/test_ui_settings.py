"""The Settings section on a real office bridge, with the home pointed at tmp_path.

Start at login writes the real XDG autostart file (``XDG_CONFIG_HOME`` is the
test's folder); the switch runs through ``bridge.call`` off the main thread,
so the tests wait for its answer with ``qtbot.waitUntil``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QUrl
from PySide6.QtWidgets import QApplication, QWidget
from pytestqt.qtbot import QtBot

from app.desktop.autostart import XdgAutostart
from app.desktop.entry import read_entry
from app.office import Office
from app.ui import sections, theme
from app.ui.office_bridge import OfficeBridge
from app.ui.sections import load
from app.ui.sections.settings import (
    THEME_PROPERTY,
    SettingsSection,
    ThemeChoice,
    saved_theme,
)


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    places = {name: tmp_path / name for name in ("user", "config", "data")}
    places["user"].mkdir()
    monkeypatch.setenv("HOME", str(places["user"]))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(places["config"]))
    monkeypatch.setenv("XDG_DATA_HOME", str(places["data"]))
    places["autostart"] = places["config"] / "autostart" / "soloist.desktop"
    return places


@pytest.fixture
def bridge(soloist_home: Path, dirs: dict[str, Path]) -> Iterator[OfficeBridge]:
    bridge = OfficeBridge(Office(soloist_home))
    yield bridge
    bridge.shutdown()


@pytest.fixture
def app_theme(qapp: QApplication) -> Iterator[QApplication]:
    """Puts the application's palette and theme marks back after the test."""
    palette, scheme = qapp.palette(), qapp.property("soloist_scheme")
    yield qapp
    qapp.setPalette(palette)
    qapp.setProperty("soloist_scheme", scheme)
    qapp.setProperty(THEME_PROPERTY, None)


def show(qtbot: QtBot, bridge: OfficeBridge, **kwargs: object) -> SettingsSection:
    page = SettingsSection(bridge, **kwargs)  # type: ignore[arg-type]
    qtbot.addWidget(page)
    page.show()
    qtbot.waitUntil(page.login.isEnabled)  # is_enabled() answered through the bridge
    return page


def switch(qtbot: QtBot, page: SettingsSection) -> None:
    page.login.click()
    assert not page.login.isEnabled()  # until the worker thread answers
    qtbot.waitUntil(page.login.isEnabled)


def test_start_at_login_is_off_by_default(
    qtbot: QtBot, bridge: OfficeBridge, dirs: dict[str, Path]
) -> None:
    page = show(qtbot, bridge, platform="linux")
    assert not page.login.isChecked()
    assert not dirs["autostart"].exists()


def test_toggling_writes_and_removes_the_autostart_file(
    qtbot: QtBot, bridge: OfficeBridge, dirs: dict[str, Path]
) -> None:
    page = show(qtbot, bridge, platform="linux")
    switch(qtbot, page)
    assert page.login.isChecked()
    fields = read_entry(dirs["autostart"].read_text())
    assert fields["X-GNOME-Autostart-enabled"] == "true"
    assert fields["Exec"].endswith(" --minimized")
    assert page.message.text() == "Start at login is on."
    switch(qtbot, page)
    assert not page.login.isChecked()
    assert not dirs["autostart"].exists()
    assert page.message.text() == "Start at login is off."


def test_the_checkbox_shows_an_existing_entry(
    qtbot: QtBot, bridge: OfficeBridge, dirs: dict[str, Path]
) -> None:
    XdgAutostart(dirs["config"]).enable(["soloist", "--minimized"])
    page = show(qtbot, bridge, platform="linux")
    assert page.login.isChecked()


def test_a_refused_write_is_shown_and_the_box_tells_the_truth(
    qtbot: QtBot, bridge: OfficeBridge, dirs: dict[str, Path]
) -> None:
    dirs["config"].write_text("a file where a folder should be")
    page = show(qtbot, bridge, platform="linux")
    switch(qtbot, page)
    assert not page.login.isChecked()
    assert page.message.text().startswith("Could not write the file")


def test_add_to_the_applications_menu(
    qtbot: QtBot, bridge: OfficeBridge, dirs: dict[str, Path]
) -> None:
    page = show(qtbot, bridge, platform="linux")
    assert not page.menu_button.isHidden()
    page.menu_button.click()
    qtbot.waitUntil(lambda: page.message.text() == "Soloist is in the applications menu.")
    entry = dirs["data"] / "applications" / "soloist.desktop"
    assert read_entry(entry.read_text())["Icon"] == "soloist"
    assert (dirs["data"] / "icons" / "hicolor" / "48x48" / "apps" / "soloist.png").is_file()
    assert page.menu_button.isEnabled()


def test_the_menu_button_is_linux_only(qtbot: QtBot, bridge: OfficeBridge) -> None:
    page = SettingsSection(bridge, platform="darwin")
    qtbot.addWidget(page)
    assert page.menu_button.isHidden()


def test_the_theme_choice_is_applied_and_kept(
    qtbot: QtBot, bridge: OfficeBridge, app_theme: QApplication
) -> None:
    page = show(qtbot, bridge, platform="linux")
    assert page.theme.currentData() == "system"
    dark = page.theme.findData("dark")
    page.theme.setCurrentIndex(dark)
    page.theme.activated.emit(dark)
    assert saved_theme() == ThemeChoice.DARK
    assert theme.current_scheme(app_theme) == theme.Scheme.DARK
    assert app_theme.property(THEME_PROPERTY) == "dark"
    again = SettingsSection(bridge, platform="linux")
    qtbot.addWidget(again)
    assert again.theme.currentData() == "dark"


def test_open_folder_opens_the_data_directory(
    qtbot: QtBot, bridge: OfficeBridge, soloist_home: Path
) -> None:
    opened: list[QUrl] = []
    page = show(qtbot, bridge, platform="linux", open_url=lambda url: opened.append(url) or True)
    assert page.data_dir.text() == str(soloist_home)
    page.open_folder.click()
    assert [url.toLocalFile() for url in opened] == [str(soloist_home)]
    assert page.message.text() == ""


def test_a_folder_that_will_not_open_says_so(qtbot: QtBot, bridge: OfficeBridge) -> None:
    page = show(qtbot, bridge, platform="linux", open_url=lambda url: False)
    page.open_folder.click()
    assert page.message.text().startswith("Could not open")


def test_every_control_has_an_accessible_name(qtbot: QtBot, bridge: OfficeBridge) -> None:
    page = show(qtbot, bridge, platform="linux")
    controls: list[QWidget] = [page.login, page.menu_button, page.theme, page.open_folder]
    controls += [page.data_dir, page.message]
    assert all(control.accessibleName() for control in controls)


def test_registered_as_the_settings_section() -> None:
    # load() checks the module registers just what its row in SECTIONS says.
    info = next(i for i in sections.SECTIONS if i.key == "settings")
    spec = load(info)
    assert (spec.key, spec.title, spec.order) == ("settings", "Settings", 100)
    assert info == sections.declared()[-1]  # the last entry of the sidebar
