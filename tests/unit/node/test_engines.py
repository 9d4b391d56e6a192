"""Engine flavours, interpreter resolution and the launcher override."""

from __future__ import annotations

import pytest

from gpufleet_node.engines import FLAVOURS, apply_launcher, parse_engine, resolve_interpreter


def test_parse_engine_accepts_known_names_case_insensitively() -> None:
    assert parse_engine(" vLLM ") == "vllm"
    assert parse_engine("sglang") == "sglang"
    with pytest.raises(ValueError, match="unknown engine 'tgi'"):
        parse_engine("tgi")


def test_flavours_use_documented_health_endpoints() -> None:
    assert FLAVOURS["vllm"].health_path == "/health"
    assert FLAVOURS["sglang"].health_path == "/health"


def test_bare_python_runs_from_the_engine_venv() -> None:
    command = ["python", "-m", "sglang.launch_server", "--model-path", "m"]
    assert resolve_interpreter(command, "sglang") == [
        "/opt/venvs/sglang/bin/python", "-m", "sglang.launch_server", "--model-path", "m",
    ]


def test_console_script_runs_from_the_engine_venv() -> None:
    assert resolve_interpreter(["vllm", "serve", "m"], "vllm", "/v")[0] == "/v/vllm/bin/vllm"


def test_absolute_paths_are_kept() -> None:
    assert resolve_interpreter(["/usr/bin/python3", "-V"], "vllm") == ["/usr/bin/python3", "-V"]


def test_empty_command_is_an_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        resolve_interpreter([], "vllm")


def test_launcher_prefixes_the_unchanged_command() -> None:
    real = ["/opt/venvs/vllm/bin/vllm", "serve", "m", "--port", "8000"]
    assert apply_launcher(real, "/usr/bin/python3 -m gpufleet_fakeengine") == [
        "/usr/bin/python3", "-m", "gpufleet_fakeengine", *real,
    ]
    assert apply_launcher(real, None) == real
    with pytest.raises(ValueError, match="empty"):
        apply_launcher(real, "   ")
