"""The sections of the main window (Home, Approvals, Agents...), registered by key.

Each section module decorates a factory with :func:`section`. The window
draws the sidebar from :data:`SECTIONS` (``order``, a Ctrl+<n> shortcut each)
without importing the modules, and builds each page after the first paint
(:func:`load`). Chat is the window's own page (order 20).
A section is a plain ``QWidget`` that talks to the office only through the
:class:`~app.ui.office_bridge.OfficeBridge` (``bridge.call(op, on_done)`` runs
``op(office)`` off the main thread) and its own signals.

:data:`SECTION_MODULES` lists the modules (explicit, so a frozen bundle
imports the same ones).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PySide6.QtWidgets import QWidget

    from app.ui.office_bridge import OfficeBridge

SectionFactory = Callable[["OfficeBridge", "QWidget"], "QWidget"]


@dataclass(frozen=True, slots=True)
class SectionInfo:
    """What the sidebar needs of a section before its module is imported."""

    module: str  # "app.ui.sections.approvals"
    key: str
    title: str
    order: int


# The sidebar is drawn from this table, so the window paints before any section
# module (and what it imports: the agent runtime, numpy, APScheduler) is loaded;
# each module's @section must agree with its row (checked on load).
SECTIONS: tuple[SectionInfo, ...] = (
    SectionInfo("app.ui.sections.home", "home", "Home", 10),
    SectionInfo("app.ui.sections.approvals", "approvals", "Approvals", 30),
    SectionInfo("app.ui.sections.agents", "agents", "Agents", 40),
    SectionInfo("app.ui.sections.automations", "automations", "Automations", 50),
    SectionInfo("app.ui.sections.memory", "memory", "Memory", 60),
    SectionInfo("app.ui.sections.connections", "connections", "Connections", 70),
    SectionInfo("app.ui.sections.models", "models", "Models & devices", 80),
    SectionInfo("app.ui.sections.activity", "activity", "Activity", 90),
    SectionInfo("app.ui.sections.settings", "settings", "Settings", 100),
)
SECTION_MODULES: tuple[str, ...] = tuple(info.module for info in SECTIONS)


@dataclass(frozen=True, slots=True)
class SectionSpec:
    key: str  # "approvals"
    title: str  # "Approvals"
    order: int  # sidebar position; Chat is 20
    make: SectionFactory


_REGISTRY: dict[str, SectionSpec] = {}


def section(key: str, title: str, order: int) -> Callable[[SectionFactory], SectionFactory]:
    """Decorator: register ``make(bridge, parent) -> QWidget`` as a section."""

    def register(make: SectionFactory) -> SectionFactory:
        if key in _REGISTRY and _REGISTRY[key].make is not make:
            raise ValueError(f"section {key!r} registered twice")
        _REGISTRY[key] = SectionSpec(key, title, order, make)
        return make

    return register


def declared() -> list[SectionInfo]:
    """Every section in sidebar order, without importing any of them."""
    return sorted(SECTIONS, key=lambda info: (info.order, info.key))


def load(info: SectionInfo) -> SectionSpec:
    """Import the module of ``info`` and return what it registered."""
    importlib.import_module(info.module)
    spec = _REGISTRY.get(info.key)
    if spec is None or (spec.title, spec.order) != (info.title, info.order):
        raise LookupError(f"{info.module} does not register the section of {info}")
    return spec


def registered() -> list[SectionSpec]:
    """Every section of :data:`SECTIONS` (all imported), in order."""
    return [load(info) for info in declared()]
