"""Our CRDs, examples and bad-input corpus on both backends: the real kube-apiserver compiles the
CEL rules and checks the structural schemas; both must accept every example and refuse every
object of tests/fixtures/invalid/ naming the field its `# expect:` line names."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.integration.realcluster.conftest import Backend

ROOT = Path(__file__).resolve().parents[3]
_CRDS = [yaml.safe_load(p.read_text()) for p in sorted((ROOT / "crds").glob("*.yaml"))]
#: kind -> plural, and the cluster-scoped kinds, from the CRDs themselves.
PLURALS = {c["spec"]["names"]["kind"]: c["spec"]["names"]["plural"] for c in _CRDS}
CLUSTER_SCOPED = {c["spec"]["names"]["kind"] for c in _CRDS if c["spec"]["scope"] == "Cluster"}


def _plural(obj: dict[str, Any]) -> str:
    return PLURALS[obj["kind"]]


def _create(b: Backend, obj: dict[str, Any], *, dry_run: bool = True) -> None:
    obj["metadata"].pop("namespace", None)  # every object goes to the test's own namespace
    kw: dict[str, Any] = {"field_validation": "Strict"}
    if dry_run:
        kw["dry_run"] = "All"
    if obj["apiVersion"] == "v1" and obj["kind"] == "ConfigMap":
        b.core.create_namespaced_config_map(b.namespace, obj, **kw)
        return
    group, version = obj["apiVersion"].split("/")
    if obj["kind"] in CLUSTER_SCOPED:
        b.custom.create_cluster_custom_object(group, version, _plural(obj), obj, **kw)
    else:
        b.custom.create_namespaced_custom_object(group, version, b.namespace, _plural(obj), obj, **kw)


def _patch_status(b: Backend, obj: dict[str, Any]) -> None:
    """Create the object for real (status dropped), then a status patch; always clean up."""
    group, version = obj["apiVersion"].split("/")
    obj["metadata"].pop("namespace", None)
    status = obj.pop("status")
    name = obj["metadata"]["name"]
    plural = _plural(obj)
    if obj["kind"] in CLUSTER_SCOPED:
        b.custom.create_cluster_custom_object(group, version, plural, obj)
        try:
            b.custom.patch_cluster_custom_object_status(group, version, plural, name, {"status": status})
        finally:
            b.custom.delete_cluster_custom_object(group, version, plural, name)
        return
    b.custom.create_namespaced_custom_object(group, version, b.namespace, plural, obj)
    try:
        b.custom.patch_namespaced_custom_object_status(
            group, version, b.namespace, plural, name, {"status": status}
        )
    finally:
        b.custom.delete_namespaced_custom_object(group, version, b.namespace, plural, name)


def _examples() -> list[dict[str, Any]]:
    return [
        d for p in sorted((ROOT / "examples").glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d
    ]


def test_every_crd_is_established_and_served(cluster: Backend) -> None:
    ext = client.ApiextensionsV1Api(cluster.api)
    names = {yaml.safe_load(p.read_text())["metadata"]["name"] for p in (ROOT / "crds").glob("*.yaml")}
    served = {c.metadata.name: c for c in ext.list_custom_resource_definition().items}
    missing = names - set(served)
    assert not missing, f"CRDs refused or not served: {sorted(missing)} (start-up logs say why)"
    for name in names:
        conds = {c.type: c.status for c in served[name].status.conditions or []}
        assert conds.get("Established") == "True", (name, conds)
        assert conds.get("NonStructuralSchema") in (None, "False"), (name, conds)


@pytest.mark.parametrize("obj", _examples(), ids=lambda d: d["metadata"]["name"])
def test_examples_are_accepted(cluster: Backend, obj: dict[str, Any]) -> None:
    _create(cluster, obj)


@pytest.mark.parametrize(
    "path", sorted((ROOT / "tests" / "fixtures" / "invalid").glob("*.yaml")), ids=lambda p: p.stem
)
def test_bad_input_is_refused_naming_the_field(cluster: Backend, path: Path) -> None:
    text = path.read_text()
    field = re.search(r"^# expect: (\S+)$", text, flags=re.M)
    assert field is not None
    obj = yaml.safe_load(text)
    write = _patch_status if field.group(1).startswith("status.") else _create
    with pytest.raises(client.ApiException) as exc:
        write(cluster, obj)
    if field.group(1) == "apiVersion":
        assert exc.value.status == 404  # no such group/version is served
        return
    assert exc.value.status in (400, 422), exc.value.body  # 400: strict field validation (unknown field)
    assert field.group(1).split("[")[0] in str(exc.value.body), exc.value.body
