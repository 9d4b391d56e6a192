"""Shared fixtures: the CRDs as committed in crds/, the examples and the model per kind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gpufleet.api.common import Resource
from gpufleet.api.crdgen import load_crds
from gpufleet.api.v1alpha1 import KINDS

ROOT = Path(__file__).resolve().parents[3]
CRD_DIR = ROOT / "crds"
EXAMPLES_DIR = ROOT / "examples"
INVALID_DIR = ROOT / "tests" / "fixtures" / "invalid"
MODELS: dict[str, type[Resource]] = {k.crd.kind: k for k in KINDS}


def example_objects() -> list[tuple[str, dict[str, Any]]]:
    """(label, object) for every document of every examples/*.yaml (not examples/economics/)."""
    out = []
    for path in sorted(EXAMPLES_DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("apiVersion", "").startswith("gpufleet.io/"):
                out.append((f"{path.name}:{doc['metadata']['name']}", doc))
    return out


def example(name: str) -> dict[str, Any]:
    """One example object by metadata.name."""
    for _, doc in example_objects():
        if doc["metadata"]["name"] == name:
            return doc
    raise KeyError(name)


@pytest.fixture(scope="session")
def crds() -> dict[str, dict[str, Any]]:
    return load_crds(CRD_DIR)
