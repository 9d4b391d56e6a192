"""An in-memory stand-in for the API server, enough for the reputation and k controllers.

It keeps objects by plural, supports list, create (generateName), merge-patch (``None`` deletes a
key, as RFC 7386 says) of objects and of their ``/status``, and records Events. The controllers
talk to it through the same ``Api`` protocol as to a real cluster.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping
from typing import Any

_counter = itertools.count(1)


def merge(into: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    for k, v in patch.items():
        if v is None:
            into.pop(k, None)
        elif isinstance(v, Mapping) and isinstance(into.get(k), dict):
            merge(into[k], v)
        else:
            into[k] = copy.deepcopy(v) if not isinstance(v, Mapping) else merge({}, v)
    return into


class FakeApi:
    def __init__(self) -> None:
        self.objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
        self.events: list[tuple[str, str, str, str]] = []  # (object name, type, reason, message)
        self.writes = 0

    @staticmethod
    def _parse(path: str) -> tuple[str, str, str | None, bool]:
        path = path.split("?", 1)[0]
        parts = [p for p in path.split("/") if p]
        ns = ""
        if "namespaces" in parts:
            i = parts.index("namespaces")
            ns = parts[i + 1]
            rest = parts[i + 2 :]
        else:
            rest = parts[3:] if parts[0] == "apis" else parts[2:]
        plural = rest[0]
        name = rest[1] if len(rest) > 1 else None
        return plural, ns, name, len(rest) > 2 and rest[2] == "status"

    def put(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        meta = body.setdefault("metadata", {})
        meta.setdefault("generation", 1)
        meta.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
        self.objects.setdefault(plural, {})[(meta.get("namespace", ""), meta["name"])] = body
        return body

    def get(self, plural: str, ns: str, name: str) -> dict[str, Any]:
        return self.objects[plural][(ns, name)]

    def all(self, plural: str) -> list[dict[str, Any]]:
        return [v for _, v in sorted(self.objects.get(plural, {}).items())]

    def delete(self, plural: str, ns: str, name: str) -> None:
        del self.objects[plural][(ns, name)]

    async def list(self, path: str) -> list[dict[str, Any]]:
        plural, ns, _, _ = self._parse(path)
        items = self.objects.get(plural, {})
        selector = (
            path.split("labelSelector=", 1)[1].replace("%3D", "=") if "labelSelector=" in path else None
        )
        out = []
        for (ons, _), obj in sorted(items.items()):
            if ns and ons != ns:
                continue
            if selector:
                key, _, value = selector.partition("=")
                if (obj.get("metadata", {}).get("labels") or {}).get(key) != value:
                    continue
            out.append(copy.deepcopy(obj))
        return out

    async def create(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        plural, ns, _, _ = self._parse(path)
        obj = copy.deepcopy(dict(body))
        meta = obj.setdefault("metadata", {})
        if "name" not in meta:
            meta["name"] = f"{meta.pop('generateName', 'obj-')}{next(_counter):05d}"
        if ns:
            meta["namespace"] = ns
        if (meta.get("namespace", ""), meta["name"]) in self.objects.get(plural, {}):
            raise RuntimeError("409 AlreadyExists")
        self.writes += 1
        return copy.deepcopy(self.put(plural, obj))

    async def patch(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        plural, ns, name, status = self._parse(path)
        assert name is not None
        obj = self.objects[plural][(ns, name)]
        if status:
            merge(obj, {"status": body["status"]})
        else:
            merge(obj, {k: v for k, v in body.items() if k != "status"})
        self.writes += 1
        return copy.deepcopy(obj)

    async def event(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((str((obj.get("metadata") or {}).get("name")), type_, reason, message))
