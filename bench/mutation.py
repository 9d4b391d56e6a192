"""Mutation testing of the decision modules with mutmut 3, one command for the per-module score table.

    .venv/bin/python bench/mutation.py gpufleet.hardware.validation gpufleet.economics.ledger
    .venv/bin/python bench/mutation.py --list            # the modules and the tests each one is checked by

Why a wrapper: mutmut 3 imports the mutated copy from ``mutants/`` (or ``mutants/src``), while this
repository has two package roots (``operator/`` and ``node-image/``) and a shared checkout that nine
people run tests from. So each run lays out a private copy under ``$TMPDIR/gpufleet-mutation/<module>``
(``src/gpufleet``, ``src/gpufleet_node``, ``tests/``), writes the mutmut configuration for that one
module there, and runs only the module's own unit tests (``MODULES`` below): the checkout is never
touched except ``bench/results/mutation.{json,md}``. Hypothesis runs with a fixed seed
(``--hypothesis-seed=0``), so a property test catches the same mutants on every run.

The score is ``killed / all mutants`` (a mutant with no covering test counts as surviving). Survivors
that are equivalent (no test could tell them apart, e.g. a log message) are justified in
``bench/mutation_equivalent.toml`` by mutant name plus a fragment of the mutated line; the table shows
that reason beside the diff, and the adjusted score ``killed / (all - equivalent)``. A justification
whose fragment no longer matches the mutant's diff is reported as stale, not applied.

Limitation of the tool: mutmut 3 mutates code inside functions and methods only (it installs a
trampoline per function); module-level constants are not mutated, so those are pinned by tests
directly (e.g. the VRAM tolerances in tests/unit/hardware/test_validation_mutants.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_JSON = ROOT / "bench" / "results" / "mutation.json"
RESULTS_MD = ROOT / "bench" / "results" / "mutation.md"
EQUIVALENT = ROOT / "bench" / "mutation_equivalent.toml"

#: module -> the unit tests that check it (run for every mutant of that module, nothing else).
MODULES: dict[str, list[str]] = {
    "gpufleet.hardware.validation": [
        "tests/unit/hardware/test_validation.py",
        "tests/unit/hardware/test_validation_mutants.py",
    ],
    "gpufleet.hardware.engine_select": [
        "tests/unit/hardware/test_engine_select.py",
        "tests/unit/hardware/test_engine_select_mutants.py",
    ],
    "gpufleet.economics.ledger": [
        "tests/unit/economics/test_ledger.py",
        "tests/unit/economics/test_ledger_mutants.py",
    ],
    "gpufleet.api.quantity": ["tests/unit/api/test_quantity.py", "tests/unit/api/test_quantity_mutants.py"],
    "gpufleet.shares": ["tests/unit/operator/test_shares.py", "tests/unit/operator/test_shares_mutants.py"],
    "gpufleet.fleet": ["tests/unit/operator/test_fleet.py", "tests/unit/operator/test_fleet_mutants.py"],
    "gpufleet.rollout.plan": ["tests/unit/rollout/test_plan.py", "tests/unit/rollout/test_plan_mutants.py"],
}

#: package roots of the checkout -> where the private copy puts them (``src/`` is on mutmut's path).
PACKAGE_ROOTS = {
    "operator/gpufleet": "src/gpufleet",
    "node-image/gpufleet_node": "src/gpufleet_node",
}

#: top-level paths that tests read relative to the repository root; mutmut copies them beside the tests.
ALSO_COPY = ("docs", "charts", "crds", "examples", "dashboards", "README.md", ".importlinter")

STATUS = {  # mutmut's exit code -> status (mutmut.stats.status_by_exit_code, simplified)
    1: "killed",
    3: "killed",
    0: "survived",
    5: "no tests",
    33: "no tests",
    34: "skipped",
    36: "timeout",
    37: "caught by type check",
    24: "timeout",
    -24: "timeout",
    152: "timeout",
    255: "timeout",
}
KILLED = {"killed", "timeout", "caught by type check"}


def module_file(module: str) -> Path:
    """The module's source file in the checkout (a package's ``__init__.py`` is not a decision module)."""
    parts = module.split(".")
    for root in PACKAGE_ROOTS:
        base = ROOT / root
        if parts[0] == base.name:
            path = base.joinpath(*parts[1:]).with_suffix(".py")
            if path.is_file():
                return path
    raise SystemExit(f"no source file for module {module!r} under {', '.join(PACKAGE_ROOTS)}")


def default_tests(module: str) -> list[str]:
    """The tests configured for ``module``, or ``tests/unit/<package>/test_<name>*.py`` by convention."""
    if module in MODULES:
        return [t for t in MODULES[module] if (ROOT / t).exists()]
    parts = module.split(".")
    pkg = parts[-2] if len(parts) > 2 else "operator"
    folder = ROOT / "tests" / "unit" / pkg
    found = sorted(str(p.relative_to(ROOT)) for p in folder.glob(f"test_{parts[-1]}*.py"))
    if not found:
        raise SystemExit(f"no tests known for {module}; pass --tests")
    return found


def _busy(work: Path) -> int | None:
    """The pid of another live run using this private copy, if any (the CPU and /tmp are shared)."""
    try:
        pid = int((work / "owner.pid").read_text())
    except (OSError, ValueError):
        return None
    if pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except OSError:
        return None
    return pid


def lay_out(work: Path, module: str, tests: list[str], jobs: int) -> str:
    """Write the private copy and its mutmut configuration; returns the mutated path relative to it."""
    other = _busy(work)
    if other is not None:
        raise SystemExit(f"{module}: another mutation run (pid {other}) is using {work}; try again later")
    if work.exists():
        shutil.rmtree(work)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis", ".pytest_cache")
    for src, dst in PACKAGE_ROOTS.items():
        shutil.copytree(ROOT / src, work / dst, ignore=ignore)
    shutil.copytree(ROOT / "tests", work / "tests", ignore=ignore)
    extra = [name for name in ALSO_COPY if (ROOT / name).exists()]
    for name in extra:  # files some tests read relative to the repository root (docs, charts, ...)
        (work / name).symlink_to(ROOT / name)
    (work / "owner.pid").write_text(str(os.getpid()))
    mutated = "src/" + str(module_file(module).relative_to(ROOT)).split("/", 1)[1]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    ini = project["tool"]["pytest"]["ini_options"]
    config = {
        "source_paths": ["src"],
        "only_mutate": [mutated],
        "pytest_add_cli_args_test_selection": tests,
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-p", "no:xdist", "--hypothesis-seed=0"],
        "also_copy": extra,
        "max_children": jobs,
        "use_git_change_detection": False,
    }
    lines = ["[tool.mutmut]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in config.items()]
    lines += ["", "[tool.pytest.ini_options]"]
    for key in ("asyncio_mode", "asyncio_default_fixture_loop_scope", "markers", "filterwarnings"):
        if key in ini:
            lines.append(f"{key} = {json.dumps(ini[key])}")
    lines.append('addopts = "--strict-markers"')
    (work / "pyproject.toml").write_text("\n".join(lines) + "\n")
    return mutated


def mutmut(work: Path, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """Run the mutmut CLI of this interpreter's environment inside the private copy."""
    exe = Path(sys.executable).parent / "mutmut"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "GPUFLEET_MUTATION": "1"}
    return subprocess.run(
        [str(exe), *args], cwd=work, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


_DIFFS = """
import json, sys
from mutmut.mutation.diff_apply import get_diff_for_mutant
names, path = json.load(sys.stdin)
print(json.dumps({n: get_diff_for_mutant(n, path=path) for n in names}))
"""


def diffs(work: Path, mutated: str, names: list[str]) -> dict[str, str]:
    """Each mutant's diff (what ``mutmut show`` prints), computed in one process for all of them."""
    if not names:
        return {}
    proc = subprocess.run(
        [sys.executable, "-c", _DIFFS],
        cwd=work,
        input=json.dumps([names, mutated]),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-2000:])
        return {n: mutmut(work, "show", n).stdout.split("\n", 1)[-1] for n in names}
    result: dict[str, str] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def load_equivalent() -> dict[str, dict[str, str]]:
    """``{mutant name: {"line": fragment of the mutated line, "reason": why no test can kill it}}``."""
    if not EQUIVALENT.is_file():
        return {}
    data = tomllib.loads(EQUIVALENT.read_text())
    return {name: dict(entry) for name, entry in data.get("mutant", {}).items()}


