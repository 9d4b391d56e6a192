"""The store's semantics driven directly (no HTTP), with invariants checked at every write."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpufleet_devcluster.errors import APIError
from gpufleet_devcluster.selectors import parse_field_selector, parse_label_selector
from gpufleet_devcluster.store import Event, Store


class Invariants:
    """A store listener asserting what must hold after every single write."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.snapshots: list[tuple[Event, str]] = []
        self.last_rv = store.rv
        store.listeners.append(self)

    def __call__(self, event: Event) -> None:
        assert event.rv > self.last_rv, "resourceVersion must strictly increase"
        self.last_rv = event.rv
        assert event.obj["metadata"]["resourceVersion"] == str(event.rv)
        bucket = self.store.bucket(event.resource)
        if event.type == "DELETED":
            assert (
                event.key not in bucket.objects
                or bucket.objects[event.key].obj["metadata"]["uid"] != event.obj["metadata"]["uid"]
            )
        else:
            assert bucket.objects[event.key] is event.entry
        self.snapshots.append((event, json.dumps(event.obj, sort_keys=True)))

    def assert_nothing_mutated(self) -> None:
        for event, snap in self.snapshots:
            assert json.dumps(event.obj, sort_keys=True) == snap, (
                f"stored object mutated after write {event.rv}"
            )


@pytest.fixture
def store() -> Iterator[Store]:
    s = Store()
    s.create(s.resolve("", "v1", "namespaces"), None, {"metadata": {"name": "default"}})
    inv = Invariants(s)
    yield s
    inv.assert_nothing_mutated()


def cm(store: Store) -> Any:
    return store.resolve("", "v1", "configmaps")


def test_create_get_update_delete_cycle(store: Store) -> None:
    t = cm(store)
    e = store.create(t, "default", {"metadata": {"name": "a", "labels": {"x": "1"}}, "data": {"k": "v"}})
    assert store.get(t, "default", "a") is e
    e2 = store.update(
        t,
        "default",
        "a",
        {
            "metadata": {"name": "a", "resourceVersion": e.obj["metadata"]["resourceVersion"]},
            "data": {"k": "w"},
        },
    )
    assert e2.obj["data"] == {"k": "w"}
    assert e2.obj["metadata"]["uid"] == e.obj["metadata"]["uid"]
    with pytest.raises(APIError) as err:
        store.update(
            t,
            "default",
            "a",
            {"metadata": {"name": "a", "resourceVersion": e.obj["metadata"]["resourceVersion"]}, "data": {}},
        )
    assert err.value.code == 409
    gone = store.delete(t, "default", "a")
    assert int(gone.obj["metadata"]["resourceVersion"]) > int(e2.obj["metadata"]["resourceVersion"])
    with pytest.raises(APIError) as err:
        store.get(t, "default", "a")
    assert err.value.code == 404


def test_label_index_follows_label_changes(store: Store) -> None:
    t = cm(store)
    store.create(t, "default", {"metadata": {"name": "a", "labels": {"k": "1"}}})
    store.create(t, "default", {"metadata": {"name": "b", "labels": {"k": "2"}}})
    store.patch(t, "default", "a", "merge", {"metadata": {"labels": {"k": "2"}}})

    def names(sel: str) -> list[str]:
        return [
            e.obj["metadata"]["name"]
            for e in store.list_entries(
                t, "default", parse_label_selector(sel), parse_field_selector(None, [], "")
            ).items
        ]

    assert names("k=2") == ["a", "b"]
    assert names("k=1") == []
    store.delete(t, "default", "b")
    assert names("k=2") == ["a"]
    assert store.bucket(t).label_index.get(("k", "1")) is None


def test_watch_replays_only_events_after_the_version(store: Store) -> None:
    t = cm(store)
    store.create(t, "default", {"metadata": {"name": "a"}})
    since = store.rv
    store.create(t, "default", {"metadata": {"name": "b"}})
    w = store.watch(
        t, "default", parse_label_selector(None), parse_field_selector(None, [], ""), since=str(since)
    )
    store.patch(t, "default", "a", "merge", {"data": {"x": "1"}})
    assert [(k, e.obj["metadata"]["name"]) for k, e in w.drain()] == [("ADDED", "b"), ("MODIFIED", "a")]
    w.stop()
    store.patch(t, "default", "a", "merge", {"data": {"x": "2"}})
    assert w.drain() == []


def test_history_window_compacts_and_old_watches_get_410() -> None:
    s = Store(history_window=3)
    s.create(s.resolve("", "v1", "namespaces"), None, {"metadata": {"name": "default"}})
    t = cm(s)
    first = s.rv
    for i in range(10):
        s.create(t, "default", {"metadata": {"name": f"c{i}"}})
    w = s.watch(
        t, "default", parse_label_selector(None), parse_field_selector(None, [], ""), since=str(first)
    )
    assert w.error is not None
    assert w.error.code == 410
    assert len(s.bucket(t).log) <= 6


