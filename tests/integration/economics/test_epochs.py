"""The epoch controller against the emulated API server, with a fake router stats endpoint.

The router's counters come from a small aiohttp server on 127.0.0.1 that speaks the router's own
stats model (``gpufleet.router.stats.RouterStats`` at ``GET /v1/stats``): the real router needs
Envoy and fake engines, which these bounded tests do not start. Time is a fake clock handed to
the controller, so 60-second epochs close without waiting for them; every assertion is on
objects in the API server.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from gpufleet import rbac
from gpufleet.api.crdgen import build_crd
from gpufleet.api.quantity import parse_int_amount
from gpufleet.api.v1alpha1.penalty import Penalty
from gpufleet.controllers.epoch.controller import EpochController
from gpufleet.controllers.epoch.metrics import EpochMetrics
from gpufleet.controllers.epoch.plan import proof_document, read_epoch, rfc3339
from gpufleet.controllers.kube import KubeClient, connection_from_kubeconfig
from gpufleet.economics.emissions import expected_reward_emissions
from gpufleet.economics.points import MICRO
from gpufleet.router.stats import DeviceKey, DeviceStats, RouterStats, Tokens
from gpufleet.settings import OperatorSettings
from gpufleet_devcluster.cluster import DevCluster

ROOT = Path(__file__).resolve().parents[3]
NS = "fleet"
G = "gpufleet.io/v1alpha1"
GENESIS = 1_800_000_000  # any second; epochs of 60 s from here
MODEL = "meta-llama/Llama-3.1-8B-Instruct"  # 8,000 M parameters -> 8 points per 1,000 tokens


@dataclass
class FakeRouter:
    """Cumulative per-device counters, served as the router's stats model."""

    name: str = "router-0"
    since: int = GENESIS - 100
    now: list[int] = field(default_factory=lambda: [GENESIS])
    done: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)

    def serve(self, pool: str, jobs: int, tokens_per_job: int = 100) -> None:
        self.done[pool] = self.done.get(pool, 0) + jobs
        self.tokens[pool] = self.tokens.get(pool, 0) + jobs * tokens_per_job

    def restart_losing_checkpoint(self) -> None:
        """A router whose counters restart from zero (new ``since``)."""
        self.since = self.now[0]
        self.done = dict.fromkeys(self.done, 0)
        self.tokens = dict.fromkeys(self.tokens, 0)

    def stats(self) -> dict[str, Any]:
        devices = tuple(
            DeviceStats(
                key=DeviceKey(namespace=NS, pool=pool, inference_node=f"box-{pool}", device=0, model=MODEL),
                requests=n,
                completions=n,
                tokens=Tokens(
                    prompt=self.tokens[pool] // 4, completion=self.tokens[pool] - self.tokens[pool] // 4
                ),
            )
            for pool, n in sorted(self.done.items())
        )
        return RouterStats(
            router=self.name,
            since=datetime.fromtimestamp(self.since, UTC),
            observed_at=datetime.fromtimestamp(self.now[0], UTC),
            k="0.0001",
            devices=devices,
        ).model_dump(mode="json")


@pytest.fixture
async def cluster() -> AsyncIterator[DevCluster]:
    async with DevCluster(crd_dir=ROOT / "crds", namespaces=("default", NS), kubelet=False) as dc:
        if dc.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", "penalties.gpufleet.io") is None:
            dc.apply(build_crd(Penalty))  # until the reputation issue registers it
        yield dc


@pytest.fixture
def router() -> FakeRouter:
    return FakeRouter()


@pytest.fixture
async def stats_url(router: FakeRouter) -> AsyncIterator[str]:
    async def handler(_: web.Request) -> web.Response:
        return web.json_response(router.stats())

    app = web.Application()
    app.router.add_get("/v1/stats", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


def settings(url: str) -> OperatorSettings:
    return OperatorSettings(
        namespace=NS,
        operator_namespace=NS,
        epoch_genesis=GENESIS,
        epoch_length_seconds=60,
        epoch_close_grace_seconds=5,
        epoch_router_urls=url,
        metrics_port=0,
    )


def pool(name: str, self_stake: str, delegated: str = "0", commission: int = 0) -> dict[str, Any]:
    return {
        "apiVersion": G,
        "kind": "OperatorPool",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"selfStake": self_stake, "delegatedStake": delegated, "commissionBps": commission},
    }


