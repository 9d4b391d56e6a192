"""Every object the Helm chart renders (each values variant of tests/unit/chart) is accepted by the
real kube-apiserver under server-side dry run with strict field validation: RBAC rules, the
Deployment, Services, PodDisruptionBudget, dashboards ConfigMaps. ServiceMonitor/PodMonitor need
the prometheus-operator CRDs, which are not ours: they are installed here as schemaless stubs, so
only their envelope (apiVersion, kind, metadata) is checked."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from kubernetes import client, dynamic

from tests.unit.chart.helpers import NAMESPACE, VARIANTS, objects

STUB_CRDS = [
    ("monitoring.coreos.com", "v1", kind, plural)
    for kind, plural in (("ServiceMonitor", "servicemonitors"), ("PodMonitor", "podmonitors"))
]


def _stub_crd(group: str, version: str, kind: str, plural: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "names": {"kind": kind, "plural": plural},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                }
            ],
        },
    }


@pytest.fixture(scope="module")
def api(real_cluster: Any) -> Any:
    api = real_cluster.api()
    ext = client.ApiextensionsV1Api(api)
    for stub in STUB_CRDS:
        try:
            ext.create_custom_resource_definition(_stub_crd(*stub))
        except client.ApiException as exc:
            if exc.status != 409:
                raise
    core = client.CoreV1Api(api)
    for ns in {NAMESPACE, "fleet", "monitoring"}:
        try:
            core.create_namespace({"metadata": {"name": ns}})
        except client.ApiException as exc:
            if exc.status != 409:
                raise

    def established(name: str) -> bool:
        conds = ext.read_custom_resource_definition(name).status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conds)

    deadline = time.monotonic() + 30
    while not all(established(f"{p}.{g}") for g, _, _, p in STUB_CRDS):
        assert time.monotonic() < deadline, "stub monitoring CRDs not Established"
        time.sleep(0.1)
    return api


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_rendered_object_passes_server_side_dry_run(api: Any, variant: str) -> None:
    dyn = dynamic.DynamicClient(api)
    refused = []
    rendered = objects(VARIANTS[variant])
    assert rendered
    for obj in rendered:
        for _ in range(50):  # discovery of the stub CRDs may lag a moment behind Established
            try:
                res = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
                break
            except Exception:  # ResourceNotFoundError until discovery refreshes
                dyn = dynamic.DynamicClient(api)
        else:
            raise AssertionError(f"{obj['apiVersion']} {obj['kind']} is not served")
        ns = obj["metadata"].get("namespace") or NAMESPACE
        base = "/api/v1" if obj["apiVersion"] == "v1" else f"/apis/{obj['apiVersion']}"
        path = f"{base}/namespaces/{ns}/{res.name}" if res.namespaced else f"{base}/{res.name}"
        resp = api.rest_client.pool_manager.request(
            "POST",
            f"{api.configuration.host}{path}?dryRun=All&fieldValidation=Strict",
            body=json.dumps(obj).encode(),
            headers={"Content-Type": "application/json"},
        )
        if resp.status != 201:
            refused.append((obj["kind"], obj["metadata"]["name"], resp.status, resp.data.decode()[:400]))
    assert not refused, refused
