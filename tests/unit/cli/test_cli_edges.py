"""The CLI's edges a new user hits first: no cluster, bad settings, GPU names, bad scenario files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gpufleet.cli import main
from gpufleet.cli.cmd_run import cluster_config_problem
from gpufleet.hardware.catalog import load_catalog, normalize_gpu_name, resolve_gpu, suggest_gpus

REPO = Path(__file__).resolve().parents[3]


# ------------------------------------------------------------------ gpufleet run without a cluster


def test_no_cluster_config_names_everything_it_looked_for(tmp_path: Path) -> None:
    problem = cluster_config_problem(None, {}, home=tmp_path, token_path=str(tmp_path / "token"))
    assert problem is not None
    for looked_for in ("--kubeconfig", "service account", "$KUBECONFIG", str(tmp_path / ".kube" / "config")):
        assert looked_for in problem
    assert "\n" not in problem


def test_each_cluster_config_source_is_enough(tmp_path: Path) -> None:
    token, cfg = tmp_path / "token", tmp_path / "cfg"
    home = tmp_path / "home"
    assert (
        cluster_config_problem(str(cfg), {}, home=home, token_path=str(token))
        == f"kubeconfig {cfg} does not exist"
    )
    cfg.write_text("apiVersion: v1\n")
    assert cluster_config_problem(str(cfg), {}, home=home, token_path=str(token)) is None
    listed = f"{tmp_path / 'nope'}{os.pathsep}{cfg}"
    assert cluster_config_problem(None, {"KUBECONFIG": listed}, home=home, token_path=str(token)) is None
    missing = cluster_config_problem(
        None, {"KUBECONFIG": str(tmp_path / "nope")}, home=home, token_path=str(token)
    )
    assert missing is not None
    assert "none of it exists" in missing
    (home / ".kube").mkdir(parents=True)
    (home / ".kube" / "config").write_text("apiVersion: v1\n")
    assert cluster_config_problem(None, {}, home=home, token_path=str(token)) is None
    token.write_text("t")
    assert cluster_config_problem(None, {}, home=tmp_path / "empty", token_path=str(token)) is None


@pytest.mark.skipif(
    os.path.exists("/var/run/secrets/kubernetes.io/serviceaccount/token"), reason="runs inside a cluster"
)
def test_gpufleet_run_without_any_cluster_exits_2_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG" and not k.startswith("GPUFLEET_")}
    env["HOME"] = str(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "gpufleet", "run"], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "no cluster configuration" in lines[0]
    assert "$KUBECONFIG" in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout


# ------------------------------------------------------------------ settings errors


@pytest.mark.parametrize(
    ("var", "value"),
    [("GPUFLEET_PRIORITY_K", "abc"), ("GPUFLEET_WORKERS", "0"), ("GPUFLEET_LOG_FORMAT", "xml")],
)
def test_settings_error_names_the_environment_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], var: str, value: str
) -> None:
    monkeypatch.setenv(var, value)
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert f"{var}={value!r}" in err
    assert len(err.strip().splitlines()) == 1


def test_settings_error_from_a_flag_names_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--metrics-port", "70000"]) == 2
    assert "--metrics-port (GPUFLEET_METRICS_PORT)=70000" in capsys.readouterr().err


# ------------------------------------------------------------------ GPU names


def _demo_product(name: str) -> str:
    from gpufleet_demo.view import _product

    return _product(name)


@pytest.mark.parametrize("gpu", load_catalog().gpus, ids=lambda g: g.key)
def test_every_name_people_see_resolves_to_its_gpu(gpu: object) -> None:
    from gpufleet.hardware.catalog import GPUModel

    assert isinstance(gpu, GPUModel)
    catalog = load_catalog()
    names = {gpu.key, gpu.key.upper()}
    for nvml in gpu.nvml_names:
        bare = nvml.removeprefix("NVIDIA ")
        names |= {nvml, bare, f"NVIDIA {bare}", nvml.lower(), _demo_product(nvml)}
    for label in gpu.gfd_products():
        names |= {label, f"{label}-SHARED", label.removeprefix("NVIDIA-")}
    for name in sorted(names):
        found = resolve_gpu(catalog, name)
        assert found is not None, name
        assert found.key == gpu.key, f"{name!r} -> {found.key}"


def test_normalised_names_are_unambiguous() -> None:
    from gpufleet.hardware.catalog import gpu_aliases

    owner: dict[str, str] = {}
    for gpu in load_catalog().gpus:
        for alias in gpu_aliases(gpu):
            assert owner.setdefault(alias, gpu.key) == gpu.key, alias
    assert normalize_gpu_name("NVIDIA-GeForce-RTX-4090-SHARED") == "geforce rtx 4090"


def test_suggestions_are_real_near_matches() -> None:
    catalog = load_catalog()
    a100 = suggest_gpus(catalog, "A100")
    assert a100
    assert all("A100" in s for s in a100), a100
    assert all(catalog.by_name(s) is not None for s in a100)
    assert suggest_gpus(catalog, "RTX 409") == ["NVIDIA GeForce RTX 4090"]
    assert suggest_gpus(catalog, "Voodoo 5") == []


@pytest.mark.parametrize("name", ["GeForce RTX 4090", "NVIDIA-GeForce-RTX-4090", "A100 80GB PCIe", "l40s"])
def test_explain_engine_accepts_the_names_people_see(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain-engine", "--gpu", name, "--model", "meta-llama/Llama-3.1-8B-Instruct"]) == 0
    assert "engine:  vllm" in capsys.readouterr().out


def test_explain_engine_suggests_a100_variants(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain-engine", "--gpu", "A100", "--model", "x/y-8B"]) == 2
    err = capsys.readouterr().err
    assert "'NVIDIA A100 80GB PCIe'" in err
    assert "'NVIDIA A10'" not in err
    assert "h200" not in err.lower()


# ------------------------------------------------------------------ scenario files


def _bad_scenario(tmp_path: Path, old: str, new: str) -> Path:
    from gpufleet_demo.scenario import default_scenario_text

    text = default_scenario_text()
    assert old in text
    path = tmp_path / "scenario.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "kind: OperatorPool",
            "kind: OperatorPoool",
            ["objects[1]", "'operator-a'", "did you mean 'OperatorPool'"],
        ),
        ("maxUnavailable: 2", 'maxUnavailable: "two"', ["'rtx4090-box'", "spec.updatePolicy.maxUnavailable"]),
        ("commissionBps: 500", "commissionBps: 500, comission: 1", ["'operator-a'", "spec.comission"]),
        ("channel: stable", "channel: 7", ["objects[0]", "'engine-1.0.0'", "spec.channel"]),
    ],
)
def test_bad_scenario_object_is_one_clean_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, expected: list[str]
) -> None:
    path = _bad_scenario(tmp_path, old, new)
    assert main(["demo", "--scenario", str(path), "--once"]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    assert captured.err.startswith(f"gpufleet demo: error: {path}: ")
    for text in expected:
        assert text in captured.err


def test_a_closed_pipe_is_not_a_traceback() -> None:
    """`gpufleet explain-engine ... | head -1`: the reader leaves, the command exits quietly (141)."""
    code = (
        "import argparse\n"
        "from gpufleet.cli import run_command\n"
        "def handler(args):\n"
        "    raise BrokenPipeError(32, 'Broken pipe')\n"
        "p = argparse.ArgumentParser()\n"
        "p.set_defaults(func=handler)\n"
        "raise SystemExit(run_command(p, []))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 141
    assert proc.stderr == ""
