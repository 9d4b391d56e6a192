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
        status.get("nominatedNodeName") or "<none>",
        _readiness_gates(pod),
    ]


def _readiness_gates(pod: JsonObj) -> str:
    """`1/1` style: gates whose condition is True over gates declared (kubectl's READINESS GATES)."""
    gates = [g.get("conditionType") for g in (pod.get("spec") or {}).get("readinessGates") or []]
    if not gates:
        return "<none>"
    conds = {c.get("type"): c.get("status") for c in (pod.get("status") or {}).get("conditions") or []}
    return f"{sum(1 for g in gates if conds.get(g) == 'True')}/{len(gates)}"


def _event_row(event: JsonObj, now: float) -> list[Any]:
    """kube-apiserver's event columns: Last Seen, Type, Reason, Object, ..., Message, ..."""
    meta = event.get("metadata") or {}
    involved = event.get("involvedObject") or {}
    last = event.get("lastTimestamp") or event.get("eventTime") or meta.get("creationTimestamp")
    first = event.get("firstTimestamp") or event.get("eventTime") or meta.get("creationTimestamp")
    count = int(event.get("count") or (event.get("series") or {}).get("count") or 1)
    last_seen = _age(_seconds(last), now)
    if count > 1:
        last_seen = f"{last_seen} (x{count} over {_age(_seconds(first), now)})"
    source = event.get("source") or {}
    source_text = source.get("component") or event.get("reportingComponent") or ""
    if source.get("host"):
        source_text = f"{source_text}, {source['host']}"
    return [
        last_seen,
        event.get("type") or "",
        event.get("reason") or "",
        f"{str(involved.get('kind') or '').lower()}/{involved.get('name') or ''}",
        involved.get("fieldPath") or "",
        source_text,
        (event.get("message") or "").strip(),
        _age(_seconds(first), now),
        count,
        meta.get("name"),
    ]


def _seconds(ts: str | None) -> str | None:
    """Event timestamps may carry fractions (MicroTime); the age only needs whole seconds."""
    if not ts:
        return None
    head, _, _ = ts.partition(".")
    return head if head.endswith("Z") or len(head) != 19 else f"{head}Z"


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
            _col("Nominated Node", priority=1),
            _col("Readiness Gates", priority=1),
        ]
        return cols, [_pod_row(o, now) for o in objects]
    if rtype.plural == "events" and not rtype.group:
        cols = [
            _col("Last Seen", description="Time when this Event was last observed."),
            _col("Type", description="Type of this event (Normal, Warning)."),
            _col("Reason", description="The reason for the transition into the object's current status."),
            _col("Object", description="The object that this event is about."),
            _col("Subobject", priority=1, description="involvedObject.fieldPath"),
            _col("Source", priority=1, description="The component reporting this event."),
            _col("Message", description="A human-readable description of the status of this operation."),
            _col("First Seen", priority=1, description="The time at which the event was first recorded."),
            _col("Count", "integer", priority=1, description="The number of times this event has occurred."),
            {**_NAME, "priority": 1},
        ]
        return cols, [_event_row(o, now) for o in objects]
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
