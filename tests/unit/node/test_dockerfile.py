"""The engine image definition, checked by parsing (no Docker engine here)."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "node-image" / "Dockerfile"


@dataclass
class Instruction:
    keyword: str
    args: str


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse(text: str) -> tuple[list[Instruction], list[Stage]]:
    """Join continuation lines, drop comments, split into stages."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    assert not current, "Dockerfile ends inside a line continuation"
    globals_: list[Instruction] = []
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        instruction = Instruction(keyword.upper(), args.strip())
        if instruction.keyword == "FROM":
            parts = instruction.args.split()
            assert len(parts) == 3, f"unnamed stage: FROM {instruction.args}"
            assert parts[1].upper() == "AS", f"unnamed stage: FROM {instruction.args}"
            stages.append(Stage(base=parts[0], name=parts[2]))
        elif stages:
            stages[-1].instructions.append(instruction)
        else:
            globals_.append(instruction)
    return globals_, stages


GLOBALS, STAGES = parse(DOCKERFILE.read_text())
BY_NAME = {s.name: s for s in STAGES}
FINAL = STAGES[-1]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), args
    assert all(isinstance(v, str) for v in value), args
    return value


def test_stages_are_multi_stage_on_cuda_runtime() -> None:
    assert [s.name for s in STAGES] == ["base", "build", "vllm-venv", "sglang-venv", "agent-venv", "runtime"]
    assert BY_NAME["base"].base.startswith("nvidia/cuda:")
    assert "-runtime-" in BY_NAME["base"].base
    assert FINAL.base == "base"
    # Every stage builds on an earlier stage or the CUDA image.
    seen: set[str] = set()
    for stage in STAGES:
        assert stage.base in seen or stage.base.startswith("nvidia/cuda:"), stage.name
        seen.add(stage.name)


def test_global_args_have_defaults() -> None:
    args = dict(i.args.split("=", 1) for i in GLOBALS if i.keyword == "ARG")
    assert re.fullmatch(r"\d+\.\d+\.\d+", args["CUDA_VERSION"])


def _runs(stage: Stage) -> str:
    return "\n".join(i.args for i in stage.all("RUN"))


def test_no_build_tools_in_base_or_final_stage() -> None:
    for stage in (BY_NAME["base"], FINAL):
        runs = _runs(stage)
        for tool in ("build-essential", "gcc", "g++", "python3-dev", "git ", "cmake"):
            assert tool not in runs, f"{tool} installed in stage {stage.name}"
    assert "build-essential" in _runs(BY_NAME["build"])


def test_engines_live_in_separate_virtual_environments() -> None:
    vllm, sglang = _runs(BY_NAME["vllm-venv"]), _runs(BY_NAME["sglang-venv"])
    assert "python3 -m venv /opt/venvs/vllm" in vllm
    assert "/opt/venvs/vllm/bin/pip install" in vllm
    assert '"vllm==${VLLM_VERSION}"' in vllm
    assert "sglang" not in vllm
    assert "python3 -m venv /opt/venvs/sglang" in sglang
    assert "/opt/venvs/sglang/bin/pip install" in sglang
    assert "sglang[all]==${SGLANG_VERSION}" in sglang
    assert "vllm" not in sglang
    copies = {i.args for i in FINAL.all("COPY")}
    assert "--from=vllm-venv /opt/venvs/vllm /opt/venvs/vllm" in copies
    assert "--from=sglang-venv /opt/venvs/sglang /opt/venvs/sglang" in copies
    assert "--from=agent-venv /opt/venvs/agent /opt/venvs/agent" in copies
    env = " ".join(i.args for i in FINAL.all("ENV"))
    # The agent resolves each engine's interpreter under this root (gpufleet_node.engines).
    assert "GPUFLEET_VENV_ROOT=/opt/venvs" in env


def test_final_stage_runs_as_non_root() -> None:
    users = FINAL.all("USER")
    assert users, "final stage has no USER"
    user = users[-1].args.split(":")[0]
    assert user not in {"root", "0"}
    assert "useradd" in _runs(FINAL)
    assert f"--uid {user}" in _runs(FINAL)


def test_entrypoint_runs_the_agent_under_an_init() -> None:
    entrypoint = exec_form(FINAL.all("ENTRYPOINT")[-1].args)
    assert entrypoint[-2:] == ["/opt/venvs/agent/bin/gpufleet-node", "run"]
    assert entrypoint[0] == "/usr/bin/tini"
    assert "tini" in _runs(BY_NAME["base"])


def test_healthcheck_probes_the_agent() -> None:
    healthchecks = FINAL.all("HEALTHCHECK")
    assert len(healthchecks) == 1
    options, _, command = healthchecks[0].args.partition("CMD ")
    assert "--start-period=" in options
    argv = exec_form(command)
    assert argv[:2] == ["/opt/venvs/agent/bin/gpufleet-node", "probe"]
    # The probe sub-command exists in the agent package.
    assert (ROOT / "node-image" / "gpufleet_node" / "cmd_probe.py").exists()


def test_oci_labels_carry_version_and_revision() -> None:
    labels: dict[str, str] = {}
    for instruction in FINAL.all("LABEL"):
        for token in shlex.split(instruction.args):
            key, _, value = token.partition("=")
            labels[key] = value
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert labels["org.opencontainers.image.revision"] == "${REVISION}"
    assert labels["org.opencontainers.image.source"].startswith("https://")
    declared = {i.args.split("=")[0] for i in FINAL.all("ARG")}
    for used in re.findall(r"\$\{(\w+)\}", " ".join(labels.values())):
        assert used in declared, f"LABEL uses ${{{used}}} but the final stage does not declare ARG {used}"


def test_exposes_contract_ports() -> None:
    assert FINAL.all("EXPOSE")[-1].args.split() == ["8080", "8000"]


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_every_copy_source_exists(stage: Stage) -> None:
    for instruction in stage.all("COPY") + stage.all("ADD"):
        tokens = instruction.args.split()
        flags = [t for t in tokens if t.startswith("--")]
        paths = [t for t in tokens if not t.startswith("--")]
        sources = paths[:-1]
        assert sources, f"COPY without source: {instruction.args}"
        from_stage = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
        if from_stage is not None:
            assert from_stage in BY_NAME, f"COPY --from={from_stage}: no such stage"
            assert STAGES.index(BY_NAME[from_stage]) < STAGES.index(stage)
            continue
        for source in sources:
            assert (ROOT / source).exists(), f"COPY source {source} does not exist in the build context"


def test_agent_is_installed_with_node_extra_from_copied_sources() -> None:
    runs = _runs(BY_NAME["agent-venv"])
    assert '/opt/venvs/agent/bin/pip install --no-cache-dir "/src[node]"' in runs
    assert "node" in (ROOT / "pyproject.toml").read_text()
