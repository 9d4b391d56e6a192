"""Raw fleet bodies -> router endpoints."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from gpufleet.router.endpoints import build_endpoints
from gpufleet.router.settings import RouterSettings
from gpufleet.router.weights import Exclusion, plan_eligibility

NOW = datetime(2026, 6, 1, tzinfo=UTC)
S = RouterSettings()


def fleet(**over: Any) -> tuple[list[dict[str, Any]], dict[Any, Any], dict[Any, Any]]:
    pod: dict[str, Any] = {
        "metadata": {
            "name": "n-gpu-1",
            "namespace": "ns",
            "annotations": over.pop("pod_ann", {}),
            "labels": {
                "gpufleet.io/pool": "p",
                "gpufleet.io/inference-node": "n",
                "gpufleet.io/device-index": "1",
                "gpufleet.io/routable": over.pop("routable", "true"),
            },
        },
        "spec": {
            "containers": [
                {"ports": [{"name": "metrics", "containerPort": 9}, {"name": "http", "containerPort": 8123}]}
            ]
        },
        "status": {
            "phase": over.pop("phase", "Running"),
            "podIP": over.pop("ip", "10.1.2.3"),
            "conditions": [{"type": "gpufleet.io/engine-ready", "status": over.pop("gate", "True")}],
        },
    }
    inode = {
        "metadata": {"name": "n", "namespace": "ns", "annotations": over.pop("inode_ann", {})},
        "spec": {"poolRef": {"name": "p"}, "models": [{"name": "m1"}, {"name": "m2"}]},
        "status": {"devices": [{"index": 0, "effectiveStake": "5"}, {"index": 1, "effectiveStake": "12.5"}]},
    }
    pool = {
        "metadata": {"name": "p", "namespace": "ns", "annotations": over.pop("pool_ann", {})},
        "spec": {"selfStake": "1", "reputationWeight": over.pop("reputation", "0.5")},
    }
    pools = {} if over.pop("no_pool", False) else {("ns", "p"): pool}
    assert not over
    return [pod], {("ns", "n"): inode}, pools


def one(**over: Any) -> Any:
    pods, inodes, pools = fleet(**over)
    [e] = build_endpoints(pods, inodes, pools, S, NOW)
    return e


def test_reads_what_the_operator_wrote() -> None:
    e = one()
    assert (e.namespace, e.pool, e.inference_node, e.device, e.pod) == ("ns", "p", "n", 1, "n-gpu-1")
    assert e.models == ("m1", "m2")
    assert e.address == "10.1.2.3:8123"
    assert e.effective_stake_base == 12_500_000_000
    assert e.reputation_weight == Decimal("0.5")
    assert plan_eligibility([e]).eligible == (e,)


def test_exclusions_from_pod_state() -> None:
    assert plan_eligibility([one(gate="False")]).excluded[("ns", "n-gpu-1")] == (Exclusion.GATE_CLOSED,)
    assert plan_eligibility([one(routable="false")]).excluded[("ns", "n-gpu-1")] == (Exclusion.NOT_ROUTABLE,)
    assert plan_eligibility([one(phase="Pending", ip=None)]).excluded[("ns", "n-gpu-1")] == (
        Exclusion.NOT_RUNNING,
        Exclusion.NO_ADDRESS,
    )


def test_halt_and_penalty_annotations() -> None:
    assert one(pool_ann={"gpufleet.io/routing-halted": "true"}).pool_halted
    assert one(no_pool=True).pool_halted  # no pool object: nobody backs the device
    future, past = "2026-06-02T00:00:00Z", "2026-05-31T00:00:00Z"
    key = "gpufleet.io/routing-penalised-until"
    assert one(pod_ann={key: future}).penalised
    assert one(inode_ann={key: future}).penalised
    assert one(pool_ann={key: future}).penalised
    assert not one(pod_ann={key: past}).penalised
    assert one(pod_ann={key: "not a time"}).penalised  # unreadable errs on the safe side


def test_penalty_hook_is_the_reputation_seam() -> None:
    pods, inodes, pools = fleet()
    calls: list[tuple[str, str, str, int]] = []

    def hook(ns: str, pool: str, inode: str, device: int) -> bool:
        calls.append((ns, pool, inode, device))
        return True

    [e] = build_endpoints(pods, inodes, pools, S, NOW, hook)
    assert e.penalised
    assert calls == [("ns", "p", "n", 1)]


def test_concurrency_cap_annotation_and_default() -> None:
    assert one(pod_ann={"gpufleet.io/max-concurrency": "16"}).max_concurrency == 16
    assert one().max_concurrency is None
    pods, inodes, pools = fleet()
    [e] = build_endpoints(pods, inodes, pools, RouterSettings(default_max_concurrency=8), NOW)
    assert e.max_concurrency == 8


def test_pods_without_device_labels_are_ignored() -> None:
    pods, inodes, pools = fleet()
    pods[0]["metadata"]["labels"].pop("gpufleet.io/device-index")
    assert build_endpoints(pods, inodes, pools, S, NOW) == []
