"""The examples in examples/*.yaml are valid for the CRDs and the models, and both default alike."""

from __future__ import annotations

from typing import Any

import pytest

from gpufleet.api.validation import compile_crd, validate_object
from tests.unit.api.conftest import MODELS, example_objects

EXAMPLES = example_objects()


def test_examples_cover_every_kind_and_mixed_gpus() -> None:
    kinds = [doc["kind"] for _, doc in EXAMPLES]
    assert set(kinds) == set(MODELS)
    nodes = [doc for _, doc in EXAMPLES if doc["kind"] == "InferenceNode"]
    assert len({n["spec"]["nodeName"] for n in nodes}) >= 3
    assert {n["spec"]["engine"] for n in nodes} == {"auto", "vllm", "sglang"}


@pytest.mark.parametrize(("label", "obj"), EXAMPLES, ids=[label for label, _ in EXAMPLES])
def test_example_is_valid_for_the_crd(label: str, obj: dict[str, Any], crds: dict[str, Any]) -> None:
    assert validate_object(crds[obj["kind"]], obj) == []


@pytest.mark.parametrize(("label", "obj"), EXAMPLES, ids=[label for label, _ in EXAMPLES])
def test_model_and_crd_apply_the_same_defaults(label: str, obj: dict[str, Any], crds: dict[str, Any]) -> None:
    stored = compile_crd(crds[obj["kind"]]).default(obj)
    model = MODELS[obj["kind"]].model_validate(obj)
    assert model.model_dump(by_alias=True, exclude_none=True)["spec"] == stored["spec"]
    # What the model writes back is valid for the API server too.
    assert validate_object(crds[obj["kind"]], model.model_dump(by_alias=True, exclude_none=True)) == []
