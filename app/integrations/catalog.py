"""Every connector module of Soloist, imported once to fill the registry.

The list is explicit (not a package scan) so a frozen bundle, which cannot
scan its own packages, imports the same modules; ``packaging/`` reads
:data:`CONNECTOR_MODULES` for PyInstaller's hidden imports.
"""

from __future__ import annotations

import importlib
import logging
import threading

from app.integrations.base import Connector, connector_classes

log = logging.getLogger("soloist.integrations")

CONNECTOR_MODULES: tuple[str, ...] = (
    "app.integrations.email.connector",
    "app.integrations.dav.connector",
    "app.integrations.crm.connector",
    "app.integrations.hubspot.connector",
    "app.integrations.store.connector",
)

_lock = threading.Lock()


def load_connectors() -> dict[str, type[Connector]]:
    """Import every connector module (Python imports each only once) and return the registry."""
    with _lock:
        for module in CONNECTOR_MODULES:
            importlib.import_module(module)
    return connector_classes()
