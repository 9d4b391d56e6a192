"""Tables of a sweep: the optimal-k table for people (rich) and for docs (Markdown)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _k(value: float | None) -> str:
    return "none" if value is None else f"{value:g}"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _rows(result: dict[str, Any]) -> list[list[str]]:
    steady = {s["load"]: s for s in result.get("controller", {}).get("steady_k_by_load", [])}
    rows = []
    for level in result["levels"]:
        best = level["optimal_k"]
        cell = next((c for c in level["cells"] if c["k"] == best), None)
        zero = level["cells"][0]
        ctl = steady.get(level["load"])
        rows.append(
            [
                f"{level['load']:.2f}",
                _k(best) + ("" if level["monotone"] else " (non-monotone)"),
                _s(cell["p99_queue_delay_s"]) if cell else "-",
                _s(cell["p99_latency_s"]) if cell else "-",
                _s(cell["top_decile_job_share"]) if cell else "-",
                _s(zero["p99_latency_s"]),
                _k(ctl["k"]) if ctl else "-",
                (_s(ctl["objective_value"]) + ("" if ctl["meets_slo"] else " ✗")) if ctl else "-",
            ]
        )
    return rows


HEADERS = [
    "load",
    "optimal k",
    "p99 queue (s)",
    "p99 latency (s)",
    "top-decile jobs",
    "p99 latency k=0 (s)",
    "controller k",
    "controller objective",
]


def render_sweep(result: dict[str, Any], console: Console) -> None:
    obj = result["objective"]
    table = Table(title=f"optimal k per load ({obj['metric']} < {obj['slo_s']})")
    for h in HEADERS:
        table.add_column(h, justify="right")
    for row in _rows(result):
        table.add_row(*row)
    console.print(table)
    ctl = result.get("controller")
    if ctl:
        steps = Table(title="k controller after load steps")
        for h in ("load from", "at (s)", "k before", "k final", "settling (s)", "overshoot"):
            steps.add_column(h, justify="right")
        for s in ctl["steps"]:
            steps.add_row(
                f"{s['load']:.2f}",
                f"{s['from_s']:.0f}",
                _k(s.get("k_before")),
                _k(s["k_final"]),
                _s(s["settling_s"]),
                _s(s["overshoot"]),
            )
        console.print(steps)


def optimal_k_markdown(result: dict[str, Any]) -> str:
    """The optimal-k table as GitHub Markdown (what docs/simulation.md embeds)."""
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(result)]
    return "\n".join(lines) + "\n"