def test_generate_name_and_missing_namespace(store: Store) -> None:
    t = cm(store)
    e = store.create(t, "default", {"metadata": {"generateName": "x-"}})
    assert e.obj["metadata"]["name"].startswith("x-")
    with pytest.raises(APIError) as err:
        store.create(t, "missing", {"metadata": {"name": "a"}})
    assert err.value.code == 404


def test_pod_create_defaults_and_status_reset(store: Store) -> None:
    pods = store.resolve("", "v1", "pods")
    e = store.create(
        pods,
        "default",
        {
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Running"},
        },
    )
    assert e.obj["status"]["phase"] == "Pending"
    assert e.obj["spec"]["restartPolicy"] == "Always"
    with pytest.raises(APIError) as err:
        store.create(pods, "default", {"metadata": {"name": "q"}, "spec": {"containers": []}})
    assert err.value.code == 422


def test_garbage_collection_cascades_through_generations(store: Store) -> None:
    t = cm(store)
    root = store.create(t, "default", {"metadata": {"name": "root"}}).obj

    def ref(o: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "name": o["metadata"]["name"],
            "uid": o["metadata"]["uid"],
        }

    child = store.create(t, "default", {"metadata": {"name": "child", "ownerReferences": [ref(root)]}}).obj
    store.create(t, "default", {"metadata": {"name": "grandchild", "ownerReferences": [ref(child)]}})
    store.delete(t, "default", "root")
    assert store.objects(t, "default") == []
    actors = [e.actor for e in store.history if e.type == "DELETED"]
    assert actors == ["api", "garbage-collector", "garbage-collector"]


def test_foreground_deletion_waits_for_dependents(store: Store) -> None:
    t = cm(store)
    owner = store.create(t, "default", {"metadata": {"name": "o"}}).obj
    dep_ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "o",
        "uid": owner["metadata"]["uid"],
        "blockOwnerDeletion": True,
    }
    store.create(
        t, "default", {"metadata": {"name": "d", "ownerReferences": [dep_ref], "finalizers": ["hold"]}}
    )
    out = store.delete(t, "default", "o", {"propagationPolicy": "Foreground"})
    assert "foregroundDeletion" in out.obj["metadata"]["finalizers"]
    assert store.find(t, "default", "o") is not None  # the dependent still exists (held by its finalizer)
    store.patch(t, "default", "d", "merge", {"metadata": {"finalizers": None}})
    assert store.find(t, "default", "d") is None
    assert store.find(t, "default", "o") is None


ops = st.lists(
    st.tuples(
        st.sampled_from(["patch", "label", "delete", "create", "status"]),
        st.integers(0, 4),
        st.integers(0, 3),
    ),
    max_size=40,
)


@settings(max_examples=40, deadline=None)
@given(ops)
def test_random_write_sequences_keep_invariants(sequence: list[tuple[str, int, int]]) -> None:
    # Whatever the operations, versions increase, objects are never mutated after being stored,
    # and a watch from the start sees exactly the store's history of this resource.
    s = Store()
    s.create(s.resolve("", "v1", "namespaces"), None, {"metadata": {"name": "default"}})
    inv = Invariants(s)
    pods = s.resolve("", "v1", "pods")
    start = s.rv
    watcher = s.watch(
        pods, None, parse_label_selector(None), parse_field_selector(None, [], ""), since=str(start)
    )
    for op, idx, val in sequence:
        name = f"p{idx}"
        exists = s.find(pods, "default", name) is not None
        if not exists:
            s.create(
                pods,
                "default",
                {
                    "metadata": {"name": name, "labels": {"v": str(val)}},
                    "spec": {"containers": [{"name": "c", "image": "i"}]},
                },
            )
        elif op == "patch":
            s.patch(pods, "default", name, "merge", {"metadata": {"annotations": {"a": str(val)}}})
        elif op == "label":
            s.patch(pods, "default", name, "strategic", {"metadata": {"labels": {"v": str(val)}}})
        elif op == "status":
            s.patch(
                pods,
                "default",
                name,
                "strategic",
                {"status": {"conditions": [{"type": f"T{val}", "status": "True"}]}},
                subresource="status",
            )
        elif op == "delete":
            s.delete(pods, "default", name)
    inv.assert_nothing_mutated()
    seen = [(k, e.obj["metadata"]["resourceVersion"]) for k, e in watcher.drain()]
    expected = [(e.type, str(e.rv)) for e in s.history if e.resource is pods and e.rv > start]
    assert seen == expected
