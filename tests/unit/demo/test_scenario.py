"""The demo scenario file: the default one loads, and bad files get specific errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpufleet_demo.scenario import ScenarioError, default_scenario_text, load_scenario, parse_scenario


def test_default_scenario_has_the_announcement_example() -> None:
    scenario = load_scenario()
    profiles = {n.profile for n in scenario.nodes}
    assert {"rtx4090-x4", "a100-80gb-x1", "bad-unknown-gpu", "bad-rtx4090-48gb"} <= profiles
    assert [r.expect for r in scenario.rollouts] == ["Succeeded", "Halted"]
    assert len(scenario.of_kind("OperatorPool")) == 3


@pytest.mark.parametrize(
    ("mutation", "message"),
    [
        (
            lambda t: t.replace("profile: rtx4090-x4", "profile: rtx9999-x4"),
            "unknown hardware profile 'rtx9999-x4'",
        ),
        (lambda t: t.replace("expect: Halted", "expect: Exploded"), "rollouts.1.expect"),
        (lambda t: t.replace("@sha256:12000", ":latest#"), "by digest"),
        (lambda t: t.replace("namespace: fleet", "namespace: fleet\nextra: 1"), "extra"),
        (lambda t: "just a string", "a scenario is a mapping"),
        (lambda t: "nodes: [", "not valid YAML"),
    ],
)
def test_bad_scenarios_are_rejected_with_a_reason(mutation: object, message: str) -> None:
    text = mutation(default_scenario_text())  # type: ignore[operator]
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(text, source="test.yaml")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read scenario"):
        load_scenario(tmp_path / "nope.yaml")
