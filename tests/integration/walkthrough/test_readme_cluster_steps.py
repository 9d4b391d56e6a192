"""The README's cluster steps, run exactly as written with a real kubectl against `gpufleet devcluster`.

The bash block after the ``cluster-steps`` marker in README.md is run verbatim (a trap that stops
what it started on failure is the only addition), and the test asserts what a user must see:
ready devices, shares, the blocked GPU's reason, Events with reasons and messages.

By default it runs in this checkout with its ``.venv``; ``GPUFLEET_WALKTHROUGH_CLONE=1`` runs it
from a fresh ``git clone`` after the README's install command (minutes, needs PyPI).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
KUBECTL = shutil.which("kubectl")
pytestmark = [
    pytest.mark.skipif(KUBECTL is None, reason="no kubectl on PATH"),
    pytest.mark.timeout(900),
]
MARKER = "<!-- cluster-steps:"
PID_FILE = "/tmp/gpufleet-dev.kubeconfig.pid"
CLEANUP = f"trap 'kill $(jobs -p); [ -f {PID_FILE} ] && kill $(cat {PID_FILE})' EXIT 2>/dev/null\n"


def readme_block(after: str | None) -> str:
    """The first ```bash block of README.md (after the line starting with ``after``, if given)."""
    lines = (REPO / "README.md").read_text().splitlines()
    start = 0 if after is None else next(i for i, line in enumerate(lines) if line.startswith(after))
    begin = next(i for i in range(start, len(lines)) if lines[i].strip() == "```bash") + 1
    end = next(i for i in range(begin, len(lines)) if lines[i].strip() == "```")
    return "\n".join(lines[begin:end]) + "\n"


def _where() -> Path:
    if os.environ.get("GPUFLEET_WALKTHROUGH_CLONE") != "1":
        return REPO
    clone = Path(os.environ.get("TMPDIR", "/tmp")) / "gpufleet-walkthrough-clone"
    shutil.rmtree(clone, ignore_errors=True)
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=300)
    install = readme_block(None).replace(" && .venv/bin/gpufleet demo --once", "")
    subprocess.run(["bash", "-e", "-c", install], cwd=clone, check=True, timeout=900)
    return clone


