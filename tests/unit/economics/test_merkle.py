"""Reward-record merkle trees: byte layout, ordering, padding, proofs, PDAs."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest

from gpufleet.economics.errors import InvalidInput, TooManyMerkleRoots
from gpufleet.economics.merkle import (
    DEFAULT_PUBKEY,
    MerkleTree,
    Proof,
    RewardLeaf,
    RewardTrees,
    b58decode,
    b58encode,
    find_program_address,
    hash_leaf,
    hash_node,
    leaf_preimage,
    padded_size,
    pubkey_bytes,
    sort_addresses,
    verify_proof,
)

GOLDEN = json.loads((Path(__file__).parent / "golden_vectors.json").read_text())


def addr(i: int) -> str:
    return b58encode(hashlib.sha256(b"pool-%d" % i).digest())


def test_leaf_bytes_worked_example() -> None:
    """The example documented in docs/economics.md, byte for byte."""
    leaf = RewardLeaf("JBCxQUvqRkPRq7nCFBCFvzRmm1qw5CWEcAAwK9bML8HH", 1_666_666_666_666_667, 12_500_000)
    pre = leaf_preimage(leaf)
    assert pre[:1] == b"\x00"
    assert pre[1:] == b"JBCxQUvqRkPRq7nCFBCFvzRmm1qw5CWEcAAwK9bML8HH,1666666666666667,12500000"
    assert len(pre) == 1 + 44 + 1 + 16 + 1 + 8
    assert hash_leaf(leaf).hex() == hashlib.sha256(pre).hexdigest()
    assert hash_leaf(leaf).hex() == "4e3daeef86f1924f0d2b91be846f179c5453e3a45b7af590bee81a99218a7bc0"


def test_node_hash_prefix_and_order_matter() -> None:
    a, b = hashlib.sha256(b"a").digest(), hashlib.sha256(b"b").digest()
    assert hash_node(a, b) == hashlib.sha256(b"\x01" + a + b).digest()
    assert hash_node(a, b) != hash_node(b, a)


def test_golden_root_matches_javascript_builder() -> None:
    leaves = [RewardLeaf(a, t, u) for a, t, u in GOLDEN["tree"]["leaves"]]
    random.Random(3).shuffle(leaves)  # input order must not matter
    assert MerkleTree.build(leaves).root.hex() == GOLDEN["tree"]["root"]


def test_locale_compare_order_matches_javascript() -> None:
    expected = GOLDEN["localeCompareSorted"]
    shuffled = list(expected)
    random.Random(5).shuffle(shuffled)
    assert sort_addresses(shuffled) == expected
    assert sort_addresses(["b", "B", "a", "A", "1"]) == ["1", "a", "A", "b", "B"]


def test_program_derived_addresses_match_web3js() -> None:
    for case in GOLDEN["pdas"]:
        assert find_program_address([b"OperatorPool", pubkey_bytes(case["admin"])]) == (
            case["address"],
            case["bump"],
        )


def test_thousand_pools_every_proof_verifies() -> None:
    rng = random.Random(1)
    leaves = [RewardLeaf(addr(i), rng.randrange(10**15), rng.randrange(10**9)) for i in range(1000)]
    tree = MerkleTree.build(leaves)
    assert len(tree.levels[0]) == 1024
    assert len(tree.levels) == 11
    for i, leaf in enumerate(tree.leaves):
        proof = tree.proof(i)
        assert len(proof.siblings) == 10
        assert verify_proof(tree.root, leaf, proof)
    # a proof is bound to its leaf's amounts and to its path
    leaf, proof = tree.leaves[17], tree.proof(17)
    assert not verify_proof(
        tree.root, RewardLeaf(leaf.address, leaf.token_amount + 1, leaf.usdc_amount), proof
    )
    flipped = Proof(proof.siblings, (not proof.path[0], *proof.path[1:]))
    assert not verify_proof(tree.root, leaf, flipped)
    assert not verify_proof(tree.root, tree.leaves[18], proof)


def test_padding_uses_default_pubkey_with_zero_amounts() -> None:
    leaves = [RewardLeaf(addr(i), i, 0) for i in range(5)]
    tree = MerkleTree.build(leaves)
    pad = hash_leaf(RewardLeaf(DEFAULT_PUBKEY, 0, 0))
    assert tree.levels[0][5:] == [pad, pad, pad]
    assert [padded_size(n) for n in (1, 2, 3, 4, 5, 1000)] == [1, 2, 4, 4, 8, 1024]
    single = MerkleTree.build([RewardLeaf(addr(1), 5, 0)])
    assert single.root == hash_leaf(single.leaves[0])
    assert single.proof(0) == Proof((), ())


def test_split_into_several_roots() -> None:
    leaves = [RewardLeaf(addr(i), i, i) for i in range(10)]
    trees = RewardTrees.build(leaves, max_leaves_per_tree=4)
    assert len(trees.roots) == 3
    for leaf in leaves:
        loc = trees.locate(leaf.address)
        assert loc is not None
        assert verify_proof(trees.roots[loc.merkle_index], leaf, loc.proof)
    with pytest.raises(TooManyMerkleRoots, match="at least 2"):
        RewardTrees.build(leaves, max_leaves_per_tree=1)


def test_bad_leaves_are_refused() -> None:
    with pytest.raises(InvalidInput, match="not base58"):
        RewardLeaf("0OIl" * 11, 1, 1)
    with pytest.raises(InvalidInput, match="32"):
        RewardLeaf("abc", 1, 1)
    with pytest.raises(InvalidInput, match="u64"):
        RewardLeaf(addr(1), 2**64, 0)
    with pytest.raises(InvalidInput, match="twice"):
        MerkleTree.build([RewardLeaf(addr(1), 1, 0), RewardLeaf(addr(1), 2, 0)])
    with pytest.raises(InvalidInput):
        MerkleTree.build([])


def test_base58_round_trip_keeps_leading_zeros() -> None:
    for raw in (b"\x00" * 32, b"\x00\x00\x01" + b"\xff" * 29, hashlib.sha256(b"x").digest()):
        assert b58decode(b58encode(raw)) == raw
    assert b58encode(b"\x00" * 32) == DEFAULT_PUBKEY
