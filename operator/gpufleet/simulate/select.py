"""Host selection as the data plane does it: Envoy's EDF weighted round robin, or weighted random.

Both keep a *member set* (hosts a pick may return) and weights. The engine decides what
membership means: with ``attempts = 0`` only hosts with a free slot are members (the router finds
any free host); with ``attempts > 0`` every eligible host is a member and a pick that lands on a
full host is spent, like an Envoy retry with a host-selection predicate.

EDF follows Envoy's ``EdfScheduler``: each host's next deadline is ``current time + 1/weight``; a
pick pops the earliest deadline (ties in insertion order), moves the scheduler's time to it and
re-inserts the host one period later. Weight changes rebuild the schedule, as Envoy does when a
host set's weights change. A host leaving the member set is dropped lazily when it reaches the
top; on return it is inserted at ``current time + 1/weight``.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Sequence
from typing import Protocol


class Selector(Protocol):
    def pick(self) -> int:
        """A member host, or -1 when there is none."""

    def add(self, i: int) -> None: ...

    def remove(self, i: int) -> None: ...

    def set_weights(self, weights: Sequence[float]) -> None: ...


class EdfSelector:
    """Envoy's earliest-deadline-first weighted round robin over the member hosts."""

    __slots__ = ("_heap", "_in_heap", "_inv", "_member", "_now", "_order", "hosts")

    def __init__(self, hosts: Sequence[int], weights: Sequence[float], n_total: int) -> None:
        self.hosts = list(hosts)
        self._member = [False] * n_total
        self._in_heap = [False] * n_total
        self._inv = [0.0] * n_total
        self._heap: list[tuple[float, int, int]] = []
        self._order = 0
        self._now = 0.0
        for i in self.hosts:
            self._member[i] = True
        self.set_weights(weights)

    def set_weights(self, weights: Sequence[float]) -> None:
        """Rebuild the schedule with new weights (indexed by global host id)."""
        inv = self._inv
        for i in self.hosts:
            w = weights[i]
            inv[i] = 1.0 / w if w > 0 else float("inf")
        heap: list[tuple[float, int, int]] = []
        now = self._now
        order = self._order
        in_heap = self._in_heap
        member = self._member
        for i in self.hosts:
            in_heap[i] = member[i]
            if member[i]:
                heap.append((now + inv[i], order, i))
                order += 1
        heapq.heapify(heap)
        self._heap = heap
        self._order = order

    def pick(self) -> int:
        heap = self._heap
        member = self._member
        while heap:
            deadline, _, i = heap[0]
            if not member[i]:
                heapq.heappop(heap)
                self._in_heap[i] = False
                continue
            self._now = deadline
            heapq.heapreplace(heap, (deadline + self._inv[i], self._order, i))
            self._order += 1
            return i
        return -1

    def add(self, i: int) -> None:
        self._member[i] = True
        if not self._in_heap[i]:
            self._in_heap[i] = True
            heapq.heappush(self._heap, (self._now + self._inv[i], self._order, i))
            self._order += 1

    def remove(self, i: int) -> None:
        self._member[i] = False


class RandomSelector:
    """Weighted random over member hosts: a Fenwick tree of weights, O(log n) per pick and change."""

    __slots__ = ("_count", "_member", "_n", "_pos", "_rng", "_step", "_total", "_tree", "_w", "hosts")

    def __init__(
        self, hosts: Sequence[int], weights: Sequence[float], n_total: int, rng: random.Random
    ) -> None:
        self.hosts = list(hosts)
        self._n = len(self.hosts)
        self._pos = {h: j for j, h in enumerate(self.hosts)}
        self._rng = rng
        step = 1
        while step * 2 <= self._n:
            step *= 2
        self._step = step
        self._member = [True] * self._n
        self._count = self._n
        self._w = [0.0] * self._n
        self._tree = [0.0] * (self._n + 1)
        self._total = 0.0
        self.set_weights(weights)

    def set_weights(self, weights: Sequence[float]) -> None:
        n = self._n
        self._w = [float(weights[h]) for h in self.hosts]
        tree = [0.0] * (n + 1)
        for j in range(n):
            if self._member[j]:
                tree[j + 1] += self._w[j]
        for idx in range(1, n + 1):
            parent = idx + (idx & -idx)
            if parent <= n:
                tree[parent] += tree[idx]
        self._tree = tree
        self._total = sum(self._w[j] for j in range(n) if self._member[j])

    def _update(self, j: int, delta: float) -> None:
        tree = self._tree
        n = self._n
        idx = j + 1
        while idx <= n:
            tree[idx] += delta
            idx += idx & -idx
        self._total += delta

    def pick(self) -> int:
        if not self._count:
            return -1
        if self._total <= 1e-9:
            # Float residue after removals; recompute exactly before deciding there is nobody.
            self._total = sum(self._w[j] for j in range(self._n) if self._member[j])
            if self._total <= 0:
                return -1
        u = self._rng.random() * self._total
        tree = self._tree
        n = self._n
        pos = 0
        step = self._step
        while step:
            nxt = pos + step
            if nxt <= n and tree[nxt] <= u:
                pos = nxt
                u -= tree[nxt]
            step >>= 1
        if pos >= n or not self._member[pos]:
            # u landed on float residue at the edge: take the nearest member at or below.
            for j in range(min(pos, n - 1), -1, -1):
                if self._member[j] and self._w[j] > 0:
                    return self.hosts[j]
            for j in range(n):
                if self._member[j] and self._w[j] > 0:
                    return self.hosts[j]
            return -1
        return self.hosts[pos]

    def add(self, i: int) -> None:
        j = self._pos[i]
        if not self._member[j]:
            self._member[j] = True
            self._count += 1
            self._update(j, self._w[j])

    def remove(self, i: int) -> None:
        j = self._pos[i]
        if self._member[j]:
            self._member[j] = False
            self._count -= 1
            self._update(j, -self._w[j])


def make_selector(
    policy: str, hosts: Sequence[int], weights: Sequence[float], n_total: int, rng: random.Random
) -> EdfSelector | RandomSelector:
    if policy == "edf":
        return EdfSelector(hosts, weights, n_total)
    if policy == "random":
        return RandomSelector(hosts, weights, n_total, rng)
    raise ValueError(f"unknown router policy {policy!r}")
