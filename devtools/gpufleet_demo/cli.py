"""`gpufleet demo`: a simulated fleet run by the real operator, live in the terminal."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "demo",
        help="run a simulated GPU fleet (emulated cluster, real operator) and watch it live",
        description="Start the Kubernetes API emulator with simulated GPU nodes and node agents, run "
        "the real gpufleet operator against it, apply a scenario (pools, nodes, releases), roll out "
        "a good and a bad engine release, and show devices, shares, priorities and events.",
    )
    parser.add_argument(
        "--scenario",
        type=Path,
        help="Scenario YAML (default: the packaged one; print it with --print-scenario).",
    )
    parser.add_argument("--print-scenario", action="store_true", help="Print the default scenario and exit.")
    parser.add_argument("--once", action="store_true", help="No live view: print the final state and exit.")
    parser.add_argument("--json", action="store_true", help="Print the final state as JSON (implies --once).")
    parser.add_argument(
        "--kubeconfig-out",
        type=Path,
        help="Write a kubeconfig for the emulated cluster here (usable while the demo runs).",
    )
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="After the scenario, keep the cluster and operator up until Ctrl-C.",
    )
    parser.add_argument("--phase-timeout", type=float, default=40.0, help="Seconds each phase may take.")
    parser.add_argument(
        "--epochs",
        action="store_true",
        help="After the rollouts, close two short epochs and show rewards and points per pool.",
    )
    parser.add_argument(
        "--traffic",
        action="store_true",
        help="After the rollouts, send requests through the real stake-weighted router (Envoy) to fake "
        "engines and show each device's priority, intended and observed share, at k = 0 and at the "
        "operator's k.",
    )
    parser.set_defaults(func=run)


RUNNING_PHASE = "running (Ctrl-C to stop)"


def progress_text(phase: str, progress: tuple[str, int, int] | None) -> str:
    """``fleet converges: engine pods ready 5/9`` (what --once prints to stderr as it goes)."""
    if not phase or phase in ("done", RUNNING_PHASE):
        return ""
    if progress is None:
        return phase
    label, done, total = progress
    return f"{phase}: {label} {done}/{total}"


def scenario_done_message(demo: Any, kubeconfig: Path | None) -> str:
    """What --keep-running says once the scenario is over: how it went, where to look, how to stop."""
    phases = ", ".join(f"{p.name}: {p.outcome}" for p in demo.result.phases)
    verdict = "OK" if demo.result.ok else "NOT AS EXPECTED"
    where = (
        f" kubectl --kubeconfig {kubeconfig} get inferencenodes -A shows the fleet."
        if kubeconfig
        else " (--kubeconfig-out FILE lets kubectl look at it.)"
    )
    return (
        f"scenario done ({verdict}: {phases}); the cluster and the operator keep running.{where} "
        "Press Ctrl-C to stop."
    )


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live

    from gpufleet_demo.runner import Demo
    from gpufleet_demo.scenario import ScenarioError, default_scenario_text, load_scenario
    from gpufleet_demo.view import render

    if args.print_scenario:
        sys.stdout.write(default_scenario_text())
        return 0
    err = Console(stderr=True)
    from gpufleet_devcluster.requirements import missing_requirements

    problem = missing_requirements()
    if problem is not None:
        err.print(f"error: {problem}", style="red", markup=False)
        return 2
    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        print(f"gpufleet demo: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.ERROR)
    for noisy in ("kopf", "aiohttp", "gpufleet"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    once = args.once or args.json
    # Piped output (CI logs, files) gets a width the tables fit in, not rich's 80-column default.
    console = Console() if sys.stdout.isatty() or "COLUMNS" in os.environ else Console(width=120)
    live: Live | None = None
    if not once:
        live = Live(console=console, refresh_per_second=4, transient=False)
        live.start()

    started = time.monotonic()
    last_line: list[str] = []
    done_told: list[bool] = []

    def refresh(snapshot: dict[str, Any], phase: str, progress: tuple[str, int, int] | None) -> None:
        if phase == RUNNING_PHASE and not done_told:
            done_told.append(True)
            err.print(scenario_done_message(demo, args.kubeconfig_out), markup=False, highlight=False)
        if live is not None:
            live.update(render(snapshot, phase=phase, progress=progress, height=console.height))
            return
        # --once: one progress line on stderr whenever the phase or its progress moves.
        line = progress_text(phase, progress)
        if line and line != (last_line[-1] if last_line else None):
            last_line.append(line)
            err.print(f"[{time.monotonic() - started:5.1f}s] {line}", markup=False, highlight=False)

    demo = Demo(
        scenario,
        kubeconfig_out=args.kubeconfig_out,
        refresh=refresh,
        phase_timeout=args.phase_timeout,
        epochs=args.epochs,
        traffic=args.traffic,
    )
    if args.kubeconfig_out:
        err.print(f"kubeconfig for the emulated cluster: {args.kubeconfig_out}")
    if live is None:
        err.print("[  0.0s] starting the emulated cluster, its GPU nodes and the operator", markup=False)
    try:
        result = asyncio.run(demo.run(keep_running=args.keep_running))
    except ScenarioError as exc:  # the API server refused a manifest the pre-check let through
        if live is not None:
            live.stop()
            live = None
        print(f"gpufleet demo: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if live is not None:
            live.stop()
    if args.json:
        sys.stdout.write(json.dumps(result.to_json(), indent=2, sort_keys=False) + "\n")
    else:
        if once:
            console.print(render(result.snapshot, phase="final state"))
        for phase in result.phases:
            style = "green" if phase.outcome == phase.expected else "red"
            console.print(
                f"[{style}]{phase.name}: {phase.outcome}[/{style}] (expected {phase.expected}, "
                f"{phase.seconds:.1f}s) {phase.detail}",
                soft_wrap=True,
            )
        console.print(f"demo finished in {result.seconds:.1f}s: {'OK' if result.ok else 'NOT AS EXPECTED'}")
    if any(p.outcome == "Interrupted" for p in result.phases):
        return 130
    return 0 if result.ok else 1
