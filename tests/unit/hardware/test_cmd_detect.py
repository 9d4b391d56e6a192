"""`gpufleet-node detect` as a user runs it: a clear message and a distinct exit code, never a traceback."""

from __future__ import annotations

import ctypes.util
import json
import subprocess
import sys

import pytest

from gpufleet_node.cli import main

HAS_NVML = ctypes.util.find_library("nvidia-ml") is not None


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpufleet_node.cli", "detect", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.skipif(HAS_NVML, reason="this machine has an NVIDIA driver; the no-GPU path cannot be shown")
def test_detect_without_nvml_exits_nonzero_with_a_clear_message() -> None:
    result = _run()
    assert result.returncode == 3
    assert "Traceback" not in result.stderr
    assert "libnvidia-ml.so.1 was not found" in result.stderr
    assert "install the NVIDIA driver" in result.stderr
    assert result.stdout == ""


@pytest.mark.skipif(HAS_NVML, reason="this machine has an NVIDIA driver; the no-GPU path cannot be shown")
def test_detect_json_error_is_machine_readable() -> None:
    result = _run("--json")
    assert result.returncode == 3
    assert json.loads(result.stdout)["error"]["code"] == "NvmlLibraryNotFound"


def test_detect_profile_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["detect", "--profile", "rtx4090-x4", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["report"]["devices"]) == 4
    assert [v["reason"] for v in doc["validation"]] == ["Valid"] * 4


def test_detect_blocked_profile_exits_1_and_explains(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["detect", "--profile", "bad-pci-mismatch"]) == 1
    out = capsys.readouterr().out
    assert "BLOCKED (PCIIdMismatch)" in out
    assert "0x2204" in out


def test_detect_driver_floor(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["detect", "--profile", "v100-x8", "--min-driver-version", "550.54.15"]) == 1
    assert "DriverTooOld" in capsys.readouterr().out


def test_detect_unknown_profile(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["detect", "--profile", "no-such"]) == 11
    assert "rtx4090-x4" in capsys.readouterr().err