class Harness:
    """A controller (re-creatable: an operator restart) on a fake clock, and its cluster."""

    def __init__(self, cluster: DevCluster, router: FakeRouter, url: str) -> None:
        self.cluster = cluster
        self.router = router
        self.settings = settings(url)
        self.clients: list[KubeClient] = []
        self.controller = self.new_controller()

    def new_controller(self) -> EpochController:
        client = KubeClient(connection_from_kubeconfig(self.cluster.kubeconfig_path))
        self.clients.append(client)
        return EpochController(
            self.settings,
            client,
            now=lambda: float(self.router.now[0]),
            metrics=EpochMetrics(CollectorRegistry()),
        )

    async def restart(self) -> None:
        await self.controller.close()
        self.controller = self.new_controller()

    async def at(self, t: int) -> Any:
        self.router.now[0] = t
        report = await self.controller.step()
        await self.controller.drain_events()
        return report

    async def close(self) -> None:
        await self.controller.close()
        for c in self.clients:
            await c.close()

    def epoch(self, n: int) -> dict[str, Any] | None:
        return self.cluster.get(G, "Epoch", f"epoch-{n:05d}")

    def epochs(self) -> list[dict[str, Any]]:
        return self.cluster.objects(G, "Epoch")

    def pool_status(self, name: str) -> dict[str, Any]:
        return dict((self.cluster.get(G, "OperatorPool", name, NS) or {}).get("status") or {})

    def update(self, obj: dict[str, Any]) -> None:
        """Replace an object (a user's kubectl apply of a changed object)."""
        obj = copy.deepcopy(obj)  # the store's own dict must not be edited in place
        rtype = self.cluster.store.type_for(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        self.cluster.store.update(rtype, meta.get("namespace"), meta["name"], obj, actor="test")

    def events(self, reason: str) -> list[dict[str, Any]]:
        rtype = self.cluster.store.resolve("", "v1", "events")
        return [e for e in self.cluster.store.objects(rtype, NS) if e.get("reason") == reason]


@pytest.fixture
async def h(cluster: DevCluster, router: FakeRouter, stats_url: str) -> AsyncIterator[Harness]:
    harness = Harness(cluster, router, stats_url)
    yield harness
    await harness.close()


def lines(epoch: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {line["pool"]: line for line in epoch["spec"]["pools"]}


def base(text: str) -> int:
    return parse_int_amount(text)


async def test_two_epochs_close_with_rewards_summing_to_the_emission(h: Harness) -> None:
    """a: 100k stake, b: 300k, c: 100k penalised for 15 s of epoch 2; split by jobs x stake x time."""
    for name, stake in (("a", "100000"), ("b", "300000"), ("c", "100000")):
        h.cluster.apply(pool(name, stake, commission=1000 if name == "b" else 0))
    h.router.serve("a", 0)
    h.router.serve("b", 0)
    h.router.serve("c", 0)
    await h.at(GENESIS + 1)  # baseline of every series
    h.router.serve("a", 300)
    h.router.serve("b", 100)
    h.router.serve("c", 200)
    await h.at(GENESIS + 50)
    assert h.epoch(1) is None
    # Epoch 2: a penalty on c from +70 to +85 (15 of 60 s), recorded by the reputation controller.
    h.cluster.apply(
        {
            "apiVersion": G,
            "kind": "Penalty",
            "metadata": {"name": "c-low-completion", "namespace": NS},
            "spec": {
                "pool": "c",
                "offense": "LowCompletion",
                "reason": "hour below 90%",
                "level": 1,
                "start": rfc3339(GENESIS + 70),
                "until": rfc3339(GENESIS + 85),
            },
        }
    )
    report = await h.at(GENESIS + 66)  # epoch 1 ended 6 s ago: closed now
    assert report.closed == [1]
    e1 = h.epoch(1)
    assert e1 is not None
    l1 = lines(e1)
    assert {p: l1[f"{NS}/{p}"]["completedJobs"] for p in "abc"} == {"a": 300, "b": 100, "c": 200}
    emission = expected_reward_emissions(1)
    assert base(e1["spec"]["emission"]) == emission
    assert sum(base(x["reward"]) for x in l1.values()) == emission
    # weights 300*100k : 100*300k : 200*100k = 3 : 3 : 2
    assert base(l1[f"{NS}/a"]["reward"]) == base(l1[f"{NS}/b"]["reward"]) == emission * 3 // 8
    assert abs(base(l1[f"{NS}/c"]["reward"]) - emission * 2 // 8) <= 1
    assert base(l1[f"{NS}/b"]["commission"]) == base(l1[f"{NS}/b"]["reward"]) * 1000 // 10_000
    h.router.serve("a", 60)
    h.router.serve("b", 60)
    h.router.serve("c", 60)
    await h.at(GENESIS + 110)
    report = await h.at(GENESIS + 125)
    assert report.closed == [2]
    e2 = h.epoch(2)
    assert e2 is not None
    l2 = lines(e2)
    # (GENESIS+66, +110]: 44 s, all inside epoch 2
    assert {p: l2[f"{NS}/{p}"]["completedJobs"] for p in "abc"} == {"a": 60, "b": 60, "c": 60}
    assert l2[f"{NS}/c"]["eligibleSeconds"] == 45
    assert l2[f"{NS}/c"]["eligibility"] == "0.75"
    assert sum(base(x["reward"]) for x in l2.values()) == expected_reward_emissions(2)
    # weights 60*100k*60 : 60*300k*60 : 60*100k*45 = 4 : 12 : 3
    total = expected_reward_emissions(2)
    assert abs(base(l2[f"{NS}/c"]["reward"]) - total * 3 // 19) <= 1
    assert abs(base(l2[f"{NS}/b"]["reward"]) - total * 12 // 19) <= 1
    # Proofs verify against the recorded roots; the record verifies as a whole.
    for e in (e1, e2):
        record = read_epoch(e)
        assert record.problems() == []
        for p in "abc":
            assert proof_document(record, f"{NS}/{p}")["verified"] is True
    # The record as read back verifies: Closed=True (Verified)
    for n in (1, 2):
        closed = (h.epoch(n) or {}).get("status", {}).get("conditions", [])
        assert [(c["type"], c["status"], c["reason"]) for c in closed] == [("Closed", "True", "Verified")]
    # Pool status and Events
    assert h.pool_status("c")["lastEpochReward"]["epoch"] == 2
    assert len(h.events("EpochClosed")) == 2
    assert len(h.events("EpochReward")) == 6
    # The CLI reads the same objects from the cluster and verifies them (in a thread: it runs its
    # own event loop).
    from gpufleet.cli import main

    kubeconfig = str(h.cluster.kubeconfig_path)
    assert await asyncio.to_thread(main, ["economics", "verify", "--kubeconfig", kubeconfig]) == 0
    args = ["economics", "proof", "--epoch", "2", "--pool", f"{NS}/c", "--kubeconfig", kubeconfig]
    assert await asyncio.to_thread(main, args) == 0
    # Closing is idempotent: later steps create nothing more.
    report = await h.at(GENESIS + 126)
    assert report.closed == []
    assert len(h.epochs()) == 2


async def test_operator_restart_at_the_boundary_closes_once_and_loses_no_count(h: Harness) -> None:
    h.cluster.apply(pool("a", "100000"))
    h.router.serve("a", 0)
    await h.at(GENESIS + 1)
    h.router.serve("a", 40)
    await h.at(GENESIS + 40)
    h.router.serve("a", 20)  # served in (40, 60]
    await h.restart()  # the operator dies before scraping these 20 jobs
    h.router.serve("a", 30)  # and 30 more in epoch 2 while it is down
    report = await h.at(GENESIS + 65)  # restarted at the boundary: one scrape covers (40, 65]
    assert report.closed == [1]
    e1 = h.epoch(1)
    assert e1 is not None
    # (40, 65]: 50 jobs, 20 s in epoch 1 and 5 s in epoch 2 -> 40 + 40 in epoch 1
    assert lines(e1)[f"{NS}/a"]["completedJobs"] == 80
    # Another restart right after the close: the epoch is adopted, not closed again.
    await h.restart()
    report = await h.at(GENESIS + 66)
    assert report.closed == []
    assert len(h.epochs()) == 1
    h.router.serve("a", 10)
    await h.at(GENESIS + 100)
    await h.restart()
    report = await h.at(GENESIS + 130)
    assert report.closed == [2]
    e2 = h.epoch(2)
    assert e2 is not None
    assert lines(e2)[f"{NS}/a"]["completedJobs"] == 10 + 10  # 10 from (40, 65] plus 10 later
    assert lines(e1)[f"{NS}/a"]["completedJobs"] + lines(e2)[f"{NS}/a"]["completedJobs"] == 100
    assert len(h.epochs()) == 2


async def test_restart_between_create_and_save_adopts_the_record(h: Harness) -> None:
    """The Epoch exists but the saved state still has the epoch open: adopt, never recompute."""
    h.cluster.apply(pool("a", "100000"))
    h.router.serve("a", 0)
    await h.at(GENESIS + 1)
    h.router.serve("a", 12)
    await h.at(GENESIS + 30)
    state_before = h.controller.state
    assert state_before is not None
    await h.at(GENESIS + 70)
    assert h.epoch(1) is not None
    # Roll the saved state back to before the close (as if the save after the create was lost).
    cm = copy.deepcopy(h.cluster.get("v1", "ConfigMap", "gpufleet-epoch-state", NS))
    assert cm is not None
    cm["data"]["state.json"] = state_before.to_json()
    h.update(cm)
    await h.restart()
    report = await h.at(GENESIS + 71)
    assert report.adopted == [1]
    assert report.closed == []
    assert len(h.epochs()) == 1


async def test_router_restart_and_late_scrape(h: Harness) -> None:
    h.cluster.apply(pool("a", "100000"))
    h.router.serve("a", 0)
    await h.at(GENESIS + 1)
    h.router.serve("a", 10)
    await h.at(GENESIS + 20)
    h.router.restart_losing_checkpoint()  # counters restart at +20 (since = +20)
    h.router.serve("a", 7)
    await h.at(GENESIS + 58)  # a scrape taken before the boundary ...
    h.router.now[0] = GENESIS + 58
    report = await h.at(GENESIS + 70)
    assert report.closed == [1]
    e1 = h.epoch(1)
    assert e1 is not None
    assert lines(e1)[f"{NS}/a"]["completedJobs"] == 17
    assert e1["spec"]["counting"]["routerResets"] == 1


async def test_points_match_tokens_served_and_awards(h: Harness) -> None:
    h.cluster.apply(pool("a", "100000"))
    h.router.serve("a", 0)
    await h.at(GENESIS + 1)
    h.router.serve("a", 50, tokens_per_job=200)  # 10,000 tokens of an 8B model: 80 points
    await h.at(GENESIS + 20)
    points = h.pool_status("a")["points"]
    assert points["tokens"] == 10_000
    assert points["compute"] == "80"
    assert points["total"] == "80"
    h.cluster.apply(
        {
            "apiVersion": G,
            "kind": "PointsAward",
            "metadata": {"name": "guide", "namespace": NS},
            "spec": {"pool": {"name": "a"}, "points": "50", "reason": "wrote the tuning guide"},
        }
    )
    await h.at(GENESIS + 21)
    h.cluster.apply(
        {
            "apiVersion": G,
            "kind": "PointsAward",
            "metadata": {"name": "too-much", "namespace": NS},
            "spec": {"pool": {"name": "a"}, "points": "-500", "reason": "correction larger than the total"},
        }
    )
    await h.at(GENESIS + 22)
    assert h.pool_status("a")["points"]["total"] == "130"
    assert h.pool_status("a")["points"]["bonus"] == "50"
    award = h.cluster.get(G, "PointsAward", "guide", NS)
    assert award is not None
    assert award["status"]["applied"] is True
    rejected = h.cluster.get(G, "PointsAward", "too-much", NS)
    assert rejected is not None
    assert rejected["status"]["applied"] is False
    assert rejected["status"]["conditions"][0]["reason"] == "WouldMakeTotalNegative"
    assert len(h.events("PointsAwarded")) == 1
    assert len(h.events("PointsAwardRejected")) == 1
    # Points survive an operator restart (they come from the saved token totals).
    await h.restart()
    await h.at(GENESIS + 23)
    assert h.pool_status("a")["points"]["total"] == "130"
    assert MICRO == 10**6


LEDGER = """
settings: {enforce_emission_schedule: false, delegator_unstake_delay_seconds: 600}
mint: {carol: "50000", dave: "200000"}
steps:
  - {at: 0, op: create_pool, pool: carol-pool, admin: carol, reward_commission_bps: 700}
  - {op: stake, owner: carol, pool: carol-pool, amount: "30000"}
"""


async def test_ledger_sourced_pool_follows_delegation_unstake_and_slash(h: Harness) -> None:
    h.cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "ledger", "namespace": NS},
            "data": {"scenario.yaml": LEDGER},
        }
    )
    h.cluster.apply(
        {
            "apiVersion": G,
            "kind": "OperatorPool",
            "metadata": {"name": "carol", "namespace": NS},
            "spec": {"stakeSource": {"ledger": {"configMapRef": {"name": "ledger"}, "poolId": "carol-pool"}}},
        }
    )

    async def stake_after(extra: str) -> dict[str, Any]:
        cm = copy.deepcopy(h.cluster.get("v1", "ConfigMap", "ledger", NS))
        assert cm is not None
        cm["data"]["scenario.yaml"] = LEDGER + extra
        h.update(cm)
        await h.at(h.router.now[0] + 1)
        return dict(h.pool_status("carol")["ledgerStake"])

    s = await stake_after("")
    assert (s["selfStake"], s["delegatedStake"]) == ("30000", "0")
    s = await stake_after('  - {op: stake, owner: dave, pool: carol-pool, amount: "120000"}\n')
    assert (s["selfStake"], s["delegatedStake"]) == ("30000", "120000")
    s = await stake_after(
        '  - {op: stake, owner: dave, pool: carol-pool, amount: "120000"}\n'
        '  - {op: unstake, owner: dave, pool: carol-pool, shares: "100000"}\n'
    )
    assert (s["delegatedStake"], s["unstaking"]) == ("20000", "100000")  # drops at once
    s = await stake_after(
        '  - {op: stake, owner: dave, pool: carol-pool, amount: "120000"}\n'
        "  - {op: set_halt, pool: carol-pool, halted: true}\n"
        '  - {at: 86400, op: slash, pool: carol-pool, shares: "10000"}\n'
    )
    assert (s["selfStake"], s["delegatedStake"], s["halted"]) == ("20000", "120000", True)
    assert s["meetsMinimumSelfStake"] is True  # 20k of 140k = 14%
    assert len(h.events("LedgerStakeChanged")) == 4


async def test_rbac_rules_of_the_epoch_controller_both_ways(h: Harness) -> None:
    """Every request the controller makes is permitted, and every rule it owns is used."""
    h.cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "ledger", "namespace": NS},
            "data": {"scenario.yaml": LEDGER},
        }
    )
    h.cluster.apply(
        {
            "apiVersion": G,
            "kind": "OperatorPool",
            "metadata": {"name": "carol", "namespace": NS},
            "spec": {"stakeSource": {"ledger": {"configMapRef": {"name": "ledger"}, "poolId": "carol-pool"}}},
        }
    )
    h.cluster.apply(
        {
            "apiVersion": G,
            "kind": "PointsAward",
            "metadata": {"name": "guide", "namespace": NS},
            "spec": {"pool": {"name": "carol"}, "points": "5", "reason": "docs"},
        }
    )
    h.router.serve("carol", 0)
    await h.at(GENESIS + 1)
    h.router.serve("carol", 9)
    await h.at(GENESIS + 30)
    report = await h.at(GENESIS + 70)
    assert report.closed == [1]
    used = {(verb, res) for (verb, res) in h.cluster.requests.counts if not res.startswith("/")}
    assert rbac.unpermitted(used) == []
    mine = {(v, r.resource) for r in rbac.RULES if r.controller == "epochs" for v in r.verbs}
    assert mine - used == set(), "permitted but never used by the epoch controller"


async def test_the_operator_runs_the_epoch_controller(
    cluster: DevCluster, router: FakeRouter, stats_url: str
) -> None:
    """``gpufleet run``'s registry starts the controller: on a real clock an epoch closes."""
    import time

    from gpufleet.controllers.operator import running_operator

    now = int(time.time())
    router.now[0] = now
    router.since = now - 10
    router.serve("a", 5)
    cluster.apply(pool("a", "100000"))
    s = settings(stats_url).model_copy(
        update={
            "epoch_genesis": now - 57,
            "epoch_close_grace_seconds": 0,
            "epoch_scrape_seconds": 0.2,
            "liveness_endpoint": None,
            "pool_settle_seconds": 0.05,
        }
    )

    def closed() -> bool:
        return cluster.get(G, "Epoch", "epoch-00001") is not None

    async with running_operator(s, kubeconfig=str(cluster.kubeconfig_path)):
        await cluster.wait_for(closed, within=30)
    epoch = cluster.get(G, "Epoch", "epoch-00001")
    assert epoch is not None
    assert sum(base(x["reward"]) for x in epoch["spec"]["pools"]) == expected_reward_emissions(1)
