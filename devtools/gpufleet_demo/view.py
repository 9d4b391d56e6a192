"""The demo's terminal view (rich): devices, pools, releases, recent events, rollout progress."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

JsonObj = dict[str, Any]


def _stake(value: Any) -> str:
    if value is None:
        return "-"
    text = str(value)
    whole, _, frac = text.partition(".")
    try:
        grouped = f"{int(whole):,}"
    except ValueError:
        return text
    frac = frac.rstrip("0")
    return f"{grouped}.{frac}" if frac else grouped


def _num(value: Any, fmt: str) -> str:
    return "-" if value is None else format(float(value), fmt)


def _product(name: str | None) -> str:
    """NVML's name without the vendor prefix every row would repeat (GFD labels use dashes)."""
    if not name:
        return "?"
    for prefix in ("NVIDIA ", "NVIDIA-"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    return name.replace("-", " ") if " " not in name else name


def devices_table(snapshot: JsonObj) -> Table:
    table = Table(
        title="GPU devices", header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True
    )
    for col, justify in (
        ("node", "left"),
        ("gpu", "right"),
        ("product", "left"),
        ("GiB", "right"),
        ("engine", "left"),
        ("share", "right"),
        ("eff. stake", "right"),
        ("priority", "right"),
        ("state", "left"),
        ("version", "left"),
    ):
        table.add_column(col, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    versions = {n["name"]: n.get("currentVersion") for n in snapshot["inferenceNodes"]}
    pool = None
    for d in snapshot["devices"]:
        if d["pool"] != pool:
            pool = d["pool"]
            table.add_row(Text(f"pool {pool}", style="bold cyan"))
        if d["valid"]:
            state = Text("ready", style="green") if d["ready"] else Text("not ready", style="yellow")
        else:
            state = Text(f"BLOCKED {d['reason']}", style="bold red")
        table.add_row(
            f" {d['inferenceNode']}",
            str(d["index"]),
            _product(d["product"]),
            "-" if d["vramMiB"] is None else f"{d['vramMiB'] / 1024:.0f}",
            str(d["engine"] or "-"),
            _num(d["vramShare"], ".4f") if d["valid"] else "-",
            _stake(d["effectiveStake"]) if d["valid"] else "-",
            _num(d["priorityScore"], ".2f") if d["valid"] else "-",
            state,
            str(versions.get(d["inferenceNode"]) or "-"),
        )
    return table


def pools_table(snapshot: JsonObj) -> Table:
    table = Table(title="Operator pools", expand=True, header_style="bold")
    for col in ("pool", "total stake", "validated VRAM GiB", "devices", "self-stake ratio", "min self stake"):
        table.add_column(col)
    for p in snapshot["pools"]:
        met = p["minimumSelfStakeMet"]
        flag = (
            Text("-")
            if met is None
            else (Text("met", style="green") if met else Text("NOT MET", style="red"))
        )
        table.add_row(
            p["name"],
            _stake(p["totalStake"]),
            "-" if p["validatedVRAMMiB"] is None else f"{p['validatedVRAMMiB'] / 1024:.0f}",
            str(p["devices"] if p["devices"] is not None else "-"),
            str(p["selfStakeRatio"] or "-"),
            flag,
        )
    return table


def releases_table(snapshot: JsonObj) -> Table:
    table = Table(title="Engine releases", expand=True, header_style="bold")
    for col in ("release", "version", "channel", "state", "failed nodes"):
        table.add_column(col)
    for r in snapshot["releases"]:
        state = Text("HALTED", style="bold red") if r["halted"] else Text("active", style="green")
        table.add_row(
            r["name"], str(r["version"]), str(r["channel"]), state, ", ".join(r["failedNodes"]) or "-"
        )
    return table


def events_panel(snapshot: JsonObj, *, last: int = 12) -> Panel:
    lines = []
    for e in snapshot["events"][-last:]:
        style = "red" if e["type"] == "Warning" else "dim"
        lines.append(
            Text(
                f"{e['reason']:<22} {e['object']:<40} {e['message']}",
                style=style,
                overflow="ellipsis",
                no_wrap=True,
            )
        )
    return Panel(Group(*lines) if lines else Text("(none yet)"), title="Events", expand=True)


def progress_line(label: str, done: int, total: int) -> RenderableType:
    table = Table.grid(expand=True)
    table.add_column(width=38)
    table.add_column(ratio=1)
    table.add_column(width=10, justify="right")
    table.add_row(label, ProgressBar(total=max(total, 1), completed=done), f"{done}/{total}")
    return table


def render(
    snapshot: JsonObj, *, phase: str = "", progress: tuple[str, int, int] | None = None
) -> RenderableType:
    parts: list[RenderableType] = []
    if phase:
        parts.append(Text(phase, style="bold cyan"))
    if progress is not None:
        parts.append(progress_line(*progress))
    parts += [
        devices_table(snapshot),
        pools_table(snapshot),
        releases_table(snapshot),
        events_panel(snapshot),
    ]
    return Group(*parts)
