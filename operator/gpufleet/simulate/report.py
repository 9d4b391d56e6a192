"""Human outputs of a run: a rich summary table and PNG plots (matplotlib, Agg backend).

Plots are optional (the ``sim`` extra); without matplotlib the CLI says so and still writes
JSON. PNGs are written without a timestamp so identical runs give identical files.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def to_json(summary: dict[str, Any]) -> str:
    """Canonical JSON (sorted keys, fixed separators): same run, same bytes."""
    return json.dumps(summary, sort_keys=True, indent=1, separators=(",", ": "), allow_nan=False) + "\n"


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render_summary(summary: dict[str, Any], console: Console) -> None:
    fleet = summary["fleet"]
    req = summary["requests"]
    qd = summary["queue_delay_s"]
    lat = summary["latency_s"]
    align = summary["stake_alignment"]
    head = Table(
        title=f"gpufleet simulate: {summary['scenario']} (seed {summary['seed']})", show_header=False
    )
    head.add_column("what")
    head.add_column("value")
    head.add_row(
        "fleet",
        f"{fleet['operators']} operators ({fleet['staked_operators']} staked), "
        f"{fleet['devices']} devices, {fleet['slots']} slots, "
        f"capacity {fleet['capacity_rps']:.1f} req/s",
    )
    head.add_row(
        "requests",
        f"{req['measured_arrivals']} measured, {req['completed']} completed, "
        f"{req['failed']} failed, {req['rejected']} rejected, "
        f"{req['overflow_retries']} overflow retries",
    )
    head.add_row(
        "queueing delay",
        f"p50 {_fmt(qd['p50'])} s, p99 {_fmt(qd['p99'])} s, waiting {_fmt(qd['share_waiting'])}",
    )
    head.add_row("latency", f"p50 {_fmt(lat['p50'], 2)} s, p99 {_fmt(lat['p99'], 2)} s")
    head.add_row(
        "utilisation",
        f"mean {_fmt(summary['utilisation']['mean'])}, "
        f"idle capacity of unstaked devices {_fmt(summary['unstaked']['idle_capacity_share'])}",
    )
    head.add_row(
        "jobs vs stake",
        f"Gini jobs {_fmt(align['gini_jobs'])} vs stake {_fmt(align['gini_stake'])}; "
        f"HHI jobs {_fmt(align['hhi_jobs'], 4)} vs stake {_fmt(align['hhi_stake'], 4)}; "
        f"TV distance {_fmt(align['total_variation_jobs_vs_stake'])}",
    )
    k = summary["k"]
    head.add_row(
        "k", f"{k['initial']:g} -> {k['final']:g} ({k['changes']} changes, range {k['min']:g}..{k['max']:g})"
    )
    head.add_row("penalties", str(summary["penalties"]["count"]))
    console.print(head)
    dec = Table(title="by stake decile (1 = least stake)")
    for col in ("decile", "operators", "devices", "stake share", "job share", "reward share", "jobs / kINT"):
        dec.add_column(col, justify="right")
    for row in summary["by_stake_decile"]:
        dec.add_row(
            str(row["decile"]),
            str(row["operators"]),
            str(row["devices"]),
            _fmt(row["stake_share"], 4),
            _fmt(row["job_share"], 4),
            _fmt(row["reward_share"], 4),
            _fmt(row["jobs_per_kint_staked"], 2),
        )
    console.print(dec)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plots_available() -> bool:
    try:
        _pyplot()
    except ImportError:
        return False
    return True


def _save(fig: Any, path: Path) -> None:
    fig.savefig(path, dpi=80, metadata={"Software": None})


def plot_run(summary: dict[str, Any], out_dir: Path) -> list[Path]:
    """utilisation + k over time, and job share vs stake share by decile."""
    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    series = summary["series"]
    paths = []
    fig, ax = plt.subplots(figsize=(7, 3.2))
    t = [s["t"] for s in series]
    ax.plot(t, [s["utilisation"] for s in series], label="utilisation", color="tab:blue")
    ax.plot(t, [s["offered_load"] for s in series], label="offered load", color="tab:gray", linestyle="--")
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("share of capacity")
    ax.set_ylim(0, 1.05)
    ax2 = ax.twinx()
    ax2.step(t, [s["k"] for s in series], where="post", color="tab:red", label="k")
    ax2.set_ylabel("k (per INT)", color="tab:red")
    fig.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    p = out_dir / "utilisation_k.png"
    _save(fig, p)
    plt.close(fig)
    paths.append(p)
    fig, ax = plt.subplots(figsize=(6, 3))
    dec = summary["by_stake_decile"]
    x = [d["decile"] for d in dec]
    ax.bar([i - 0.2 for i in x], [d["stake_share"] for d in dec], width=0.4, label="stake share")
    ax.bar([i + 0.2 for i in x], [d["job_share"] for d in dec], width=0.4, label="job share")
    ax.set_xlabel("stake decile (1 = least)")
    ax.set_xticks(x)
    ax.legend(fontsize=8)
    fig.tight_layout()
    p = out_dir / "deciles.png"
    _save(fig, p)
    plt.close(fig)
    paths.append(p)
    return paths


def plot_sweep(result: dict[str, Any], out_dir: Path, prefix: str = "sweep") -> list[Path]:
    """p99 queueing delay against k per load level, and the optimal k per load level."""
    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    grid: Sequence[float] = result["k_grid"]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    xs = [max(k, grid[1] / 10 if len(grid) > 1 else 1e-9) for k in grid]
    for level in result["levels"]:
        ys = [
            c["p99_queue_delay_s"] if c["p99_queue_delay_s"] is not None else float("nan")
            for c in level["cells"]
        ]
        ax.plot(xs, ys, marker="o", markersize=3, label=f"load {level['load']:.2f}")
    ax.axhline(result["objective"]["slo_s"], color="black", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=0.01)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("k per INT (leftmost point: k = 0)")
    ax.set_ylabel("p99 queueing delay (s)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    p = out_dir / f"{prefix}_p99.png"
    _save(fig, p)
    plt.close(fig)
    paths.append(p)
    fig, ax = plt.subplots(figsize=(6, 3))
    loads = [lv["load"] for lv in result["levels"]]
    best = [lv["optimal_k"] if lv["optimal_k"] is not None else float("nan") for lv in result["levels"]]
    ax.plot(loads, [max(b, xs[0]) for b in best], marker="o", label="optimal static k")
    tracked = result.get("controller", {}).get("steady_k_by_load")
    if tracked:
        ax.plot(
            [t["load"] for t in tracked],
            [max(t["k"], xs[0]) for t in tracked],
            marker="x",
            label="controller k",
        )
    ax.set_yscale("log")
    ax.set_xlabel("offered load")
    ax.set_ylabel("k per INT")
    ax.legend(fontsize=8)
    fig.tight_layout()
    p = out_dir / f"{prefix}_optimal_k.png"
    _save(fig, p)
    plt.close(fig)
    paths.append(p)
    if result.get("controller", {}).get("step_series"):
        paths.append(plot_step_response(result, out_dir, prefix))
    return paths


def plot_step_response(result: dict[str, Any], out_dir: Path, prefix: str = "sweep") -> Path:
    """k and utilisation over time in the controller's load-step run."""
    plt = _pyplot()
    series = result["controller"]["step_series"]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    t = [s["t"] for s in series]
    ax.plot(t, [s["utilisation"] for s in series], color="tab:blue", label="utilisation")
    ax.plot(t, [s["offered_load"] for s in series], color="tab:gray", linestyle="--", label="offered load")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("share of capacity")
    ax2 = ax.twinx()
    ax2.step(t, [s["k"] for s in series], where="post", color="tab:red", label="k")
    ax2.set_ylabel("k (per INT)", color="tab:red")
    fig.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    p = out_dir / f"{prefix}_controller_steps.png"
    _save(fig, p)
    plt.close(fig)
    return p
