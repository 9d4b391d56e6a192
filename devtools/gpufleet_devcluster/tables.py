"""Server-side printing: `meta.k8s.io/v1` Tables, which `kubectl get` asks for.

kubectl sends `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`; a real server answers with
column definitions and one row per object (custom resources use their CRD's
additionalPrinterColumns), so `kubectl get inode` shows Pool, Node, GPUs, Ready, ... Objects
ride along as PartialObjectMetadata, which kubectl uses for namespaces and labels.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from typing import Any

from gpufleet_devcluster.resources import JsonObj, ResourceType


def wants_table(accept: str) -> bool:
    return "as=Table" in accept


def _age(ts: str | None, now: float) -> str:
    """A human age like kubectl's (`45s`, `12m`, `3h4m`, `5d`)."""
    if not ts:
        return "<unknown>"
    try:
        then = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return "<invalid>"
    secs = max(0, int(now - then))
    if secs < 120:
        return f"{secs}s"
    if secs < 600:
        return f"{secs // 60}m{secs % 60}s"
    if secs < 3 * 3600:
        return f"{secs // 60}m"
    if secs < 8 * 3600:
        return f"{secs // 3600}h{(secs % 3600) // 60}m"
    if secs < 2 * 86400:
        return f"{secs // 3600}h"
    return f"{secs // 86400}d"


# --------------------------------------------------------------------------------- JSONPath (subset)

_STEP = re.compile(
    r"""\.([A-Za-z0-9_\-/]+)|\[(\d+|\*)\]|\[\?\(@\.([A-Za-z0-9_.\-]+)\s*==\s*["']([^"']*)["']\)\]"""
)


def jsonpath(obj: Any, path: str) -> list[Any]:
    """Values at a printer-column JSONPath: `.a.b`, `[0]`, `[*]`, `[?(@.type=="Ready")]`."""
    current = [obj]
    pos = 0
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    while pos < len(path):
        m = _STEP.match(path, pos)
        if m is None:
            return []
        pos = m.end()
        nxt: list[Any] = []
        for value in current:
            if m.group(1) is not None:
                if isinstance(value, dict) and m.group(1) in value:
                    nxt.append(value[m.group(1)])
            elif m.group(2) is not None:
                if isinstance(value, list):
                    if m.group(2) == "*":
                        nxt.extend(value)
                    elif int(m.group(2)) < len(value):
                        nxt.append(value[int(m.group(2))])
            else:
                key, want = m.group(3), m.group(4)
                if isinstance(value, list):
                    for item in value:
                        got: Any = item
                        for part in key.split("."):
                            got = got.get(part) if isinstance(got, dict) else None
                        if got is not None and str(got) == want:
                            nxt.append(item)
        current = nxt
    return current


def _cell(values: list[Any], kind: str, now: float) -> Any:
    if not values:
        return None
    if kind == "date" and isinstance(values[0], str):
        return _age(values[0], now)  # the real server prints date columns as an age
    value = values[0] if len(values) == 1 else ",".join(str(v) for v in values)
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    if kind in ("integer", "number") and isinstance(value, bool):
        return None
    return value


# --------------------------------------------------------------------------------- columns and rows

_NAME = {
    "name": "Name",
    "type": "string",
    "format": "name",
    "description": "Name must be unique within a namespace.",
    "priority": 0,
}
_AGE = {"name": "Age", "type": "string", "format": "", "description": "CreationTimestamp", "priority": 0}


def _col(name: str, kind: str = "string", priority: int = 0, description: str = "") -> JsonObj:
    return {"name": name, "type": kind, "format": "", "description": description, "priority": priority}


def _pod_row(pod: JsonObj, now: float) -> list[Any]:
    status = pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    total = len(pod.get("spec", {}).get("containers") or [])
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount") or 0) for c in statuses)
    shown = status.get("reason") or status.get("phase") or "Unknown"
    for c in statuses:
        state = c.get("state") or {}
        if "waiting" in state and state["waiting"].get("reason"):
            shown = state["waiting"]["reason"]
        elif "terminated" in state and state["terminated"].get("reason"):
            shown = state["terminated"]["reason"]
    if pod["metadata"].get("deletionTimestamp"):
        shown = "Terminating"
    return [
        pod["metadata"]["name"],
        f"{ready}/{total}",
        shown,
        restarts,
        _age(pod["metadata"].get("creationTimestamp"), now),
        status.get("podIP") or "<none>",
        pod.get("spec", {}).get("nodeName") or "<none>",
    ]


def _node_row(node: JsonObj, now: float) -> list[Any]:
    conds = {c.get("type"): c.get("status") for c in (node.get("status") or {}).get("conditions") or []}
    state = {"True": "Ready", "False": "NotReady"}.get(conds.get("Ready") or "", "Unknown")
    if node.get("spec", {}).get("unschedulable"):
        state += ",SchedulingDisabled"
    labels = node["metadata"].get("labels") or {}
    gpus = ((node.get("status") or {}).get("allocatable") or {}).get("nvidia.com/gpu", "0")
    return [
        node["metadata"]["name"],
        state,
        "<none>",
        _age(node["metadata"].get("creationTimestamp"), now),
        ((node.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", ""),
        labels.get("nvidia.com/gpu.product", "<none>"),
        gpus,
    ]


def columns_and_rows(rtype: ResourceType, objects: list[JsonObj]) -> tuple[list[JsonObj], list[list[Any]]]:
    now = time.time()
    if rtype.plural == "pods" and not rtype.group:
        cols = [
            _NAME,
            _col("Ready"),
            _col("Status"),
            _col("Restarts", "integer"),
            _AGE,
            _col("IP", priority=1),
            _col("Node", priority=1),
        ]
        return cols, [_pod_row(o, now) for o in objects]
    if rtype.plural == "nodes" and not rtype.group:
        cols = [
            _NAME,
            _col("Status"),
            _col("Roles"),
            _AGE,
            _col("Version"),
            _col("GPU", priority=1, description="nvidia.com/gpu.product"),
            _col("GPUs", priority=1, description="allocatable nvidia.com/gpu"),
        ]
        return cols, [_node_row(o, now) for o in objects]
    if rtype.plural == "namespaces" and not rtype.group:
        cols = [_NAME, _col("Status"), _AGE]
        return cols, [
            [
                o["metadata"]["name"],
                (o.get("status") or {}).get("phase", ""),
                _age(o["metadata"].get("creationTimestamp"), now),
            ]
            for o in objects
        ]
    if rtype.columns:
        cols = [_NAME] + [
            {
                "name": c["name"],
                "type": c.get("type", "string"),
                "format": c.get("format", ""),
                "description": c.get("description", ""),
                "priority": int(c.get("priority", 0)),
            }
            for c in rtype.columns
        ]
        rows = [
            [o["metadata"]["name"]]
            + [_cell(jsonpath(o, c["jsonPath"]), c.get("type", "string"), now) for c in rtype.columns]
            for o in objects
        ]
        return cols, rows
    return [_NAME, _AGE], [
        [o["metadata"]["name"], _age(o["metadata"].get("creationTimestamp"), now)] for o in objects
    ]


def _partial(obj: JsonObj) -> JsonObj:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}


def table(
    rtype: ResourceType, objects: list[JsonObj], resource_version: str, *, headers: bool = True
) -> JsonObj:
    cols, rows = columns_and_rows(rtype, objects)
    out: JsonObj = {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "rows": [{"cells": cells, "object": _partial(obj)} for cells, obj in zip(rows, objects, strict=True)],
    }
    if headers:
        out["columnDefinitions"] = cols
    return out
