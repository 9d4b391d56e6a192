"""`gpufleet gpus` and `gpufleet explain-engine` as a user calls them."""

from __future__ import annotations

import json

import pytest

from gpufleet.cli import main
from gpufleet.hardware.catalog import load_catalog


def test_gpus_json_lists_the_whole_catalog(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gpus", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["gpus"]) == len(load_catalog().gpus)
    l4 = next(g for g in doc["gpus"] if g["key"] == "l4")
    assert l4 == {
        "key": "l4",
        "nvmlNames": ["NVIDIA L4"],
        "pciDeviceIds": ["0x27b8"],
        "vramMiB": 23034,
        "vramAcceptedMiB": [22342, 23726],
        "computeCapability": "8.9",
        "architecture": "ada",
        "segment": "datacenter",
        "migCapable": False,
        "gfdProduct": "NVIDIA-L4",
    }


def test_gpus_table_and_filter(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gpus", "--architecture", "hopper"]) == 0
    out = capsys.readouterr().out
    assert "NVIDIA-H100-80GB-HBM3" in out
    assert "0x2330" in out
    assert "Tesla T4" not in out
    assert main(["gpus", "--architecture", "kepler"]) == 2


def test_explain_engine_for_a_catalog_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain-engine", "--gpu", "NVIDIA L4", "--model", "meta-llama/Llama-3.1-8B-Instruct"]) == 0
    out = capsys.readouterr().out
    assert "engine:  vllm" in out
    assert "rule:    DefaultVLLM" in out
    assert "command: vllm serve meta-llama/Llama-3.1-8B-Instruct --host 0.0.0.0 --port 8000" in out


def test_explain_engine_json_sglang_on_hopper(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["explain-engine", "--gpu", "h100-sxm", "--count", "8", "--cpu-cores", "128",
            "--memory-gib", "1024", "--model", "meta-llama/Llama-3.1-70B-Instruct",
            "--max-model-len", "8192", "--json"]  # fmt: skip
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["engine"] == "sglang"
    assert doc["rule"] == "SGLangOnHopperBlackwell"
    assert doc["command"][:3] == ["python", "-m", "sglang.launch_server"]
    assert "--tp-size" in doc["command"]
    assert doc["rulesPassed"][0] == "NoDevices"
    assert len(doc["inputs"]["devices"]) == 8


def test_explain_engine_refusal_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain-engine", "--profile", "t4-x1", "--model", "meta-llama/Llama-3.1-8B-Instruct"]) == 1
    out = capsys.readouterr().out
    assert "none (refused)" in out
    assert "InsufficientVRAM" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--gpu", "NVIDIA Voodoo 5", "--model", "x/y-8B"], "not in the catalog"),
        (["--gpu", "l4", "--model", "openai-community/gpt2"], "--params-billion"),
        (["--profile", "nope", "--model", "x/y-8B"], "no hardware profile"),
        (["--gpu", "l4", "--model", "x/y-8B", "--cuda", "latest"], "dotted numeric version"),
        (["--gpu", "l4", "--model", "x/y-8B", "--count", "0"], "must be positive"),
    ],
)
def test_explain_engine_bad_input(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain-engine", *argv]) == 2
    assert message in capsys.readouterr().err
