"""Which ``EngineRelease`` an ``InferenceNode`` runs: a pinned version, else its channel's newest."""

from __future__ import annotations

import re
from collections.abc import Iterable

from gpufleet.objects import ReleaseView

DEFAULT_CHANNEL = "stable"

_SEMVER = re.compile(
    r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$"
)


def semver_key(version: str) -> tuple[int, int, int, int, tuple[tuple[int, int | str], ...]]:
    """Sort key following semver precedence (a pre-release sorts before its release)."""
    match = _SEMVER.match(version.strip())
    if not match:
        raise ValueError(f"{version!r} is not a semantic version (MAJOR.MINOR.PATCH[-pre])")
    major, minor, patch, pre = match.groups()
    pre_key: tuple[tuple[int, int | str], ...] = ()
    if pre:
        pre_key = tuple((0, int(p)) if p.isdigit() else (1, p) for p in pre.split("."))
    return (int(major), int(minor), int(patch), 0 if pre else 1, pre_key)


def select_release(
    releases: Iterable[ReleaseView], *, channel: str | None, version: str | None
) -> ReleaseView | None:
    """The release to run, or None when nothing matches (the node then reports EngineSelected=False)."""
    candidates = list(releases)
    if version:
        return next((r for r in candidates if r.version.lstrip("v") == version.lstrip("v")), None)
    wanted = channel or DEFAULT_CHANNEL
    in_channel = []
    for rel in candidates:
        if (rel.channel or DEFAULT_CHANNEL) != wanted:
            continue
        try:
            in_channel.append((semver_key(rel.version), rel))
        except ValueError:
            continue  # an unparsable version can only be selected by pinning it exactly
    if not in_channel:
        return None
    return max(in_channel, key=lambda kv: kv[0])[1]
