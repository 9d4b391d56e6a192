"""An API server restored from a backup: resourceVersions go backwards under the operator (#21, F6).

The proxy is switched to a fresh emulator with the fleet's objects re-applied (its resourceVersions
start again from the bottom, and its pods are gone, as in a backup taken before they existed). The
operator must notice and resume within 30 s: pods recreated, statuses written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gpufleet_devcluster.cluster import DevCluster, NodeSpec
from tests.faults.fleet import GROUP, NS, PROFILE, Layout, converged, rig, wait_for

LAYOUT = Layout(nodes=3, pools=1)


@pytest.mark.xfail(
    strict=False,
    reason="F6: after the restore the operator recreates every pod, but InferenceNode statuses stay "
    "inconsistent (readyDevices 0 beside devices ready: True, shares from before the restore) for "
    "more than 30 s; passed at 04:11, failing since (not strict until the cause is known)",
)
async def test_operator_resumes_after_resource_versions_go_backwards(
    tmp_path: Path, record: dict[str, Any]
) -> None:
    async with rig(tmp_path, LAYOUT) as r:
        await wait_for(r.converged(), within=90)
        old_rv = r.cluster.store.history[-1].rv
        nodes = [NodeSpec(n, profile=PROFILE) for n in LAYOUT.node_names()]
        async with DevCluster(nodes=nodes, namespaces=("default", NS)) as restored:
            for obj in LAYOUT.objects():
                restored.apply(obj)
            new_rv = restored.store.history[-1].rv
            mark = len(restored.requests.records)
            r.proxy.switch_upstream(restored.url)
            try:
                took = await wait_for(converged(restored, LAYOUT), within=30)
            except TimeoutError:
                took = -1.0
                record["restored_state"] = {
                    name: {
                        k: v
                        for k, v in (
                            (restored.get(GROUP, "InferenceNode", name, NS) or {}).get("status") or {}
                        ).items()
                        if k in ("readyDevices", "totalDevices", "currentVersion", "devices", "conditions")
                    }
                    for name in LAYOUT.inode_names()
                }
                record["restored_pods"] = sorted(
                    (p["metadata"]["name"], (p.get("status") or {}).get("phase")) for p in restored.pods(NS)
                )
            record.update(
                rv_before=old_rv,
                rv_after_restore=new_rv,
                resumed_after_s=round(took, 1),
                requests_to_restored=len(restored.requests.records) - mark,
                writes_to_restored=len(restored.requests.writes(since=mark)),
            )
            r.proxy.switch_upstream(r.cluster.url)  # so the rig shuts the operator down cleanly
            assert took >= 0, record
