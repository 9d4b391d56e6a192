"""Render the chart for several value sets, lint it, and validate every object it produces."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import jsonschema
import pytest
import yaml
from kubernetes_validate import utils as kv

from tests.unit.chart.helpers import (
    CHART,
    KUBE_VERSION,
    NAMESPACE,
    RELEASE,
    VARIANTS,
    Obj,
    by_kind,
    objects,
    one,
    render,
)

# The Prometheus Operator's CRDs are not in kubernetes-validate's schemas: check the fields we use
# against a strict subset of monitoring.coreos.com/v1 (unknown fields are errors, like the real CRD
# with server-side field validation).
_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}},
    "required": ["matchLabels"],
}
_NS_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"any": {"type": "boolean"}, "matchNames": {"type": "array", "items": {"type": "string"}}},
}
_DURATION = {"type": "string", "pattern": r"^(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?$"}
_RELABEL = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "sourceLabels": {"type": "array", "items": {"type": "string", "pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$"}},
        "targetLabel": {"type": "string", "pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$"},
    },
}
_ENDPOINT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["port"],
    "properties": {
        "port": {"type": "string", "minLength": 1},
        "path": {"type": "string", "pattern": "^/"},
        "interval": _DURATION,
        "scrapeTimeout": _DURATION,
        "relabelings": {"type": "array", "items": _RELABEL},
    },
}
_META = {"type": "object", "required": ["name", "namespace"]}
MONITOR_SCHEMAS: dict[str, dict[str, Any]] = {
    kind: {
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": kind},
            "metadata": _META,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["selector", endpoints],
                "properties": {
                    "selector": _SELECTOR,
                    "namespaceSelector": _NS_SELECTOR,
                    endpoints: {"type": "array", "minItems": 1, "items": _ENDPOINT},
                },
            },
        },
    }
    for kind, endpoints in (("ServiceMonitor", "endpoints"), ("PodMonitor", "podMetricsEndpoints"))
}


def _validate(obj: Obj) -> None:
    if obj["kind"] in MONITOR_SCHEMAS:
        jsonschema.validate(obj, MONITOR_SCHEMAS[obj["kind"]])
        return
    # strict: unknown fields are errors, as with `kubectl apply --validate=strict`.
    kv.validate(obj, KUBE_VERSION, strict=True)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_rendered_object_validates_against_kubernetes(variant: str) -> None:
    objs = objects(VARIANTS[variant])
    assert objs, "the chart rendered nothing"
    for obj in objs:
        try:
            _validate(obj)
        except (jsonschema.ValidationError, kv.ValidationError) as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(
                f"{variant}: {obj['kind']}/{obj['metadata']['name']} invalid at {path}: {exc.message}"
            )


@pytest.mark.parametrize("variant", ["default", "custom-everything", "namespace-scope"])
def test_objects_also_validate_on_the_oldest_supported_kubernetes(variant: str) -> None:
    # Chart.yaml promises kubeVersion >= 1.29: no field may be newer than that.
    oldest = yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"].lstrip(">=").split("-")[0]
    assert oldest == "1.29.0"
    for obj in objects(VARIANTS[variant]):
        if obj["kind"] not in MONITOR_SCHEMAS:
            kv.validate(obj, oldest, strict=True)


def test_crds_shipped_in_the_chart_validate() -> None:
    crds = sorted((CHART / "crds").glob("*.yaml"))
    for path in crds:
        for doc in yaml.safe_load_all(path.read_text()):
            assert doc["kind"] == "CustomResourceDefinition"
            kv.validate(doc, KUBE_VERSION, strict=True)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_helm_lint_is_clean(variant: str) -> None:
    report = helm.lint(
        str(CHART), VARIANTS[variant], strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}"
    )
    assert report["errors"] == []
    # Severity 2 = warning, 3 = error; info (1) like "icon is recommended" is fine.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def _container(objs: list[Obj]) -> Obj:
    pod = one(objs, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return container


def _env(container: Obj) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_deployment_is_single_replica_recreate_with_restricted_security() -> None:
    objs = objects()
    deploy = one(objs, "Deployment")
    assert deploy["spec"]["replicas"] == 1
    assert deploy["spec"]["strategy"] == {"type": "Recreate"}
    pod = deploy["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = _container(objs)["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}


def test_operator_runs_gpufleet_run_with_probes_on_kopf_liveness_and_metrics_port() -> None:
    container = _container(objects())
    assert "command" not in container  # the image's entrypoint: tini -- gpufleet
    assert container["args"][0] == "run"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    env = _env(container)
    assert env["GPUFLEET_LIVENESS_ENDPOINT"] == "http://0.0.0.0:8081/healthz"
    assert env["GPUFLEET_METRICS_PORT"] == "8080"
    assert env["GPUFLEET_NAMESPACE"] == ""  # cluster-wide
    assert env["GPUFLEET_PEERING_NAME"] == ""  # standalone
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["resources"]["limits"]["memory"] == "512Mi"


def test_image_by_tag_defaults_to_app_version_and_digest_wins() -> None:
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert _container(objects())["image"] == f"ghcr.io/gpufleet/gpufleet-operator:{app_version}"
    tagged = objects({"image": {"tag": "1.2.3"}})
    assert _container(tagged)["image"] == "ghcr.io/gpufleet/gpufleet-operator:1.2.3"
    assert _container(objects(VARIANTS["digest"]))["image"] == (
        "registry.example.com:5000/gpufleet/operator@sha256:" + "ab" * 32
    )


def test_optional_objects_follow_their_switches() -> None:
    default = objects()
    assert by_kind(default, "ServiceMonitor") == []
    assert by_kind(default, "PodMonitor") == []
    assert by_kind(default, "PodDisruptionBudget") == []
    assert len(by_kind(default, "ConfigMap")) == 4
    monitored = objects(VARIANTS["servicemonitor"])
    sm = one(monitored, "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    service = one(monitored, "Service")
    assert sm["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert sm["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    pm = one(monitored, "PodMonitor")
    assert pm["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "gpufleet-engine"
    assert pm["spec"]["podMetricsEndpoints"][0]["port"] == "status"
    bare = objects(VARIANTS["no-dashboards-no-service"])
    assert by_kind(bare, "ConfigMap") == []
    assert by_kind(bare, "Service") == []


def test_service_selects_the_operator_pod() -> None:
    objs = objects()
    service = one(objs, "Service")
    pod_labels = one(objs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"


def test_custom_values_reach_the_pod() -> None:
    objs = objects(VARIANTS["custom-everything"])
    deploy = one(objs, "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    assert deploy["metadata"]["name"] == "fleet-op"
    assert pod["serviceAccountName"] == "preexisting-sa"
    assert by_kind(objs, "ServiceAccount") == []
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"][0]["key"] == "dedicated"
    assert "nodeAffinity" in pod["affinity"]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    container = _container(objs)
    assert container["args"] == ["run", "--verbose"]
    assert _env(container)["X"] == "1"
    assert _env(container)["GPUFLEET_LOG_LEVEL"] == "DEBUG"
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"metrics": 9100, "health": 9101}
    assert _env(container)["GPUFLEET_LIVENESS_ENDPOINT"] == "http://0.0.0.0:9101/healthz"
    assert one(objs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == "50%"
    for cm in by_kind(objs, "ConfigMap"):
        assert cm["metadata"]["namespace"] == "monitoring"
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["labels"]["team"] == "gpu"


def test_namespace_scope_watches_one_namespace() -> None:
    container = _container(objects(VARIANTS["namespace-scope"]))
    assert _env(container)["GPUFLEET_NAMESPACE"] == "fleet"
    # A namespaced install without watchNamespace watches its own namespace.
    own = _container(objects(VARIANTS["namespaced-install"], namespace="team-a"))
    assert _env(own)["GPUFLEET_NAMESPACE"] == "team-a"


def test_every_object_is_labelled_and_namespaced_in_the_release() -> None:
    cluster_kinds = {"ClusterRole", "ClusterRoleBinding"}
    for obj in objects(VARIANTS["servicemonitor"]):
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        if obj["kind"] in cluster_kinds:
            assert "namespace" not in obj["metadata"]
        else:
            assert obj["metadata"]["namespace"] == NAMESPACE


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"metrics": {"port": 8081}}, "metrics.port and health.port must differ"),
        ({"serviceAccount": {"create": False}}, "serviceAccount.name is required"),
    ],
)
def test_template_level_checks_fail_with_clear_messages(values: Obj, message: str) -> None:
    with pytest.raises(helm.HelmError, match=message):
        render(values)


def test_notes_tell_the_user_what_to_do_next() -> None:
    notes = render()["gpufleet/templates/NOTES.txt"]
    assert f"kubectl -n {NAMESPACE} rollout status deployment/{RELEASE}-gpufleet" in notes
    assert "kubectl apply -f examples/enginereleases.yaml" in notes
    assert "all namespaces" in notes
    assert "metrics.serviceMonitor.enabled=true" in notes
    scoped = render(VARIANTS["namespace-scope"])["gpufleet/templates/NOTES.txt"]
    assert 'namespace "fleet"' in scoped
    assert "-n fleet" in scoped


@pytest.mark.parametrize(
    ("kind", "corrupt", "message"),
    [
        ("Deployment", lambda o: o["spec"]["template"]["spec"].update(replica=2), "replica"),
        ("ClusterRole", lambda o: o["rules"][0].update(verbs="get"), "is not of type 'array'"),
        ("Service", lambda o: o["spec"]["ports"][0].update(port="eighty"), "eighty"),
    ],
)
def test_the_validator_really_rejects_broken_objects(kind: str, corrupt: Any, message: str) -> None:
    # Guards the tests above against a validator that silently accepts anything.
    obj = one(objects(), kind)
    corrupt(obj)
    with pytest.raises(kv.ValidationError, match=message):
        _validate(obj)


def test_monitor_schemas_reject_unknown_fields() -> None:
    sm = one(objects(VARIANTS["servicemonitor"]), "ServiceMonitor")
    sm["spec"]["endpoints"][0]["intervall"] = "30s"
    with pytest.raises(jsonschema.ValidationError, match="intervall"):
        _validate(sm)
