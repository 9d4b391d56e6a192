"""Semantic versions (semver 2.0.0) for engine releases.

Release ordering decides what a node updates to, so precedence follows the spec exactly: numeric
core, then pre-release identifiers (numeric < alphanumeric, shorter < longer), build metadata
ignored. Parsing is strict: a typo in a release must not silently sort somewhere unexpected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import total_ordering

from gpufleet.hardware.report import compare_versions
from gpufleet.hardware.report import parse_version as parse_hw_version

_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)


class InvalidVersion(ValueError):
    """A string that is not a semantic version."""


@total_ordering
@dataclass(frozen=True, eq=False)
class Version:
    major: int
    minor: int
    patch: int
    prerelease: tuple[int | str, ...] = ()
    build: str = field(default="")

    @classmethod
    def parse(cls, text: str) -> Version:
        if not isinstance(text, str):
            raise InvalidVersion(f"version must be a string, got {type(text).__name__}")
        match = _SEMVER.match(text.strip())
        if match is None:
            hint = " (drop the leading 'v')" if text.strip()[:1] in ("v", "V") else ""
            raise InvalidVersion(
                f"invalid semantic version {text!r}{hint}: expected MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD]"
            )
        major, minor, patch, pre, build = match.groups()
        identifiers: tuple[int | str, ...] = ()
        if pre:
            identifiers = tuple(int(p) if p.isdigit() else p for p in pre.split("."))
        return cls(int(major), int(minor), int(patch), identifiers, build or "")

    def _key(self) -> tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]:
        # A release without pre-release identifiers ranks above any pre-release of it.
        pre = tuple((0, p, "") if isinstance(p, int) else (1, 0, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, pre)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() == other._key()

    def __lt__(self, other: Version) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(str(p) for p in self.prerelease)
        if self.build:
            text += "+" + self.build
        return text

    def is_major_upgrade_from(self, current: Version) -> bool:
        """True when moving from ``current`` to this version crosses a major version boundary."""
        return self.major > current.major


def parse_version(text: str) -> Version:
    return Version.parse(text)


def parse_dotted(text: str, *, what: str) -> tuple[int, ...]:
    """Parse a dotted numeric version such as a driver ``550.54.15`` or CUDA ``12.4``.

    The one dotted-version parser is ``gpufleet.hardware.report.parse_version`` (validation and
    engine selection use it too); this only names what was being parsed in the error and drops
    trailing zeros, so ``12.4`` == ``12.4.0``.
    """
    problem = f"invalid {what} version {text!r}: expected dot-separated numbers like 550.54.15"
    if not isinstance(text, str):
        raise InvalidVersion(problem)
    try:
        values = list(parse_hw_version(text))
    except ValueError as exc:
        raise InvalidVersion(problem) from exc
    while len(values) > 1 and values[-1] == 0:
        values.pop()
    return tuple(values)


def dotted_at_least(actual: str, minimum: str, *, what: str) -> bool:
    """``actual >= minimum`` by ``gpufleet.hardware.report.compare_versions`` (the one comparison)."""
    parse_dotted(actual, what=what)
    parse_dotted(minimum, what=what)
    return compare_versions(actual.strip(), minimum.strip()) >= 0
