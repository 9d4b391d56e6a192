"""JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge patch.

Stored objects are never mutated: every function here returns a new object that shares the
untouched sub-trees with the original, which keeps patches of large objects cheap.
"""

from __future__ import annotations

import json
from typing import Any

from gpufleet_devcluster.errors import APIError


def clone(value: Any) -> Any:
    """Deep copy of JSON data (faster than copy.deepcopy for plain dicts and lists)."""
    return json.loads(json.dumps(value))


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# ---------------------------------------------------------------------------------------------- JSON patch


def _unprocessable(message: str) -> APIError:
    return APIError(422, "Invalid", message)


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise _unprocessable(f"jsonpatch: path {path!r} must start with '/'")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _list_index(container: list[Any], token: str, *, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit():
        raise _unprocessable(f"jsonpatch: invalid list index {token!r}")
    idx = int(token)
    limit = len(container) if allow_end else len(container) - 1
    if idx > limit:
        raise _unprocessable(f"jsonpatch: list index {idx} out of range")
    return idx


def _get(doc: Any, tokens: list[str]) -> Any:
    cur = doc
    for tok in tokens:
        if isinstance(cur, dict):
            if tok not in cur:
                raise _unprocessable(f"jsonpatch: doc is missing path /{'/'.join(tokens)}")
            cur = cur[tok]
        elif isinstance(cur, list):
            cur = cur[_list_index(cur, tok, allow_end=False)]
        else:
            raise _unprocessable(f"jsonpatch: doc is missing path /{'/'.join(tokens)}")
    return cur


def _set(doc: Any, tokens: list[str], value: Any, *, insert: bool) -> Any:
    """Return a copy of doc with value put at tokens, copying only the containers on the path."""
    if not tokens:
        return value
    head, rest = tokens[0], tokens[1:]
    if isinstance(doc, dict):
        new = dict(doc)
        if rest:
            if head not in doc:
                raise _unprocessable(f"jsonpatch: doc is missing key {head!r}")
            new[head] = _set(doc[head], rest, value, insert=insert)
        else:
            new[head] = value
        return new
    if isinstance(doc, list):
        lst = list(doc)
        if rest:
            idx = _list_index(lst, head, allow_end=False)
            lst[idx] = _set(lst[idx], rest, value, insert=insert)
        elif insert:
            lst.insert(_list_index(lst, head, allow_end=True), value)
        else:
            lst[_list_index(lst, head, allow_end=False)] = value
        return lst
    raise _unprocessable(f"jsonpatch: cannot descend into a scalar at {head!r}")


def _remove(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        raise _unprocessable("jsonpatch: cannot remove the whole document")
    head, rest = tokens[0], tokens[1:]
    if isinstance(doc, dict):
        if head not in doc:
            raise _unprocessable(f"jsonpatch: remove operation does not apply: doc is missing key {head!r}")
        new = dict(doc)
        if rest:
            new[head] = _remove(doc[head], rest)
        else:
            del new[head]
        return new
    if isinstance(doc, list):
        lst = list(doc)
        idx = _list_index(lst, head, allow_end=False)
        if rest:
            lst[idx] = _remove(lst[idx], rest)
        else:
            del lst[idx]
        return lst
    raise _unprocessable(f"jsonpatch: cannot descend into a scalar at {head!r}")


def json_patch(doc: Any, ops: Any) -> Any:
    if not isinstance(ops, list):
        raise APIError(400, "BadRequest", "json patch must be a list of operations")
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise APIError(400, "BadRequest", f"invalid json patch operation: {op!r}")
        kind, tokens = op["op"], _pointer(op["path"])
        if kind == "add":
            doc = _set(doc, tokens, op.get("value"), insert=True)
        elif kind == "replace":
            _get(doc, tokens)
            doc = _set(doc, tokens, op.get("value"), insert=False)
        elif kind == "remove":
            doc = _remove(doc, tokens)
        elif kind == "test":
            actual = _get(doc, tokens)
            if actual != op.get("value"):
                raise _unprocessable(
                    f"the server rejected our request due to an error in our request: testing value "
                    f"{op['path']} failed: {json.dumps(actual)} != {json.dumps(op.get('value'))}"
                )
        elif kind in ("move", "copy"):
            src = _pointer(op.get("from", ""))
            value = _get(doc, src)
            if kind == "move":
                doc = _remove(doc, src)
            doc = _set(doc, tokens, value, insert=True)
        else:
            raise APIError(400, "BadRequest", f"unknown json patch operation {kind!r}")
    return doc


# --------------------------------------------------------------------------------- strategic merge patch


def strategic_merge_patch(target: Any, patch: Any, merge_keys: dict[str, str], path: str = "") -> Any:
    """Strategic merge for the lists named in merge_keys (dotted path -> key; "" merges scalar sets).

    Supports the directives clients actually send: `$patch: delete|replace` in maps and list items,
    `$deleteFromPrimitiveList/<field>` and `$setElementOrder/<field>` (order is accepted, not enforced).
    """
    if not isinstance(patch, dict):
        return patch
    if patch.get("$patch") == "replace":
        return {k: v for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$setElementOrder/") or key == "$retainKeys":
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list) and isinstance(value, list):
                result[field] = [v for v in result[field] if v not in value]
            continue
        sub = f"{path}.{key}" if path else key
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and sub in merge_keys:
            result[key] = _merge_list(result.get(key), value, merge_keys[sub], merge_keys, sub)
        elif isinstance(value, dict):
            merged = strategic_merge_patch(result.get(key), value, merge_keys, sub)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = value
    return result


def _merge_list(current: Any, patch: list[Any], key: str, merge_keys: dict[str, str], path: str) -> list[Any]:
    current = list(current) if isinstance(current, list) else []
    if not key:  # set of scalars: union, keeping the current order
        out: list[Any] = current + [v for v in patch if v not in current]
        return out
    if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
        return [p for p in patch if not (isinstance(p, dict) and p.get("$patch") == "replace")]
    positions = {item.get(key): i for i, item in enumerate(current) if isinstance(item, dict)}
    removed: set[int] = set()
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise APIError(
                422, "Invalid", f"strategic merge patch: items of {path} need the merge key {key!r}"
            )
        idx = positions.get(item[key])
        if item.get("$patch") == "delete":
            if idx is not None:
                removed.add(idx)
            continue
        if idx is None:
            positions[item[key]] = len(current)
            current.append(strategic_merge_patch({}, item, merge_keys, path))
        else:
            current[idx] = strategic_merge_patch(current[idx], item, merge_keys, path)
    return [v for i, v in enumerate(current) if i not in removed]
