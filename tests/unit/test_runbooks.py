"""The operator runbooks (docs/runbooks/) cite only names that exist in the code.

Each runbook ends with a names table between ``<!-- runbook-names -->`` and
``<!-- /runbook-names -->``: rows ``| kind | `name` |``. Kinds:

- ``metric``: a sample name the operator's or the node agent's registry can expose;
- ``condition``, ``reason``, ``event``, ``state``: a string literal in the package source that is
  the name or starts with ``name:`` (condition types, condition/validation/selection reasons,
  Event reasons, agent states and restart reasons);
- ``setting``: an environment variable the operator (``OperatorSettings``) or the agent reads;
- ``command``: ``gpufleet <sub-command>`` or ``gpufleet-node <sub-command>``;
- ``field``: ``Kind:path`` of a CRD field (``[]`` steps into list items).

Besides the table, every ``gpufleet_*`` metric-like token anywhere in a runbook must be a real
metric, and every ``gpufleet ...`` / ``gpufleet-node ...`` command line in a code block or an
inline code span must parse with the real argument parser. Stale docs fail here, not in an
incident.
"""

from __future__ import annotations

import argparse
import math
import re
import shlex
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = ROOT / "docs" / "runbooks"
SOURCES = (ROOT / "operator" / "gpufleet", ROOT / "node-image" / "gpufleet_node")
KINDS = ("metric", "condition", "reason", "event", "state", "setting", "command", "field")
TABLE = re.compile(r"<!-- runbook-names -->(.*?)<!-- /runbook-names -->", re.S)
ROW = re.compile(r"^\|\s*([a-z]+)\s*\|\s*`([^`]+)`\s*\|", re.M)
# Metric-like tokens; `gpufleet_node` alone is the agent's package, not a metric.
METRIC_TOKEN = re.compile(r"\bgpufleet_[a-z0-9_]+\b")
FENCE = re.compile(r"^```[a-z]*\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"`([^`\n]+)`")
COMMAND_START = re.compile(r"(?:^|[\s/])(gpufleet(?:-node)?) ")
SHELL_STOPS = {"|", "||", "&&", ";", "&", ">", "2>&1", "#"}


def runbook_files() -> list[Path]:
    return sorted(RUNBOOKS.glob("*.md"))


@cache
def metric_names() -> frozenset[str]:
    from gpufleet.metrics import OperatorMetrics, family_sample_names
    from gpufleet_node.metrics import (
        COUNTERS,
        GAUGES,
        AgentMetrics,
        EngineSnapshot,
        Histogram,
        snapshot_families,
    )

    # Engine families exist only once a scrape filled them: build one snapshot with every fact.
    snapshot = EngineSnapshot(
        engine="vllm",
        gauges={g.normalised: 0.0 for g in GAUGES},
        counters={c.normalised: 0.0 for c in COUNTERS},
        requests={"success": 0.0},
        ttft=Histogram(buckets=((math.inf, 0.0),), sum=0.0, count=0.0),
    )
    families = [
        *OperatorMetrics().registry.collect(),
        *AgentMetrics().registry.collect(),
        *snapshot_families(snapshot),
    ]
    # Sample names (what PromQL selects), plus a histogram's own name as prose refers to it.
    histograms = {f.name for f in families if f.type == "histogram"}
    return family_sample_names(families) | histograms


@cache
def source_text() -> str:
    return "\n".join(p.read_text() for base in SOURCES for p in sorted(base.rglob("*.py")))


@cache
def setting_names() -> frozenset[str]:
    from gpufleet.settings import OperatorSettings
    from gpufleet_node.config import _TIMING_ENV

    names = {f"GPUFLEET_{field.upper()}" for field in OperatorSettings.model_fields}
    names |= {f"GPUFLEET_{suffix}_SECONDS" for suffix in _TIMING_ENV}
    agent = "\n".join(p.read_text() for p in sorted(SOURCES[1].rglob("*.py")))
    names |= set(re.findall(r"\"(GPUFLEET_[A-Z0-9_]+)\"", agent))
    return frozenset(names)


@cache
def parsers() -> dict[str, argparse.ArgumentParser]:
    from gpufleet.cli import build_parser as operator_parser
    from gpufleet_node.cli import build_parser as node_parser

    return {"gpufleet": operator_parser(), "gpufleet-node": node_parser()}


def subcommands(parser: argparse.ArgumentParser) -> set[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


@cache
def crd_schemas() -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        version = crd["spec"]["versions"][0]
        out[crd["spec"]["names"]["kind"]] = version["schema"]["openAPIV3Schema"]
    return out


def field_exists(ref: str) -> bool:
    kind, _, path = ref.partition(":")
    node: object = crd_schemas().get(kind)
    if node is None or not path:
        return False
    for step in path.split("."):
        is_list = step.endswith("[]")
        name = step.removesuffix("[]")
        props = node.get("properties") if isinstance(node, dict) else None
        if not isinstance(props, dict) or name not in props:
            return False
        node = props[name]
        if is_list:
            node = node.get("items") if isinstance(node, dict) else None
    return True


def names_table(path: Path) -> list[tuple[str, str]]:
    match = TABLE.search(path.read_text())
    assert match, f"{path.name}: no <!-- runbook-names --> table"
    rows = ROW.findall(match.group(1))
    assert rows, f"{path.name}: the names table has no rows"
    return rows


def check_name(kind: str, name: str) -> str | None:
    """None when ``name`` exists for ``kind``, else why not."""
    if kind == "metric":
        return None if name in metric_names() else "no such metric in gpufleet.metrics/gpufleet_node.metrics"
    if kind in ("condition", "reason", "event", "state"):
        # A string literal that is the name, or starts with it (``f"EngineExited: exit code {n}"``).
        found = re.search(rf"[\"']{re.escape(name)}[\"':]", source_text())
        return None if found else f'"{name}" appears in no string literal of the package source'
    if kind == "setting":
        return None if name in setting_names() else "not an operator setting or an agent variable"
    if kind == "command":
        prog, _, sub = name.partition(" ")
        parser = parsers().get(prog)
        if parser is None or sub not in subcommands(parser):
            return f"not a sub-command of {prog}"
        return None
    if kind == "field":
        return None if field_exists(name) else "no such field in crds/"
    return f"unknown kind {kind!r} (one of {', '.join(KINDS)})"


def command_lines(text: str) -> Iterator[str]:
    """gpufleet/gpufleet-node invocations in fenced blocks and inline code spans."""
    spans = [line for block in FENCE.findall(text) for line in block.splitlines()]
    spans += INLINE.findall(FENCE.sub("", text))
    for span in spans:
        match = COMMAND_START.search(span)
        if match and not span.lstrip().startswith(("#", "import ", "from ")):
            yield span[match.start(1):]


def parse_command(line: str) -> str | None:
    """None when the command line parses, else argparse's complaint."""
    words: list[str] = []
    for word in shlex.split(line, comments=True):
        if word in SHELL_STOPS or word.startswith(("|", ">")):
            break
        words.append(word)
    prog, args = words[0], words[1:]
    parser = parsers()[prog]
    if not args:
        return None  # the program named on its own
    if len(args) == 1 and not args[0].startswith("-"):
        # A sub-command named in prose (`gpufleet devcluster`), not an invocation.
        return None if args[0] in subcommands(parser) else f"no sub-command {args[0]!r}"
    try:
        parser.parse_args(args)
    except SystemExit as exc:
        return f"exit {exc.code}"
    return None


def test_runbooks_exist_with_an_index() -> None:
    files = {p.name for p in runbook_files()}
    assert "README.md" in files
    assert len(files) >= 9, files
    index = (RUNBOOKS / "README.md").read_text()
    for name in files - {"README.md"}:
        assert f"({name})" in index, f"README.md does not link {name}"


@pytest.mark.parametrize("path", [p for p in runbook_files() if p.name != "README.md"], ids=lambda p: p.name)
def test_cited_names_exist_in_the_code(path: Path) -> None:
    wrong = [f"{kind} {name}: {why}" for kind, name in names_table(path) if (why := check_name(kind, name))]
    assert not wrong, f"{path.name}:\n" + "\n".join(wrong)


@pytest.mark.parametrize("path", [p for p in runbook_files() if p.name != "README.md"], ids=lambda p: p.name)
def test_runbook_has_the_required_sections(path: Path) -> None:
    text = path.read_text()
    for heading in ("## Symptom", "## Cause", "## Confirm", "## Fix", "## What gpufleet does"):
        assert heading in text, f"{path.name}: missing {heading!r}"
    kinds = {kind for kind, _ in names_table(path)}
    assert "metric" in kinds, f"{path.name}: cites no metric"


@pytest.mark.parametrize("path", runbook_files(), ids=lambda p: p.name)
def test_every_metric_token_is_a_metric(path: Path) -> None:
    tokens = set(METRIC_TOKEN.findall(path.read_text())) - {"gpufleet_node"}
    # A token ending in `_` is a prefix (`grep '^gpufleet_node_'`): some metric must start with it.
    unknown = sorted(
        t
        for t in tokens
        if not (t in metric_names() or (t.endswith("_") and any(m.startswith(t) for m in metric_names())))
    )
    assert not unknown, f"{path.name}: not metrics: {unknown}"


@pytest.mark.parametrize("path", runbook_files(), ids=lambda p: p.name)
def test_every_cited_command_line_parses(path: Path) -> None:
    bad = [f"{line!r}: {why}" for line in command_lines(path.read_text()) if (why := parse_command(line))]
    assert not bad, f"{path.name}:\n" + "\n".join(bad)


# The checker itself must be able to fail.


def test_checker_rejects_invented_names() -> None:
    assert check_name("metric", "gpufleet_blocked_devices") is None
    assert check_name("metric", "gpufleet_gpu_blocked_total") is not None
    assert check_name("reason", "VRAMMismatch") is None
    assert check_name("reason", "VramMismatchh") is not None
    assert check_name("setting", "GPUFLEET_PRIORITY_K") is None
    assert check_name("setting", "GPUFLEET_STARTUP_TIMEOUT_SECONDS") is None
    assert check_name("setting", "GPUFLEET_PRIORITY_CONSTANT") is not None
    assert check_name("command", "gpufleet explain-engine") is None
    assert check_name("command", "gpufleet explain") is not None
    assert check_name("command", "gpufleet-node detect") is None
    assert check_name("field", "EngineRelease:status.failedNodes") is None
    assert check_name("field", "InferenceNode:status.devices[].validation.reason") is None
    assert check_name("field", "EngineRelease:status.failedNode") is not None
    assert check_name("colour", "red") is not None


def test_command_lines_are_found_and_checked() -> None:
    text = (
        "```bash\n$ gpufleet demo --once --kubeconfig-out /tmp/kc | tee x\n```\n"
        "and `gpufleet gpus --colour`\n"
    )
    lines = list(command_lines(text))
    assert lines == ["gpufleet demo --once --kubeconfig-out /tmp/kc | tee x", "gpufleet gpus --colour"]
    assert parse_command(lines[0]) is None
    assert parse_command(lines[1]) is not None
    assert parse_command("gpufleet-node detect --json") is None
    assert parse_command("gpufleet devcluster --port 0") is not None  # --kubeconfig-out is required
    assert parse_command("gpufleet devcluster") is None  # named, not invoked
    assert parse_command("gpufleet explain") is not None
