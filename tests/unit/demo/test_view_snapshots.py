"""The demo's live view at 80x24, 120x40 and 160x50, against committed snapshots.

Besides the exact picture (regenerate with ``UPDATE_SNAPSHOTS=1`` after a deliberate change and
review the diff), each size must hold what the issue asked for: nothing beyond the terminal,
versions and pool names never truncated, the Events panel whole, and the version column showing
no version where no engine serves (so it agrees with the phase summaries).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from gpufleet_demo.view import DEVICE_COLUMNS, choose_columns, render_text

HERE = Path(__file__).parent
SNAPSHOT: dict[str, Any] = json.loads((HERE / "fixtures" / "final_snapshot.json").read_text())
SIZES = [(80, 24), (120, 40), (160, 50)]
PHASE = {"phase": "release 1.2.0 (crash_loop)", "progress": ("rollout 1.2.0", 1, 3)}


def _live(width: int, height: int) -> str:
    return render_text(SNAPSHOT, width, height, **PHASE)


@pytest.mark.parametrize(("width", "height"), SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_live_view_matches_the_committed_snapshot(width: int, height: int) -> None:
    path = HERE / "snapshots" / f"live_{width}x{height}.txt"
    text = _live(width, height)
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no snapshot {path}: run with UPDATE_SNAPSHOTS=1 and review it"
    assert text == path.read_text()


@pytest.mark.parametrize(("width", "height"), SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_live_view_fits_and_cuts_nothing_that_matters(width: int, height: int) -> None:
    lines = _live(width, height).rstrip("\n").split("\n")
    assert len(lines) <= height
    assert max(len(line) for line in lines) <= width
    body = "\n".join(lines)
    for pool in SNAPSHOT["pools"]:
        assert f"pool {pool['name']}" in body  # device section headings, whole
    assert "…" not in "\n".join(line for line in lines if not line.startswith("│"))
    assert lines[-1].startswith("╰"), "the Events panel must be closed, not cut off"
    assert any(line.startswith("╭") and "Events" in line for line in lines)
    served = {n["currentVersion"] for n in SNAPSHOT["inferenceNodes"]}
    for version in served:
        assert f" {version}" in body
    for d in SNAPSHOT["devices"]:
        assert f" {d['inferenceNode']}" in body


def test_blocked_devices_show_no_version_and_the_summary_agrees() -> None:
    text = _live(160, 50)
    for line in text.splitlines():
        if "BLOCKED" in line:
            assert line.rstrip().endswith("-"), line
    on_halted = [
        line for line in text.splitlines() if line.rstrip().endswith(" 1.2.0") and "BLOCKED" not in line
    ]
    assert on_halted == []  # "0 serving nodes on 1.2.0", as the phase summary says


def test_columns_degrade_by_priority() -> None:
    widths = dict.fromkeys(DEVICE_COLUMNS, 8)
    assert choose_columns(widths, 8 * 4 + 2 * 3) == ["node", "gpu", "state", "version"]
    assert choose_columns(widths, 10_000) == [
        "node",
        "gpu",
        "product",
        "GiB",
        "engine",
        "share",
        "eff. stake",
        "priority",
        "state",
        "version",
    ]


def test_printed_final_state_has_every_section() -> None:
    text = render_text(SNAPSHOT, 120, None, phase="final state")
    for title in ("GPU devices", "Operator pools", "Engine releases", "Events"):
        assert title in text
    assert "HALTED" in text


def test_once_progress_lines_and_keep_running_message() -> None:
    from types import SimpleNamespace

    from gpufleet_demo.cli import RUNNING_PHASE, progress_text, scenario_done_message

    assert progress_text("fleet converges", ("engine pods ready", 5, 9)) == (
        "fleet converges: engine pods ready 5/9"
    )
    assert progress_text(RUNNING_PHASE, None) == ""
    phases = [SimpleNamespace(name="fleet converges", outcome="Converged")]
    demo = SimpleNamespace(result=SimpleNamespace(phases=phases, ok=True))
    message = scenario_done_message(demo, Path("/tmp/kc"))
    assert message.startswith("scenario done (OK: fleet converges: Converged)")
    assert "kubectl --kubeconfig /tmp/kc" in message
    assert message.endswith("Press Ctrl-C to stop.")
