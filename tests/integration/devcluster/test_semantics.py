"""Each API-server behaviour the operator relies on, checked through the real `kubernetes` client."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from gpufleet_devcluster import DevCluster, ThreadedCluster
from tests.integration.devcluster.conftest import pod_body

WIDGET = ("example.com", "v1", "default", "widgets")
JSON_PATCH = "application/json-patch+json"  # the client sends merge-patch for custom objects otherwise


def widget(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"size": 1, **spec},
    }


def status_of(err: pytest.ExceptionInfo[ApiException]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(err.value.body)
    return body


# ------------------------------------------------------------------------------ optimistic concurrency


def test_put_with_stale_resource_version_is_409_conflict(core: client.CoreV1Api) -> None:
    # Kubernetes: an update carrying an old metadata.resourceVersion fails with 409 Conflict.
    cm = core.create_namespaced_config_map("default", {"metadata": {"name": "a"}, "data": {"v": "1"}})
    core.patch_namespaced_config_map("a", "default", {"data": {"v": "2"}})
    cm.data = {"v": "3"}
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_config_map("a", "default", cm)
    assert err.value.status == 409
    assert status_of(err)["reason"] == "Conflict"
    assert core.read_namespaced_config_map("a", "default").data == {"v": "2"}


def test_put_without_resource_version_is_unconditional(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "a"}, "data": {"v": "1"}})
    out = core.replace_namespaced_config_map("a", "default", {"metadata": {"name": "a"}, "data": {"v": "9"}})
    assert out.data == {"v": "9"}


def test_merge_patch_with_stale_resource_version_is_409(custom: client.CustomObjectsApi) -> None:
    obj = custom.create_namespaced_custom_object(*WIDGET, widget("w"))
    custom.patch_namespaced_custom_object(*WIDGET, "w", {"spec": {"size": 2}})
    with pytest.raises(ApiException) as err:
        custom.patch_namespaced_custom_object(
            *WIDGET,
            "w",
            {"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]}, "spec": {"size": 3}},
        )
    assert err.value.status == 409


def test_json_patch_failed_test_op_is_422(custom: client.CustomObjectsApi) -> None:
    # Kubernetes: a JSON patch whose `test` operation fails is rejected (422) and nothing changes.
    custom.create_namespaced_custom_object(*WIDGET, widget("w", size=2))
    with pytest.raises(ApiException) as err:
        custom.patch_namespaced_custom_object(
            *WIDGET,
            "w",
            [
                {"op": "test", "path": "/spec/size", "value": 5},
                {"op": "replace", "path": "/spec/size", "value": 7},
            ],
            _content_type=JSON_PATCH,
        )
    assert err.value.status == 422
    ok = custom.patch_namespaced_custom_object(
        *WIDGET,
        "w",
        [
            {"op": "test", "path": "/spec/size", "value": 2},
            {"op": "replace", "path": "/spec/size", "value": 7},
        ],
        _content_type=JSON_PATCH,
    )
    assert ok["spec"]["size"] == 7


# ------------------------------------------------------------------------------ list and watch


def test_watch_resumes_from_list_resource_version_without_replay(core: client.CoreV1Api) -> None:
    # Kubernetes: watching from a list's resourceVersion delivers only later changes, in order.
    for i in range(3):
        core.create_namespaced_config_map("default", {"metadata": {"name": f"old{i}"}})
    listed = core.list_namespaced_config_map("default")
    core.create_namespaced_config_map("default", {"metadata": {"name": "new"}})
    core.patch_namespaced_config_map("old0", "default", {"data": {"x": "1"}})
    core.delete_namespaced_config_map("old1", "default")
    seen = [
        (e["type"], e["object"].metadata.name)
        for e in watch.Watch().stream(
            core.list_namespaced_config_map,
            "default",
            resource_version=listed.metadata.resource_version,
            timeout_seconds=1,
        )
    ]
    assert seen == [("ADDED", "new"), ("MODIFIED", "old0"), ("DELETED", "old1")]


def test_watch_without_resource_version_starts_with_current_state(core: client.CoreV1Api) -> None:
    # Kubernetes: a watch with no resourceVersion first sends ADDED for every existing object.
    core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    core.create_namespaced_config_map("default", {"metadata": {"name": "b"}})
    seen = [
        (e["type"], e["object"].metadata.name)
        for e in watch.Watch().stream(core.list_namespaced_config_map, "default", timeout_seconds=1)
    ]
    assert seen == [("ADDED", "a"), ("ADDED", "b")]


def test_watch_timeout_seconds_ends_the_stream(core: client.CoreV1Api) -> None:
    # Kubernetes: timeoutSeconds closes the watch server-side after that long.
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    start = time.monotonic()
    events = list(
        watch.Watch().stream(
            core.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=1
        )
    )
    elapsed = time.monotonic() - start
    assert events == []
    assert 0.9 <= elapsed < 3


@pytest.mark.emulator_only("kube-apiserver sends watch bookmarks about once a minute, not tunable per test")
def test_watch_bookmarks_carry_the_current_resource_version(
    api: client.ApiClient, core: client.CoreV1Api
) -> None:
    # Kubernetes: with allowWatchBookmarks the server sends BOOKMARK events holding only a resourceVersion.
    core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    raw = api.rest_client.pool_manager.request(
        "GET",
        f"{api.configuration.host}/api/v1/namespaces/default/configmaps?watch=true"
        f"&resourceVersion={rv}&allowWatchBookmarks=true&timeoutSeconds=1",
        preload_content=True,
    )
    lines = [json.loads(line) for line in raw.data.splitlines() if line.strip()]
    assert lines
    assert all(e["type"] == "BOOKMARK" for e in lines)
    assert lines[0]["object"]["kind"] == "ConfigMap"
    assert int(lines[-1]["object"]["metadata"]["resourceVersion"]) >= int(rv)


def test_watch_from_compacted_resource_version_is_410_gone() -> None:
    # Kubernetes: a resourceVersion older than the retained history gets a 410 Gone ERROR event.
    with DevCluster(crd_dir=None, history_window=5).run_in_thread() as tc:
        api = config.new_client_from_config(str(tc.kubeconfig_path))
        core = client.CoreV1Api(api)
        first = core.create_namespaced_config_map("default", {"metadata": {"name": "c0"}})
        for i in range(1, 20):
            core.create_namespaced_config_map("default", {"metadata": {"name": f"c{i}"}})
        with pytest.raises(ApiException) as err:
            list(
                watch.Watch().stream(
                    core.list_namespaced_config_map,
                    "default",
                    resource_version=first.metadata.resource_version,
                    timeout_seconds=1,
                )
            )
        assert err.value.status == 410
        recent = core.list_namespaced_config_map("default").metadata.resource_version
        assert (
            list(
                watch.Watch().stream(
                    core.list_namespaced_config_map, "default", resource_version=recent, timeout_seconds=1
                )
            )
            == []
        )
        api.close()


def test_list_pagination_with_limit_and_continue(core: client.CoreV1Api) -> None:
    # Kubernetes: limit + continue pages through a list in key order with one resourceVersion.
    for i in range(7):
        core.create_namespaced_config_map("default", {"metadata": {"name": f"c{i}"}})
    names, token, rvs = [], None, set()
    while True:
        page = core.list_namespaced_config_map("default", limit=3, _continue=token)
        names += [c.metadata.name for c in page.items]
        rvs.add(page.metadata.resource_version)
        token = page.metadata._continue
        if not token:
            break
    assert names == [f"c{i}" for i in range(7)]
    assert len(rvs) == 1


# ------------------------------------------------------------------------------ selectors


def test_label_selectors_on_list(core: client.CoreV1Api) -> None:
    # Kubernetes: equality, inequality, set-based and existence label selectors.
    for name, labels in [
        ("a", {"app": "x", "tier": "1"}),
        ("b", {"app": "y", "tier": "2"}),
        ("c", {"app": "x"}),
    ]:
        core.create_namespaced_config_map("default", {"metadata": {"name": name, "labels": labels}})

    def names(sel: str) -> list[str]:
        return [c.metadata.name for c in core.list_namespaced_config_map("default", label_selector=sel).items]

    assert names("app=x") == ["a", "c"]
    assert names("app==x,tier=1") == ["a"]
    assert names("app!=x") == ["b"]
    assert names("tier in (1,2)") == ["a", "b"]
    assert names("tier notin (1)") == ["b", "c"]
    assert names("tier") == ["a", "b"]
    assert names("!tier") == ["c"]
    with pytest.raises(ApiException) as err:
        names("app in (x")
    assert err.value.status == 400


def test_field_selectors_on_pods(core: client.CoreV1Api) -> None:
    # Kubernetes: pods support metadata.name, spec.nodeName and status.phase field selectors.
    core.create_namespaced_pod("default", pod_body("on0", node="gpu-0"))
    core.create_namespaced_pod("default", pod_body("on1", node="gpu-1"))
    core.create_namespaced_pod("default", pod_body("nowhere", node=None))

    def names(sel: str) -> list[str]:
        return [p.metadata.name for p in core.list_pod_for_all_namespaces(field_selector=sel).items]

    assert names("spec.nodeName=gpu-0") == ["on0"]
    assert names("metadata.name=on1") == ["on1"]
    assert names("spec.nodeName=") == ["nowhere"]
    assert names("status.phase=Pending,metadata.name!=on0") in (["nowhere", "on1"], ["nowhere"])
    with pytest.raises(ApiException) as err:
        names("spec.containers=x")
    assert err.value.status == 400
    assert "field label not supported" in status_of(err)["message"]


def test_watch_with_label_selector_sees_objects_enter_and_leave(core: client.CoreV1Api) -> None:
    # Kubernetes: a selector watch reports ADDED when an object starts matching, DELETED when it stops.
    core.create_namespaced_config_map("default", {"metadata": {"name": "a", "labels": {"on": "no"}}})
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    core.patch_namespaced_config_map("a", "default", {"metadata": {"labels": {"on": "yes"}}})
    core.patch_namespaced_config_map("a", "default", {"data": {"k": "v"}})
    core.patch_namespaced_config_map("a", "default", {"metadata": {"labels": {"on": "no"}}})
    core.create_namespaced_config_map("default", {"metadata": {"name": "other", "labels": {"on": "no"}}})
    seen = [
        e["type"]
        for e in watch.Watch().stream(
            core.list_namespaced_config_map,
            "default",
            label_selector="on=yes",
            resource_version=rv,
            timeout_seconds=1,
        )
    ]
    assert seen == ["ADDED", "MODIFIED", "DELETED"]


# ------------------------------------------------------------------------------ status and patches


def test_status_subresource_split(custom: client.CustomObjectsApi) -> None:
    # Kubernetes: with the status subresource, the main endpoint ignores status and /status ignores the rest.
    obj = widget("w")
    obj["status"] = {"phase": "IgnoredOnCreate"}
    created = custom.create_namespaced_custom_object(*WIDGET, obj)
    assert "status" not in created
    out = custom.patch_namespaced_custom_object(*WIDGET, "w", {"spec": {"size": 3}, "status": {"phase": "X"}})
    assert out["spec"]["size"] == 3
    assert "status" not in out
    out = custom.patch_namespaced_custom_object_status(
        *WIDGET, "w", {"spec": {"size": 9}, "status": {"phase": "Y"}, "metadata": {"labels": {"l": "v"}}}
    )
    assert out["status"] == {"phase": "Y"}
    assert out["spec"]["size"] == 3
    assert "labels" not in out["metadata"]


def test_strategic_merge_patch_merges_pod_conditions_by_type(core: client.CoreV1Api) -> None:
    # Kubernetes: pod status.conditions have patchMergeKey "type"; a strategic patch updates one condition.
    core.create_namespaced_pod("default", pod_body("p", node=None))
    core.patch_namespaced_pod_status(
        "p",
        "default",
        {
            "status": {
                "conditions": [
                    {"type": "gpufleet.io/engine-ready", "status": "False"},
                    {"type": "Other", "status": "True"},
                ]
            }
        },
    )
    out = core.patch_namespaced_pod_status(
        "p", "default", {"status": {"conditions": [{"type": "gpufleet.io/engine-ready", "status": "True"}]}}
    )
    patched = ("gpufleet.io/engine-ready", "Other")
    conds = {c.type: c.status for c in out.status.conditions if c.type in patched}
    # (a real cluster's scheduler adds PodScheduled meanwhile; only the patched types matter here)
    assert conds == {"gpufleet.io/engine-ready": "True", "Other": "True"}


def test_strategic_merge_patch_merges_containers_by_name(
    api: client.ApiClient, core: client.CoreV1Api
) -> None:
    body = pod_body("p", node=None)
    body["spec"]["containers"].append({"name": "sidecar", "image": "side:1"})  # type: ignore[index]
    core.create_namespaced_pod("default", body)
    out = core.patch_namespaced_pod(
        "p", "default", {"spec": {"containers": [{"name": "engine", "image": "engine:2"}]}}
    )
    assert [(c.name, c.image) for c in out.spec.containers] == [("engine", "engine:2"), ("sidecar", "side:1")]


def test_merge_patch_replaces_lists_and_null_deletes(custom: client.CustomObjectsApi) -> None:
    # RFC 7386: null removes a key; objects merge recursively.
    custom.create_namespaced_custom_object(*WIDGET, widget("w", maxSize=5))
    out = custom.patch_namespaced_custom_object(*WIDGET, "w", {"spec": {"maxSize": None, "color": "blue"}})
    assert out["spec"] == {"size": 1, "color": "blue"}


def test_strategic_merge_patch_is_415_for_custom_resources(
    api: client.ApiClient, custom: client.CustomObjectsApi
) -> None:
    # Kubernetes: custom resources accept JSON and merge patches, not strategic merge patches.
    custom.create_namespaced_custom_object(*WIDGET, widget("w"))
    resp = api.rest_client.pool_manager.request(
        "PATCH",
        f"{api.configuration.host}/apis/example.com/v1/namespaces/default/widgets/w",
        body=b'{"spec":{"size":2}}',
        headers={"Content-Type": "application/strategic-merge-patch+json"},
    )
    assert resp.status == 415


def test_pod_spec_is_immutable_except_image(core: client.CoreV1Api) -> None:
    # Kubernetes: pod updates may only change container images (and a few fields).
    core.create_namespaced_pod("default", pod_body("p", node=None))
    with pytest.raises(ApiException) as err:
        core.patch_namespaced_pod("p", "default", {"spec": {"nodeName": "gpu-1"}})
    assert err.value.status == 422
    out = core.patch_namespaced_pod(
        "p", "default", {"spec": {"containers": [{"name": "engine", "image": "e:2"}]}}
    )
    assert out.spec.containers[0].image == "e:2"


# ------------------------------------------------------------------------------ deletion


def test_finalizers_hold_deletion_until_removed(
    cluster: ThreadedCluster, custom: client.CustomObjectsApi
) -> None:
    # Kubernetes: delete sets deletionTimestamp while finalizers remain; removing the last one deletes.
    obj = widget("w")
    obj["metadata"]["finalizers"] = ["example.com/cleanup"]
    custom.create_namespaced_custom_object(*WIDGET, obj)
    custom.delete_namespaced_custom_object(*WIDGET, "w")
    held = custom.get_namespaced_custom_object(*WIDGET, "w")
    assert held["metadata"]["deletionTimestamp"]
    with pytest.raises(ApiException) as err:  # no new finalizers while deleting
        custom.patch_namespaced_custom_object(*WIDGET, "w", {"metadata": {"finalizers": ["a", "b"]}})
    assert err.value.status == 422
    custom.patch_namespaced_custom_object(*WIDGET, "w", {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as err:
        custom.get_namespaced_custom_object(*WIDGET, "w")
    assert err.value.status == 404
    types = cluster.call(lambda: [e.type for e in cluster.store.history if e.resource.plural == "widgets"])
    # Removing the finalizer is itself an update (MODIFIED), then the object goes (DELETED).
    assert types == ["ADDED", "MODIFIED", "MODIFIED", "DELETED"]


def _owned(name: str, owner: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "ownerReferences": [
                {
                    "apiVersion": owner["apiVersion"],
                    "kind": owner["kind"],
                    "name": owner["metadata"]["name"],
                    "uid": owner["metadata"]["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        }
    }


def test_owner_reference_garbage_collection_background(
    core: client.CoreV1Api, custom: client.CustomObjectsApi
) -> None:
    # Kubernetes: deleting an owner deletes its dependents (background cascade).
    owner = custom.create_namespaced_custom_object(*WIDGET, widget("w"))
    core.create_namespaced_config_map("default", _owned("dep1", owner))
    core.create_namespaced_config_map("default", _owned("dep2", owner))
    core.create_namespaced_config_map("default", {"metadata": {"name": "unrelated"}})
    custom.delete_namespaced_custom_object(*WIDGET, "w")
    # The cascade runs in the background, after the owner is gone (as the real garbage collector).
    deadline = time.monotonic() + 5
    while [c.metadata.name for c in core.list_namespaced_config_map("default").items] != ["unrelated"]:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_owner_reference_orphan_policy_keeps_dependents(
    core: client.CoreV1Api, custom: client.CustomObjectsApi
) -> None:
    owner = custom.create_namespaced_custom_object(*WIDGET, widget("w"))
    core.create_namespaced_config_map("default", _owned("dep", owner))
    custom.delete_namespaced_custom_object(*WIDGET, "w", propagation_policy="Orphan")
    # Orphaning is asynchronous on kube-apiserver: the garbage collector strips the dependents'
    # ownerReferences, then removes the owner's `orphan` finalizer. Wait for the owner to be gone.
    deadline = time.monotonic() + 30
    while "w" in {o["metadata"]["name"] for o in custom.list_namespaced_custom_object(*WIDGET)["items"]}:
        assert time.monotonic() < deadline, "the owner was never deleted"
        time.sleep(0.05)
    dep = core.read_namespaced_config_map("dep", "default")
    assert not dep.metadata.owner_references


def test_dependent_with_a_living_owner_survives(
    core: client.CoreV1Api, custom: client.CustomObjectsApi
) -> None:
    a = custom.create_namespaced_custom_object(*WIDGET, widget("a"))
    b = custom.create_namespaced_custom_object(*WIDGET, widget("b"))
    body = _owned("dep", a)
    # Only one owner may be the controller (kube-apiserver: 422 otherwise).
    second = {**_owned("x", b)["metadata"]["ownerReferences"][0], "controller": False}
    body["metadata"]["ownerReferences"].append(second)
    core.create_namespaced_config_map("default", body)
    custom.delete_namespaced_custom_object(*WIDGET, "a")
    assert core.read_namespaced_config_map("dep", "default").metadata.name == "dep"
    custom.delete_namespaced_custom_object(*WIDGET, "b")
    deadline = time.monotonic() + 5
    while core.list_namespaced_config_map("default", field_selector="metadata.name=dep").items:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_namespace_deletion_removes_its_content(core: client.CoreV1Api) -> None:
    # Kubernetes: a deleted namespace goes Terminating, its objects are deleted, then it disappears.
    core.create_namespace({"metadata": {"name": "tmp"}})
    core.create_namespaced_config_map("tmp", {"metadata": {"name": "a"}})
    core.delete_namespace("tmp")
    # The namespace controller empties it asynchronously (seconds on a real cluster).
    deadline = time.monotonic() + 30
    while core.list_namespace(field_selector="metadata.name=tmp").items:
        assert core.read_namespace("tmp").status.phase == "Terminating"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with pytest.raises(ApiException) as err:
        core.read_namespace("tmp")
    assert err.value.status == 404
    assert core.list_config_map_for_all_namespaces(field_selector="metadata.namespace=tmp").items == []


def test_delete_precondition_uid_mismatch_is_409(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    with pytest.raises(ApiException) as err:
        core.delete_namespaced_config_map("a", "default", body={"preconditions": {"uid": "not-the-uid"}})
    assert err.value.status == 409


# ------------------------------------------------------------------------------ schema validation


def test_schema_violation_is_422_with_field_path(custom: client.CustomObjectsApi) -> None:
    # Kubernetes: custom resources are validated against openAPIV3Schema; 422 names the field.
    with pytest.raises(ApiException) as err:
        custom.create_namespaced_custom_object(*WIDGET, widget("w", size=0))
    assert err.value.status == 422
    body = status_of(err)
    assert body["reason"] == "Invalid"
    assert [c["field"] for c in body["details"]["causes"]] == ["spec.size"]
    assert 'Widget.example.com "w" is invalid: spec.size' in body["message"]


def test_cel_rule_violation_is_422(custom: client.CustomObjectsApi) -> None:
    # Kubernetes: x-kubernetes-validations CEL rules run on writes.
    with pytest.raises(ApiException) as err:
        custom.create_namespaced_custom_object(*WIDGET, widget("w", size=5, maxSize=3))
    assert err.value.status == 422
    assert "size must not exceed maxSize" in status_of(err)["message"]


def test_schema_defaults_applied_and_unknown_fields_pruned(custom: client.CustomObjectsApi) -> None:
    # Kubernetes: structural schemas default missing fields and prune unknown ones.
    out = custom.create_namespaced_custom_object(*WIDGET, widget("w", bogus="x"))
    assert out["spec"] == {"size": 1, "color": "red"}


def test_real_gpufleet_crd_rejects_bad_operator_pool(custom: client.CustomObjectsApi) -> None:
    with pytest.raises(ApiException) as err:
        custom.create_namespaced_custom_object(
            "gpufleet.io",
            "v1alpha1",
            "default",
            "operatorpools",
            {
                "apiVersion": "gpufleet.io/v1alpha1",
                "kind": "OperatorPool",
                "metadata": {"name": "p"},
                "spec": {"selfStake": "100", "delegatedStake": "0", "commissionBps": 20000},
            },
        )
    assert err.value.status == 422
    assert any(c["field"] == "spec.commissionBps" for c in status_of(err)["details"]["causes"])


def test_watch_stream_delivers_events_while_writes_happen_concurrently(core: client.CoreV1Api) -> None:
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    got: list[str] = []

    def reader() -> None:
        for e in watch.Watch().stream(
            core.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=2
        ):
            got.append(e["object"].metadata.name)
            if len(got) == 20:
                return

    t = threading.Thread(target=reader)
    t.start()
    for i in range(20):
        core.create_namespaced_config_map("default", {"metadata": {"name": f"c{i:02d}"}})
    t.join(5)
    assert got == [f"c{i:02d}" for i in range(20)]


def test_status_write_is_validated_against_the_status_schema(custom: client.CustomObjectsApi) -> None:
    # Kubernetes: /status writes are schema-checked too (and unknown status fields are pruned).
    custom.create_namespaced_custom_object(*WIDGET, widget("w"))
    with pytest.raises(ApiException) as err:
        custom.patch_namespaced_custom_object_status(*WIDGET, "w", {"status": {"observedGeneration": "x"}})
    assert err.value.status == 422
    # (a type error also adds the server's "<nil>" cause saying CEL rules were skipped)
    assert status_of(err)["details"]["causes"][0]["field"] == "status.observedGeneration"
    out = custom.patch_namespaced_custom_object_status(
        *WIDGET, "w", {"status": {"phase": "A", "kopf": {"x": 1}}}
    )
    assert out["status"] == {"phase": "A"}
    assert out["spec"] == {"size": 1, "color": "red"}


def test_send_initial_events_ends_with_the_initial_events_end_bookmark(
    api: client.ApiClient, core: client.CoreV1Api
) -> None:
    # Kubernetes (WatchList): sendInitialEvents=true replays the state, then a BOOKMARK annotated
    # k8s.io/initial-events-end; kopf uses this with settings.watching.initial_streaming.
    core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    raw = api.rest_client.pool_manager.request(
        "GET",
        f"{api.configuration.host}/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=true"
        "&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1",
    )
    lines = [json.loads(line) for line in raw.data.splitlines() if line.strip()]
    assert lines[0]["type"] == "ADDED"
    assert lines[0]["object"]["metadata"]["name"] == "a"
    assert lines[1]["type"] == "BOOKMARK"
    assert lines[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_delete_collection_by_label(core: client.CoreV1Api) -> None:
    for name, tier in (("a", "x"), ("b", "x"), ("c", "y")):
        core.create_namespaced_config_map("default", {"metadata": {"name": name, "labels": {"tier": tier}}})
    core.delete_collection_namespaced_config_map("default", label_selector="tier=x")
    assert [c.metadata.name for c in core.list_namespaced_config_map("default").items] == ["c"]


@pytest.mark.emulator_only("kube-apiserver answers this events.k8s.io/v1 body 400; not investigated yet")
def test_leases_and_events_v1_round_trip(api: client.ApiClient) -> None:
    # Leader election uses coordination.k8s.io leases; newer clients post events.k8s.io/v1 events.
    leases = client.CoordinationV1Api(api)
    lease = leases.create_namespaced_lease(
        "default",
        {"metadata": {"name": "gpufleet"}, "spec": {"holderIdentity": "op-1", "leaseDurationSeconds": 15}},
    )
    lease.spec.holder_identity = "op-2"
    assert leases.replace_namespaced_lease("gpufleet", "default", lease).spec.holder_identity == "op-2"
    events = client.EventsV1Api(api)
    events.create_namespaced_event(
        "default",
        {
            "metadata": {"generateName": "x-"},
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "reason": "Test",
            "action": "Testing",
            "type": "Normal",
            "reportingController": "gpufleet",
            "reportingInstance": "op-1",
            "regarding": {"kind": "Pod", "name": "p", "namespace": "default"},
        },
    )
    listed = events.list_namespaced_event("default", field_selector="reason=Test")
    assert [e.regarding.name for e in listed.items] == ["p"]


@pytest.mark.emulator_only("pods/log goes to the node's kubelet; kwok serves logs only from Logs objects")
def test_pod_log_comes_from_the_simulated_kubelet(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod("default", pod_body("p"))
    deadline = time.monotonic() + 5
    while "engine ready" not in core.read_namespaced_pod_log("p", "default"):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert "container started" in core.read_namespaced_pod_log("p", "default")


def test_field_validation_strict_rejects_unknown_fields(api: client.ApiClient) -> None:
    # Kubernetes: fieldValidation=Strict turns silent pruning of unknown fields into a 400
    # BadRequest ("strict decoding error: unknown field"), before any schema validation.
    url = f"{api.configuration.host}/apis/example.com/v1/namespaces/default/widgets"
    body = json.dumps(widget("w", bogus="x")).encode()
    resp = api.rest_client.pool_manager.request(
        "POST", url + "?fieldValidation=Strict", body=body, headers={"Content-Type": "application/json"}
    )
    assert resp.status == 400
    assert 'unknown field "spec.bogus"' in json.loads(resp.data)["message"]
    resp = api.rest_client.pool_manager.request(
        "POST", url, body=body, headers={"Content-Type": "application/json"}
    )
    assert resp.status == 201
    assert json.loads(resp.data)["spec"] == {"size": 1, "color": "red"}
