"""Render the chart with helm-python-sdk (no helm binary, no cluster) and load its objects."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml
from kubernetes_validate import utils as kv

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "gpufleet"
RELEASE = "gf"
NAMESPACE = "gpufleet-system"
#: The newest Kubernetes version kubernetes-validate ships schemas for (1.37 at the time of writing).
KUBE_VERSION = kv.latest_version()

Obj = dict[str, Any]

#: The variants the issue asks for, plus a few that exercise other branches.
VARIANTS: dict[str, Obj] = {
    "default": {},
    "servicemonitor": {
        "metrics": {
            "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
            "podMonitor": {"enabled": True},
        }
    },
    "digest": {
        "image": {
            "repository": "registry.example.com:5000/gpufleet/operator",
            "digest": "sha256:" + "ab" * 32,
            "tag": "ignored",
        }
    },
    "namespace-scope": {"rbac": {"scope": "namespace", "watchNamespace": "fleet"}},
    "namespaced-install": {"rbac": {"scope": "namespace"}},
    "custom-everything": {
        "fullnameOverride": "fleet-op",
        "serviceAccount": {"create": False, "name": "preexisting-sa"},
        "podDisruptionBudget": {"enabled": True, "maxUnavailable": "50%"},
        "dashboards": {"namespace": "monitoring", "labels": {"grafana_dashboard": "1", "team": "gpu"}},
        "metrics": {"port": 9100, "service": {"type": "ClusterIP", "annotations": {"a": "b"}}},
        "health": {"port": 9101},
        "operator": {
            "logLevel": "DEBUG",
            "extraArgs": ["--verbose"],
            "extraEnv": [{"name": "X", "value": "1"}],
        },
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": 1, "memory": "1Gi"}},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "node-role", "operator": "In", "values": ["ops"]}]}
                    ]
                }
            }
        },
        "imagePullSecrets": [{"name": "regcred"}],
        "priorityClassName": "system-cluster-critical",
        "podAnnotations": {"example.com/owner": "gpu-team"},
        "podLabels": {"team": "gpu"},
    },
    "no-dashboards-no-service": {
        "dashboards": {"enabled": False},
        "metrics": {"service": {"enabled": False}},
    },
}


@lru_cache(maxsize=64)
def _render(values_json: str, namespace: str) -> tuple[tuple[str, str], ...]:
    with helm.Chart.load(str(CHART)) as chart:
        out = chart.render(json.loads(values_json), name=RELEASE, namespace=namespace, is_install=True)
    return tuple(sorted(out.items()))


def render(values: Obj | None = None, namespace: str = NAMESPACE) -> dict[str, str]:
    """Template path -> rendered text (cached: renders are pure functions of the values)."""
    return dict(_render(json.dumps(values or {}, sort_keys=True), namespace))


def objects(values: Obj | None = None, namespace: str = NAMESPACE) -> list[Obj]:
    """Every Kubernetes object the chart renders (templates only; crds/ is installed as-is)."""
    out: list[Obj] = []
    for path, text in render(values, namespace).items():
        if not path.endswith((".yaml", ".yml")):
            continue
        out.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return out


def by_kind(objs: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[Obj], kind: str) -> Obj:
    found = by_kind(objs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]
