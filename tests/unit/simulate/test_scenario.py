"""Scenarios: the packaged default is the documented default, and bad files fail once, clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gpufleet.simulate.fleet import build_fleet
from gpufleet.simulate.scenario import Scenario, ScenarioError, default_scenario_text, load_scenario

from .conftest import small


def test_packaged_default_equals_model_defaults() -> None:
    # --print-scenario shows every default; a drift between the YAML and the model is a lie.
    assert load_scenario() == Scenario()


def test_print_scenario_text_is_a_complete_scenario() -> None:
    data = yaml.safe_load(default_scenario_text())
    assert set(data) == set(Scenario.model_fields)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("operators: {count: 0}", "operators.count"),
        ("operators: {gpus: {not-a-gpu: 1}}", "operators.gpus"),
        ("arrivals: {load: 3}", "arrivals.load"),
        ("router: {policy: least-request}", "router.policy"),
        ("k: {mode: static, valeu: 1}", "k.valeu"),
        ("requests: {output_tokens: {distribution: lognormal}}", "requests.output_tokens"),
        ("models: []", "models"),
    ],
)
def test_bad_file_names_file_and_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as exc:
        load_scenario(path)
    message = str(exc.value)
    assert message.startswith(str(path) + ":")
    assert field in message


def test_not_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "x.yaml"
    bad.write_text("a: [1, 2")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(bad)
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.yaml")
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ScenarioError, match="a scenario is a mapping"):
        load_scenario(bad)


def test_overrides_are_validated() -> None:
    assert load_scenario(None, {"arrivals.load": 0.9}).arrivals.load == 0.9
    with pytest.raises(ScenarioError, match=r"arrivals\.load"):
        load_scenario(None, {"arrivals.load": -1})


def test_fleet_is_deterministic_and_uses_project_effective_stake() -> None:
    scn = small(operators__count=50, operators__devices_per_operator={1: 0.5, 4: 0.5})
    a, b = build_fleet(scn), build_fleet(scn)
    assert a.dev_eff_stake_base == b.dev_eff_stake_base
    assert a.op_stake_base == b.op_stake_base
    # Devices of one pool split its stake by VRAM share and never create stake.
    for op, ids in enumerate(a.op_devices):
        assert sum(a.dev_eff_stake_base[d] for d in ids) <= a.op_stake_base[op]
    unstaked = sum(1 for s in a.op_stake_base if s == 0)
    assert unstaked == round(0.25 * 50)


def test_stake_distributions() -> None:
    fixed = build_fleet(small(operators__stake={"distribution": "fixed", "values_int": [5, 7]}))
    assert fixed.op_stake_base[:4] == [5 * 10**9, 7 * 10**9, 5 * 10**9, 7 * 10**9]
    logn = build_fleet(
        small(
            operators__stake={
                "distribution": "lognormal",
                "median_int": 1000,
                "sigma": 0.5,
                "unstaked_fraction": 0,
            }
        )
    )
    assert all(s > 0 for s in logn.op_stake_base)
    with pytest.raises(ScenarioError, match="values_int"):
        small(operators__stake={"distribution": "fixed"})
