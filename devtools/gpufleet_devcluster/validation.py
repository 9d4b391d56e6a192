"""Custom resource validation on writes: defaults, pruning, schema and CEL, answered with 422."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from typing import TYPE_CHECKING, Any

from gpufleet_devcluster import errors
from gpufleet_devcluster.fastcheck import Check, Unsupported, compile_check
from gpufleet_devcluster.resources import JsonObj, ResourceType

if TYPE_CHECKING:
    from gpufleet.api.validation import CompiledCRD

_COMPILED: dict[tuple[int, str], tuple[JsonObj, CompiledCRD]] = {}
_BY_CONTENT: dict[str, CompiledCRD] = {}


def _compiled(crd: JsonObj) -> CompiledCRD:
    """Compile each distinct CRD once per process (every test cluster loads the same crds/ files)."""
    hit = _COMPILED.get((id(crd), ""))
    if hit is not None and hit[0] is crd:
        return hit[1]
    from gpufleet.api.validation import CompiledCRD

    digest = hashlib.sha256(json.dumps(crd.get("spec"), sort_keys=True).encode()).hexdigest()
    compiled = _BY_CONTENT.get(digest)
    if compiled is None:
        compiled = _BY_CONTENT[digest] = CompiledCRD(crd)
    if len(_COMPILED) > 256:
        _COMPILED.clear()
    _COMPILED[(id(crd), "")] = (crd, compiled)
    return compiled


_FAST: dict[tuple[int, str], tuple[JsonObj, Check | None, JsonObj | None]] = {}


def _has_cel(node: Any) -> bool:
    if isinstance(node, dict):
        return "x-kubernetes-validations" in node or any(_has_cel(v) for v in node.values())
    if isinstance(node, list):
        return any(_has_cel(v) for v in node)
    return False


def _fast(crd: JsonObj, api_version: str) -> tuple[Check | None, JsonObj | None]:
    """The compiled quick check and schema for a CRD version; (None, None) where CEL or an unmodelled
    keyword means only the full validation can decide."""
    hit = _FAST.get((id(crd), api_version))
    if hit is not None and hit[0] is crd:
        return hit[1], hit[2]
    check: Check | None = None
    schema: JsonObj | None = None
    group = crd["spec"]["group"]
    for version in crd["spec"].get("versions") or []:
        if f"{group}/{version['name']}" == api_version:
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
    if schema is not None and not _has_cel(schema):
        try:
            check = compile_check(schema)
        except (Unsupported, re.error, TypeError):
            check = None
    if len(_FAST) > 256:
        _FAST.clear()
    _FAST[(id(crd), api_version)] = (crd, check, schema)
    return check, schema


_TOKEN = re.compile(r"([^.\[\]]+)|\[([^\]]*)\]")


def _prune(obj: Any, path: str) -> None:
    tokens = [m.group(1) if m.group(1) is not None else m.group(2) for m in _TOKEN.finditer(path)]
    cur = obj
    for tok in tokens[:-1]:
        if isinstance(cur, list) and tok.isdigit() and int(tok) < len(cur):
            cur = cur[int(tok)]
        elif isinstance(cur, dict) and tok in cur:
            cur = cur[tok]
        else:
            return
    if isinstance(cur, dict) and tokens:
        cur.pop(tokens[-1], None)


def _status_only(crd: JsonObj) -> JsonObj:
    """The CRD with `spec` (and root CEL rules) removed, to validate a status write on its own."""
    out = copy.deepcopy(crd)
    for version in out["spec"].get("versions") or []:
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        if not isinstance(schema, dict):
            continue
        schema.get("properties", {}).pop("spec", None)
        if "required" in schema:
            schema["required"] = [r for r in schema["required"] if r != "spec"]
        schema.pop("x-kubernetes-validations", None)
    return out


_STATUS_ONLY: dict[int, tuple[JsonObj, JsonObj]] = {}  # id(crd) -> (crd, its status-only variant)


def _without(obj: JsonObj, *keys: str) -> JsonObj:
    return {k: v for k, v in obj.items() if k not in keys}


def schema_validator(
    rtype: ResourceType, obj: JsonObj, old: JsonObj | None, *, strict: bool = False
) -> JsonObj:
    """Default, prune unknown fields (or reject them when strict) and validate, like the real server.

    Returns the object as it would be stored; raises a 422 APIError naming each failing field.
    Writes that change only metadata (kopf's annotations and finalizers) skip the schema, and
    writes that change only status validate the status alone: the rest is what was stored and
    validated before, so the verdict is the same and the operator benchmark stays fast.
    """
    if rtype.crd is None:
        return obj
    crd = rtype.crd
    target = obj
    if old is not None and _without(obj, "metadata", "status") == _without(old, "metadata", "status"):
        if obj.get("status") == old.get("status"):
            return obj
        hit = _STATUS_ONLY.get(id(crd))
        if hit is None or hit[0] is not crd:
            if len(_STATUS_ONLY) > 256:
                _STATUS_ONLY.clear()
            hit = _STATUS_ONLY[id(crd)] = (crd, _status_only(crd))
        crd = hit[1]
        target = _without(obj, "spec")
        old = _without(old, "spec")
    target = _go_semantics(rtype, crd, target)
    if target is not obj and old is None:
        obj = target
    check, schema = _fast(crd, str(target.get("apiVersion")))
    if check is not None and schema is not None:
        from gpufleet.api.validation import apply_defaults

        quick = json.loads(json.dumps(target))
        apply_defaults(schema, quick)
        if check(quick):
            return _merge_back(obj, target, quick)
    compiled = _compiled(crd)
    stored = compiled.default(target)
    problems = compiled.validate(stored, old)
    unknown = [e for e in problems if e.type == "Unknown field"]
    if unknown and strict:
        # kube-apiserver refuses unknown fields while decoding, before the schema: 400, not 422.
        version = str(obj.get("apiVersion", "")).rpartition("/")[2]
        fields = ", ".join(f'unknown field "{e.path}"' for e in unknown)
        raise errors.APIError(
            400,
            "BadRequest",
            f'{rtype.kind} in version "{version}" cannot be handled as a {rtype.kind}: '
            f"strict decoding error: {fields}",
        )
    if unknown:
        for e in unknown:
            _prune(stored, e.path)
        problems = [e for e in problems if e.type != "Unknown field"]
    if problems:
        raise errors.invalid(
            rtype.kind,
            rtype.group,
            str(obj.get("metadata", {}).get("name", "")),
            [(e.path, f"{e.type}: {e.message}" if e.message else e.type) for e in problems],
        )
    return _merge_back(obj, target, stored)


def _merge_back(obj: JsonObj, target: JsonObj, stored: JsonObj) -> JsonObj:
    """For a status-only check (target is obj without spec) put the checked status back into obj."""
    if target is obj:
        return stored
    merged = dict(obj)
    if "status" in stored:
        merged["status"] = stored["status"]
    return merged


_INT64 = (-(2**63), 2**63 - 1)


def _version_schema(crd: JsonObj, api_version: str) -> JsonObj | None:
    version = api_version.rpartition("/")[2]
    for v in crd.get("spec", {}).get("versions") or []:
        if v.get("name") == version:
            schema: JsonObj | None = (v.get("schema") or {}).get("openAPIV3Schema")
            return schema
    return None


def _go_dollar(pattern: str) -> str:
    """The pattern with Go's `$` (end of text; Python's `$` also matches before a final newline)."""
    return re.sub(r"(?<!\\)\$", r"\\Z", pattern)


def _go_semantics(rtype: ResourceType, crd: JsonObj, obj: JsonObj) -> JsonObj:
    """What kube-apiserver does before and beside the schema check, which the shared validator
    (Python semantics) would answer differently: integral floats in integer fields become ints,
    integers beyond int64 are refused, a null for a non-nullable field with a default is dropped
    (then defaulted), and `pattern`s use Go regexp's `$`. Returns obj, or a normalised copy."""
    schema = _version_schema(crd, str(obj.get("apiVersion", "")))
    if schema is None:
        return obj
    problems: list[tuple[str, str]] = []
    changed = [False]

    def walk(node: JsonObj, value: Any, path: str) -> Any:
        kind = node.get("type")
        if value is None:
            return value
        if kind == "integer" and isinstance(value, float) and value.is_integer():
            changed[0] = True
            value = int(value)
        if kind == "integer" and isinstance(value, int) and not isinstance(value, bool):
            if not _INT64[0] <= value <= _INT64[1]:
                problems.append(
                    (path, f'Invalid value: "number": {path} in body must be of type integer: "number"')
                )
            return value
        if kind == "string" and isinstance(value, str) and "pattern" in node:
            pattern = node["pattern"]
            if re.search(pattern, value) and not re.search(_go_dollar(pattern), value):
                problems.append(
                    (path, f"Invalid value: {json.dumps(value)}: {path} in body should match '{pattern}'")
                )
            return value
        if isinstance(value, dict):
            props = node.get("properties")
            out = value
            if props is not None:
                for name, sub in props.items():
                    if name not in value:
                        continue
                    if value[name] is None and "default" in sub and not sub.get("nullable"):
                        if out is value:
                            out = dict(value)
                        del out[name]
                        changed[0] = True
                        continue
                    new = walk(sub, value[name], f"{path}.{name}" if path else name)
                    if new is not value[name]:
                        if out is value:
                            out = dict(value)
                        out[name] = new
            elif isinstance(node.get("additionalProperties"), dict):
                sub = node["additionalProperties"]
                for name, item in value.items():
                    new = walk(sub, item, f"{path}[{name}]")
                    if new is not item:
                        if out is value:
                            out = dict(value)
                        out[name] = new
            return out
        if isinstance(value, list) and isinstance(node.get("items"), dict):
            items = [walk(node["items"], item, f"{path}[{i}]") for i, item in enumerate(value)]
            return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
        return value

    out = {
        k: (
            walk(schema["properties"][k], v, k)
            if k in (schema.get("properties") or {}) and k != "metadata"
            else v
        )
        for k, v in obj.items()
    }
    if problems:
        raise errors.invalid(rtype.kind, rtype.group, str(obj.get("metadata", {}).get("name", "")), problems)
    return out if changed[0] or any(out[k] is not obj[k] for k in obj) else obj
