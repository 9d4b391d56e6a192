"""What the agent needs to know about each engine flavour, and how it turns a command into a process.

The hardware layer decides *which* engine runs and builds its command line; this module only knows the
engine's HTTP surface (health path) and where its interpreter lives inside the unified image, where
vLLM and SGLang sit in separate virtual environments because their torch pins conflict.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal

EngineName = Literal["vllm", "sglang"]
ENGINES: tuple[EngineName, ...] = ("vllm", "sglang")
DEFAULT_VENV_ROOT = "/opt/venvs"
_PYTHON_NAMES = frozenset({"python", "python3"})


@dataclass(frozen=True)
class EngineFlavour:
    """The HTTP surface of one engine that the agent relies on."""

    name: EngineName
    health_path: str
    completions_path: str = "/v1/completions"
    metrics_path: str = "/metrics"
    models_path: str = "/v1/models"


FLAVOURS: dict[EngineName, EngineFlavour] = {
    # vLLM's OpenAI server answers /health with 200 once the engine loop is alive.
    "vllm": EngineFlavour(name="vllm", health_path="/health"),
    # SGLang's /health is cheap; /health_generate runs a generation, which our smoke completion covers.
    "sglang": EngineFlavour(name="sglang", health_path="/health"),
}


def parse_engine(value: str) -> EngineName:
    """Validate an engine name coming from the operator or the hardware layer."""
    lowered = value.strip().lower()
    for name in ENGINES:
        if lowered == name:
            return name
    raise ValueError(f"unknown engine {value!r}: expected one of {', '.join(ENGINES)}")


def venv_dir(engine: EngineName, venv_root: str = DEFAULT_VENV_ROOT) -> PurePosixPath:
    """The virtual environment that holds one engine inside the image."""
    return PurePosixPath(venv_root) / engine


def resolve_interpreter(
    command: Sequence[str], engine: EngineName, venv_root: str = DEFAULT_VENV_ROOT
) -> list[str]:
    """Point a bare ``python``/console-script command at the engine's own virtual environment.

    The hardware layer builds portable commands (``python -m ...`` or ``vllm serve ...``); inside the
    image each engine must run from its venv, so bare names are rewritten to ``<venv>/bin/<name>``.
    Absolute paths are left alone: someone chose them on purpose.
    """
    if not command:
        raise ValueError("engine command is empty")
    head = command[0]
    if "/" in head:
        return list(command)
    bin_dir = venv_dir(engine, venv_root) / "bin"
    name = "python" if head in _PYTHON_NAMES else head
    return [str(bin_dir / name), *command[1:]]


def apply_launcher(command: Sequence[str], launcher: str | None) -> list[str]:
    """Prefix the real command with a launcher (tests: the fake engine) without changing it.

    The launcher receives the complete real command line as its arguments, so the fake engine can
    check it and the agent still reports exactly what it would have run.
    """
    if not launcher:
        return list(command)
    prefix = shlex.split(launcher)
    if not prefix:
        raise ValueError("GPUFLEET_ENGINE_LAUNCHER is set but empty")
    return [*prefix, *command]
