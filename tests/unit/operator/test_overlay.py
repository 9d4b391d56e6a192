"""The one status write path: no interleaving of writers and watch echoes loses a condition.

A fake API server applies JSON merge patches (``conditions`` replaced whole, as the real one
does) and delivers its watch events late, in order. Several parts of the operator write their own
condition types through one ``StatusWriter`` from whatever (stale) body their cache holds, some
concurrently. After every step the server must hold each part's latest conditions.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gpufleet.controllers.runtime.overlay import StatusWriter, compose_conditions

PARTS = {"core": ("GPUValidated", "Ready"), "rollout": ("Updating", "RolledBack"), "other": ("Halted",)}


class FakeServer:
    def __init__(self) -> None:
        self.rv = 1
        self.status: dict[str, Any] = {}
        self.watch: list[dict[str, Any]] = [self.body()]  # events not yet delivered to the cache
        self.cache = self.body()

    def body(self) -> dict[str, Any]:
        return {
            "metadata": {"name": "n", "namespace": "ns", "resourceVersion": str(self.rv)},
            "status": {k: (list(v) if isinstance(v, list) else v) for k, v in self.status.items()},
        }

    async def send(self, plural: str, ns: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0)  # let a concurrent writer run in between
        for key, value in patch.items():
            if value is None:
                self.status.pop(key, None)
            else:
                self.status[key] = value
        self.rv += 1
        body = self.body()
        self.watch.append(body)
        return body

    def deliver(self) -> None:
        if self.watch:
            self.cache = self.watch.pop(0)


def cond(type_: str, n: int) -> dict[str, Any]:
    return {"type": type_, "status": "True" if n % 2 else "False", "reason": f"R{n}", "message": str(n)}


ops = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.sampled_from(sorted(PARTS)), st.integers(0, 3)),
        st.tuples(st.just("both"), st.sampled_from(sorted(PARTS)), st.integers(0, 3)),
        st.tuples(st.just("deliver"), st.just(""), st.just(0)),
    ),
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(ops)
def test_no_interleaving_of_writers_and_echoes_loses_a_condition(steps: list[tuple[str, str, int]]) -> None:
    async def run() -> None:
        server = FakeServer()
        writer = StatusWriter(server.send)
        latest: dict[str, list[dict[str, Any]]] = {}

        async def write(part: str, n: int) -> None:
            mine = [cond(t, n) for t in PARTS[part]]
            await writer.write("inferencenodes", server.cache, {}, conditions=mine, owned=PARTS[part])
            latest[part] = mine

        for kind, part, n in steps:
            if kind == "deliver":
                server.deliver()
                continue
            if kind == "both":  # this part and the next, concurrently, from the same stale body
                other = sorted(PARTS)[(sorted(PARTS).index(part) + 1) % len(PARTS)]
                await asyncio.gather(write(part, n), write(other, n + 1))
            else:
                await write(part, n)
            on_server = {c["type"]: c for c in server.status.get("conditions") or ()}
            for owner, conds in latest.items():
                for c in conds:
                    assert on_server.get(c["type"]) == c, (owner, c, on_server)
            assert len(server.status.get("conditions") or ()) == sum(len(v) for v in latest.values())

    asyncio.run(run())


def test_read_modify_write_from_the_cache_alone_would_lose_one() -> None:
    """Why the overlay exists: composing on the cached (stale) body drops the other writer's."""
    cached: list[dict[str, Any]] = []
    after_core = compose_conditions(cached, [cond("Ready", 1)], ("Ready",))
    after_rollout = compose_conditions(cached, [cond("Updating", 1)], ("Updating",))  # echo not seen
    assert {c["type"] for c in after_core} | {c["type"] for c in after_rollout} == {"Ready", "Updating"}
    assert "Ready" not in {c["type"] for c in after_rollout}


async def test_nothing_is_written_when_nothing_differs_and_the_overlay_expires() -> None:
    server = FakeServer()
    clock = [0.0]
    writer = StatusWriter(server.send, ttl=5.0, monotonic=lambda: clock[0])
    _, patch = await writer.write(
        "x", server.cache, {"a": 1}, conditions=[cond("Ready", 1)], owned=("Ready",)
    )
    assert patch is not None
    # Before the echo the overlay answers; the same write again sends nothing.
    assert writer.current("x", server.cache)["a"] == 1
    _, again = await writer.write(
        "x", server.cache, {"a": 1}, conditions=[cond("Ready", 1)], owned=("Ready",)
    )
    assert again is None
    # A body whose resourceVersion went backwards (restored API server) wins after the TTL.
    clock[0] = 6.0
    assert writer.current("x", server.cache) == {}
