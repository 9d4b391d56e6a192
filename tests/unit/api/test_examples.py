"""The examples in examples/*.yaml are valid for the CRDs and the models, and both default alike."""

from __future__ import annotations

import re
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
    # `engine` defaults to "auto" (the CRD default), as in examples/inferencenode-blocked.yaml.
    assert {n["spec"].get("engine", "auto") for n in nodes} == {"auto", "vllm", "sglang"}


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


def _object_meta_validator() -> Any:
    """kubernetes-validate's own (strict) ObjectMeta schema: it has no schema for our kinds, but it
    does know what the metadata half of every example must look like."""
    import importlib.resources
    import json

    import jsonschema
    import kubernetes_validate
    from referencing import Registry, Resource

    version = "v1.30.0-local-strict"
    root = importlib.resources.files(kubernetes_validate) / "kubernetes-json-schema" / version
    definitions = json.loads((root / "_definitions.json").read_text())
    registry: Registry[Any] = Resource.from_contents(definitions) @ Registry()
    ref = definitions["$id"] + "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    return jsonschema.Draft202012Validator({"$ref": ref}, registry=registry)


OBJECT_META = _object_meta_validator()
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@pytest.mark.parametrize(("label", "obj"), EXAMPLES, ids=[label for label, _ in EXAMPLES])
def test_example_metadata_is_valid_kubernetes_object_meta(label: str, obj: dict[str, Any]) -> None:
    OBJECT_META.validate(obj["metadata"])
    assert DNS_SUBDOMAIN.fullmatch(obj["metadata"]["name"])
    assert len(obj["metadata"]["name"]) <= 253


def test_object_meta_validator_is_not_vacuous() -> None:
    with pytest.raises(Exception, match="labels"):
        OBJECT_META.validate({"name": "x", "labels": "not-a-map"})
