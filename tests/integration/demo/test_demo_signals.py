"""`gpufleet demo --keep-running` stops cleanly on SIGTERM and SIGINT, as a terminal user expects."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.timeout(180)


def _wait_converged(kubeconfig: Path, deadline: float) -> None:
    """Until the healthy nodes report all their GPUs ready, read through the emulated API."""
    from kubernetes import client, config

    api = client.CustomObjectsApi(config.new_client_from_config(str(kubeconfig)))
    want = {"rtx4090-box": 4, "a100-box": 1, "l40s-box": 4}
    seen: dict[str, int] = {}
    while time.monotonic() < deadline:
        items = api.list_namespaced_custom_object("gpufleet.io", "v1alpha1", "fleet", "inferencenodes")[
            "items"
        ]
        seen = {i["metadata"]["name"]: (i.get("status") or {}).get("readyDevices") or 0 for i in items}
        if all(seen.get(name) == n for name, n in want.items()):
            return
        time.sleep(0.3)
    raise AssertionError(f"the demo fleet did not converge: {seen}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_keep_running_stops_on_signal(tmp_path: Path, sig: signal.Signals) -> None:
    scenario = yaml.safe_load(
        subprocess.run(
            [sys.executable, "-m", "gpufleet", "demo", "--print-scenario"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    scenario["rollouts"] = []  # converge only: this test is about stopping
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario))
    kubeconfig = tmp_path / "kubeconfig"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gpufleet",
            "demo",
            "--once",
            "--keep-running",
            "--scenario",
            str(path),
            "--kubeconfig-out",
            str(kubeconfig),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not kubeconfig.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert kubeconfig.exists(), "the demo never wrote its kubeconfig"
        _wait_converged(kubeconfig, deadline)
        assert proc.poll() is None, "the demo exited before it was signalled"
        os.kill(proc.pid, sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    assert "fleet converges: Converged" in out


def test_signal_during_a_phase_ends_the_demo_as_interrupted(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpufleet", "demo", "--once", "--kubeconfig-out", str(kubeconfig)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        _wait_converged_then_rolling(kubeconfig, deadline)
        os.kill(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, out[-3000:]
    assert "Interrupted" in out


def _wait_converged_then_rolling(kubeconfig: Path, deadline: float) -> None:
    while not kubeconfig.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    _wait_converged(kubeconfig, deadline)
