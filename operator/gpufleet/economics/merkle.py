"""Epoch reward records: the merkle trees the staking program verifies in ``accrue_reward``.

Byte-exact with the program (``state/reward_record.rs``) and its off-chain builder
(``tests/lib/merkle.ts`` in ``context-labs/inference-staking``):

* leaf = ``sha256(0x00 || utf8("<pool address base58>,<token reward>,<usdc>"))``, amounts as plain
  decimal integers in base units;
* node = ``sha256(0x01 || left || right)``;
* leaves are ordered by pool address the way JavaScript's ``String.prototype.localeCompare``
  orders them (ICU root collation: digits before letters, letters case-insensitively, then
  lower case before upper case) -- *not* byte order;
* the leaf list is padded to the next power of two with the all-zero key
  ``11111111111111111111111111111111`` and zero amounts;
* a proof lists siblings from the leaf level up; its path flag is ``True`` when the sibling is on
  the left.

The module also derives Solana program addresses (PDAs) so a pool's leaf can carry the address the
program would compute for it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from gpufleet.economics.errors import InvalidInput, TooManyMerkleRoots
from gpufleet.economics.units import U64_MAX

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
#: ``PublicKey.default``: 32 zero bytes, the padding leaves' address.
DEFAULT_PUBKEY = "1" * 32
#: ``RewardRecord.merkle_roots`` is ``#[max_len(5)]``.
MAX_MERKLE_ROOTS = 5
#: The staking program's id (``declare_id!`` in ``lib.rs``).
STAKING_PROGRAM_ID = "stkxmBvNyGRH6FWi4tjFtPpL9XmwnT9ZpqrQnUogvHG"

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(_B58_ALPHABET)}


# --- base58 (Bitcoin alphabet, as Solana uses it) -----------------------------------------------
def b58encode(data: bytes) -> str:
    """Bytes to base58; each leading zero byte becomes a leading ``1``."""
    n = int.from_bytes(data, "big")
    out: list[str] = []
    while n:
        n, rem = divmod(n, 58)
        out.append(_B58_ALPHABET[rem])
    pad = len(data) - len(data.lstrip(b"\x00"))
    return "1" * pad + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    """Base58 to bytes; refuses characters outside the alphabet (0, O, I, l ...)."""
    n = 0
    for ch in text:
        digit = _B58_INDEX.get(ch)
        if digit is None:
            raise InvalidInput(f"{text!r} is not base58: character {ch!r} is not in the alphabet")
        n = n * 58 + digit
    pad = len(text) - len(text.lstrip("1"))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\x00" * pad + body


def pubkey_bytes(address: str) -> bytes:
    """A Solana address string to its 32 bytes, with a clear error if it is not one."""
    raw = b58decode(address)
    if len(raw) != 32:
        raise InvalidInput(f"{address!r} is not a Solana public key: it decodes to {len(raw)} bytes, not 32")
    return raw


def is_valid_pubkey(address: str) -> bool:
    try:
        pubkey_bytes(address)
    except InvalidInput:
        return False
    return True


# --- program derived addresses -------------------------------------------------------------------
_P = 2**255 - 19
_D = (-121665 * pow(121666, -1, _P)) % _P


def is_on_curve(point: bytes) -> bool:
    """Whether 32 bytes decompress to an ed25519 point (curve25519-dalek's rule).

    Dalek reads y modulo p ignoring the sign bit and accepts whenever
    ``(y^2 - 1) / (d*y^2 + 1)`` is a square; PDAs are exactly the hashes for which it is not.
    """
    if len(point) != 32:
        raise InvalidInput(f"a curve point has 32 bytes, got {len(point)}")
    y = (int.from_bytes(point, "little") & ((1 << 255) - 1)) % _P
    yy = y * y % _P
    u = (yy - 1) % _P
    v = (_D * yy + 1) % _P
    if u == 0:
        return True
    if v == 0:
        return False
    w = u * pow(v, -1, _P) % _P
    return pow(w, (_P - 1) // 2, _P) == 1


def create_program_address(seeds: Sequence[bytes], program_id: str) -> str | None:
    """``Pubkey::create_program_address``: None when the hash lands on the curve."""
    if len(seeds) > 16 or any(len(s) > 32 for s in seeds):
        raise InvalidInput("at most 16 seeds of at most 32 bytes each")
    digest = hashlib.sha256(b"".join(seeds) + pubkey_bytes(program_id) + b"ProgramDerivedAddress").digest()
    if is_on_curve(digest):
        return None
    return b58encode(digest)


def find_program_address(seeds: Sequence[bytes], program_id: str = STAKING_PROGRAM_ID) -> tuple[str, int]:
    """``Pubkey::find_program_address``: the first off-curve address trying bumps 255 down to 0."""
    for bump in range(255, -1, -1):
        address = create_program_address([*seeds, bytes([bump])], program_id)
        if address is not None:
            return address, bump
    raise InvalidInput("no viable bump seed found")  # pragma: no cover - astronomically unlikely


def operator_pool_address(initial_pool_admin: str, program_id: str = STAKING_PROGRAM_ID) -> str:
    """The OperatorPool PDA: seeds ``[b"OperatorPool", initial_pool_admin]``."""
    return find_program_address([b"OperatorPool", pubkey_bytes(initial_pool_admin)], program_id)[0]


def name_to_pubkey(name: str) -> str:
    """A stand-in key for a named holder in simulations (sha256 of the name; not a keypair)."""
    if is_valid_pubkey(name):
        return name
    return b58encode(hashlib.sha256(b"gpufleet.economics/holder/" + name.encode()).digest())


# --- ordering ------------------------------------------------------------------------------------
def locale_compare_key(address: str) -> tuple[str, tuple[bool, ...]]:
    """Sort key equal to JavaScript ``a.localeCompare(b)`` on base58 strings.

    ICU's root collation compares primary weights first (digits < letters, letters ignoring
    case), and only for strings equal at that level looks at case, lower before upper.
    """
    for ch in address:
        if not ("0" <= ch <= "9" or "a" <= ch.lower() <= "z"):
            raise InvalidInput(f"address {address!r} has a character outside [0-9A-Za-z]: {ch!r}")
    return address.lower(), tuple(ch.isupper() for ch in address)


def sort_addresses(addresses: Iterable[str]) -> list[str]:
    return sorted(addresses, key=locale_compare_key)


# --- leaves and nodes ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RewardLeaf:
    """One pool's reward for an epoch: token reward (INT base units) and USDC (base units)."""

    address: str
    token_amount: int
    usdc_amount: int

    def __post_init__(self) -> None:
        pubkey_bytes(self.address)
        for name, value in (("token_amount", self.token_amount), ("usdc_amount", self.usdc_amount)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidInput(f"{name} must be an integer number of base units, got {value!r}")
            if not 0 <= value <= U64_MAX:
                raise InvalidInput(f"{name} must fit in a u64, got {value}")

    def data(self) -> bytes:
        """The UTF-8 text the program hashes: ``address,token,usdc``."""
        return f"{self.address},{self.token_amount},{self.usdc_amount}".encode()


def leaf_preimage(leaf: RewardLeaf) -> bytes:
    """The exact bytes hashed for a leaf: 0x00 followed by the leaf text."""
    return LEAF_PREFIX + leaf.data()


def hash_leaf(leaf: RewardLeaf) -> bytes:
    return hashlib.sha256(leaf_preimage(leaf)).digest()


def hash_node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def padded_size(n: int) -> int:
    """Next power of two (``2 ** ceil(log2(n))``), 1 for a single leaf."""
    if n < 1:
        raise InvalidInput("a merkle tree needs at least one leaf")
    return 1 << (n - 1).bit_length()


@dataclass(frozen=True)
class Proof:
    """Siblings from leaf to root; ``path[i]`` is True when ``siblings[i]`` is the left child."""

    siblings: tuple[bytes, ...]
    path: tuple[bool, ...]

    def hex(self) -> list[str]:
        return [s.hex() for s in self.siblings]


def verify_proof(root: bytes, leaf: RewardLeaf, proof: Proof) -> bool:
    """The on-chain check of ``RewardRecord::verify_proof``."""
    if len(proof.siblings) != len(proof.path):
        return False
    node = hash_leaf(leaf)
    for sibling, sibling_is_left in zip(proof.siblings, proof.path, strict=True):
        node = hash_node(sibling, node) if sibling_is_left else hash_node(node, sibling)
    return node == root


@dataclass
class MerkleTree:
    """A complete binary tree over sorted, padded leaves; ``levels[0]`` are leaf hashes."""

    leaves: list[RewardLeaf]
    levels: list[list[bytes]] = field(default_factory=list)

    @classmethod
    def build(cls, leaves: Sequence[RewardLeaf]) -> MerkleTree:
        """Sort by address (localeCompare order), refuse duplicates, pad, hash level by level."""
        if not leaves:
            raise InvalidInput("a merkle tree needs at least one leaf")
        ordered = sorted(leaves, key=lambda leaf: locale_compare_key(leaf.address))
        seen: set[str] = set()
        for leaf in ordered:
            if leaf.address in seen:
                raise InvalidInput(f"address {leaf.address} appears twice in one reward tree")
            seen.add(leaf.address)
        padded = ordered + [RewardLeaf(DEFAULT_PUBKEY, 0, 0)] * (padded_size(len(ordered)) - len(ordered))
        levels = [[hash_leaf(leaf) for leaf in padded]]
        while len(levels[-1]) > 1:
            below = levels[-1]
            levels.append([hash_node(below[i], below[i + 1]) for i in range(0, len(below), 2)])
        return cls(leaves=ordered, levels=levels)

    @property
    def root(self) -> bytes:
        return self.levels[-1][0]

    def index_of(self, address: str) -> int:
        for i, leaf in enumerate(self.leaves):
            if leaf.address == address:
                return i
        raise InvalidInput(f"address {address} is not in this reward tree")

    def proof(self, index: int) -> Proof:
        if not 0 <= index < len(self.leaves):
            raise InvalidInput(f"leaf index {index} out of range 0..{len(self.leaves) - 1}")
        siblings: list[bytes] = []
        path: list[bool] = []
        node = index
        for level in self.levels[:-1]:
            if node % 2 == 0:
                siblings.append(level[node + 1])
                path.append(False)
            else:
                siblings.append(level[node - 1])
                path.append(True)
            node //= 2
        return Proof(tuple(siblings), tuple(path))


@dataclass(frozen=True)
class LeafLocation:
    merkle_index: int
    leaf: RewardLeaf
    proof: Proof


@dataclass
class RewardTrees:
    """All trees of one epoch's record (``RewardRecord.merkle_roots``) and where each pool is."""

    trees: list[MerkleTree]
    _index: dict[str, tuple[int, int]] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def build(cls, leaves: Sequence[RewardLeaf], max_leaves_per_tree: int | None = None) -> RewardTrees:
        """Split the sorted leaves into consecutive chunks, one tree each (at most five)."""
        if not leaves:
            return cls(trees=[])
        ordered = sorted(leaves, key=lambda leaf: locale_compare_key(leaf.address))
        size = max_leaves_per_tree or len(ordered)
        if size < 1:
            raise InvalidInput("max_leaves_per_tree must be at least 1")
        chunks = [ordered[i : i + size] for i in range(0, len(ordered), size)]
        if len(chunks) > MAX_MERKLE_ROOTS:
            raise TooManyMerkleRoots(
                f"{len(ordered)} leaves at {size} per tree need {len(chunks)} trees; "
                f"raise max_leaves_per_tree to at least {-(-len(ordered) // MAX_MERKLE_ROOTS)}"
            )
        return cls(trees=[MerkleTree.build(chunk) for chunk in chunks])

    @property
    def roots(self) -> list[bytes]:
        return [tree.root for tree in self.trees]

    def locate(self, address: str) -> LeafLocation | None:
        """The tree, leaf and proof for ``address`` (None if the record has no leaf for it)."""
        if self._index is None:
            self._index = {
                leaf.address: (m, i)
                for m, tree in enumerate(self.trees)
                for i, leaf in enumerate(tree.leaves)
            }
        where = self._index.get(address)
        if where is None:
            return None
        tree = self.trees[where[0]]
        return LeafLocation(where[0], tree.leaves[where[1]], tree.proof(where[1]))

    def all_leaves(self) -> list[RewardLeaf]:
        return [leaf for tree in self.trees for leaf in tree.leaves]
