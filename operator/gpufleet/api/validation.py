"""Validate custom resources the way the Kubernetes API server does, without an API server.

``validate_object(crd, obj)`` applies the CRD's defaults, checks the OpenAPI schema (with
``jsonschema``), unknown fields (strict field validation, kubectl's default), list-type
uniqueness and the CEL ``x-kubernetes-validations`` (with ``cel-python``), and returns
``FieldError``s whose text mirrors the API server's (``spec.commissionBps: Invalid value: ...``).
The emulator uses it to answer invalid writes with 422, tests use it to check examples and the
bad-input corpus. Compiled CRDs are cached, so repeated calls cost only the walk.

``pydantic_field_errors`` turns a model's ``ValidationError`` into the same ``FieldError`` shape, so
that the models and the CRDs can be compared error for error.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import celpy
import jsonschema
from celpy.adapter import json_to_cel
from pydantic import ValidationError

#: Kubernetes ``metav1.CauseType`` for each error type.
CAUSE_TYPES = {
    "Required value": "FieldValueRequired",
    "Invalid value": "FieldValueInvalid",
    "Unsupported value": "FieldValueNotSupported",
    "Too long": "FieldValueTooLong",
    "Too many": "FieldValueTooMany",
    "Duplicate value": "FieldValueDuplicate",
    "Forbidden": "FieldValueForbidden",
    "Unknown field": "FieldValueUnknown",
}
TYPE_INVALID = "FieldValueTypeInvalid"
CEL_SKIPPED = (
    "some validation rules were not checked because the object was invalid; "
    "correct the existing errors to complete validation"
)
_CEL_REASONS = {
    "FieldValueInvalid": "Invalid value",
    "FieldValueForbidden": "Forbidden",
    "FieldValueRequired": "Required value",
    "FieldValueDuplicate": "Duplicate value",
}


@dataclass(frozen=True)
class FieldError:
    """One invalid field: its path (``spec.models[0].name``), the error type and a message."""

    path: str
    type: str
    message: str
    cause: str = ""

    @property
    def cause_type(self) -> str:
        """The ``metav1.StatusCause.reason`` the API server would report."""
        return self.cause or CAUSE_TYPES.get(self.type, "FieldValueInvalid")

    def __str__(self) -> str:
        return f"{self.path}: {self.type}: {self.message}" if self.message else f"{self.path}: {self.type}"


class CompiledCRD:
    """A CRD prepared for validation: JSON Schema validators and compiled CEL programs per version."""

    def __init__(self, crd: dict[str, Any]) -> None:
        spec = crd["spec"]
        self.group: str = spec["group"]
        self.kind: str = spec["names"]["kind"]
        self.plural: str = spec["names"]["plural"]
        self._versions: dict[str, _CompiledVersion] = {}
        for version in spec["versions"]:
            schema = version["schema"]["openAPIV3Schema"]
            self._versions[f"{self.group}/{version['name']}"] = _CompiledVersion(schema)

    def validate(self, obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[FieldError]:
        """Errors for ``obj`` (after defaulting); ``old`` enables transition rules (``oldSelf``)."""
        if not isinstance(obj, dict):
            return [FieldError("<root>", "Invalid value", f"expected an object, got {type(obj).__name__}")]
        api_version = obj.get("apiVersion")
        if obj.get("kind") != self.kind:
            got = json.dumps(obj.get("kind"))
            return [FieldError("kind", "Invalid value", f"{got}: expected {self.kind}")]
        compiled = self._versions.get(str(api_version))
        if compiled is None:
            supported = ", ".join(json.dumps(v) for v in sorted(self._versions))
            return [
                FieldError(
                    "apiVersion",
                    "Unsupported value",
                    f"{json.dumps(api_version)}: supported values: {supported}",
                )
            ]
        return compiled.validate(obj, old)

    def default(self, obj: dict[str, Any]) -> dict[str, Any]:
        """A copy of ``obj`` with the schema's defaults applied, as the API server stores it."""
        compiled = self._versions.get(str(obj.get("apiVersion")))
        result = copy.deepcopy(obj)
        if compiled is not None:
            apply_defaults(compiled.schema, result)
        return result


_CACHE: dict[int, tuple[dict[str, Any], CompiledCRD]] = {}


def compile_crd(crd: dict[str, Any]) -> CompiledCRD:
    """The compiled form of a CRD dict, cached for as long as the same dict object is passed."""
    hit = _CACHE.get(id(crd))
    if hit is not None and hit[0] is crd:
        return hit[1]
    compiled = CompiledCRD(crd)
    if len(_CACHE) > 64:
        _CACHE.clear()
    _CACHE[id(crd)] = (crd, compiled)  # holding crd keeps its id from being reused
    return compiled


