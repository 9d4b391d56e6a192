"""The one write path for status subresources, and the write overlay every controller reads through.

Why one: status is written with JSON merge patches, and a merge patch replaces a list whole. Two
components patching ``status.conditions`` from their own (stale) copies drop each other's
conditions until the next pass repairs them (issue #14). Here every status write of this process
goes through one ``StatusWriter``, which

* serialises the writes of one object (a lock per object), and composes each write on top of the
  freshest status this process knows: the server's answer to our last write until the watch has
  caught up, else the watched body;
* lets each caller own a set of condition *types*: only those are replaced, every other
  condition is carried over from that freshest status, so no interleaving of callers can lose a
  condition another caller wrote (property-tested in tests/unit/operator/test_overlay.py);
* sends only the top-level keys that differ (nothing when nothing differs: zero writes after
  convergence).

The overlay never outlives ``ttl`` seconds: if resourceVersions go backwards (an API server
restored from a backup, issue #21 F6) the watched bodies would look "older" than our last write
forever; after the TTL the watched body wins again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Body = Mapping[str, Any]
ObjectKey = tuple[str, str, str]  # (plural, namespace or "", name)
Send = Callable[[str, str, str, dict[str, Any]], Awaitable[Mapping[str, Any]]]


def _rv(text: object) -> int | None:
    try:
        return int(str(text)) if text not in (None, "") else None
    except ValueError:
        return None


def strip_nulls(value: Any) -> Any:
    """A value as it reads back after a merge patch (``null`` means "remove the key")."""
    if isinstance(value, Mapping):
        return {k: strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_nulls(v) for v in value]
    return value


def compose_conditions(
    current: Sequence[Mapping[str, Any]] | None,
    mine: Sequence[Mapping[str, Any]],
    owned: Collection[str],
) -> list[dict[str, Any]]:
    """``current`` with the ``owned`` types replaced by ``mine``; everyone else's kept, in order."""
    by_type = {str(c.get("type")): dict(c) for c in mine if c.get("type") in owned}
    out: list[dict[str, Any]] = []
    placed: set[str] = set()
    for cond in current or ():
        type_ = str(cond.get("type"))
        if type_ in owned:
            if type_ in by_type and type_ not in placed:
                out.append(by_type[type_])
                placed.add(type_)
            continue
        out.append(dict(cond))
    out.extend(cond for type_, cond in by_type.items() if type_ not in placed)
    return out


@dataclass
class _Written:
    rv: str
    status: dict[str, Any]
    at: float


def object_key(plural: str, body: Body) -> ObjectKey:
    meta = body.get("metadata") or {}
    return (plural, str(meta.get("namespace") or ""), str(meta.get("name") or ""))


class StatusWriter:
    """Serialised, owner-aware status writes with a read-your-writes overlay (see the module doc)."""

    def __init__(
        self, send: Send, *, ttl: float = 30.0, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._send = send
        self.ttl = ttl
        self.monotonic = monotonic
        self._written: dict[ObjectKey, _Written] = {}
        self._locks: dict[ObjectKey, asyncio.Lock] = {}
        self.writes = 0

    # --- reading -------------------------------------------------------------------------

    def current(self, plural: str, body: Body) -> dict[str, Any]:
        """The freshest status this process knows of the object ``body`` is a (watched) copy of."""
        key = object_key(plural, body)
        stored = dict(body.get("status") or {})
        written = self._written.get(key)
        if written is None:
            return stored
        body_rv = str((body.get("metadata") or {}).get("resourceVersion") or "")
        ours, theirs = _rv(written.rv), _rv(body_rv)
        stale = self.monotonic() - written.at > self.ttl
        if body_rv == written.rv or stale or ours is None or theirs is None or theirs > ours:
            # The watch caught up (or went past us), or we cannot tell: the body is the truth.
            del self._written[key]
            return stored
        return dict(written.status)

    def is_echo(self, plural: str, body: Body) -> bool:
        """Whether ``body`` is exactly the object our last write produced (nothing new in it)."""
        written = self._written.get(object_key(plural, body))
        rv = str((body.get("metadata") or {}).get("resourceVersion") or "")
        return written is not None and bool(rv) and written.rv == rv

    def forget(self, plural: str, namespace: str, name: str) -> None:
        self._written.pop((plural, namespace, name), None)
        self._locks.pop((plural, namespace, name), None)

    def clear(self) -> None:
        """Drop every overlay (e.g. after a watch had to re-list: the server's state is the truth)."""
        self._written.clear()

    # --- writing -------------------------------------------------------------------------

    async def write(
        self,
        plural: str,
        body: Body,
        fields: Mapping[str, Any],
        *,
        conditions: Sequence[Mapping[str, Any]] = (),
        owned: Collection[str] = (),
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Write ``fields`` (and the ``owned`` condition types) if they differ; ``(old, patch)``.

        ``fields`` must not contain ``conditions``: pass them as ``conditions`` with the types
        this caller owns, and they are composed with everyone else's.
        """
        if "conditions" in fields:
            raise ValueError("pass conditions separately, with the types this caller owns")
        key = object_key(plural, body)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            old = self.current(plural, body)
            patch = {k: v for k, v in fields.items() if strip_nulls(old.get(k)) != strip_nulls(v)}
            if owned:
                composed = compose_conditions(old.get("conditions"), conditions, owned)
                if composed != list(old.get("conditions") or ()):
                    patch["conditions"] = composed
            if not patch:
                return old, None
            result = await self._send(key[0], key[1], key[2], patch)
            rv = str((result.get("metadata") or {}).get("resourceVersion") or "")
            returned = result.get("status")
            status = dict(returned) if isinstance(returned, Mapping) else strip_nulls({**old, **patch})
            if rv:
                self._written[key] = _Written(rv, status, self.monotonic())
            self.writes += 1
            return old, patch
