"""The sections of the main window (Home, Approvals, Agents...), registered by key.

Each section module decorates a factory with :func:`section`; the window
builds the sidebar and the page stack from :func:`registered` in ``order``,
and gives each a Ctrl+<n> shortcut. Chat is the window's own page (order 20).
A section is a plain ``QWidget`` that talks to the office only through the
:class:`~app.ui.office_bridge.OfficeBridge` (``bridge.call(op, on_done)`` runs
``op(office)`` off the main thread) and its own signals.

:data:`SECTION_MODULES` lists the modules to import (explicit, so a frozen
bundle imports the same ones).
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

SECTION_MODULES: tuple[str, ...] = (
    "app.ui.sections.home",
    "app.ui.sections.approvals",
    "app.ui.sections.agents",
    "app.ui.sections.automations",
    "app.ui.sections.memory",
    "app.ui.sections.connections",
    "app.ui.sections.models",
    "app.ui.sections.activity",
)


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


def registered() -> list[SectionSpec]:
    """Every section of :data:`SECTION_MODULES` (imported on first call), in order."""
    for module in SECTION_MODULES:
        importlib.import_module(module)
    return sorted(_REGISTRY.values(), key=lambda spec: (spec.order, spec.key))
