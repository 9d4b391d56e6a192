"""Views of raw bodies (release selection: tests/unit/rollout/test_selection.py, the one selector)."""

from __future__ import annotations

import pytest

from gpufleet.objects import InodeView, InvalidObject, NodeView, PoolView
from tests.unit.operator.bodies import inode_body, node_body, pool_body


def test_inode_view_reads_spec() -> None:
    view = InodeView.from_body(inode_body("b", gpu_count=2))
    assert (view.pool, view.node_name, view.gpu_count, view.engine) == ("pool-a", "node-1", 2, "auto")
    assert view.models[0].max_model_len == 8192


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda s: s.pop("poolRef"), "poolRef"),
        (lambda s: s.pop("nodeName"), "nodeName"),
        (lambda s: s.update(models=[]), "models"),
        (lambda s: s.update(gpuCount=-1), "gpuCount"),
    ],
)
def test_inode_view_rejects_unusable_specs(mutate, needle: str) -> None:  # type: ignore[no-untyped-def]
    body = inode_body()
    mutate(body["spec"])
    with pytest.raises(InvalidObject, match=needle):
        InodeView.from_body(body)


def test_pool_view_stakes_in_base_units() -> None:
    pool = PoolView.from_body(pool_body(self_stake="10", delegated="90.5", reputation="0.9"))
    assert pool.total_stake == 100_500_000_000
    assert str(pool.reputation_weight) == "0.9"
    with pytest.raises(InvalidObject, match="reputationWeight"):
        PoolView.from_body(pool_body(reputation="2"))
    with pytest.raises(InvalidObject, match="OperatorPool fleet/pool-a"):
        PoolView.from_body(pool_body(self_stake="1.5e"))


def test_node_view_keeps_only_gpu_labels() -> None:
    node = NodeView.from_body(node_body(count=8))
    assert node.allocatable_gpus == 8
    assert "kubernetes.io/hostname" not in node.labels
    assert node.labels["nvidia.com/gpu.count"] == "8"


def test_pod_view_reads_restarts_and_waiting_reason() -> None:
    from gpufleet.objects import PodView

    body = {
        "metadata": {"name": "p", "namespace": "fleet", "labels": {"gpufleet.io/device-index": "3"}},
        "spec": {"containers": [{"name": "engine", "image": "img"}]},
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {
                    "name": "engine",
                    "ready": False,
                    "restartCount": 4,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                }
            ],
        },
    }
    view = PodView.from_body(body)
    assert (view.device_index, view.restarts, view.waiting_reason) == (3, 4, "CrashLoopBackOff")
    assert view.running
    assert not view.container_ready
