"""Every object in tests/fixtures/invalid is refused by the CRD (schema + CEL) and by the models,
and both name the field given by the file's ``# expect:`` line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from gpufleet.api.validation import FieldError, pydantic_field_errors, validate_object
from tests.unit.api.conftest import INVALID_DIR, MODELS

CASES = sorted(INVALID_DIR.glob("*.yaml"))


def _load(path: Path) -> tuple[str, dict[str, Any]]:
    text = path.read_text()
    match = re.search(r"^# expect: (\S+)$", text, flags=re.M)
    assert match, f"{path.name} has no '# expect: <field path>' line"
    return match.group(1), yaml.safe_load(text)


def _names(errors: list[FieldError], field: str) -> bool:
    """An error is at the field, or inside it (a list item or map entry of it)."""
    return any(e.path == field or e.path.startswith((field + ".", field + "[")) for e in errors)


def test_corpus_is_large_and_varied() -> None:
    assert len(CASES) >= 30
    kinds = {yaml.safe_load(p.read_text())["kind"] for p in CASES}
    assert kinds == set(MODELS)


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_crd_rejects_and_names_the_field(path: Path, crds: dict[str, dict[str, Any]]) -> None:
    field, obj = _load(path)
    errors = validate_object(crds[obj["kind"]], obj)
    assert errors, f"{path.name} was accepted by the CRD"
    assert _names(errors, field), f"no error names {field}: {[str(e) for e in errors]}"
    named = next(e for e in errors if e.path == field or e.path.startswith(field))
    assert str(named).startswith(named.path + ": ")


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_model_rejects_and_names_the_same_field(path: Path) -> None:
    field, obj = _load(path)
    with pytest.raises(ValidationError) as exc:
        MODELS[obj["kind"]].model_validate(obj)
    errors = pydantic_field_errors(exc.value)
    assert _names(errors, field), f"no model error names {field}: {[str(e) for e in errors]}"


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_corpus_objects_differ_from_a_valid_object_in_one_place(path: Path, crds: dict[str, Any]) -> None:
    # Guard against a case failing for an accidental reason: every error is at the expected field
    # (or is the API server's note that CEL rules were skipped because of a type error).
    field, obj = _load(path)
    errors = validate_object(crds[obj["kind"]], obj)
    stray = [e for e in errors if e.path != "<nil>" and not _names([e], field)]
    assert not stray, f"errors elsewhere than {field}: {[str(e) for e in stray]}"
