"""LocalIndex keeps the shape of a kopf index: key -> one value per object, updated in place."""

from __future__ import annotations

from gpufleet.controllers.handlers import LocalIndex, index_functions
from gpufleet.controllers.reconciler import PoolMember
from gpufleet.settings import OperatorSettings
from tests.unit.operator.bodies import CATALOG, inode_body


def test_put_replace_and_drop() -> None:
    index = LocalIndex()
    index.put("u1", {("ns", "pool-a"): 1})
    index.put("u2", {("ns", "pool-a"): 2})
    assert sorted(index[("ns", "pool-a")]) == [1, 2]
    index.put("u1", {("ns", "pool-b"): 3})  # the object moved to another key
    assert list(index[("ns", "pool-a")]) == [2]
    assert list(index.get(("ns", "pool-b"), ())) == [3]
    index.drop("u2")
    index.put("u1", None)
    assert len(index) == 0


def test_pool_members_index_reads_validated_vram_from_status() -> None:
    fns = index_functions(OperatorSettings(), CATALOG)["inferencenodes"]
    status = {
        "devices": [
            {
                "index": 0,
                "product": "NVIDIA GeForce RTX 4090",
                "vramMiB": 24210,
                "validation": {"valid": True},
            },
            {
                "index": 1,
                "product": "NVIDIA GeForce RTX 4090",
                "vramMiB": 49152,
                "validation": {"valid": False},
            },
        ]
    }
    entries = fns["pool_members"](inode_body("box", pool="op", status=status))
    assert entries == {("fleet", "op"): PoolMember("box", 24564, 1, 0)}
    assert fns["inodes_on_node"](inode_body("box", node="n9")) == {"n9": ("fleet", "box")}
