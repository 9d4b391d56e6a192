"""validate_object: API-server behaviour the emulator relies on (defaults, CEL, transitions, 422)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gpufleet.api.crdgen import load_crds
from gpufleet.api.v1alpha1 import InferenceNode
from gpufleet.api.validation import (
    CEL_SKIPPED,
    FieldError,
    compile_crd,
    pydantic_field_errors,
    status_422,
    validate_object,
)
from tests.unit.api.conftest import CRD_DIR, example

CRDS = load_crds(CRD_DIR)


@pytest.fixture
def node() -> dict[str, Any]:
    return copy.deepcopy(example("rtx4090-box"))


def _paths(errors: list[FieldError]) -> list[str]:
    return [e.path for e in errors]


def test_defaults_are_applied_like_the_api_server(node: dict[str, Any], crds: dict[str, Any]) -> None:
    del node["spec"]["updatePolicy"], node["spec"]["engine"], node["spec"]["release"]
    stored = compile_crd(crds["InferenceNode"]).default(node)
    assert stored["spec"]["engine"] == "auto"
    assert stored["spec"]["release"] == {}
    assert stored["spec"]["updatePolicy"] == {
        "automatic": True,
        "maxUnavailable": 1,
        "progressDeadlineSeconds": 600,
        "minReadySeconds": 30,
        "updateUnhealthy": False,
    }
    assert "updatePolicy" not in node["spec"], "the caller's object is not modified"


def test_cel_sees_defaulted_fields(node: dict[str, Any], crds: dict[str, Any]) -> None:
    node["spec"]["updatePolicy"] = {"minReadySeconds": 700}  # deadline defaults to 600
    errors = validate_object(crds["InferenceNode"], node)
    assert _paths(errors) == ["spec.updatePolicy.minReadySeconds"]
    assert "less than progressDeadlineSeconds" in errors[0].message


def test_several_errors_are_reported_together(node: dict[str, Any], crds: dict[str, Any]) -> None:
    node["spec"]["engine"] = "trt"
    node["spec"]["gpuCount"] = 0
    node["spec"]["release"]["version"] = "1.0.0"
    paths = _paths(validate_object(crds["InferenceNode"], node))
    assert set(paths) == {"spec.engine", "spec.gpuCount", "spec.release.version"}


def test_type_errors_skip_cel_like_the_api_server(node: dict[str, Any], crds: dict[str, Any]) -> None:
    node["spec"]["gpuCount"] = "2"
    node["spec"]["release"]["version"] = "1.0.0"  # would fail a CEL rule
    errors = validate_object(crds["InferenceNode"], node)
    assert _paths(errors) == ["spec.gpuCount", "<nil>"]
    assert errors[1].message == CEL_SKIPPED
    assert errors[0].cause_type == "FieldValueTypeInvalid"


def test_transition_rules_need_the_old_object(node: dict[str, Any], crds: dict[str, Any]) -> None:
    crd = crds["InferenceNode"]
    moved = copy.deepcopy(node)
    moved["spec"]["nodeName"] = "another-node"
    assert validate_object(crd, moved) == []  # a create: no oldSelf
    errors = validate_object(crd, moved, old=node)
    assert [str(e) for e in errors] == ['spec.nodeName: Invalid value: "another-node": nodeName is immutable']
    same = copy.deepcopy(node)
    same["spec"]["gpuCount"] = 2
    assert validate_object(crd, same, old=node) == []


def test_release_image_and_version_are_immutable(crds: dict[str, Any]) -> None:
    old = example("engine-1.4.2")
    new = copy.deepcopy(old)
    new["spec"]["image"] = old["spec"]["image"][:-1] + "f"
    new["spec"]["version"] = "1.4.3"
    new["spec"]["channel"] = "candidate"  # channel may change: that is how releases are promoted
    paths = _paths(validate_object(crds["EngineRelease"], new, old=old))
    assert sorted(paths) == ["spec.image", "spec.version"]


def test_status_rollout_is_typed(node: dict[str, Any], crds: dict[str, Any]) -> None:
    """status.rollout is the rollout record's schema, no longer free-form (#14)."""
    node["status"] = {"rollout": {"phase": "Progressing", "batch": 1, "batchDevices": [0, 1]}}
    assert validate_object(crds["InferenceNode"], node) == []
    node["status"] = {"rollout": {"phase": "Sideways"}}
    assert _paths(validate_object(crds["InferenceNode"], node)) == ["status.rollout.phase"]


def test_null_is_accepted_for_optional_fields(node: dict[str, Any], crds: dict[str, Any]) -> None:
    node["spec"]["gpuCount"] = None
    assert validate_object(crds["InferenceNode"], node) == []


def test_wrong_kind_and_version(node: dict[str, Any], crds: dict[str, Any]) -> None:
    assert _paths(validate_object(crds["OperatorPool"], node)) == ["kind"]
    node["apiVersion"] = "gpufleet.io/v2"
    errors = validate_object(crds["InferenceNode"], node)
    assert str(errors[0]) == (
        'apiVersion: Unsupported value: "gpufleet.io/v2": supported values: "gpufleet.io/v1alpha1"'
    )


def test_compiled_crds_are_cached(crds: dict[str, Any]) -> None:
    crd = crds["OperatorPool"]
    assert compile_crd(crd) is compile_crd(crd)
    assert compile_crd(copy.deepcopy(crd)) is not compile_crd(crd)


def test_status_422_body(node: dict[str, Any], crds: dict[str, Any]) -> None:
    node["spec"]["engine"] = "trt"
    node["spec"]["gpuCount"] = 0
    errors = validate_object(crds["InferenceNode"], node)
    body = status_422("InferenceNode", "gpufleet.io", "rtx4090-box", errors)
    assert body["code"] == 422
    assert body["reason"] == "Invalid"
    assert body["message"].startswith('InferenceNode.gpufleet.io "rtx4090-box" is invalid: [spec.engine: ')
    causes = {c["field"]: c["reason"] for c in body["details"]["causes"]}
    assert causes == {"spec.engine": "FieldValueNotSupported", "spec.gpuCount": "FieldValueInvalid"}


def test_pydantic_errors_use_api_server_paths(node: dict[str, Any]) -> None:
    node["spec"]["models"][0]["maxModelLen"] = 0
    node["spec"]["updatePolicy"]["maxUnavailable"] = "0%"
    with pytest.raises(ValidationError) as exc:
        InferenceNode.model_validate(node)
    paths = set(_paths(pydantic_field_errors(exc.value)))
    assert paths == {"spec.models[0].maxModelLen", "spec.updatePolicy.maxUnavailable"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=80, deadline=None)
@given(
    field=st.sampled_from(["poolRef", "models", "release", "updatePolicy", "resources", "gpuCount", "x"]),
    value=json_values,
)
def test_garbage_never_crashes_the_validator(field: str, value: Any) -> None:
    # The emulator answers whatever clients send with 422, never with a crash (500); and what the
    # API server refuses, the (stricter) models refuse too.
    obj = copy.deepcopy(example("rtx4090-box"))
    obj["spec"][field] = value
    errors = validate_object(CRDS["InferenceNode"], obj)
    assert all(isinstance(e, FieldError) and e.path for e in errors)
    if errors:
        with pytest.raises(ValidationError):
            InferenceNode.model_validate(obj)
