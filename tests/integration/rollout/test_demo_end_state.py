"""``gpufleet demo --once --json`` ends with nothing on the halted release (issue #14, done-when).

Before the one-selector redesign the demo's two blocked GPUs ended on the halted 1.2.0,
crash-looping, while their Events said "engine 1.2.0 ready on all devices".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_demo_ends_with_no_inference_node_on_the_halted_release() -> None:
    env = {**os.environ, "COLUMNS": "120"}
    done = subprocess.run(
        [sys.executable, "-m", "gpufleet", "demo", "--once", "--json"],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["ok"], report["phases"]
    halted = {r["version"] for r in report["releases"] if r["halted"]}
    assert halted, "the demo halts a release"
    for node in report["inferenceNodes"]:
        assert node["currentVersion"] not in halted, node
        assert node["targetVersion"] not in halted, node
        assert node["rollout"]["phase"] in ("Idle", "Succeeded", "RolledBack"), node
        assert node["rollout"].get("currentImage"), node
    blocked = {(d["inferenceNode"], d["index"]) for d in report["blocked"]}
    assert blocked, "the demo has blocked GPUs"
