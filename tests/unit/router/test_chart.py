"""The chart's router templates: off by default, read-only RBAC, valid objects when on."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from kubernetes_validate import validate

from tests.unit.chart.helpers import CHART, KUBE_VERSION, by_kind, objects

ON: dict[str, Any] = {
    "router": {
        "enabled": True,
        "serviceMonitor": {"enabled": True},
        "settings": {"priorityK": "0.0002", "default_max_concurrency": 64},
    }
}


def router_objects(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        o
        for o in objects(values)
        if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "router"
    ]


def test_off_by_default() -> None:
    assert router_objects({}) == []


def test_values_validate_against_the_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    import yaml

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    values["router"].update(ON["router"])
    jsonschema.validate(values, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**values, "router": {**values["router"], "port": 80}}, schema)


@pytest.mark.parametrize("scope", ["cluster", "namespace"])
def test_rbac_reads_only_pods_inferencenodes_operatorpools(scope: str) -> None:
    objs = router_objects(
        {**ON, "rbac": {"scope": scope, "watchNamespace": "fleet" if scope == "namespace" else ""}}
    )
    kinds = ["Role", "ClusterRole"] if scope == "namespace" else ["ClusterRole"]
    roles = [r for kind in kinds for r in by_kind(objs, kind)]
    assert len(roles) == 2  # the fleet reads, and the RoutingPolicy (cluster-scoped) for the live k
    rules = [rule for r in roles for rule in r["rules"]]
    granted = {(g, r) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]}
    assert granted == {("", "pods"), ("gpufleet.io", "inferencenodes"), ("gpufleet.io", "operatorpools"),
                       ("gpufleet.io", "routingpolicies")}
    assert all(set(rule["verbs"]) == {"get", "list", "watch"} for rule in rules)


def test_objects_validate_and_wire_up() -> None:
    objs = router_objects(ON)
    kinds = sorted(o["kind"] for o in objs)
    assert kinds == [
        "ClusterRole",
        "ClusterRole",
        "ClusterRoleBinding",
        "ClusterRoleBinding",
        "Deployment",
        "PodDisruptionBudget",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ]
    for o in objs:
        if o["kind"] != "ServiceMonitor":
            validate(o, KUBE_VERSION, strict=True)
    [dep] = by_kind(objs, "Deployment")
    container = dep["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert container["args"] == ["router"]
    assert env["GPUFLEET_ROUTER_PRIORITY_K"] == "0.0002"
    assert env["GPUFLEET_ROUTER_DEFAULT_MAX_CONCURRENCY"] == "64"
    assert (
        dep["spec"]["template"]["spec"]["serviceAccountName"]
        == by_kind(objs, "ServiceAccount")[0]["metadata"]["name"]
    )
    [svc] = by_kind(objs, "Service")
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
