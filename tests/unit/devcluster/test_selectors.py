"""Label and field selector grammar, as kube-apiserver parses it."""

from __future__ import annotations

import pytest

from gpufleet_devcluster.errors import APIError
from gpufleet_devcluster.selectors import parse_field_selector, parse_label_selector


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("a=b", {"a": "b"}, True),
        ("a=b", {"a": "c"}, False),
        ("a==b", {"a": "b"}, True),
        ("a!=b", {}, True),  # != matches objects without the key, like Kubernetes
        ("a!=b", {"a": "b"}, False),
        ("a in (b, c)", {"a": "c"}, True),
        ("a in (b,c)", {}, False),
        ("a notin (b)", {}, True),
        ("a notin (b)", {"a": "b"}, False),
        ("a", {"a": ""}, True),
        ("!a", {"a": "x"}, False),
        ("a=b,c in (d),!e", {"a": "b", "c": "d"}, True),
        ("example.com/x=y", {"example.com/x": "y"}, True),
        ("", {"anything": "x"}, True),
    ],
)
def test_label_selector_matching(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_label_selector(selector).matches(labels) is expected


@pytest.mark.parametrize("selector", ["a in (b", "a b", "Bad Key=x", "a=b c", "-a=b"])
def test_label_selector_syntax_errors_are_400(selector: str) -> None:
    with pytest.raises(APIError) as err:
        parse_label_selector(selector)
    assert err.value.code == 400


def test_label_selector_equalities_feed_the_index() -> None:
    sel = parse_label_selector("a=b,c in (d),e in (f,g),h!=i")
    assert sorted(sel.equalities()) == [("a", "b"), ("c", "d")]


def test_field_selector_matching_and_negation() -> None:
    sel = parse_field_selector(
        "spec.nodeName=n1,status.phase!=Failed", ["spec.nodeName", "status.phase"], "Pod"
    )
    assert sel.matches({"spec": {"nodeName": "n1"}, "status": {"phase": "Running"}})
    assert not sel.matches({"spec": {"nodeName": "n1"}, "status": {"phase": "Failed"}})
    assert not sel.matches({"spec": {"nodeName": "n2"}, "status": {"phase": "Running"}})
    empty = parse_field_selector("spec.nodeName=", ["spec.nodeName"], "Pod")
    assert empty.matches({"spec": {}})


def test_field_selector_rejects_unsupported_fields_naming_them() -> None:
    with pytest.raises(APIError) as err:
        parse_field_selector("spec.image=x", ["metadata.name"], "Pod")
    assert err.value.code == 400
    assert "field label not supported: spec.image" in err.value.message


def test_field_selector_name_shortcut() -> None:
    assert parse_field_selector("metadata.name=x", ["metadata.name"], "Pod").name_equals() == "x"
    assert parse_field_selector("metadata.name!=x", ["metadata.name"], "Pod").name_equals() is None
