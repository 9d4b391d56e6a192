"""The fake engine reads the real engine command lines the hardware layer builds."""

from __future__ import annotations

import pytest

from gpufleet.hardware.engine_select import engine_command
from gpufleet_fakeengine.engine import UsageError, parse_command


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_reads_flavour_port_and_model_from_the_hardware_layers_command(engine: str) -> None:
    command = engine_command(engine, "Qwen/Qwen3-8B", 8123, max_model_len=4096)  # type: ignore[arg-type]
    args = parse_command(command, {})
    assert (args.flavour, args.port, args.model, args.host) == (engine, 8123, "Qwen/Qwen3-8B", "0.0.0.0")
    assert args.served_names == ["Qwen/Qwen3-8B"]


def test_served_model_names_and_flavour_override() -> None:
    argv = ["vllm", "serve", "m", "--served-model-name", "a", "b", "--port=9000"]
    args = parse_command(argv, {"FAKE_ENGINE_FLAVOUR": "sglang"})
    assert args.flavour == "sglang"
    assert args.port == 9000
    assert args.served_names == ["a", "b"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["python", "-m", "tgi"], "cannot tell the engine flavour"), (["vllm", "serve"], "no model")],
)
def test_unusable_command_lines_are_rejected(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_command(argv, {})
