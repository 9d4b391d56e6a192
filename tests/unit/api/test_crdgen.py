"""The CRDs in crds/ are generated from the models, structural, and accepted by Kubernetes' schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import Field

from gpufleet.api import crdgen, docgen
from gpufleet.api.common import CRDInfo, Resource
from gpufleet.api.v1alpha1 import KINDS
from gpufleet.cli import main
from tests.unit.api.conftest import CRD_DIR, ROOT

K8S_VERSION = "1.30.0"


def _nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from _nodes(sub, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from _nodes(schema[key], f"{path}[{key}]")


def _schema(kind: type[Resource]) -> dict[str, Any]:
    crd = crdgen.build_crd(kind)
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_crds_dir_matches_the_models() -> None:
    assert crdgen.check(CRD_DIR) == [], "crds/ drifted from the models: run `gpufleet crds`"


def test_crd_reference_doc_is_current() -> None:
    doc = ROOT / "docs" / "crd-reference.md"
    assert doc.read_text() == docgen.render_reference(), "run `gpufleet crds` to regenerate the reference"


def test_generation_is_deterministic() -> None:
    assert crdgen.generate() == crdgen.generate()


@pytest.mark.parametrize("path", sorted(CRD_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_kubernetes_validate_accepts_each_crd(path: Path) -> None:
    crd = yaml.safe_load(path.read_text())
    kubernetes_validate.validate(crd, K8S_VERSION, strict=True)  # raises on any schema violation


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.crd.kind)
def test_schema_is_structural(kind: type[Resource]) -> None:
    for path, node in _nodes(_schema(kind)):
        assert "$ref" not in node, path
        assert "$defs" not in node, path
        assert "title" not in node, path
        assert "const" not in node, path
        assert node.get("additionalProperties") is not False, path
        if "anyOf" in node:
            assert node.get("x-kubernetes-int-or-string") is True, f"{path}: anyOf only for int-or-string"
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}]
        else:
            assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), f"{path} has no type"
        scalar_item = path.endswith("]") and node.get("type") != "object"
        if path not in ("", ".metadata") and not scalar_item:
            assert node.get("description"), f"{path} is undocumented (kubectl explain shows nothing)"
        assert "default" not in node or node["default"] is not None, path


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.crd.kind)
def test_metadata_is_left_to_the_server(kind: type[Resource]) -> None:
    schema = _schema(kind)
    assert schema["properties"]["metadata"] == {"type": "object"}
    assert schema["required"] == ["spec"]
    assert not schema.get("x-kubernetes-preserve-unknown-fields")
    assert not schema["properties"]["spec"].get("x-kubernetes-preserve-unknown-fields")


def test_optional_fields_become_nullable_not_anyof() -> None:
    spec = _schema(KINDS[0])["properties"]["spec"]["properties"]
    assert spec["gpuCount"]["type"] == "integer"
    assert spec["gpuCount"]["nullable"] is True
    assert spec["gpuCount"]["minimum"] == 1


def test_int_or_string_keeps_bounds_of_both_branches() -> None:
    policy = _schema(KINDS[0])["properties"]["spec"]["properties"]["updatePolicy"]["properties"]
    max_unavailable = policy["maxUnavailable"]
    assert max_unavailable["x-kubernetes-int-or-string"] is True
    assert max_unavailable["minimum"] == 1
    assert max_unavailable["pattern"] == "^(100|[1-9][0-9]?)%$"
    assert max_unavailable["default"] == 1


def test_cel_rules_ride_along_from_the_models() -> None:
    spec = _schema(KINDS[0])["properties"]["spec"]
    release_rules = spec["properties"]["release"]["x-kubernetes-validations"]
    assert release_rules[0]["rule"] == "!(has(self.channel) && has(self.version))"
    assert release_rules[0]["fieldPath"] == ".version"
    node_name_rules = spec["properties"]["nodeName"]["x-kubernetes-validations"]
    assert node_name_rules == [{"rule": "self == oldSelf", "message": "nodeName is immutable"}]


def test_nested_objects_default_to_empty_so_their_defaults_apply() -> None:
    spec = _schema(KINDS[0])["properties"]["spec"]["properties"]
    assert spec["updatePolicy"]["default"] == {}
    assert spec["release"]["default"] == {}


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.crd.kind)
def test_names_columns_and_subresources(kind: type[Resource]) -> None:
    crd = crdgen.build_crd(kind)
    names = crd["spec"]["names"]
    assert names["categories"] == ["gpufleet"]
    assert names["shortNames"] == list(kind.crd.short_names)
    assert crd["metadata"]["name"] == f"{names['plural']}.gpufleet.io"
    version = crd["spec"]["versions"][0]
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Age"] == ".metadata.creationTimestamp"
    has_status = "status" in version["schema"]["openAPIV3Schema"]["properties"]
    assert ("subresources" in version) is has_status


def test_inferencenode_shape() -> None:
    crd = crdgen.build_crd(KINDS[0])
    assert crd["spec"]["scope"] == "Namespaced"
    assert crd["spec"]["names"]["shortNames"] == ["inode"]
    columns = [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]
    for expected in ("Pool", "Node", "GPUs", "Ready", "Engine", "Version", "Age"):
        assert expected in columns
    release = crdgen.build_crd(KINDS[2])
    assert release["spec"]["scope"] == "Cluster"


def test_unsupported_schema_is_refused_with_the_path() -> None:
    class Bad(Resource):
        crd = CRDInfo(kind="Bad", plural="bads", singular="bad", scope="Namespaced", short_names=())
        spec: dict[str, Any] = Field(description="free-form without preserve-unknown-fields")

    with pytest.raises(crdgen.SchemaError, match=r"Bad\.spec: free-form object"):
        crdgen.build_crd(Bad)


def test_cli_writes_and_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, docs = tmp_path / "crds", tmp_path / "ref.md"
    assert main(["crds", "--out", str(out), "--docs", str(docs), "--check"]) == 1
    assert "missing" in capsys.readouterr().err
    assert main(["crds", "--out", str(out), "--docs", str(docs)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in CRD_DIR.glob("*.yaml"))
    assert main(["crds", "--out", str(out), "--docs", str(docs), "--check"]) == 0
    target = out / "gpufleet.io_operatorpools.yaml"
    target.write_text(target.read_text().replace("maximum: 10000", "maximum: 20000"))
    assert main(["crds", "--out", str(out), "--docs", str(docs), "--check"]) == 1
    assert "gpufleet.io_operatorpools.yaml: differs from the models" in capsys.readouterr().err
