"""``gpufleet simulate``: simulate a fleet under stake-weighted routing, or sweep k against load."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

USAGE = """\
gpufleet simulate [SCENARIO.yaml] [options]         one run: summary table, JSON, plots
gpufleet simulate sweep [SCENARIO.yaml] [options]   optimal static k per load level + controller tracking
gpufleet simulate --print-scenario                  the default scenario (copy it and edit)"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="simulate the fleet's stake-weighted routing (utilisation, delays, jobs by stake, optimal k)",
        description="Discrete-event simulation of the fleet with the project's own routing, k controller "
        "and reputation rules. Deterministic: the same scenario and seed give the same JSON byte for byte.",
        usage=USAGE,
    )
    parser.add_argument(
        "target",
        nargs="*",
        metavar="[sweep] SCENARIO",
        help="'sweep' (optional) then a scenario YAML (default: the packaged one)",
    )
    parser.add_argument("--print-scenario", action="store_true", help="print the default scenario and exit")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a scenario field, e.g. --set arrivals.load=0.9 --set k.value=0 (repeatable)",
    )
    parser.add_argument("--json", metavar="PATH", help="write the JSON result here ('-' = stdout)")
    parser.add_argument("--plots", metavar="DIR", help="write PNG plots into DIR (needs the 'sim' extra)")
    parser.add_argument("--quiet", action="store_true", help="no summary table")
    sweep = parser.add_argument_group("sweep options")
    sweep.add_argument("--k-grid", metavar="K,K,...", help="static k values (default 0,1e-6,3e-6,...,1e-2)")
    sweep.add_argument("--loads", metavar="L,L,...", help="offered load levels (default 0.1,0.3,...,0.95)")
    sweep.add_argument(
        "--metric",
        default="p99_queue_delay_s",
        help="objective metric: p99_queue_delay_s (default), p90_queue_delay_s, p99_latency_s, "
        "rejected_share",
    )
    sweep.add_argument("--slo", type=float, default=1.0, help="objective bound (default 1.0)")
    sweep.add_argument("--duration", type=float, default=240.0, help="simulated seconds per grid cell")
    sweep.add_argument("--warmup", type=float, default=60.0, help="warm-up seconds per grid cell")
    sweep.add_argument("--no-controller", action="store_true", help="skip the k controller runs")
    sweep.add_argument("--controller-duration", type=float, default=900.0, help="seconds per steady-load run")
    sweep.add_argument(
        "--step-loads", metavar="L,L,...", default="0.3,0.9,0.5", help="load steps for the step run"
    )
    sweep.add_argument("--step-phase", type=float, default=900.0, help="seconds per load step")
    sweep.add_argument("--markdown", metavar="PATH", help="write the optimal-k table as Markdown")
    parser.set_defaults(func=_main)


def _floats(text: str | None, what: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise SystemExit(f"gpufleet simulate: {what} must be comma-separated numbers: {text!r}") from exc


def _overrides(items: list[str]) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"gpufleet simulate: --set wants FIELD=VALUE, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def _write(path: str, text: str) -> None:
    if path == "-":
        sys.stdout.write(text)
    else:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text, encoding="utf-8")


def _main(args: argparse.Namespace) -> int:
    from rich.console import Console

    from gpufleet.simulate.scenario import ScenarioError, default_scenario_text, load_scenario

    if args.print_scenario:
        sys.stdout.write(default_scenario_text())
        return 0
    target = list(args.target)
    is_sweep = bool(target) and target[0] == "sweep"
    if is_sweep:
        target = target[1:]
    if len(target) > 1:
        print(f"gpufleet simulate: one scenario file at a time, got {len(target)}", file=sys.stderr)
        return 2
    console = Console(stderr=args.json == "-")
    try:
        scenario = load_scenario(Path(target[0]) if target else None, _overrides(args.set))
    except ScenarioError as exc:
        print(f"gpufleet simulate: {exc}", file=sys.stderr)
        return 2
    try:
        return _sweep(args, scenario, console) if is_sweep else _run(args, scenario, console)
    except ScenarioError as exc:
        print(f"gpufleet simulate: {exc}", file=sys.stderr)
        return 2


def _plots(kind: str, data: dict[str, Any], out: str, console: Any) -> None:
    from gpufleet.simulate import report

    if not report.plots_available():
        console.print("plots need matplotlib: pip install 'gpufleet[sim]'")
        return
    paths = report.plot_run(data, Path(out)) if kind == "run" else report.plot_sweep(data, Path(out))
    for p in paths:
        console.print(f"wrote {p}")


def _run(args: argparse.Namespace, scenario: Any, console: Any) -> int:
    from gpufleet.simulate import report
    from gpufleet.simulate.engine import run
    from gpufleet.simulate.metrics import summarise

    summary = summarise(run(scenario))
    if not args.quiet:
        report.render_summary(summary, console)
    if args.json:
        _write(args.json, report.to_json(summary))
    if args.plots:
        _plots("run", summary, args.plots, console)
    return 0


def _sweep(args: argparse.Namespace, scenario: Any, console: Any) -> int:
    from gpufleet.simulate import report
    from gpufleet.simulate.sweep import DEFAULT_K_GRID, DEFAULT_LOADS, SweepPlan, run_sweep
    from gpufleet.simulate.tables import optimal_k_markdown, render_sweep

    try:
        plan = SweepPlan(
            k_grid=_floats(args.k_grid, "--k-grid") or DEFAULT_K_GRID,
            loads=_floats(args.loads, "--loads") or DEFAULT_LOADS,
            metric=args.metric,
            slo=args.slo,
            duration_s=args.duration,
            warmup_s=args.warmup,
            controller=not args.no_controller,
            controller_duration_s=args.controller_duration,
            step_loads=_floats(args.step_loads, "--step-loads") or (0.3, 0.9, 0.5),
            step_phase_s=args.step_phase,
        )
    except ValueError as exc:
        print(f"gpufleet simulate sweep: {exc}", file=sys.stderr)
        return 2
    progress = None if args.quiet else (lambda msg: console.print(f"[dim]{msg}[/dim]"))
    result = run_sweep(scenario, plan, progress)
    if not args.quiet:
        render_sweep(result, console)
    if args.json:
        _write(args.json, report.to_json(result))
    if args.markdown:
        _write(args.markdown, optimal_k_markdown(result))
    if args.plots:
        _plots("sweep", result, args.plots, console)
    return 0
