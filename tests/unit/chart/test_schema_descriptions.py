"""Every value of the chart is described in values.schema.json (docs/helm.md promises it).

Fails naming each key without a description, with the line to add, so whoever adds a value
(router, reputation, ...) knows exactly what is needed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import yaml

from tests.unit.chart.helpers import CHART

SCHEMA: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
VALUES: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())


def schema_properties(
    node: dict[str, Any], path: tuple[str, ...] = ()
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every property the schema declares, with its dotted path (``*`` for a map's values)."""
    for key, child in (node.get("properties") or {}).items():
        yield ".".join((*path, key)), child
        yield from schema_properties(child, (*path, key))
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and extra.get("properties"):
        yield from schema_properties(extra, (*path, "*"))


def value_keys(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    if isinstance(value, dict):
        for key, child in value.items():
            yield (*path, key)
            yield from value_keys(child, (*path, key))


def node_for(path: tuple[str, ...]) -> dict[str, Any] | None:
    """The schema node describing a values.yaml key: its property, a map's value schema, or the
    nearest free-form object above it (a pass-through such as ``resources`` or ``labels``)."""
    node = SCHEMA
    for key in path:
        props = node.get("properties") or {}
        extra = node.get("additionalProperties")
        if key in props:
            node = props[key]
        elif isinstance(extra, dict):
            node = extra
        elif not props and extra is not False:
            return node  # free-form object: described as a whole
        else:
            return None
    return node


def _fix(path: str) -> str:
    return f'  {path}: add "description": "<what it does, its unit and default>" in values.schema.json'


def test_every_schema_property_has_a_description() -> None:
    missing = [p for p, node in schema_properties(SCHEMA) if not str(node.get("description") or "").strip()]
    assert missing == [], "values.schema.json properties without a description:\n" + "\n".join(
        map(_fix, missing)
    )


def test_every_value_in_values_yaml_is_described_by_the_schema() -> None:
    undescribed = []
    for path in value_keys(VALUES):
        node = node_for(path)
        if node is None:
            undescribed.append(".".join(path) + " (not in the schema at all)")
        elif not str(node.get("description") or "").strip():
            undescribed.append(".".join(path))
    assert undescribed == [], "values.yaml keys the schema does not describe:\n" + "\n".join(
        map(_fix, undescribed)
    )


def test_map_value_descriptions_are_not_about_one_key() -> None:
    """A map's value schema describes every entry, so it must not name one (e.g. only 'CPU')."""
    for path, node in schema_properties(SCHEMA):
        extra = node.get("additionalProperties")
        if isinstance(extra, dict) and extra.get("description"):
            text = str(extra["description"]).lower()
            assert "per " in text or "each" in text or "every" in text, f"{path}.*: {extra['description']!r}"
