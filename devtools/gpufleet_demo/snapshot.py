"""What the demo shows: a plain-data picture of the fleet, built from the objects' statuses.

Everything here is read from what the operator wrote to the API (statuses, events), never from
the operator's memory, so the demo shows what `kubectl get` would.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

JsonObj = dict[str, Any]


def _condition(obj: Mapping[str, Any], ctype: str) -> JsonObj | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == ctype:
            return dict(cond)
    return None


def device_rows(inodes: Iterable[Mapping[str, Any]]) -> list[JsonObj]:
    """One row per GPU device, in a stable order (pool, node, device index)."""
    rows: list[JsonObj] = []
    for inode in inodes:
        spec = inode.get("spec") or {}
        status = inode.get("status") or {}
        for dev in status.get("devices") or []:
            validation = dev.get("validation") or {}
            rows.append(
                {
                    "pool": (spec.get("poolRef") or {}).get("name"),
                    "inferenceNode": inode["metadata"]["name"],
                    "node": spec.get("nodeName"),
                    "index": dev.get("index"),
                    "product": dev.get("product"),
                    "vramMiB": dev.get("vramMiB"),
                    "valid": bool(validation.get("valid")),
                    "reason": validation.get("reason"),
                    "message": validation.get("message"),
                    "engine": dev.get("engine"),
                    "vramShare": dev.get("vramShare"),
                    "effectiveStake": dev.get("effectiveStake"),
                    "priorityScore": dev.get("priorityScore"),
                    "ready": bool(dev.get("ready")),
                    "routable": bool(dev.get("routable")),
                    "pod": dev.get("podName"),
                }
            )
    rows.sort(key=lambda r: (str(r["pool"]), str(r["inferenceNode"]), int(r["index"] or 0)))
    return rows


def node_rows(inodes: Iterable[Mapping[str, Any]]) -> list[JsonObj]:
    rows = []
    for inode in inodes:
        status = inode.get("status") or {}
        rolled_back = _condition(inode, "RolledBack")
        ready = _condition(inode, "Ready")
        rows.append(
            {
                "name": inode["metadata"]["name"],
                "pool": ((inode.get("spec") or {}).get("poolRef") or {}).get("name"),
                "ready": ready is not None and ready.get("status") == "True",
                "readyReason": (ready or {}).get("reason"),
                "readyDevices": status.get("readyDevices"),
                "totalDevices": status.get("totalDevices"),
                "currentVersion": status.get("currentVersion"),
                "targetVersion": status.get("targetVersion"),
                "lastStableVersion": status.get("lastStableVersion"),
                "rollout": status.get("rollout"),
                "rolledBack": rolled_back is not None and rolled_back.get("status") == "True",
                "rolledBackReason": (rolled_back or {}).get("reason"),
                "rolledBackMessage": (rolled_back or {}).get("message"),
            }
        )
    rows.sort(key=lambda r: str(r["name"]))
    return rows


def pool_rows(pools: Iterable[Mapping[str, Any]]) -> list[JsonObj]:
    rows = []
    for pool in pools:
        status = pool.get("status") or {}
        min_self = _condition(pool, "MinimumSelfStake")
        rows.append(
            {
                "name": pool["metadata"]["name"],
                "totalStake": status.get("totalStake"),
                "validatedVRAMMiB": status.get("validatedVRAMMiB"),
                "devices": status.get("devices"),
                "readyDevices": status.get("readyDevices"),
                "selfStakeRatio": status.get("selfStakeRatio"),
                "minimumSelfStakeMet": None if min_self is None else min_self.get("status") == "True",
                "minimumSelfStakeMessage": (min_self or {}).get("message"),
            }
        )
    rows.sort(key=lambda r: str(r["name"]))
    return rows


def release_rows(releases: Iterable[Mapping[str, Any]]) -> list[JsonObj]:
    rows = []
    for rel in releases:
        status = rel.get("status") or {}
        spec = rel.get("spec") or {}
        rows.append(
            {
                "name": rel["metadata"]["name"],
                "version": spec.get("version"),
                "channel": spec.get("channel"),
                "halted": bool(status.get("halted")),
                "failedNodes": list(status.get("failedNodes") or []),
            }
        )
    rows.sort(key=lambda r: str(r["name"]))
    return rows


def event_rows(events: Iterable[Mapping[str, Any]], *, namespace: str | None = None) -> list[JsonObj]:
    """Events about gpufleet objects and engine pods, oldest first."""
    rows = []
    for ev in events:
        involved = ev.get("involvedObject") or ev.get("regarding") or {}
        if namespace is not None and involved.get("namespace") not in (namespace, None, ""):
            continue
        rows.append(
            {
                "time": ev.get("lastTimestamp")
                or ev.get("eventTime")
                or ev.get("firstTimestamp")
                or (ev.get("metadata") or {}).get("creationTimestamp"),
                "type": ev.get("type"),
                "reason": ev.get("reason"),
                "object": f"{involved.get('kind', '')}/{involved.get('name', '')}",
                "message": ev.get("message") or ev.get("note"),
                "count": ev.get("count", 1),
            }
        )
    rows.sort(key=lambda r: (str(r["time"] or ""),))
    return rows


def fleet_snapshot(
    *,
    inodes: Iterable[Mapping[str, Any]],
    pools: Iterable[Mapping[str, Any]],
    releases: Iterable[Mapping[str, Any]],
    events: Iterable[Mapping[str, Any]] = (),
    namespace: str | None = None,
) -> JsonObj:
    inodes = list(inodes)
    devices = device_rows(inodes)
    return {
        "devices": devices,
        "blocked": [d for d in devices if not d["valid"]],
        "inferenceNodes": node_rows(inodes),
        "pools": pool_rows(pools),
        "releases": release_rows(releases),
        "events": event_rows(events, namespace=namespace),
    }
