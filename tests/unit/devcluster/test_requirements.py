"""A plain install without the demo extra gets advice, not an ImportError traceback."""

from __future__ import annotations

import importlib.util

import pytest

from gpufleet.cli import main
from gpufleet_devcluster import requirements


def test_nothing_missing_in_the_test_environment() -> None:
    assert requirements.missing_requirements() is None


@pytest.mark.parametrize("command", [["demo", "--once"], ["devcluster", "--kubeconfig-out", "unused"]])
def test_commands_explain_a_missing_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        requirements.importlib.util, "find_spec", lambda name: None if name == "celpy" else real(name)
    )
    assert main(command) == 2
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "cel-python" in text
    assert "pip install -e ./devtools" in text
