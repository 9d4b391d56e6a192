"""`gpufleet run`'s logs on the emulator: INFO is one line per transition, never kopf's bookkeeping.

The operator runs as a real process (``--log-format json``) against the devcluster; the fleet goes
through the transitions a person acts on (engine pod created, GPU blocked, shares computed, a
rollout to a new release) and the test reads what the operator logged.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gpufleet.cli.logformat import _KOPF_NOISE
from gpufleet_devcluster.cluster import DevCluster, NodeSpec
from tests.integration.operator.harness import NS, inode, pool, release

GROUP = "gpufleet.io/v1alpha1"


def _wait(what: str, check: Callable[[], bool], proc: subprocess.Popen[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert proc.poll() is None, f"operator exited ({proc.returncode}) while waiting for {what}"
        assert time.monotonic() < deadline, f"not reached within {timeout:.0f}s: {what}"
        time.sleep(0.1)


def _run_fleet(tmp_path: Path) -> list[dict[str, Any]]:
    """Drive the transitions and return the operator's log records (parsed JSON lines)."""
    log = tmp_path / "operator.log"
    with DevCluster(
        nodes=[
            NodeSpec("gpu-a100", profile="a100-80gb-x1"),
            NodeSpec("gpu-a100-b", profile="a100-80gb-x1"),
            NodeSpec("gpu-mystery", profile="bad-unknown-gpu"),
        ],
        namespaces=("default", NS),
    ).run_in_thread() as c:
        for obj in (
            release(),
            pool("op-a"),
            inode("box", "op-a", "gpu-a100"),
            inode("odd", "op-a", "gpu-mystery"),
        ):
            c.call(c.apply, obj)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GPUFLEET_")} | {
            "GPUFLEET_WORKERS": "2",
            "GPUFLEET_POOL_SETTLE_SECONDS": "0.2",
        }
        with log.open("w") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gpufleet",
                    "run",
                    "--kubeconfig",
                    str(c.kubeconfig_path),
                    "--liveness",
                    "",
                    "--metrics-port",
                    "0",
                    "--log-format",
                    "json",
                    "-n",
                    NS,
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
            )
            try:

                def status(name: str) -> dict[str, Any]:
                    obj = c.call(c.get, GROUP, "InferenceNode", name, NS) or {}
                    return dict(obj.get("status") or {})

                def converged() -> bool:
                    odd = status("odd").get("devices") or []
                    blocked = any((d.get("validation") or {}).get("reason") == "UnknownProduct" for d in odd)
                    return status("box").get("readyDevices") == 1 and blocked

                _wait("box ready and odd's GPU blocked", converged, proc)
                # A second A100 joins the pool: box's VRAM share halves (ShareChanged).
                c.call(c.apply, inode("box2", "op-a", "gpu-a100-b"))

                def halved() -> bool:
                    devices = status("box").get("devices") or [{}]
                    return str(devices[0].get("vramShare")) in ("0.5", "0.50", "0.5000")

                _wait("box's share halved", halved, proc)
                c.call(c.kubelet.set_behaviour, __import__("gpufleet_devcluster").Behaviour("ok"))
                c.call(c.apply, release("engine-1-1-0", "1.1.0"))

                def rolled_out() -> bool:
                    st = status("box")
                    return st.get("currentVersion") == "1.1.0" and (st.get("rollout") or {}).get("phase") in (
                        "Succeeded",
                        None,
                    )

                _wait("box on 1.1.0", rolled_out, proc, timeout=90)
                time.sleep(0.5)  # let the last fire-and-forget lines be written before stopping
            finally:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    records = []
    for line in log.read_text().splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"a log line is not JSON with --log-format json: {line!r}")
    return records


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return _run_fleet(tmp_path_factory.mktemp("logs"))


def _info(records: list[dict[str, Any]]) -> list[str]:
    return [r["message"] for r in records if r.get("level") == "INFO"]


def test_every_line_is_one_json_object_with_the_fields_pipelines_need(records: list[dict[str, Any]]) -> None:
    assert records
    for r in records:
        assert {"time", "level", "logger", "message"} <= set(r), r


def test_no_per_handler_noise_at_info(records: list[dict[str, Any]]) -> None:
    noise = [m for m in _info(records) if any(p.match(m) for p in _KOPF_NOISE)]
    assert noise == []
    assert not [m for m in _info(records) if "succeeded." in m and m.startswith("Handler")]


def _lines_naming(records: list[dict[str, Any]], *words: str) -> list[str]:
    def text(r: dict[str, Any]) -> str:
        obj = r.get("object") or {}
        return f"{obj.get('kind', '')} {obj.get('namespace', '')}/{obj.get('name', '')} {r['message']}"

    def names(line: str, word: str) -> bool:  # whole names: "box" is not "box2" nor "box-gpu-0"
        return re.search(rf"(?<![\w.-]){re.escape(word)}(?![\w-])", line) is not None

    return [text(r) for r in records if r.get("level") == "INFO" and all(names(text(r), w) for w in words)]


@pytest.mark.parametrize(
    ("transition", "words"),
    [
        pytest.param("pod created", ("box", "PodCreated", "box-gpu-0")),
        pytest.param("GPU blocked with its reason", ("odd", "DeviceBlocked", "UnknownProduct")),
        pytest.param("share changed", ("box", "ShareChanged")),
        ("rollout started", ("box", "1.1.0", "RolloutStarted")),
        ("rollout succeeded", ("box", "1.1.0", "RolloutSucceeded")),
    ],
)
def test_one_info_line_per_transition_naming_the_object(
    records: list[dict[str, Any]], transition: str, words: tuple[str, ...]
) -> None:
    found = _lines_naming(records, *words)
    assert len(found) == 1, (
        f"{transition}: want one INFO line naming {words}, got {found}\nINFO: {_info(records)}"
    )
