"""Reward records and ledger throughput at fleet scale.

Usage: .venv/bin/python bench/economics_merkle.py -> bench/results/economics_merkle.json
Measures building an epoch's merkle tree(s), generating and verifying every proof, deriving pool
PDAs, and the ledger's finalize + accrue of one epoch for many pools.
"""

from __future__ import annotations

import json
import os
import platform
import random
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gpufleet.economics.emissions import expected_reward_emissions
from gpufleet.economics.ledger import Ledger
from gpufleet.economics.merkle import (
    MerkleTree,
    RewardLeaf,
    name_to_pubkey,
    operator_pool_address,
    verify_proof,
)

ROOT = Path(__file__).resolve().parents[1]


def tree_bench(n: int) -> dict[str, Any]:
    rng = random.Random(n)
    start = time.perf_counter()
    addresses = [operator_pool_address(name_to_pubkey(f"admin-{i}")) for i in range(n)]
    pda = time.perf_counter() - start
    leaves = [RewardLeaf(a, rng.randrange(10**15), rng.randrange(10**9)) for a in addresses]
    start = time.perf_counter()
    tree = MerkleTree.build(leaves)
    build = time.perf_counter() - start
    start = time.perf_counter()
    proofs = [tree.proof(i) for i in range(n)]
    prove = time.perf_counter() - start
    start = time.perf_counter()
    assert all(verify_proof(tree.root, leaf, p) for leaf, p in zip(tree.leaves, proofs, strict=True))
    verify = time.perf_counter() - start
    return {
        "pools": n,
        "depth": len(tree.levels) - 1,
        "pda_derivation_seconds": round(pda, 3),
        "build_seconds": round(build, 3),
        "all_proofs_seconds": round(prove, 3),
        "verify_all_seconds": round(verify, 3),
    }


def ledger_bench(n: int) -> dict[str, Any]:
    ledger = Ledger()
    for i in range(n):
        ledger.mint(f"op{i}", 1000 * 10**9)
        ledger.create_pool(f"p{i}", f"op{i}", reward_commission_rate_bps=500)
        ledger.stake(f"op{i}", f"p{i}", 1000 * 10**9)
    emission = expected_reward_emissions(1)
    rewards = {f"p{i}": (emission // n + (1 if i < emission % n else 0), 0) for i in range(n)}
    start = time.perf_counter()
    ledger.finalize_epoch(rewards)
    finalize = time.perf_counter() - start
    start = time.perf_counter()
    ledger.accrue_all()
    accrue = time.perf_counter() - start
    return {"pools": n, "finalize_seconds": round(finalize, 3), "accrue_all_seconds": round(accrue, 3)}


def main() -> int:
    trees = [tree_bench(n) for n in (1_000, 10_000, 50_000)]
    ledgers = [ledger_bench(n) for n in (1_000, 10_000)]
    for row in trees + ledgers:
        print(row, flush=True)
    out = {
        "benchmark": "economics_merkle",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "trees": trees,
        "ledger_epoch": ledgers,
    }
    path = ROOT / "bench" / "results" / "economics_merkle.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
