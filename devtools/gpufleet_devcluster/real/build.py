"""Build the real control plane (kube-apiserver, etcd, controller-manager, scheduler, kubectl, kwok).

The binaries come from the Go module proxy through the wrapper modules in
``devtools/controlplane/`` and land in a cache outside the repository, keyed on
a hash of those wrapper modules (their go.mod, go.sum and tools.go) and of the
build flags below, so a changed pin rebuilds and an unchanged one never does.

This module uses only the standard library on purpose: CI and a fresh clone run
it before anything else is installed (``python devtools/gpufleet_devcluster/real/build.py``),
and the test suite imports it to build on first use.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

KUBE_VERSION = "v1.36.3"
"""The k8s.io/kubernetes version pinned in controlplane/kubernetes/go.mod (stamped into /version)."""

ETCD_VERSION = "v3.6.17"
KWOK_VERSION = "v0.8.0"

BUILD_DATE = "2026-01-01T00:00:00Z"
"""Fixed, so the same wrapper modules always give the same binaries (and the same cache key)."""

SOURCE_DIR_ENV = "GPUFLEET_CONTROLPLANE_SRC"
CACHE_DIR_ENV = "GPUFLEET_CONTROLPLANE_CACHE"
BIN_DIR_ENV = "GPUFLEET_CONTROLPLANE_BIN"


@dataclass(frozen=True)
class Binary:
    """One command to build: its output name, its Go import path and its ldflags."""

    name: str
    module_dir: str
    package: str
    ldflags: tuple[str, ...] = ()


def _kube_ldflags() -> tuple[str, ...]:
    """The version variables kube's own build (hack/lib/version.sh) stamps; kwok and kubectl read /version."""
    major, minor = KUBE_VERSION.lstrip("v").split(".")[:2]
    values = {
        "gitVersion": KUBE_VERSION,
        "gitMajor": major,
        "gitMinor": minor,
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": BUILD_DATE,
    }
    flags: list[str] = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        for key, value in values.items():
            if value:
                flags.append(f"-X {pkg}.{key}={value}")
    return tuple(flags)


BINARIES: tuple[Binary, ...] = (
    Binary(
        "etcd",
        "etcd",
        "go.etcd.io/etcd/server/v3",
        (f"-X go.etcd.io/etcd/api/v3/version.GitSHA=gpufleet-{ETCD_VERSION}",),
    ),
    Binary("kube-apiserver", "kubernetes", "k8s.io/kubernetes/cmd/kube-apiserver", _kube_ldflags()),
    Binary(
        "kube-controller-manager",
        "kubernetes",
        "k8s.io/kubernetes/cmd/kube-controller-manager",
        _kube_ldflags(),
    ),
    Binary("kube-scheduler", "kubernetes", "k8s.io/kubernetes/cmd/kube-scheduler", _kube_ldflags()),
    Binary("kubectl", "kubernetes", "k8s.io/kubernetes/cmd/kubectl", _kube_ldflags()),
    Binary("kwok", "kwok", "sigs.k8s.io/kwok/cmd/kwok"),
)

NAMES: tuple[str, ...] = tuple(b.name for b in BINARIES)

STAGE_CRD = "kwok.x-k8s.io_stages.yaml"
"""kwok's Stage CRD, copied from the kwok module next to the binaries (kwok runs with --enable-crds=Stage)."""


