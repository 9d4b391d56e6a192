"""values.schema.json: accepts what the chart supports, rejects bad values with a message naming the key."""

from __future__ import annotations

import json

import helm_python as helm
import jsonschema
import pytest
import yaml

from tests.unit.chart.helpers import CHART, VARIANTS, Obj, render

SCHEMA = json.loads((CHART / "values.schema.json").read_text())

# (values, the JSON pointer Helm must name in its error)
BAD_VALUES: list[tuple[str, Obj, str]] = [
    ("unknown top-level key (typo)", {"replica": 2}, "additional properties 'replica'"),
    ("replicas is not configurable", {"replicas": 2}, "additional properties 'replicas'"),
    ("unknown nested key", {"image": {"name": "x"}}, "/image"),
    ("short digest", {"image": {"digest": "sha256:abc"}}, "/image/digest"),
    ("digest without algorithm", {"image": {"digest": "ab" * 32}}, "/image/digest"),
    ("upper-case digest", {"image": {"digest": "sha256:" + "AB" * 32}}, "/image/digest"),
    ("tag with a colon", {"image": {"tag": "v1:2"}}, "/image/tag"),
    ("repository with a tag", {"image": {"repository": "ghcr.io/x/y:1.0"}}, "/image/repository"),
    ("empty repository", {"image": {"repository": ""}}, "/image/repository"),
    ("pull policy typo", {"image": {"pullPolicy": "always"}}, "/image/pullPolicy"),
    ("scope typo", {"rbac": {"scope": "namespaces"}}, "/rbac/scope"),
    ("watchNamespace in cluster scope", {"rbac": {"watchNamespace": "fleet"}}, "/rbac/watchNamespace"),
    (
        "invalid namespace name",
        {"rbac": {"scope": "namespace", "watchNamespace": "Fleet_A"}},
        "/rbac/watchNamespace",
    ),
    ("rbac.create as string", {"rbac": {"create": "yes"}}, "/rbac/create"),
    ("privileged metrics port", {"metrics": {"port": 80}}, "/metrics/port"),
    ("port out of range", {"health": {"port": 70000}}, "/health/port"),
    ("port as string", {"metrics": {"port": "8080"}}, "/metrics/port"),
    ("bad scrape interval", {"metrics": {"serviceMonitor": {"interval": "30 seconds"}}}, "interval"),
    (
        "ServiceMonitor without its Service",
        {"metrics": {"serviceMonitor": {"enabled": True}, "service": {"enabled": False}}},
        "/metrics/service/enabled",
    ),
    ("service type typo", {"metrics": {"service": {"type": "Headless"}}}, "/metrics/service/type"),
    (
        "pdb blocking drains",
        {"podDisruptionBudget": {"maxUnavailable": 0}},
        "/podDisruptionBudget/maxUnavailable",
    ),
    ("pdb 0%", {"podDisruptionBudget": {"maxUnavailable": "0%"}}, "/podDisruptionBudget/maxUnavailable"),
    ("root user", {"podSecurity": {"runAsUser": 0}}, "/podSecurity/runAsUser"),
    ("log level typo", {"operator": {"logLevel": "verbose"}}, "/operator/logLevel"),
    ("extraArgs not strings", {"operator": {"extraArgs": [1]}}, "/operator/extraArgs/0"),
    ("env var without name", {"operator": {"extraEnv": [{"value": "1"}]}}, "/operator/extraEnv/0"),
    ("bad resource quantity", {"resources": {"limits": {"memory": "lots"}}}, "/resources/limits/memory"),
    (
        "dashboard label not a string",
        {"dashboards": {"labels": {"grafana_dashboard": 1}}},
        "grafana_dashboard",
    ),
    ("tolerations not a list", {"tolerations": {"key": "x"}}, "/tolerations"),
    ("nodeSelector value not a string", {"nodeSelector": {"gpu": True}}, "/nodeSelector/gpu"),
]


def test_schema_is_valid_draft7() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)


def test_default_values_pass_the_schema() -> None:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.validate(defaults, SCHEMA)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variants_pass_the_schema(variant: str) -> None:
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(chart.merge_values(VARIANTS[variant]))


@pytest.mark.parametrize(("case", "values", "where"), BAD_VALUES, ids=[c for c, _, _ in BAD_VALUES])
def test_bad_values_are_rejected_naming_the_key(case: str, values: Obj, where: str) -> None:
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmValuesError) as info:
        chart.validate_schema(chart.merge_values(values))
    assert where in str(info.value), f"{case}: message does not point at {where}: {info.value}"


def test_render_enforces_the_schema() -> None:
    # What `helm install` does: a bad value fails before any template renders.
    with pytest.raises(helm.HelmValuesError, match="/image/digest"):
        render({"image": {"digest": "sha256:nope"}})
