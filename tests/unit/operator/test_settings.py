"""Operator settings come from GPUFLEET_* environment variables, validated."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from gpufleet.settings import OperatorSettings


def test_defaults_are_documented_values(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("GPUFLEET_PRIORITY_K", "GPUFLEET_NAMESPACE", "GPUFLEET_WORKERS"):
        monkeypatch.delenv(var, raising=False)
    s = OperatorSettings()
    assert s.priority_k == Decimal("0.0001")
    assert s.default_reputation_weight == 1
    assert s.min_self_stake_ratio == Decimal("0.1")
    assert s.finalizer == "gpufleet.io/finalizer"
    assert s.namespace is None


def test_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUFLEET_PRIORITY_K", "0.5")
    monkeypatch.setenv("GPUFLEET_NAMESPACE", "fleet")
    monkeypatch.setenv("GPUFLEET_PEERING_NAME", "")
    monkeypatch.setenv("GPUFLEET_WORKERS", "4")
    s = OperatorSettings()
    assert s.priority_k == Decimal("0.5")
    assert s.namespace == "fleet"
    assert s.peering_name is None
    assert s.workers == 4


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("GPUFLEET_PRIORITY_K", "-1"),
        ("GPUFLEET_DEFAULT_REPUTATION_WEIGHT", "1.5"),
        ("GPUFLEET_MIN_SELF_STAKE_BPS", "10001"),
        ("GPUFLEET_WORKERS", "0"),
        ("GPUFLEET_DEFAULT_ENGINE_IMAGE", "ghcr.io/x/engine:latest"),
    ],
)
def test_bad_values_fail_naming_the_field(monkeypatch: pytest.MonkeyPatch, var: str, value: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ValidationError) as exc:
        OperatorSettings()
    assert var.removeprefix("GPUFLEET_").lower() in str(exc.value)


def test_every_setting_is_documented() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[3] / "docs" / "operator-settings.md").read_text()
    missing = [name for name in OperatorSettings.model_fields if f"`GPUFLEET_{name.upper()}`" not in doc]
    assert missing == []
