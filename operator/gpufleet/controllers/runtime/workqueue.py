"""A de-duplicating work queue (the controller-runtime pattern) for level-based reconciliation.

Watch events only *mark* an object dirty; workers reconcile it from the current caches. A key
is queued at most once, and a key that changes while it is being reconciled is queued again
when that pass ends, so bursts of events collapse into one reconcile and none is lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable


class WorkQueue:
    def __init__(self) -> None:
        self._queue: asyncio.Queue[Hashable] = asyncio.Queue()
        self._queued: set[Hashable] = set()
        self._active: set[Hashable] = set()
        self._dirty: set[Hashable] = set()
        self._timers: dict[Hashable, asyncio.TimerHandle] = {}
        self.added = 0

    def __len__(self) -> int:
        return len(self._queued)

    @property
    def idle(self) -> bool:
        """Nothing queued, nothing being worked on (delayed keys do not count)."""
        return not self._queued and not self._active

    @property
    def delayed(self) -> int:
        return len(self._timers)

    def add(self, key: Hashable) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        if key in self._active:
            self._dirty.add(key)
            return
        if key in self._queued:
            return
        self._queued.add(key)
        self.added += 1
        self._queue.put_nowait(key)

    def add_after(self, key: Hashable, delay: float) -> None:
        """Queue later; an earlier pending deadline for the same key wins (no postponing)."""
        if delay <= 0:
            self.add(key)
            return
        if key in self._queued:
            return
        loop = asyncio.get_running_loop()
        pending = self._timers.get(key)
        if pending is not None:
            if pending.when() <= loop.time() + delay:
                return  # the earlier deadline wins
            pending.cancel()
        self._timers[key] = loop.call_later(delay, self._fire, key)

    def _fire(self, key: Hashable) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def get(self) -> Hashable:
        key = await self._queue.get()
        self._queued.discard(key)
        self._active.add(key)
        return key

    def done(self, key: Hashable) -> None:
        self._active.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
