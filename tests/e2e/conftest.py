"""e2e safety: nothing under tests/e2e/ talks to a cluster unless GPUFLEET_E2E=1 is set explicitly.

A developer's KUBECONFIG may point at a production cluster; these tests create and delete objects.
"""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("GPUFLEET_E2E") == "1":
        return
    skip = pytest.mark.skip(reason="e2e against the cluster in KUBECONFIG: set GPUFLEET_E2E=1 to run")
    for item in items:
        if "tests/e2e/" in item.nodeid.replace("\\", "/") or item.nodeid.startswith("e2e/"):
            item.add_marker(skip)