def source_dir() -> Path:
    """Where the wrapper modules live: devtools/controlplane (or $GPUFLEET_CONTROLPLANE_SRC)."""
    env = os.environ.get(SOURCE_DIR_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "controlplane"


def cache_key(src: Path | None = None) -> str:
    """A hash of every wrapper module file and the build flags: what decides the binaries' content."""
    src = src or source_dir()
    digest = hashlib.sha256()
    for module in sorted({b.module_dir for b in BINARIES}):
        for fname in ("go.mod", "go.sum", "tools.go"):
            path = src / module / fname
            digest.update(f"{module}/{fname}\0".encode())
            digest.update(path.read_bytes())
    for b in BINARIES:
        digest.update(repr(b).encode())
    return digest.hexdigest()[:16]


def cache_root() -> Path:
    """~/.cache/gpufleet/controlplane (or $GPUFLEET_CONTROLPLANE_CACHE, or under $XDG_CACHE_HOME)."""
    env = os.environ.get(CACHE_DIR_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gpufleet" / "controlplane"


def bin_dir() -> Path:
    """The folder of the binaries built from the current wrapper modules ($GPUFLEET_CONTROLPLANE_BIN wins)."""
    env = os.environ.get(BIN_DIR_ENV)
    if env:
        return Path(env)
    return cache_root() / cache_key() / "bin"


def find_go() -> str | None:
    """The go command on PATH ($GPUFLEET_GO overrides); None when there is none."""
    return os.environ.get("GPUFLEET_GO") or shutil.which("go")


def is_built(directory: Path | None = None) -> bool:
    """True when every binary is present and executable (a build writes them last, atomically)."""
    directory = directory or bin_dir()
    complete = (directory / ".complete").is_file() and (directory / STAGE_CRD).is_file()
    return complete and all(os.access(directory / name, os.X_OK) for name in NAMES)


def _copy_stage_crd(go: str, src: Path, target: Path, env: dict[str, str]) -> None:
    """kwok's Stage CRD from the module cache (the same kwok version as the binary)."""
    moddir = subprocess.run(
        [go, "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/kwok"],
        cwd=src / "kwok",
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    shutil.copyfile(Path(moddir) / "kustomize" / "crd" / "bases" / STAGE_CRD, target / STAGE_CRD)


def _log(msg: str) -> None:
    print(f"[controlplane {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def build(*, jobs: int = 2, force: bool = False, go: str | None = None, only: tuple[str, ...] = ()) -> Path:
    """Build every binary into the cache unless it is already there; return the bin folder.

    Idempotent: a finished build leaves ``.complete`` and is never redone; an
    interrupted one leaves nothing in the final folder (each binary is built
    into a temporary folder and moved in).
    """
    target = bin_dir()
    if is_built(target) and not force and not only:
        _log(f"up to date: {target}")
        return target
    go = go or find_go()
    if go is None:
        raise RuntimeError("go is not on PATH: install Go >= 1.26 to build the real control plane")
    src = source_dir()
    target.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-buildvcs=false", GOTOOLCHAIN="local")
    started = time.monotonic()
    wanted = [b for b in BINARIES if not only or b.name in only]
    for i, b in enumerate(wanted, 1):
        out = target / b.name
        if out.exists() and not force:
            _log(f"[{i}/{len(wanted)}] {b.name}: already built")
            continue
        t0 = time.monotonic()
        _log(f"[{i}/{len(wanted)}] building {b.name} ({b.package}) with -p {jobs} ...")
        with tempfile.TemporaryDirectory(dir=target) as tmp:
            cmd = [
                go,
                "build",
                "-p",
                str(jobs),
                "-trimpath",
                "-ldflags",
                " ".join(("-s", "-w", *b.ldflags)),
                "-o",
                str(Path(tmp) / b.name),
                b.package,
            ]
            subprocess.run(cmd, cwd=src / b.module_dir, env=env, check=True)
            os.replace(Path(tmp) / b.name, out)
        _log(f"[{i}/{len(wanted)}] {b.name} built in {time.monotonic() - t0:.0f} s")
    if not (target / STAGE_CRD).is_file():
        _copy_stage_crd(go, src, target, env)
    if all(os.access(target / n, os.X_OK) for n in NAMES):
        (target / ".complete").write_text(f"built in {time.monotonic() - started:.0f} s\n")
    _log(f"done in {time.monotonic() - started:.0f} s: {target}")
    return target


def main(argv: list[str] | None = None) -> int:
    """`build` (default), `path` (print the bin folder) or `check` (exit 1 unless built)."""
    parser = argparse.ArgumentParser(prog="gpufleet-controlplane", description=__doc__.splitlines()[0])
    parser.add_argument("action", nargs="?", default="build", choices=("build", "path", "check"))
    parser.add_argument("-p", "--jobs", type=int, default=2, help="go build -p (default 2)")
    parser.add_argument("--force", action="store_true", help="rebuild even when cached")
    parser.add_argument("--only", nargs="*", default=[], choices=NAMES, help="build only these binaries")
    args = parser.parse_args(argv)
    if args.action == "path":
        print(bin_dir())
        return 0
    if args.action == "check":
        ok = is_built()
        print(bin_dir() if ok else f"not built: {bin_dir()}")
        return 0 if ok else 1
    try:
        print(build(jobs=args.jobs, force=args.force, only=tuple(args.only)))
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        _log(f"build failed: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
