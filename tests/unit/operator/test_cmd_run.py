"""`gpufleet run` rejects bad settings before starting anything."""

from __future__ import annotations

import pytest

from gpufleet.cli import main


def test_invalid_settings_fail_fast(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GPUFLEET_PRIORITY_K", "-3")
    assert main(["run"]) == 2
    assert "GPUFLEET_PRIORITY_K" in capsys.readouterr().err


def test_missing_kubeconfig_fails_fast(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--kubeconfig", "/nonexistent/kubeconfig", "--metrics-port", "0"]) == 2
    assert "does not exist" in capsys.readouterr().err
