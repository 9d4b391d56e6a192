"""Label and field selectors with the real API server's grammar."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gpufleet_devcluster.errors import APIError

_KEY_RE = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_VALUE_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: frozenset[str] = frozenset()

    def matches(self, labels: dict[str, str]) -> bool:
        op = self.op
        if op == "=":
            return labels.get(self.key) in self.values
        if op == "!=":
            return labels.get(self.key) not in self.values
        if op == "in":
            return self.key in labels and labels[self.key] in self.values
        if op == "notin":
            return labels.get(self.key) not in self.values
        if op == "exists":
            return self.key in labels
        return self.key not in labels  # "!"


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: dict[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def equalities(self) -> Iterable[tuple[str, str]]:
        """`key=value` pairs every match must have; the store intersects its label index with them."""
        for r in self.requirements:
            if r.op in ("=", "in") and len(r.values) == 1:
                yield r.key, next(iter(r.values))

    def only_equalities(self) -> bool:
        """True when equalities() alone decides a match (every term is `key=value`)."""
        return all(r.op in ("=", "in") and len(r.values) == 1 for r in self.requirements)

    def __bool__(self) -> bool:
        return bool(self.requirements)


def _split_top(text: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _bad(selector: str, why: str) -> APIError:
    return APIError(400, "BadRequest", f"unable to parse requirement: {why} (in selector {selector!r})")


def _check_key(key: str, selector: str) -> str:
    if not _KEY_RE.match(key) or len(key.rsplit("/", 1)[-1]) > 63:
        raise _bad(
            selector,
            f"invalid label key {key!r}: name part must consist of alphanumeric "
            "characters, '-', '_' or '.', and must start and end with an alphanumeric",
        )
    return key


def _check_value(value: str, selector: str) -> str:
    if not _VALUE_RE.match(value) or len(value) > 63:
        raise _bad(
            selector,
            f"invalid label value {value!r}: must be 63 characters or less and consist "
            "of alphanumerics, '-', '_' or '.'",
        )
    return value


_SET_RE = re.compile(r"^(\S+)\s+(in|notin)\s*\((.*)\)$")


def parse_label_selector(selector: str | None) -> LabelSelector:
    if not selector:
        return LabelSelector()
    reqs: list[Requirement] = []
    for part in _split_top(selector):
        m = _SET_RE.match(part)
        if m:
            key = _check_key(m.group(1), selector)
            values = frozenset(_check_value(v.strip(), selector) for v in m.group(3).split(",") if v.strip())
            reqs.append(Requirement(key, m.group(2), values))
        elif "!=" in part:
            key, value = part.split("!=", 1)
            reqs.append(
                Requirement(
                    _check_key(key.strip(), selector),
                    "!=",
                    frozenset([_check_value(value.strip(), selector)]),
                )
            )
        elif "=" in part:
            key, value = part.split("==", 1) if "==" in part else part.split("=", 1)
            reqs.append(
                Requirement(
                    _check_key(key.strip(), selector), "=", frozenset([_check_value(value.strip(), selector)])
                )
            )
        elif part.startswith("!"):
            reqs.append(Requirement(_check_key(part[1:].strip(), selector), "!"))
        else:
            if " " in part or "(" in part:
                raise _bad(selector, f"cannot parse {part!r}")
            reqs.append(Requirement(_check_key(part, selector), "exists"))
    return LabelSelector(tuple(reqs))


@dataclass(frozen=True)
class FieldRequirement:
    path: tuple[str, ...]
    field: str
    value: str
    negate: bool


@dataclass(frozen=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, obj: dict[str, Any]) -> bool:
        for r in self.requirements:
            cur: Any = obj
            for p in r.path:
                cur = cur.get(p) if isinstance(cur, dict) else None
            actual = _field_str(cur)
            if (actual == r.value) == r.negate:
                return False
        return True

    def name_equals(self) -> str | None:
        for r in self.requirements:
            if r.field == "metadata.name" and not r.negate:
                return r.value
        return None

    def __bool__(self) -> bool:
        return bool(self.requirements)


def _field_str(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _unescape(value: str) -> str:
    return value.replace("\\,", ",").replace("\\=", "=").replace("\\\\", "\\")


def parse_field_selector(selector: str | None, allowed: Iterable[str], kind: str) -> FieldSelector:
    """Parse `a=b,c!=d`; like the real server, fields a resource does not index are a 400."""
    if not selector:
        return FieldSelector()
    allowed_set = set(allowed)
    reqs = []
    for part in re.split(r"(?<!\\),", selector):
        part = part.strip()
        if not part:
            continue
        if "!=" in part:
            fld, value = part.split("!=", 1)
            negate = True
        elif "==" in part:
            fld, value = part.split("==", 1)
            negate = False
        elif "=" in part:
            fld, value = part.split("=", 1)
            negate = False
        else:
            raise APIError(400, "BadRequest", f"invalid selector: {selector!r}; can't understand {part!r}")
        fld = fld.strip()
        if fld not in allowed_set:
            raise APIError(
                400,
                "BadRequest",
                f"field label not supported: {fld} (for {kind}; supported: {', '.join(sorted(allowed_set))})",
            )
        reqs.append(FieldRequirement(tuple(fld.split(".")), fld, _unescape(value.strip()), negate))
    return FieldSelector(tuple(reqs))