@pytest.fixture(scope="module", params=["emulator", "real"])
def output(request: pytest.FixtureRequest) -> str:
    """What the steps print, on the emulator and (as the README says: add ``--backend real``) on a
    real kube-apiserver/etcd/kwok control plane where that can run here."""
    steps = readme_block(MARKER)
    assert "kubectl create namespace fleet" in steps
    if request.param == "real":
        from tests.integration.conftest import real_unavailable

        reason = real_unavailable()
        if reason is not None:
            pytest.skip(reason)
        first, _, rest = steps.partition("\n")
        assert first.endswith(" --detach"), first
        assert "--backend real" in (REPO / "README.md").read_text()
        steps = f"{first} --backend real\n{rest}"
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG" and not k.startswith("GPUFLEET_")}
    proc = subprocess.run(
        ["bash", "-e", "-c", CLEANUP + steps],
        cwd=_where(),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (
        f"README cluster steps failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    )
    return proc.stdout


def _table(out: str, header_start: str) -> list[dict[str, str]]:
    """Rows of the kubectl table whose header starts with ``header_start``."""
    lines = out.splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith(header_start))
    header = lines[i]
    starts = [m.start() for m in re.finditer(r"(?<!\S)\S", header)]
    names = [header[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
    rows = []
    for line in lines[i + 1 :]:
        if not line.strip() or line.startswith(("NAME ", "LAST SEEN")) or not line[0].isalnum():
            break
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        rows.append(dict(zip(names, cells, strict=True)))
    return rows


def test_every_valid_gpu_is_ready_and_the_liar_is_not(output: str) -> None:
    rows = {r["NAME"]: r for r in _table(output, "NAME          POOL")}
    assert set(rows) == {"rtx4090-box", "a100-box", "h100-box", "liar-box"}
    for name, gpus in (("rtx4090-box", "4"), ("a100-box", "1"), ("h100-box", "8")):
        assert (rows[name]["GPUS"], rows[name]["READY"], rows[name]["STATUS"]) == (gpus, gpus, "True"), rows[
            name
        ]
    assert (rows["liar-box"]["READY"], rows["liar-box"]["STATUS"]) == ("0", "False")
    assert rows["rtx4090-box"]["POOL"] == "operator-a"
    assert rows["a100-box"]["VERSION"] == "1.4.2"


def test_shares_follow_vram_within_each_pool(output: str) -> None:
    lines = output.splitlines()
    i = next(n for n, line in enumerate(lines) if re.match(r"NAME\s+SHARE\s+STAKE\s+PRIORITY", line))
    shares = {}
    for line in lines[i + 1 : i + 5]:
        name, share, stake, priority = line.split()
        shares[name] = (share, stake, priority)
    assert shares["rtx4090-box"] == ("0.25,0.25,0.25,0.25", "25000,25000,25000,25000", "3.5,3.5,3.5,3.5")
    assert shares["a100-box"][0] == "0.111548"
    assert set(shares["h100-box"][0].split(",")) == {"0.111056"}
    assert shares["liar-box"][0] in ("0", "<none>")


def test_the_blocked_gpu_says_why(output: str) -> None:
    assert re.search(r"^VRAMMismatch: GPU 0 \(NVIDIA GeForce RTX 4090\) reports 49140 MiB", output, re.M)


def test_events_carry_reasons_and_messages(output: str) -> None:
    events = _table(output, "LAST SEEN")
    seen = {(e["TYPE"], e["REASON"], e["OBJECT"]): e["MESSAGE"] for e in events}
    assert "VRAMMismatch" in seen[("Warning", "DeviceBlocked", "inferencenode/liar-box")]
    assert "rtx4090-box-gpu-0" in seen[("Normal", "PodCreated", "inferencenode/rtx4090-box")]
    assert (
        "identified as NVIDIA A100 80GB PCIe" in seen[("Normal", "DeviceValidated", "inferencenode/a100-box")]
    )
    assert ("Normal", "MinimumMet", "operatorpool/operator-a") in seen


#: What the runbooks' placeholders stand for on the walkthrough's fleet.
RUNBOOK_VARS = {
    "$NS": "fleet",
    "$INODE": "liar-box",
    "$POOL": "operator-a",
    "$REL": "engine-1.4.2",
    "$POD": "rtx4090-box-gpu-0",
}
#: Runbook commands about things the emulated cluster has not got (the operator's Deployment, the
#: reputation controller's Penalty objects, a node named gpu-0).
NOT_ON_THE_DEVCLUSTER = ("deploy", "penalties", "gpu-0 ", "<", "$OPNS")


def runbook_reads() -> list[str]:
    """Every read-only `kubectl get` the runbooks tell a person to type, placeholders filled in."""
    commands = []
    for path in sorted((REPO / "docs" / "runbooks").glob("*.md")):
        for line in path.read_text().splitlines():
            text = line.strip().split(" | ")[0].split("   #")[0].strip()
            if not text.startswith("kubectl get ") or any(s in text for s in NOT_ON_THE_DEVCLUSTER):
                continue
            for var, value in RUNBOOK_VARS.items():
                text = text.replace(var, value)
            if "$" not in text and text not in commands:
                commands.append(text)
    return commands


def test_runbook_commands_work_on_the_walkthrough_fleet() -> None:
    """The runbooks' troubleshooting reads (events with columns and field selectors, -o wide,
    jsonpath, labels) answer on the README's devcluster fleet, with a real kubectl."""
    commands = runbook_reads()
    assert len(commands) >= 10
    steps = readme_block(MARKER).rstrip("\n").splitlines()
    assert steps[-1].startswith("kill ")
    script = "\n".join(steps[:-1]) + "\n"
    for i, cmd in enumerate(commands):
        err = "/tmp/gpufleet-runbook.err"
        script += f'{cmd} > /dev/null 2> {err} || echo "@@@ FAIL {i} $(cat {err})"\n'
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG" and not k.startswith("GPUFLEET_")}
    proc = subprocess.run(
        ["bash", "-e", "-c", CLEANUP + script], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    failed = [line for line in proc.stdout.splitlines() if line.startswith("@@@ FAIL")]
    assert [f"{commands[int(f.split()[2])]}: {' '.join(f.split()[3:])}" for f in failed] == []
