"""Merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge patch."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpufleet_devcluster.errors import APIError
from gpufleet_devcluster.patch import json_patch, merge_patch, strategic_merge_patch


@pytest.mark.parametrize(
    ("target", "patch", "result"),
    [  # RFC 7386 appendix A
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch_rfc7386_examples(target: dict[str, Any], patch: dict[str, Any], result: Any) -> None:
    assert merge_patch(target, patch) == result


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner, max_size=3),
    max_leaves=10,
)


@given(
    st.dictionaries(st.text(max_size=2), json_values, max_size=4),
    st.dictionaries(st.text(max_size=2), json_values, max_size=4),
)
def test_merge_patch_never_mutates_its_inputs(target: dict[str, Any], patch: dict[str, Any]) -> None:
    before_t, before_p = copy.deepcopy(target), copy.deepcopy(patch)
    merge_patch(target, patch)
    assert target == before_t
    assert patch == before_p


def test_json_patch_operations() -> None:
    doc = {"a": {"b": [1, 2]}, "c": "x"}
    out = json_patch(
        doc,
        [
            {"op": "add", "path": "/a/b/1", "value": 9},
            {"op": "add", "path": "/a/b/-", "value": 3},
            {"op": "replace", "path": "/c", "value": "y"},
            {"op": "copy", "from": "/c", "path": "/d"},
            {"op": "move", "from": "/d", "path": "/e"},
            {"op": "remove", "path": "/a/b/0"},
            {"op": "test", "path": "/e", "value": "y"},
            {"op": "add", "path": "/m~1n", "value": 1},
        ],
    )
    assert out == {"a": {"b": [9, 2, 3]}, "c": "y", "e": "y", "m/n": 1}
    assert doc == {"a": {"b": [1, 2]}, "c": "x"}


@pytest.mark.parametrize(
    "ops",
    [
        [{"op": "test", "path": "/a", "value": 2}],
        [{"op": "replace", "path": "/missing", "value": 1}],
        [{"op": "remove", "path": "/missing"}],
        [{"op": "add", "path": "/x/y", "value": 1}],
        [{"op": "add", "path": "/l/5", "value": 1}],
    ],
)
def test_json_patch_failures_are_422(ops: list[dict[str, Any]]) -> None:
    with pytest.raises(APIError) as err:
        json_patch({"a": 1, "l": []}, ops)
    assert err.value.code == 422


def test_json_patch_malformed_is_400() -> None:
    with pytest.raises(APIError) as err:
        json_patch({}, {"op": "add"})
    assert err.value.code == 400


KEYS = {
    "status.conditions": "type",
    "spec.containers": "name",
    "spec.containers.env": "name",
    "metadata.finalizers": "",
}


def test_strategic_merge_by_key_keeps_other_items_and_order() -> None:
    target = {"status": {"conditions": [{"type": "A", "status": "False"}, {"type": "B", "status": "True"}]}}
    out = strategic_merge_patch(
        target,
        {"status": {"conditions": [{"type": "A", "status": "True"}, {"type": "C", "status": "False"}]}},
        KEYS,
    )
    assert out["status"]["conditions"] == [
        {"type": "A", "status": "True"},
        {"type": "B", "status": "True"},
        {"type": "C", "status": "False"},
    ]


def test_strategic_merge_nested_lists_and_delete_directive() -> None:
    target = {
        "spec": {
            "containers": [
                {"name": "a", "image": "1", "env": [{"name": "X", "value": "1"}]},
                {"name": "b", "image": "1"},
            ]
        }
    }
    out = strategic_merge_patch(
        target,
        {
            "spec": {
                "containers": [
                    {"name": "a", "env": [{"name": "Y", "value": "2"}]},
                    {"name": "b", "$patch": "delete"},
                ]
            }
        },
        KEYS,
    )
    assert out == {
        "spec": {
            "containers": [
                {"name": "a", "image": "1", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]}
            ]
        }
    }


def test_strategic_merge_scalar_set_and_delete_from_primitive_list() -> None:
    target = {"metadata": {"finalizers": ["a", "b"]}}
    assert strategic_merge_patch(target, {"metadata": {"finalizers": ["b", "c"]}}, KEYS) == {
        "metadata": {"finalizers": ["a", "b", "c"]}
    }
    assert strategic_merge_patch(
        target, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}, KEYS
    ) == {"metadata": {"finalizers": ["b"]}}


def test_strategic_merge_unknown_lists_are_replaced_and_replace_directive() -> None:
    target = {"spec": {"tolerations": [{"key": "a"}], "x": {"y": 1, "z": 2}}}
    out = strategic_merge_patch(
        target, {"spec": {"tolerations": [{"key": "b"}], "x": {"$patch": "replace", "y": 3}}}, KEYS
    )
    assert out == {"spec": {"tolerations": [{"key": "b"}], "x": {"y": 3}}}


def test_strategic_merge_item_without_merge_key_is_422() -> None:
    with pytest.raises(APIError) as err:
        strategic_merge_patch({}, {"status": {"conditions": [{"status": "True"}]}}, KEYS)
    assert err.value.code == 422