def validate_object(
    crd: dict[str, Any], obj: dict[str, Any], old: dict[str, Any] | None = None
) -> list[FieldError]:
    """Validate a custom resource against its CRD like the API server; empty list when valid.

    ``crd`` is the CustomResourceDefinition as a dict (e.g. loaded from ``crds/``), ``obj`` the
    object as written by a client; defaults are applied to a copy before checking. Pass ``old``
    (the stored object) on updates so that transition rules such as immutability are checked.
    """
    return compile_crd(crd).validate(obj, old)


def format_errors(kind: str, group: str, name: str, errors: Sequence[FieldError]) -> str:
    """The API server's 422 message: ``Kind.group "name" is invalid: [err, err]``."""
    joined = str(errors[0]) if len(errors) == 1 else "[" + ", ".join(str(e) for e in errors) + "]"
    return f'{kind}.{group} "{name}" is invalid: {joined}'


def status_422(kind: str, group: str, name: str, errors: Sequence[FieldError]) -> dict[str, Any]:
    """A ``metav1.Status`` body for an invalid object (HTTP 422 Unprocessable Entity)."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": format_errors(kind, group, name, errors),
        "reason": "Invalid",
        "details": {
            "name": name,
            "group": group,
            "kind": kind,
            "causes": [
                {"reason": e.cause_type, "message": f"{e.type}: {e.message}", "field": e.path} for e in errors
            ],
        },
        "code": 422,
    }


def apply_defaults(schema: dict[str, Any], value: Any) -> None:
    """Fill in ``default``s in place, recursively, including inside defaulted objects."""
    if isinstance(value, dict):
        props = schema.get("properties")
        if props is not None:
            for name, sub in props.items():
                if name not in value and "default" in sub:
                    value[name] = copy.deepcopy(sub["default"])
                if name in value:
                    apply_defaults(sub, value[name])
        elif isinstance(schema.get("additionalProperties"), dict):
            for item in value.values():
                apply_defaults(schema["additionalProperties"], item)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            apply_defaults(schema["items"], item)


# --------------------------------------------------------------------------- internals


@dataclass
class _Rule:
    rule: str
    message: str
    field_path: str
    error_type: str
    program: Any
    uses_old: bool
    cache: dict[str, bool] = field(default_factory=dict)

    def evaluate(self, value: Any, old: Any) -> bool:
        """Run the rule; results are memoised per input, as cel-python interprets slowly."""
        key = json.dumps([value, old] if self.uses_old else value, sort_keys=True)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        activation = {"self": json_to_cel(value)}
        if self.uses_old:
            activation["oldSelf"] = json_to_cel(old)
        result = self.program.evaluate(activation)
        if isinstance(result, Exception):
            raise result
        passed = bool(result)
        if len(self.cache) >= 4096:
            self.cache.clear()
        self.cache[key] = passed
        return passed


class _CompiledVersion:
    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        checker = jsonschema.FormatChecker(formats=())
        checker.checks("date-time")(_is_datetime)
        self._validator = jsonschema.Draft7Validator(_to_jsonschema(schema), format_checker=checker)
        self._env = celpy.Environment()
        self._rules: dict[int, list[_Rule]] = {}
        self._has_rules: set[int] = set()  # schema nodes with a rule at or below them
        self._compile_rules(schema)

    def _compile_rules(self, node: dict[str, Any]) -> bool:
        rules = []
        for entry in node.get("x-kubernetes-validations", []):
            program = self._env.program(self._env.compile(entry["rule"]))
            rules.append(
                _Rule(
                    rule=entry["rule"],
                    message=entry.get("message") or f"failed rule: {entry['rule']}",
                    field_path=entry.get("fieldPath", ""),
                    error_type=_CEL_REASONS.get(entry.get("reason", "FieldValueInvalid"), "Invalid value"),
                    program=program,
                    uses_old=re.search(r"\boldSelf\b", entry["rule"]) is not None,
                )
            )
        if rules:
            self._rules[id(node)] = rules
        below = [self._compile_rules(sub) for sub in node.get("properties", {}).values()]
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                below.append(self._compile_rules(node[key]))
        if rules or any(below):
            self._has_rules.add(id(node))
            return True
        return False

    def validate(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[FieldError]:
        obj = copy.deepcopy(obj)
        apply_defaults(self.schema, obj)
        errors = [_schema_error(e) for e in self._validator.iter_errors(obj)]
        errors.extend(_structure_errors(self.schema, obj, ""))
        if any(e.cause == TYPE_INVALID for e in errors):
            # The API server skips every CEL rule when a value has the wrong type, and says so.
            errors.append(FieldError("<nil>", "Invalid value", CEL_SKIPPED))
            return _dedupe(errors)
        old_defaulted = None
        if old is not None:
            old_defaulted = copy.deepcopy(old)
            apply_defaults(self.schema, old_defaulted)
        errors.extend(self._cel_errors(self.schema, obj, old_defaulted, ""))
        return _dedupe(errors)

    def _cel_errors(self, node: dict[str, Any], value: Any, old: Any, path: str) -> Iterator[FieldError]:
        if value is None or id(node) not in self._has_rules:
            return
        for rule in self._rules.get(id(node), []):
            if rule.uses_old and old is None:
                continue
            try:
                result = rule.evaluate(value, old)
            except Exception as exc:  # cel-python raises its own error types
                yield FieldError(
                    path or "<root>", "Invalid value", f"rule {rule.rule!r} failed to evaluate: {exc}"
                )
                continue
            if not result:
                where = _join(path, rule.field_path) if rule.field_path else (path or "<root>")
                yield FieldError(where, rule.error_type, f"{_show(value, rule.field_path)}: {rule.message}")
        if isinstance(value, dict):
            for name, sub in node.get("properties", {}).items():
                if name in value:
                    sub_old = old.get(name) if isinstance(old, dict) else None
                    yield from self._cel_errors(sub, value[name], sub_old, _join(path, name))
            extra = node.get("additionalProperties")
            if isinstance(extra, dict):
                for key, item in value.items():
                    sub_old = old.get(key) if isinstance(old, dict) else None
                    yield from self._cel_errors(extra, item, sub_old, f"{path}[{key}]")
        elif isinstance(value, list) and isinstance(node.get("items"), dict):
            keys = node.get("x-kubernetes-list-map-keys")
            for i, item in enumerate(value):
                sub_old = _correlate(old, item, keys) if keys else None
                yield from self._cel_errors(node["items"], item, sub_old, f"{path}[{i}]")


def _correlate(old: Any, item: Any, keys: list[str]) -> Any:
    """The old list-map entry with the same keys as ``item`` (how oldSelf reaches list items)."""
    if not isinstance(old, list) or not isinstance(item, dict):
        return None
    want = tuple(item.get(k) for k in keys)
    return next((o for o in old if isinstance(o, dict) and tuple(o.get(k) for k in keys) == want), None)


def _structure_errors(node: dict[str, Any], value: Any, path: str) -> Iterator[FieldError]:
    """Unknown fields and list-type uniqueness: the checks JSON Schema cannot express here."""
    if node.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(value, dict):
        props = node.get("properties")
        if props is not None:
            for name, item in value.items():
                if name not in props:
                    if path == "" and name in ("apiVersion", "kind", "metadata"):
                        continue
                    yield FieldError(_join(path, name), "Unknown field", 'field not declared in schema')
                else:
                    yield from _structure_errors(props[name], item, _join(path, name))
        elif isinstance(node.get("additionalProperties"), dict):
            for key, item in value.items():
                yield from _structure_errors(node["additionalProperties"], item, f"{path}[{key}]")
    elif isinstance(value, list):
        list_type = node.get("x-kubernetes-list-type")
        if list_type == "set":
            seen: set[str] = set()
            for i, item in enumerate(value):
                marker = json.dumps(item, sort_keys=True)
                if marker in seen:
                    yield FieldError(f"{path}[{i}]", "Duplicate value", json.dumps(item))
                seen.add(marker)
        elif list_type == "map":
            keys = node.get("x-kubernetes-list-map-keys", [])
            seen_keys: set[str] = set()
            for i, item in enumerate(value):
                if not isinstance(item, dict):
                    continue
                marker = json.dumps({k: item.get(k) for k in keys}, sort_keys=True)
                if marker in seen_keys:
                    yield FieldError(f"{path}[{i}]", "Duplicate value", marker)
                seen_keys.add(marker)
        if isinstance(node.get("items"), dict):
            for i, item in enumerate(value):
                yield from _structure_errors(node["items"], item, f"{path}[{i}]")


def _schema_error(error: jsonschema.ValidationError) -> FieldError:
    path = _path(error.absolute_path)
    validator = error.validator
    value = error.instance
    schema_value = error.validator_value
    shown = _show(value)
    if validator == "required":
        missing = re.match(r"'([^']+)' is a required property", error.message)
        field = missing.group(1) if missing else "?"
        return FieldError(_join(path, field), "Required value", "")
    where = path or "<root>"
    if validator == "enum":
        supported = ", ".join(json.dumps(v) for v in schema_value if v is not None)
        return FieldError(where, "Unsupported value", f"{shown}: supported values: {supported}")
    if validator == "type":
        expected = schema_value if isinstance(schema_value, str) else " or ".join(
            t for t in schema_value if t != "null"
        )
        actual = _json_type(value)
        return FieldError(
            where,
            "Invalid value",
            f'"{actual}": {where} in body must be of type {expected}: {shown}',
            cause=TYPE_INVALID,
        )
    if validator in ("maxLength",):
        return FieldError(where, "Too long", f"may not be more than {schema_value} bytes")
    if validator == "maxItems":
        return FieldError(where, "Too many", f"{len(value)}: must have at most {schema_value} items")
    if validator == "maxProperties":
        return FieldError(where, "Too many", f"{len(value)}: must have at most {schema_value} items")
    if validator == "anyOf" and _is_int_or_string(error.schema):
        return FieldError(
            where,
            "Invalid value",
            f"{shown}: {where} in body must be an integer or a string",
            cause=TYPE_INVALID,
        )
    messages = {
        "minimum": f"should be greater than or equal to {schema_value}",
        "maximum": f"should be less than or equal to {schema_value}",
        "pattern": f"should match '{schema_value}'",
        "minLength": f"should be at least {schema_value} chars long",
        "minItems": f"should have at least {schema_value} items",
        "minProperties": f"should have at least {schema_value} properties",
        "format": f"must be of type {schema_value}",
        "anyOf": "matches no schema",
    }
    detail = messages.get(str(validator), error.message)
    return FieldError(where, "Invalid value", f"{shown}: {where} in body {detail}")


def _is_int_or_string(schema: Any) -> bool:
    return isinstance(schema, dict) and bool(schema.get("x-kubernetes-int-or-string"))


def _to_jsonschema(node: Any) -> Any:
    """OpenAPI v3 (structural) to JSON Schema draft 7: ``nullable`` becomes a ``null`` type."""
    if isinstance(node, list):
        return [_to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("default", "description", "nullable") or key.startswith("x-kubernetes-"):
            if key.startswith("x-kubernetes-"):
                out[key] = value  # kept for error formatting; unknown keywords are ignored
            continue
        if key in ("properties",):
            out[key] = {k: _to_jsonschema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "anyOf", "allOf", "not"):
            out[key] = _to_jsonschema(value)
        else:
            out[key] = value
    if node.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        elif "anyOf" in out:
            out["anyOf"] = [*out["anyOf"], {"type": "null"}]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def _is_datetime(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return "T" in value or "t" in value


def _dedupe(errors: list[FieldError]) -> list[FieldError]:
    seen: set[FieldError] = set()
    out = []
    for e in errors:
        if e not in seen:
            seen.add(e)
            out.append(e)
    return out


def _join(path: str, field: str) -> str:
    field = field.lstrip(".")
    return f"{path}.{field}" if path else field


def _path(parts: Sequence[Any] | Any) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = _join(out, str(part))
    return out


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _show(value: Any, field_path: str = "") -> str:
    """How the API server prints an invalid value: scalars as JSON, containers by type."""
    if field_path:
        return '"object"'
    if isinstance(value, dict | list):
        return f'"{_json_type(value)}"'
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + '..."'


# --------------------------------------------------------------------------- pydantic side

_UNION_TAG = re.compile(r"^(int|str|float|bool|none|constrained-\w+|[\w-]+\[.*\]|\[key\])$")
_PYDANTIC_TYPES = {
    "missing": "Required value",
    "extra_forbidden": "Unknown field",
    "literal_error": "Unsupported value",
    "enum": "Unsupported value",
    "string_too_long": "Too long",
    "too_long": "Too many",
}


def pydantic_field_errors(exc: ValidationError) -> list[FieldError]:
    """A model's validation errors as ``FieldError``s with API-server style paths.

    Union branch tags (``int``, ``constrained-str``) are dropped from locations, and cross-field
    rule errors (see ``gpufleet.api.common.rule_error``) are placed at the field they name.
    """
    out = []
    for err in exc.errors(include_url=False):
        parts: list[Any] = [p for p in err["loc"] if not (isinstance(p, str) and _UNION_TAG.match(p))]
        ctx = err.get("ctx") or {}
        if err["type"] == "gpufleet_rule" and "field" in ctx:
            parts.extend(str(ctx["field"]).split("."))
        path = _path(parts) or "<root>"
        kind = _PYDANTIC_TYPES.get(err["type"], "Invalid value")
        out.append(FieldError(path, kind, err["msg"]))
    return _dedupe(out)
