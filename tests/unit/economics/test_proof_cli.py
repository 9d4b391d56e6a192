"""``gpufleet economics proof`` and ``verify`` on Epoch files (the cluster path is in tests/integration)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from gpufleet.cli import main
from gpufleet.economics.merkle import Proof as MerkleProof
from gpufleet.economics.merkle import RewardLeaf, hash_leaf, verify_proof

EXAMPLE = Path(__file__).parents[3] / "examples" / "epoch.yaml"


def test_proof_of_the_example_verifies_independently(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["economics", "proof", "--epoch", "175", "--pool", "operator-a", "-f", str(EXAMPLE)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["pool"] == "default/operator-a"
    assert doc["verified"] is True
    leaf = RewardLeaf(doc["address"], doc["tokenAmount"], 0)
    assert hash_leaf(leaf).hex() == doc["leafHash"]
    assert doc["leafPreimage"] == "00" + leaf.data().hex()
    proof = MerkleProof(tuple(bytes.fromhex(h) for h in doc["proof"]), tuple(doc["proofPath"]))
    assert verify_proof(bytes.fromhex(doc["root"]), leaf, proof)


def test_verify_ok_and_tampered(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["economics", "verify", "-f", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("epoch 175: ok: 1666666.666666667 of 1666666.666666667 INT to 2 pools")
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["spec"]["pools"][0]["reward"] = "1194639.362512089"  # one base unit more
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    assert main(["economics", "verify", "-f", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out
    assert "emission" in out
    assert main(["economics", "proof", "--epoch", "175", "--pool", "operator-a", "-f", str(bad)]) == 1


def test_proof_and_verify_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["economics", "proof", "--epoch", "9", "--pool", "x", "-f", str(EXAMPLE)]) == 1
    assert "epoch 9 is not closed" in capsys.readouterr().err
    assert main(["economics", "proof", "--epoch", "175", "--pool", "ns/none", "-f", str(EXAMPLE)]) == 1
    assert "no line for pool ns/none" in capsys.readouterr().err
    assert main(["economics", "verify", "--epoch", "9", "-f", str(EXAMPLE)]) == 1
    assert "no closed epochs" in capsys.readouterr().err
    assert main(["economics", "verify", "-f", str(tmp_path / "missing.yaml")]) == 1
    assert "cannot read epochs" in capsys.readouterr().err
