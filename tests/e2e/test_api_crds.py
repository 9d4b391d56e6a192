"""Against the cluster in KUBECONFIG (only with GPUFLEET_E2E=1): the generated CRDs install, the examples
are accepted and every bad-input object is refused with the expected field, using server-side
dry runs so nothing is left behind except the CRDs themselves."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

# Never touch whatever cluster KUBECONFIG happens to point at unless asked to explicitly (#13):
# the same checks run on every `pytest` against a throw-away control plane in
# tests/integration/realcluster/.
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        os.environ.get("GPUFLEET_E2E") != "1" or not os.environ.get("KUBECONFIG"),
        reason="e2e against the cluster in KUBECONFIG: set GPUFLEET_E2E=1 (and KUBECONFIG) to run",
    ),
]

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = os.environ.get("GPUFLEET_E2E_NAMESPACE", "default")


@pytest.fixture(scope="module")
def api() -> Any:
    from kubernetes import client, config

    config.load_kube_config()
    ext = client.ApiextensionsV1Api()
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        try:
            ext.create_custom_resource_definition(crd)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
            current = ext.read_custom_resource_definition(crd["metadata"]["name"])
            crd["metadata"]["resourceVersion"] = current.metadata.resource_version
            ext.replace_custom_resource_definition(crd["metadata"]["name"], crd)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = ext.read_custom_resource_definition(crd["metadata"]["name"]).status
            if any(c.type == "Established" and c.status == "True" for c in status.conditions or []):
                break
            time.sleep(0.5)
    return client.CustomObjectsApi()


def _create(api: Any, obj: dict[str, Any]) -> None:
    group, version = obj["apiVersion"].split("/")
    plural = {"InferenceNode": "inferencenodes", "OperatorPool": "operatorpools"}.get(obj["kind"])
    if plural is None:
        api.create_cluster_custom_object(
            group, version, "enginereleases", obj, dry_run="All", field_validation="Strict"
        )
    else:
        api.create_namespaced_custom_object(
            group, version, NAMESPACE, plural, obj, dry_run="All", field_validation="Strict"
        )


def _patch_status(api: Any, obj: dict[str, Any]) -> None:
    """Create the object for real (status dropped), then dry-run a status patch; always clean up."""
    group, version = obj["apiVersion"].split("/")
    status = obj.pop("status")
    name = obj["metadata"]["name"]
    if obj["kind"] == "EngineRelease":
        api.create_cluster_custom_object(group, version, "enginereleases", obj)
        try:
            api.patch_cluster_custom_object_status(
                group, version, "enginereleases", name, {"status": status}, dry_run="All"
            )
        finally:
            api.delete_cluster_custom_object(group, version, "enginereleases", name)
        return
    plural = {"InferenceNode": "inferencenodes", "OperatorPool": "operatorpools"}[obj["kind"]]
    api.create_namespaced_custom_object(group, version, NAMESPACE, plural, obj)
    try:
        api.patch_namespaced_custom_object_status(
            group, version, NAMESPACE, plural, name, {"status": status}, dry_run="All"
        )
    finally:
        api.delete_namespaced_custom_object(group, version, NAMESPACE, plural, name)


def _examples() -> list[dict[str, Any]]:
    return [d for p in sorted((ROOT / "examples").glob("*.yaml")) for d in yaml.safe_load_all(p.read_text())]


@pytest.mark.parametrize("obj", _examples(), ids=lambda d: d["metadata"]["name"])
def test_examples_are_accepted(api: Any, obj: dict[str, Any]) -> None:
    _create(api, obj)


@pytest.mark.parametrize(
    "path", sorted((ROOT / "tests" / "fixtures" / "invalid").glob("*.yaml")), ids=lambda p: p.stem
)
def test_bad_input_is_refused_naming_the_field(api: Any, path: Path) -> None:
    from kubernetes import client

    text = path.read_text()
    field = re.search(r"^# expect: (\S+)$", text, flags=re.M)
    assert field is not None
    obj = yaml.safe_load(text)
    # With the status subresource a create drops .status; the status is checked on /status.
    write = _patch_status if field.group(1).startswith("status.") else _create
    with pytest.raises(client.ApiException) as exc:
        write(api, obj)
    if field.group(1) == "apiVersion":
        assert exc.value.status == 404  # no such group/version is served
        return
    assert exc.value.status in (400, 422)  # 400: strict field validation (unknown field)
    assert field.group(1).split("[")[0] in str(exc.value.body)
