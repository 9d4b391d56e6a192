"""The operator image (operator-image/Dockerfile), as far as a machine without a container engine allows.

Parse it and check what the chart and the README rely on (pinned multi-stage base, non-root user
matching the chart, tini, `gpufleet run`, OCI labels, every COPY source present, nothing but the
operator's sources), then build a clean virtual environment exactly the way its build stage
does and run the entrypoint's `gpufleet run --help` from it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
DOCKERFILE = REPO / "operator-image" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        pending += (" " if pending else "") + line.removesuffix("\\").strip()
        if not line.endswith("\\"):
            word, _, rest = pending.partition(" ")
            out.append((word.upper(), rest.strip()))
            pending = ""
    assert not pending, "Dockerfile ends inside a continued instruction"
    return out


def stages() -> list[list[tuple[str, str]]]:
    groups: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            groups.append([])
        if groups:
            groups[-1].append(ins)
    return groups


def build_args() -> dict[str, str]:
    return {
        name: value
        for word, rest in instructions()
        if word == "ARG" and "=" in rest
        for name, value in [rest.split("=", 1)]
    }


def test_multi_stage_on_a_base_pinned_by_digest() -> None:
    froms = [rest for word, rest in instructions() if word == "FROM"]
    assert len(froms) >= 2
    base = build_args()["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.\d+-slim-\w+@sha256:[0-9a-f]{64}", base), base
    for rest in froms:
        image = rest.split()[0]
        assert image == "${PYTHON_IMAGE}" or "@sha256:" in image, f"FROM {rest}: not pinned"


def test_runtime_is_non_root_with_tini_and_gpufleet_run_and_oci_labels() -> None:
    runtime = stages()[-1]
    words = dict(runtime)
    user = words["USER"].split(":")[0]
    assert user.isdigit()
    assert int(user) != 0
    values = yaml.safe_load((REPO / "charts" / "gpufleet" / "values.yaml").read_text())
    assert int(user) == values["podSecurity"]["runAsUser"], "the chart's runAsUser must be the image's user"
    entrypoint = json.loads(words["ENTRYPOINT"])
    cmd = json.loads(words["CMD"])
    assert entrypoint[:2] == ["/usr/bin/tini", "--"]
    assert entrypoint[2:] + cmd == ["gpufleet", "run"]
    assert "tini" in words["RUN"]
    labels = " ".join(rest for word, rest in runtime if word == "LABEL")
    for key in ("title", "description", "version", "revision", "source", "licenses", "base.name"):
        assert f"org.opencontainers.image.{key}=" in labels, key
    assert not any(w == "COPY" and "--from=" not in r for w, r in runtime), "runtime copies only the venv"


def _copies() -> list[tuple[list[str], str]]:
    out = []
    for word, rest in instructions():
        if word == "COPY" and "--from=" not in rest:
            parts = [p for p in shlex.split(rest) if not p.startswith("--")]
            out.append((parts[:-1], parts[-1]))
    return out


def test_every_copied_path_exists_and_only_the_operator_is_copied() -> None:
    sources = [s for srcs, _ in _copies() for s in srcs]
    assert sources
    for src in sources:
        assert (REPO / src).exists(), f"COPY {src}: no such path in the repository"
    assert not any(s.startswith(("node-image", "devtools", "tests")) for s in sources), sources


def test_the_chart_deploys_this_image() -> None:
    values = yaml.safe_load((REPO / "charts" / "gpufleet" / "values.yaml").read_text())
    assert values["image"]["repository"] == "ghcr.io/gpufleet/gpufleet-operator"
    assert "ghcr.io/gpufleet/gpufleet-operator" in DOCKERFILE.read_text()
    deployment = (REPO / "charts" / "gpufleet" / "templates" / "deployment.yaml").read_text()
    assert "command:" not in deployment.split("- name: operator", 1)[1].split("env:", 1)[0]


def test_requirements_are_the_operators_dependencies() -> None:
    sys.path.insert(0, str(REPO / "operator-image"))
    try:
        from requirements import operator_requirements  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    reqs = operator_requirements(REPO / "pyproject.toml")
    names = {re.split(r"[<>=!~\[ ]", r, maxsplit=1)[0].lower() for r in reqs}
    assert {"kopf", "kubernetes", "pydantic", "pydantic-settings", "prometheus-client"} <= names
    assert "nvidia-ml-py" not in names


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_venv_built_like_the_image_runs_gpufleet_run_help(tmp_path: Path) -> None:
    """The build stage's RUN, step by step, on the build context its COPYs produce."""
    src = tmp_path / "src"
    for sources, dest in _copies():
        for s in sources:
            # `COPY a b ./` puts a and b in the work dir; `COPY dir ./dir` copies to that path.
            target = src / Path(s).name if dest in ("./", ".") else src / dest
            target.parent.mkdir(parents=True, exist_ok=True)
            if (REPO / s).is_dir():
                shutil.copytree(REPO / s, target, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
            else:
                shutil.copy2(REPO / s, target)
    assert (src / "pyproject.toml").exists()
    assert (src / "operator" / "gpufleet" / "cli" / "cmd_run.py").exists()
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "GPUFLEET_"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"

    def run(*cmd: str | Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(c) for c in cmd], cwd=src, env=env, capture_output=True, text=True, timeout=timeout
        )

    assert run(sys.executable, "-m", "venv", venv).returncode == 0
    reqs = run(sys.executable, "operator-image/requirements.py", "pyproject.toml")
    assert reqs.returncode == 0, reqs.stderr
    (tmp_path / "requirements.txt").write_text(reqs.stdout)
    pip = venv / "bin" / "pip"
    deps = run(pip, "install", "--quiet", "--requirement", tmp_path / "requirements.txt")
    if deps.returncode != 0 and re.search(
        r"NewConnectionError|Temporary failure in name resolution|No matching", deps.stderr
    ):
        pytest.skip(f"PyPI not reachable: {deps.stderr.strip().splitlines()[-1]}")
    assert deps.returncode == 0, deps.stderr
    own = run(pip, "install", "--quiet", "--no-deps", src)
    assert own.returncode == 0, own.stderr
    helped = run(venv / "bin" / "gpufleet", "run", "--help", timeout=120)
    assert helped.returncode == 0, helped.stderr
    assert "usage: gpufleet run" in helped.stdout
    assert "--log-format" in helped.stdout
    installed = run(pip, "list", "--format=json")
    names = {p["name"].lower() for p in json.loads(installed.stdout)}
    assert "nvidia-ml-py" not in names
    assert "gpufleet-devtools" not in names
    assert "kopf" in names
