"""Least-privilege RBAC: the chart grants exactly what gpufleet.rbac lists, with no wildcard."""

from __future__ import annotations

from collections import defaultdict

import pytest
import yaml

from gpufleet.rbac import RULES, Rule, chart_rules, render_chart_file, validate_rules
from tests.unit.chart.helpers import CHART, NAMESPACE, VARIANTS, Obj, by_kind, objects

ROLE_KINDS = ("ClusterRole", "Role")


def _grants(roles: list[Obj]) -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) -> verbs, over every rule of the given roles."""
    out: dict[tuple[str, str], set[str]] = defaultdict(set)
    for role in roles:
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    out[(group, resource)].update(rule["verbs"])
    return dict(out)


def _listed(rules: tuple[Rule, ...] = RULES, *, mode: str) -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) -> verbs; several controllers may list one resource: their verbs add up."""
    out: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in rules:
        if r.only_in in (None, mode):
            out[(r.api_group, r.resource)].update(r.verbs)
    return dict(out)


def test_chart_rbac_file_is_generated_from_the_list() -> None:
    committed = (CHART / "files" / "rbac.yaml").read_text()
    assert committed == render_chart_file(), "run: python -m gpufleet.rbac > charts/gpufleet/files/rbac.yaml"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_no_wildcards_and_no_resource_names_anywhere(variant: str) -> None:
    for role in [o for o in objects(VARIANTS[variant]) if o["kind"] in ROLE_KINDS]:
        assert "aggregationRule" not in role
        for rule in role["rules"]:
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[key], f"{role['kind']}/{role['metadata']['name']}: wildcard in {key}"
                assert all("*" not in item for item in rule[key])
            assert "nonResourceURLs" not in rule


def test_cluster_scope_grants_exactly_the_listed_verbs() -> None:
    objs = objects()
    roles = by_kind(objs, "ClusterRole")
    assert by_kind(objs, "Role") == []
    assert _grants(roles) == _listed(mode="cluster")
    (binding,) = by_kind(objs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == roles[0]["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "gf-gpufleet", "namespace": NAMESPACE}]


def test_namespace_scope_keeps_only_cluster_scoped_resources_cluster_wide() -> None:
    objs = objects(VARIANTS["namespace-scope"])
    cluster = _grants(by_kind(objs, "ClusterRole"))
    namespaced_resources = {(r.api_group, r.resource) for r in RULES if r.namespaced}
    assert not set(cluster) & namespaced_resources, "namespaced resources leaked into the ClusterRole"
    assert ("", "nodes") in cluster
    assert ("gpufleet.io", "enginereleases") in cluster
    assert ("apiextensions.k8s.io", "customresourcedefinitions") in cluster
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]): r for r in by_kind(objs, "Role")}
    watched = roles[("fleet", "gf-gpufleet")]
    assert _grants([watched]) == {
        k: v for k, v in _listed(mode="namespace").items() if k in namespaced_resources
    }
    # Events about EngineReleases and Epochs land in the operator's own namespace, and the epoch
    # controller keeps its counting state in a ConfigMap there (#19); nothing else does.
    own = roles[(NAMESPACE, "gf-gpufleet-self")]
    assert _grants([own]) == {("", "events"): {"create"}, ("", "configmaps"): {"get", "create", "patch"}}
    bindings = {(b["metadata"]["namespace"], b["roleRef"]["name"]) for b in by_kind(objs, "RoleBinding")}
    assert bindings == set(roles)
    # All grants together equal the list for this mode: nothing extra, nothing missing.
    merged = _grants(by_kind(objs, "ClusterRole") + by_kind(objs, "Role"))
    assert merged == _listed(mode="namespace")


def test_namespaced_install_in_its_own_namespace_needs_no_extra_role() -> None:
    objs = objects(VARIANTS["namespaced-install"])
    roles = by_kind(objs, "Role")
    assert [(r["metadata"]["namespace"], r["metadata"]["name"]) for r in roles] == [
        (NAMESPACE, "gf-gpufleet")
    ]


def test_readiness_gates_and_agent_proxy_are_granted_narrowly() -> None:
    grants = _grants(by_kind(objects(), "ClusterRole"))
    assert grants[("", "pods/status")] == {"patch"}
    assert grants[("", "pods/proxy")] == {"get"}
    assert grants[("", "nodes")] == {"list", "watch"}
    assert grants[("", "pods")] == {"list", "watch", "create", "delete", "patch"}
    # Nothing the operator never does: no secrets, no updates (patch only), no deletecollection.
    assert not any(resource == "secrets" for _, resource in grants)
    assert not any(
        {"update", "deletecollection", "escalate", "bind", "impersonate"} & v for v in grants.values()
    )


def test_rbac_disabled_renders_no_roles() -> None:
    objs = objects({"rbac": {"create": False}})
    assert [o for o in objs if o["kind"] in (*ROLE_KINDS, "ClusterRoleBinding", "RoleBinding")] == []


def test_every_rule_says_which_code_needs_it() -> None:
    validate_rules(RULES)
    assert all(len(r.needed_by) > 20 for r in RULES)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (Rule("", "pods", ("*",), True, "x"), "wildcards"),
        (Rule("*", "pods", ("get",), True, "x"), "wildcards"),
        (Rule("", "pods", ("proxy",), True, "x"), "unknown verbs"),
        (Rule("", "pods", (), True, "x"), "no verbs"),
        (Rule("", "pods", ("get", "get"), True, "x"), "duplicated verbs"),
        (Rule("", "pods", ("get",), True, " "), "say which code"),
    ],
)
def test_bad_rules_are_refused(rule: Rule, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_rules([rule])
    with pytest.raises(ValueError, match=message):
        chart_rules([rule])


def test_duplicate_resources_are_refused() -> None:
    with pytest.raises(ValueError, match="listed twice"):
        validate_rules([Rule("", "pods", ("get",), True, "a"), Rule("", "pods", ("list",), True, "b")])


def test_generated_file_round_trips() -> None:
    data = yaml.safe_load(render_chart_file())
    assert set(data) == {"cluster", "namespace"}
    assert data == chart_rules()


def test_permits_matches_requests_as_the_emulator_logs_them() -> None:
    from gpufleet.rbac import permits, unpermitted

    assert permits("patch", "pods/status")
    assert permits("get", "pods/proxy")
    assert permits("watch", "inferencenodes", api_group="gpufleet.io")
    assert not permits("watch", "inferencenodes", api_group="")
    assert not permits("update", "pods")
    assert not permits("get", "secrets")
    assert not permits("list", "namespaces")
    assert permits("list", "namespaces", mode="namespace")
    log = [("create", "pods"), ("get", "secrets"), ("get", "secrets"), ("update", "pods/status")]
    assert unpermitted(log) == [("get", "secrets"), ("update", "pods/status")]
