"""`gpufleet simulate` and `gpufleet simulate sweep` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from gpufleet.cli import main
from gpufleet.simulate.scenario import default_scenario_text

TINY = [
    "--set",
    "operators.count=12",
    "--set",
    "duration_s=60",
    "--set",
    "warmup_s=10",
    "--set",
    "reputation.enabled=false",
]


def test_print_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--print-scenario"]) == 0
    out = capsys.readouterr().out
    assert out == default_scenario_text()
    assert yaml.safe_load(out)["operators"]["count"] == 1000


def test_run_writes_json_and_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.json"
    assert main(["simulate", *TINY, "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["fleet"]["operators"] == 12
    assert len(data["by_stake_decile"]) == 10
    assert "queueing delay" in capsys.readouterr().out


def test_scenario_file_and_bad_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "s.yaml"
    good.write_text("operators: {count: 8}\nduration_s: 30\nwarmup_s: 0\nreputation: {enabled: false}\n")
    assert main(["simulate", str(good), "--quiet", "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["fleet"]["operators"] == 8
    bad = tmp_path / "bad.yaml"
    bad.write_text("arrivals: {load: -2}\n")
    assert main(["simulate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err
    assert "arrivals.load" in err


def test_sweep_small(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sweep.json"
    md = tmp_path / "sweep.md"
    code = main(
        [
            "simulate",
            "sweep",
            *TINY,
            "--set",
            "router.overflow=retry",
            "--set",
            "router.attempts=2",
            "--k-grid",
            "0,1e-3",
            "--loads",
            "0.2,0.9",
            "--duration",
            "60",
            "--warmup",
            "10",
            "--no-controller",
            "--json",
            str(out),
            "--markdown",
            str(md),
            "--quiet",
        ]
    )
    assert code == 0
    data = json.loads(out.read_text())
    assert [lv["load"] for lv in data["levels"]] == [0.2, 0.9]
    for level in data["levels"]:
        assert [c["k"] for c in level["cells"]] == [0.0, 0.001]
        meeting = [c["k"] for c in level["cells"] if c["meets_slo"]]
        assert level["optimal_k"] == (max(meeting) if meeting else None)
    assert md.read_text().startswith("| load | optimal k")


def test_sweep_rejects_unknown_metric(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "sweep", *TINY, "--metric", "vibes"]) == 2
    assert "unknown objective metric" in capsys.readouterr().err