def changed_lines(diff: str) -> str:
    """The ``+`` lines of a mutant's diff (what the mutant changed the code to)."""
    return "\n".join(
        line[1:].strip() for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")
    )


def run_module(
    module: str, tests: list[str], jobs: int, keep: bool, collect_only: bool = False
) -> dict[str, Any]:
    """Mutate one module, run its tests against each mutant, and collect the verdicts."""
    base = Path(os.environ.get("GPUFLEET_MUTATION_DIR", Path(tempfile.gettempdir()) / "gpufleet-mutation"))
    work = base / module
    commit, dirty = _git("rev-parse", "--short", "HEAD"), _dirty(module, tests)  # what is measured
    if collect_only:  # the verdicts of an earlier --keep run, collected again (no mutant is re-run)
        mutated = "src/" + str(module_file(module).relative_to(ROOT)).split("/", 1)[1]
        proc = subprocess.CompletedProcess([], 0, "", "")
        seconds = (
            float(json.loads((work / "seconds.json").read_text()))
            if (work / "seconds.json").is_file()
            else 0.0
        )
    else:
        mutated = lay_out(work, module, tests, jobs)
        started = time.monotonic()
        proc = mutmut(work, "run")
        seconds = time.monotonic() - started
        (work / "seconds.json").write_text(json.dumps(seconds))
    meta_path = work / "mutants" / (mutated + ".meta")
    if proc.returncode != 0 or not meta_path.is_file():
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"mutmut run failed for {module} (exit {proc.returncode}); copy kept in {work}")
    meta = json.loads(meta_path.read_text())
    verdicts = {name: STATUS.get(code, "suspicious") for name, code in meta["exit_code_by_key"].items()}
    equivalent = load_equivalent()
    survivors = []
    left = sorted((n for n, st in verdicts.items() if st not in KILLED), key=_natural)
    all_diffs = diffs(work, mutated, left)
    for name in left:
        status = verdicts[name]
        diff = all_diffs.get(name, "").strip()
        entry = equivalent.get(name)
        reason, stale = "", False
        if entry:
            if entry.get("line", "") in changed_lines(diff):
                reason = entry["reason"]
            else:
                stale = True
        survivors.append({"name": name, "status": status, "diff": diff, "equivalent": reason, "stale": stale})
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    counts: dict[str, int] = {}
    for status in verdicts.values():
        counts[status] = counts.get(status, 0) + 1
    killed = sum(n for s, n in counts.items() if s in KILLED)
    equivalent_n = sum(1 for s in survivors if s["equivalent"])
    total = len(verdicts)
    return {
        "module": module,
        "tests": tests,
        "total": total,
        "killed": killed,
        "counts": counts,
        "equivalent": equivalent_n,
        "score": round(100 * killed / total, 1) if total else 100.0,
        "adjusted": round(100 * killed / (total - equivalent_n), 1) if total - equivalent_n else 100.0,
        "seconds": round(seconds, 1),
        "survivors": survivors,
        "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit,
        "dirty": dirty,
        "machine": machine(),
        "tool": "mutmut " + _mutmut_version(),
    }


