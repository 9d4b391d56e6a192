"""A compiled, conservative schema check for the common case: a valid write.

jsonschema's generic walk costs milliseconds for an InferenceNode status with eight devices, and
the operator writes such statuses thousands of times in the fleet benchmark. `compile_check`
turns a structural OpenAPI schema into nested closures that answer only "certainly valid" (True)
or "not sure" (False). False sends the write down the full `gpufleet.api.validation` path, which
produces the real server's messages, so the fast path can only speed things up, never change a
verdict, as long as it is never more permissive (it is tested against the full path).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], bool]

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_KNOWN = {
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "nullable",
    "default",
    "description",
    "title",
    "example",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "maxProperties",
    "minProperties",
    "pattern",
    "format",
    "anyOf",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-embedded-resource",
}


class Unsupported(Exception):
    """The schema uses something this checker does not model (CEL, allOf, ...): always use the full path."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _type_check(t: str) -> Check:
    if t == "object":
        return lambda v: isinstance(v, dict)
    if t == "array":
        return lambda v: isinstance(v, list)
    if t == "string":
        return lambda v: isinstance(v, str)
    if t == "integer":
        return _is_int
    if t == "number":
        return lambda v: isinstance(v, int | float) and not isinstance(v, bool)
    if t == "boolean":
        return lambda v: isinstance(v, bool)
    raise Unsupported(f"type {t!r}")


def _bound(bound: float, *, low: bool) -> Check:
    def check(v: Any) -> bool:
        if not isinstance(v, int | float) or isinstance(v, bool):
            return True
        return v >= bound if low else v <= bound

    return check


def _size(n: int, kind: tuple[type, ...], *, low: bool) -> Check:
    def check(v: Any) -> bool:
        if not isinstance(v, kind):
            return True
        size = len(v)  # type: ignore[arg-type]  # str, list or dict
        return size >= n if low else size <= n

    return check


def compile_check(schema: dict[str, Any], *, root: bool = True) -> Check:
    unknown = set(schema) - _KNOWN
    if unknown:
        raise Unsupported(", ".join(sorted(unknown)))
    checks: list[Check] = []
    nullable = bool(schema.get("nullable"))
    if schema.get("x-kubernetes-int-or-string"):
        checks.append(lambda v: _is_int(v) or isinstance(v, str))
    elif "anyOf" in schema:
        subs = [compile_check(s, root=False) for s in schema["anyOf"]]
        checks.append(lambda v: any(s(v) for s in subs))
    if "type" in schema:
        checks.append(_type_check(schema["type"]))
    if "enum" in schema:
        allowed = list(schema["enum"])
        checks.append(lambda v: v in allowed and any(type(v) is type(a) for a in allowed if a == v))
    for key in ("minimum", "maximum"):
        if key in schema:
            checks.append(_bound(schema[key], low=key == "minimum"))
    sizes: tuple[tuple[str, tuple[type, ...]], ...] = (
        ("minLength", (str,)),
        ("maxLength", (str,)),
        ("minItems", (list,)),
        ("maxItems", (list,)),
        ("minProperties", (dict,)),
        ("maxProperties", (dict,)),
    )
    for key, kind in sizes:
        if key in schema:
            checks.append(_size(schema[key], kind, low=key.startswith("min")))
    if "pattern" in schema:
        rx = re.compile(schema["pattern"])
        checks.append(lambda v: not isinstance(v, str) or rx.search(v) is not None)
    if schema.get("format") == "date-time":
        checks.append(lambda v: not isinstance(v, str) or (_RFC3339.match(v) is not None and _real_date(v)))
    preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
    props = schema.get("properties")
    if props is not None:
        # The server checks metadata itself; the schema's `metadata: {type: object}` says nothing.
        prop_checks = {
            name: compile_check(sub, root=False)
            for name, sub in props.items()
            if not (root and name == "metadata")
        }
        required = list(schema.get("required") or [])
        allowed_extra = {"apiVersion", "kind", "metadata"} if root else set()

        def check_props(v: Any) -> bool:
            if not isinstance(v, dict):
                return True
            for r in required:
                if r not in v:
                    return False
            for name, item in v.items():
                sub = prop_checks.get(name)
                if sub is None:
                    if preserve or name in allowed_extra:
                        continue
                    return False  # unknown field: let the full path prune or reject it
                if not sub(item):
                    return False
            return True

        checks.append(check_props)
    elif isinstance(schema.get("additionalProperties"), dict):
        value_check = compile_check(schema["additionalProperties"], root=False)
        checks.append(lambda v: not isinstance(v, dict) or all(value_check(x) for x in v.values()))
    elif schema.get("type") == "object" and not preserve and schema.get("additionalProperties") is not True:
        checks.append(lambda v: not isinstance(v, dict) or not v)
    if isinstance(schema.get("items"), dict):
        item_check = compile_check(schema["items"], root=False)
        checks.append(lambda v: not isinstance(v, list) or all(item_check(x) for x in v))
    list_type = schema.get("x-kubernetes-list-type")
    if list_type == "set":
        checks.append(
            lambda v: not isinstance(v, list) or len({json.dumps(x, sort_keys=True) for x in v}) == len(v)
        )
    elif list_type == "map":
        keys = list(schema.get("x-kubernetes-list-map-keys") or [])
        checks.append(
            lambda v: (
                not isinstance(v, list)
                or len(
                    {tuple(json.dumps(x.get(k)) for k in keys) if isinstance(x, dict) else None for x in v}
                )
                == len(v)
            )
        )

    def check(v: Any) -> bool:
        if v is None:
            return nullable
        return all(c(v) for c in checks)

    return check


def _real_date(value: str) -> bool:
    """The calendar check the regex cannot do (2026-02-30, hour 25): kube-apiserver refuses those."""
    import datetime

    try:
        datetime.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return False
    return True
