"""The emulator's optional dependencies, checked up front so a plain install fails with advice."""

from __future__ import annotations

import importlib.util

EXTRA_MODULES = {"jsonschema": "jsonschema", "celpy": "cel-python"}


def missing_requirements() -> str | None:
    """None when the emulator can run; otherwise a message naming what to install."""
    missing = [dist for module, dist in EXTRA_MODULES.items() if importlib.util.find_spec(module) is None]
    if not missing:
        return None
    return (
        f"the API emulator needs {', '.join(missing)} to validate custom resources like a real API "
        "server; install the devtools distribution: pip install -e ./devtools"
    )