def _natural(name: str) -> tuple[str, int]:
    m = re.match(r"(.*?)(\d+)$", name)
    return (m.group(1), int(m.group(2))) if m else (name, 0)


def _git(*args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return proc.stdout.strip()


def _dirty(module: str, tests: list[str]) -> bool:
    """Whether the module or its tests differ from the commit named in the table."""
    return bool(_git("status", "--porcelain", "--", str(module_file(module).relative_to(ROOT)), *tests))


def _mutmut_version() -> str:
    from importlib.metadata import version

    return version("mutmut")


def machine() -> str:
    """CPU model, cores and load: scores do not depend on it, the run time does."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return f"{model}, {os.cpu_count()} cores, load {load:.2f}, Python {platform.python_version()}"


def render(results: dict[str, dict[str, Any]]) -> str:
    """The Markdown table plus every surviving mutant with its diff and, if equivalent, why."""
    out = [
        "# Mutation scores (issue #20)",
        "",
        "Produced by `.venv/bin/python bench/mutation.py MODULE…` (mutmut 3, the module's own unit tests",
        "only, hypothesis seed 0). Score = killed / all mutants; a mutant no test covers counts as",
        "surviving. *Adjusted* leaves out the survivors justified as equivalent below",
        "(`bench/mutation_equivalent.toml`). Target: ≥ 90 % per module.",
        "mutmut 3 mutates function bodies only; module-level constants are pinned by tests instead.",
        "",
        "| module | mutants | killed | survived | no tests | equivalent | score | adjusted | run time | when"
        " (commit) | machine |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for module in sorted(results):
        r = results[module]
        c = r["counts"]
        commit = r["commit"] + ("+local changes" if r.get("dirty") else "")
        out.append(
            f"| `{module}` | {r['total']} | {r['killed']} | {c.get('survived', 0)} | "
            f"{c.get('no tests', 0)} | "
            f"{r['equivalent']} | **{r['score']} %** | {r['adjusted']} % | {r['seconds']} s | "
            f"{r['when']} ({commit}) | {r['machine']} |"
        )
    for module in sorted(results):
        r = results[module]
        out += ["", f"## `{module}`", "", "Tests: " + ", ".join(f"`{t}`" for t in r["tests"]), ""]
        if not r["survivors"]:
            out.append("No surviving mutant.")
            continue
        for s in r["survivors"]:
            short = s["name"].rsplit(".", 1)[-1]
            verdict = f"equivalent: {s['equivalent']}" if s["equivalent"] else "**not killed, not justified**"
            if s["stale"]:
                verdict += " (a justification exists but its line no longer matches: stale)"
            out += [f"- `{short}` ({s['status']}) — {verdict}", "", "  ```diff"]
            out += ["  " + line for line in s["diff"].splitlines() if not line.startswith(("---", "+++"))]
            out += ["  ```", ""]
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("modules", nargs="*", help="dotted module names, e.g. gpufleet.hardware.validation")
    parser.add_argument("--tests", nargs="+", help="test paths to use instead of the configured ones")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run in parallel (default 1: shared CPU)")
    parser.add_argument("--keep", action="store_true", help="keep the private copy (for mutmut show)")
    parser.add_argument("--no-write", action="store_true", help="print the scores only")
    parser.add_argument("--list", action="store_true", help="list the configured modules and their tests")
    parser.add_argument("--render", action="store_true", help="re-render mutation.md from mutation.json")
    parser.add_argument(
        "--collect", action="store_true", help="re-collect the verdicts of an earlier --keep run (no re-run)"
    )
    args = parser.parse_args(argv)
    if args.list:
        for module, tests in MODULES.items():
            print(module, " ".join(tests))
        return 0
    results: dict[str, dict[str, Any]] = (
        json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.is_file() else {}
    )
    if args.render:
        RESULTS_MD.write_text(render(results))
        return 0
    if not args.modules:
        parser.error("name at least one module (or --list)")
    worst = 100.0
    for module in args.modules:
        tests = args.tests or default_tests(module)
        r = run_module(module, tests, args.jobs, args.keep or args.collect, args.collect)
        worst = min(worst, r["score"])
        print(
            f"{module}: {r['killed']}/{r['total']} killed = {r['score']} % "
            f"(adjusted {r['adjusted']} %, {r['equivalent']} equivalent) in {r['seconds']} s"
        )
        for s in r["survivors"]:
            if not s["equivalent"]:
                print(f"  {s['status']}: {s['name']}")
        if not args.no_write:  # re-read: another run may have written its modules meanwhile
            results = json.loads(RESULTS_JSON.read_text()) if RESULTS_JSON.is_file() else {}
            results[module] = r
            RESULTS_JSON.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
            RESULTS_MD.write_text(render(results))
    return 0 if worst >= 90.0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
