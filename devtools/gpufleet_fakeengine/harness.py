"""Helpers for tests that run the fake engine (directly or under the real agent)."""

from __future__ import annotations

import os
import shlex
import socket
import sys
from collections.abc import Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = f"{shlex.quote(sys.executable)} -m gpufleet_fakeengine"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def real_command(flavour: str, model: str, port: int) -> list[str]:
    """A command line shaped like the one the hardware layer builds for each engine."""
    if flavour == "vllm":
        return ["/opt/venvs/vllm/bin/vllm", "serve", model, "--host", "127.0.0.1", "--port", str(port)]
    return [
        "/opt/venvs/sglang/bin/python", "-m", "sglang.launch_server", "--model-path", model,
        "--host", "127.0.0.1", "--port", str(port), "--enable-metrics",
    ]


def fake_argv(flavour: str, model: str, port: int) -> list[str]:
    return [*shlex.split(LAUNCHER), *real_command(flavour, model, port)]


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test process's environment, minus stray fake-engine switches, plus the repo on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAKE_ENGINE_", "GPUFLEET_"))}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT), *(p for p in [env.get("PYTHONPATH")] if p)]
    )
    env.update(extra or {})
    return env
