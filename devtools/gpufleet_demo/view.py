"""The demo's terminal view (rich): devices, pools, releases, recent events, rollout progress.

The view fits the terminal it is drawn on. Columns of the device table are dropped by priority
when the width is short (node, GPU, state and version go last), and never truncated: a version or
pool name is shown whole or its column is not shown. With a height (the live view), sections are
laid out by priority too: devices, then the Events panel (whole, with as many recent events as
fit), then releases and pools as tables or, when short of rows, one line each.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

JsonObj = dict[str, Any]

#: Device table columns, most important first: narrow terminals drop from the end of this list.
DEVICE_COLUMNS = (
    "node",
    "gpu",
    "state",
    "version",
    "share",
    "product",
    "priority",
    "eff. stake",
    "GiB",
    "engine",
)
_RIGHT = frozenset({"gpu", "share", "priority", "eff. stake", "GiB"})
#: The order columns are shown in (independent of their priority).
_DISPLAY_ORDER = (
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
)
#: Fewest event lines the Events panel shows when rows are short, and most it ever shows.
MIN_EVENTS, MAX_EVENTS = 3, 20


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


def device_version(device: JsonObj, versions: dict[str, Any]) -> str:
    """The engine version a device runs: its node's current version, or ``-`` when it serves none
    (a blocked GPU's pod only reports hardware), so the table and the phase summaries agree."""
    if not device["valid"]:
        return "-"
    return str(versions.get(device["inferenceNode"]) or "-")


def _device_cells(snapshot: JsonObj) -> list[tuple[str | None, dict[str, Text]]]:
    """(pool heading or None, cells by column) per table row, in display order."""
    versions = {n["name"]: n.get("currentVersion") for n in snapshot["inferenceNodes"]}
    rows: list[tuple[str | None, dict[str, Text]]] = []
    pool = None
    for d in snapshot["devices"]:
        if d["pool"] != pool:
            pool = d["pool"]
            rows.append((f"pool {pool}", {}))
        if d["valid"]:
            state = Text("ready", style="green") if d["ready"] else Text("not ready", style="yellow")
        else:
            state = Text(f"BLOCKED {d['reason']}", style="bold red")
        valid = d["valid"]
        cells = {
            "node": Text(f" {d['inferenceNode']}"),
            "gpu": Text(str(d["index"])),
            "product": Text(_product(d["product"])),
            "GiB": Text("-" if d["vramMiB"] is None else f"{d['vramMiB'] / 1024:.0f}"),
            "engine": Text(str(d["engine"] or "-")),
            "share": Text(_num(d["vramShare"], ".4f") if valid else "-"),
            "eff. stake": Text(_stake(d["effectiveStake"]) if valid else "-"),
            "priority": Text(_num(d["priorityScore"], ".2f") if valid else "-"),
            "state": state,
            "version": Text(device_version(d, versions)),
        }
        rows.append((None, cells))
    return rows


def choose_columns(widths: dict[str, int], available: int, gap: int = 2) -> list[str]:
    """The highest-priority columns whose natural widths (plus gaps) fit ``available`` cells."""
    chosen: list[str] = []
    used = 0
    for name in DEVICE_COLUMNS:
        need = widths[name] + (gap if chosen else 0)
        if used + need <= available:
            chosen.append(name)
            used += need
    return [c for c in _DISPLAY_ORDER if c in chosen]


def devices_table(snapshot: JsonObj, width: int = 200, max_rows: int | None = None) -> Table:
    """The device table for ``width`` cells; at most ``max_rows`` body rows (then a "more" line)."""
    rows = _device_cells(snapshot)
    widths = {c: len(c) for c in DEVICE_COLUMNS}
    for heading, cells in rows:
        if heading is not None:
            widths["node"] = max(widths["node"], len(heading))
        for name, text in cells.items():
            widths[name] = max(widths[name], text.cell_len)
    columns = choose_columns(widths, width)
    hidden = [c for c in DEVICE_COLUMNS if c not in columns]
    title = "GPU devices" + (f" (narrow terminal: {', '.join(hidden)} hidden)" if hidden else "")
    table = Table(
        title=title if len(title) <= width else "GPU devices",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
        padding=(0, 1),
        show_edge=False,
    )
    for name in columns:
        table.add_column(
            name,
            justify="right" if name in _RIGHT else "left",
            no_wrap=True,
            min_width=widths[name],
            overflow="fold",
        )
    shown = rows
    if max_rows is not None and len(rows) > max_rows:
        shown = rows[: max(max_rows - 1, 0)]
    for heading, cells in shown:
        if heading is not None:
            table.add_row(Text(heading, style="bold cyan"), *([""] * (len(columns) - 1)))
        else:
            table.add_row(*(cells[c] for c in columns))
    if len(shown) < len(rows):
        more = sum(1 for h, _ in rows[len(shown) :] if h is None)
        table.add_row(Text(f" … {more} more devices", style="dim"), *([""] * (len(columns) - 1)))
    return table


def _pool_cells(p: JsonObj) -> list[Text]:
    met = p["minimumSelfStakeMet"]
    flag = Text("-") if met is None else (Text("met", style="green") if met else Text("NOT MET", style="red"))
    return [
        Text(p["name"]),
        Text(_stake(p["totalStake"])),
        Text("-" if p["validatedVRAMMiB"] is None else f"{p['validatedVRAMMiB'] / 1024:.0f}"),
        Text(str(p["devices"] if p["devices"] is not None else "-")),
        Text(str(p["selfStakeRatio"] or "-")),
        flag,
    ]


def pools_table(snapshot: JsonObj) -> Table:
    table = Table(title="Operator pools", header_style="bold", box=box.SIMPLE_HEAD, show_edge=False)
    for col in ("pool", "total stake", "VRAM GiB", "devices", "self-stake ratio", "min self stake"):
        table.add_column(col, no_wrap=True)
    for p in snapshot["pools"]:
        table.add_row(*_pool_cells(p))
    return table


def releases_table(snapshot: JsonObj) -> Table:
    table = Table(title="Engine releases", header_style="bold", box=box.SIMPLE_HEAD, show_edge=False)
    table.add_column("release", no_wrap=True)
    table.add_column("version", no_wrap=True)
    table.add_column("channel", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("failed nodes", overflow="fold")
    for r in snapshot["releases"]:
        state = Text("HALTED", style="bold red") if r["halted"] else Text("active", style="green")
        table.add_row(
            r["name"], str(r["version"]), str(r["channel"]), state, ", ".join(r["failedNodes"]) or "-"
        )
    return table


def releases_line(snapshot: JsonObj) -> Text:
    """Every release's version and state on one (wrapping) line, for short terminals."""
    line = Text("releases: ", style="bold")
    for i, r in enumerate(snapshot["releases"]):
        if i:
            line.append(" · ")
        line.append(str(r["version"]))
        line.append(" HALTED" if r["halted"] else " active", style="bold red" if r["halted"] else "green")
    return line


def pools_line(snapshot: JsonObj) -> Text:
    line = Text("pools: ", style="bold")
    for i, p in enumerate(snapshot["pools"]):
        if i:
            line.append(" · ")
        line.append(f"{p['name']} {_stake(p['totalStake'])} INT")
        if p["minimumSelfStakeMet"] is False:
            line.append(" self stake NOT MET", style="red")
    return line


def _object(name: str) -> str:
    """InferenceNode/x is the common case: show x; other kinds keep a short kind prefix."""
    kind, _, obj = name.partition("/")
    return {"InferenceNode": obj, "OperatorPool": f"pool/{obj}", "EngineRelease": f"release/{obj}"}.get(
        kind, name
    )


def event_lines(snapshot: JsonObj, last: int) -> list[Text]:
    events = snapshot["events"][-last:] if last > 0 else []
    reason_w = max((len(e["reason"] or "") for e in events), default=0)
    object_w = max((len(_object(e["object"])) for e in events), default=0)
    lines = []
    for e in events:
        style = "red" if e["type"] == "Warning" else "dim"
        text = f"{e['reason'] or '':<{reason_w}}  {_object(e['object']):<{object_w}}  {e['message'] or ''}"
        lines.append(Text(text, style=style, overflow="ellipsis", no_wrap=True))
    return lines


def events_panel(snapshot: JsonObj, *, last: int = 12) -> Panel:
    lines = event_lines(snapshot, last)
    total = len(snapshot["events"])
    title = "Events" if total <= len(lines) else f"Events (last {len(lines)} of {total})"
    return Panel(Group(*lines) if lines else Text("(none yet)"), title=title, expand=True)


def progress_line(label: str, done: int, total: int, width: int = 120) -> RenderableType:
    table = Table.grid(expand=True)
    table.add_column(width=min(38, max(width // 3, 12)), no_wrap=True, overflow="ellipsis")
    table.add_column(ratio=1)
    table.add_column(width=10, justify="right")
    table.add_row(label, ProgressBar(total=max(total, 1), completed=done), f"{done}/{total}")
    return table


def _height(console: Console, options: ConsoleOptions, renderable: RenderableType) -> int:
    return len(console.render_lines(renderable, options.update(height=None), pad=False))


@dataclass
class FleetView:
    """The whole view; lays itself out for the width (and height, if given) it is drawn in."""

    snapshot: JsonObj
    phase: str = ""
    progress: tuple[str, int, int] | None = None
    height: int | None = None

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield Group(*self.parts(console, options))

    def parts(self, console: Console, options: ConsoleOptions) -> Iterator[RenderableType]:
        width = options.max_width
        head: list[RenderableType] = []
        if self.phase:
            head.append(Text(self.phase, style="bold cyan", overflow="ellipsis", no_wrap=True))
        if self.progress is not None:
            head.append(progress_line(*self.progress, width=width))
        if self.height is None:  # printed, not live: everything, in full
            yield from head
            yield devices_table(self.snapshot, width)
            yield pools_table(self.snapshot)
            yield releases_table(self.snapshot)
            yield events_panel(self.snapshot)
            return
        budget = self.height - sum(_height(console, options, h) for h in head)
        events_min = 2 + min(MIN_EVENTS, max(len(self.snapshot["events"]), 1))
        devices = devices_table(self.snapshot, width)
        if _height(console, options, devices) > budget - events_min:
            devices = devices_table(self.snapshot, width, max_rows=max(budget - events_min - 3, 1))
        budget -= _height(console, options, devices)
        extras: list[RenderableType] = []
        for full, short in (
            (releases_table(self.snapshot), releases_line(self.snapshot)),
            (pools_table(self.snapshot), pools_line(self.snapshot)),
        ):
            for choice in (full, short):
                need = _height(console, options, choice)
                if need <= budget - events_min:
                    extras.append(choice)
                    budget -= need
                    break
        events = max(min(budget - 2, MAX_EVENTS), 0)
        yield from head
        yield devices
        yield from extras
        if events > 0:
            yield events_panel(self.snapshot, last=events)


def render(
    snapshot: JsonObj,
    *,
    phase: str = "",
    progress: tuple[str, int, int] | None = None,
    height: int | None = None,
) -> RenderableType:
    """The view of ``snapshot``; ``height`` (the terminal's, for the live view) bounds its rows."""
    return FleetView(snapshot, phase, progress, height)


def render_text(snapshot: JsonObj, width: int, height: int | None = None, **kwargs: Any) -> str:
    """The view as plain text at a terminal size (snapshot tests, piped output)."""
    out = io.StringIO()
    console = Console(file=out, width=width, height=height or 10_000, color_system=None, force_terminal=False)
    console.print(render(snapshot, height=height, **kwargs))
    return out.getvalue()


__all__ = [
    "DEVICE_COLUMNS",
    "FleetView",
    "choose_columns",
    "device_version",
    "devices_table",
    "events_panel",
    "pools_table",
    "releases_table",
    "render",
    "render_text",
]
