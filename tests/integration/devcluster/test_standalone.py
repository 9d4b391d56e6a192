"""`python -m gpufleet_devcluster --kubeconfig-out FILE` serves until interrupted."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from kubernetes import client, config


def test_standalone_server_writes_kubeconfig_and_serves_gpu_nodes(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gpufleet_devcluster",
            "--kubeconfig-out",
            str(kubeconfig),
            "--node",
            "box-a=h100-sxm-x8",
            "--node",
            "box-b=l4-x1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not kubeconfig.exists() or not kubeconfig.read_text():
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "no kubeconfig written"
            time.sleep(0.05)
        api = config.new_client_from_config(str(kubeconfig))
        nodes = client.CoreV1Api(api).list_node().items
        assert sorted(n.metadata.name for n in nodes) == ["box-a", "box-b"]
        assert {n.metadata.name: n.status.allocatable["nvidia.com/gpu"] for n in nodes} == {
            "box-a": "8",
            "box-b": "1",
        }
        crds = client.ApiextensionsV1Api(api).list_custom_resource_definition().items
        assert "inferencenodes.gpufleet.io" in {c.metadata.name for c in crds}
        api.close()
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0, out
    assert "devcluster serving http://127.0.0.1:" in out


def test_bad_node_argument_is_a_clear_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gpufleet_devcluster", "--kubeconfig-out", "/dev/null", "--node", "=h100"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "expected NAME or NAME=PROFILE" in proc.stderr


def test_unknown_profile_is_a_clear_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gpufleet_devcluster",
            "--kubeconfig-out",
            str(tmp_path / "k"),
            "--node",
            "x=no-such-gpu",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "no hardware profile named 'no-such-gpu'" in proc.stderr


def test_gpufleet_devcluster_subcommand_serves(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gpufleet",
            "devcluster",
            "--kubeconfig-out",
            str(kubeconfig),
            "--node",
            "only=l4-x1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not kubeconfig.exists() or not kubeconfig.read_text():
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        api = config.new_client_from_config(str(kubeconfig))
        assert [n.metadata.name for n in client.CoreV1Api(api).list_node().items] == ["only"]
        api.close()
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0, out
