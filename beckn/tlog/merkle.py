"""RFC 9162 (Certificate Transparency v2) Merkle tree hashing and proofs, SHA-256.

Implements, with 0-based leaf indexes:

* RFC 9162 §2.1.1 Merkle Tree Hash (MTH): leaf = SHA-256(0x00 || d), node = SHA-256(0x01 || l || r),
  empty tree = SHA-256(""). The empty root follows the RFC, *not* golang.org/x/mod/sumdb/tlog, which
  returns 32 zero bytes for size 0.
* RFC 9162 §2.1.3.1/§2.1.3.2 inclusion proofs (generation and verification).
* RFC 9162 §2.1.4.1/§2.1.4.2 consistency proofs (generation and verification).
* A compact range (the right frontier of the tree) so a log can append in O(log n) and persist every
  perfect subtree once, as transparency-dev/merkle `compact.Range` and C2SP tlog-tiles do.

Why hand-written: no maintained Python library fits (research note audit-log.md §2). pymerkle verifies
RFC inclusion proofs but its consistency proofs have another layout; sigstore-python has inclusion only,
behind a private API; the two small packages that do both are new single-author projects. The
algorithms are short, so we transcribe the RFC and check the result against the published vectors
(tlog-vectors.json), the Go-generated proofs and pymerkle in the tests.

Edge rules pinned here because verifiers disagree on them (research §2.1):

* every hash (leaf, root, proof element) must be exactly 32 bytes;
* an inclusion proof needs 0 <= index < size;
* a consistency proof with old_size == new_size is empty and needs equal roots;
* consistency from size 0 (our choice, following C2SP tlog-witness, where a witness with no checkpoint
  yet accepts "old 0"): valid only with an empty proof and old_root == EMPTY_ROOT; the new tree is
  then unconstrained (every tree extends the empty tree). transparency-dev/merkle rejects this case
  instead; we accept it so that a witness can start from nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "ProofError",
    "SubtreeHash",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root",
    "subtree_from_leaves",
    "subtree_from_nodes",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
# RFC 9162 §2.1.1: MTH({}) = HASH(), the hash of the empty string.
EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()

# MTH of the leaves [start, end) of the tree. A log store answers it from its stored nodes
# (see subtree_from_nodes); tests answer it from a list of leaf hashes.
SubtreeHash = Callable[[int, int], bytes]


class ProofError(ValueError):
    """A proof, hash or size failed verification. Never raised for a valid proof."""


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 §2.1.1: MTH({d}) = SHA-256(0x00 || d).

    The 0x00/0x01 domain separation stops an interior node being passed off as a leaf
    (second-preimage attack on the tree).
    """
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 §2.1.1: interior node = SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than n (n > 1), RFC 9162 §2.1.1's k."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """RFC 9162 §2.1.1 MTH over already-hashed leaves. O(n): the reference implementation.

    Built bottom-up: pairing adjacent nodes level by level and carrying an odd last node up
    unchanged gives exactly the RFC's split-at-the-largest-power-of-two tree.
    """
    level = list(leaf_hashes)
    if not level:
        return EMPTY_ROOT
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def subtree_from_leaves(leaf_hashes: Sequence[bytes]) -> SubtreeHash:
    """A SubtreeHash over an in-memory list of leaf hashes (O(end - start) per call; for tests/tools)."""

    def subtree(start: int, end: int) -> bytes:
        if not 0 <= start <= end <= len(leaf_hashes):
            raise ValueError(f"range [{start}, {end}) outside 0..{len(leaf_hashes)}")
        return root(leaf_hashes[start:end])

    return subtree


def subtree_from_nodes(get: Callable[[int, int], bytes | None]) -> SubtreeHash:
    """Build MTH(D[start:end]) from stored perfect-subtree nodes.

    ``get(level, index)`` returns the stored hash of the perfect subtree covering leaves
    [index * 2**level, (index + 1) * 2**level), level 0 being the leaf hash, or None if not stored.
    A range that is not one aligned perfect subtree is split at the largest power of two below its
    size, exactly as RFC 9162 §2.1.1 defines MTH, so the result is the RFC hash of that range. A
    missing interior node is recomputed from its two children (a store may keep only some levels); a
    missing leaf raises LookupError, since nothing can stand in for it.
    """

    def subtree(start: int, end: int) -> bytes:
        if not 0 <= start <= end:
            raise ValueError(f"bad range [{start}, {end})")
        n = end - start
        if n == 0:
            return EMPTY_ROOT
        if n & (n - 1) == 0 and start % n == 0:
            level = n.bit_length() - 1
            h = get(level, start >> level)
            if h is not None:
                if len(h) != HASH_SIZE:
                    raise LookupError(f"stored node ({level}, {start >> level}) is not {HASH_SIZE} bytes")
                return h
            if level == 0:
                raise LookupError(f"leaf {start} is not stored")
        k = _split(n)  # n > 1 here: a single leaf was returned or raised above
        return node_hash(subtree(start, start + k), subtree(start + k, end))

    return subtree


def _check_size(name: str, value: int) -> None:
    # bool is an int subclass; a True "size" is a caller bug, not 1.
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")


def inclusion_proof(index: int, size: int, subtree: SubtreeHash) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(index, D[size]): sibling hashes from the leaf up to the root's child.

    Raises ValueError unless 0 <= index < size.
    """
    _check_size("index", index)
    _check_size("size", size)
    if index >= size:
        raise ValueError(f"index {index} not in a tree of size {size}")
    path: list[bytes] = []
    # Walk down from the root; each step records the sibling subtree, so reverse at the end to get
    # the RFC order (leaf's sibling first).
    start, end, m = 0, size, index
    while end - start > 1:
        k = _split(end - start)
        if m < k:
            path.append(subtree(start + k, end))
            end = start + k
        else:
            path.append(subtree(start, start + k))
            start, m = start + k, m - k
    path.reverse()
    return path


def consistency_proof(old_size: int, new_size: int, subtree: SubtreeHash) -> list[bytes]:
    """RFC 9162 §2.1.4.1 PROOF(old_size, D[new_size]).

    Needs 0 <= old_size <= new_size. old_size == new_size gives []; old_size == 0 gives [] too (our
    size-0 rule, see the module docstring: nothing needs proving against the empty tree).
    """
    _check_size("old_size", old_size)
    _check_size("new_size", new_size)
    if old_size > new_size:
        raise ValueError(f"old size {old_size} > new size {new_size}")
    if old_size == 0 or old_size == new_size:
        return []
    proof: list[bytes] = []
    # SUBPROOF(m, D[start:end], b), unrolled: b stays True while the old tree is a left prefix that
    # is itself a complete subtree the verifier already knows (its root), so it is left out.
    start, end, m, known = 0, new_size, old_size, True
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            proof.append(subtree(start + k, end))
            end = start + k
        else:
            proof.append(subtree(start, start + k))
            start, m, known = start + k, m - k, False
    if not known:
        proof.append(subtree(start, end))
    proof.reverse()
    return proof


def _check_hash(name: str, h: bytes) -> None:
    if not isinstance(h, (bytes, bytearray)) or len(h) != HASH_SIZE:
        raise ProofError(f"{name} must be {HASH_SIZE} bytes")


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root_hash: bytes) -> None:
    """RFC 9162 §2.1.3.2: check that ``leaf`` (a leaf hash) is at ``index`` in the tree ``root_hash``
    of ``size`` leaves. Raises ProofError on any mismatch, wrong length or impossible index."""
    try:
        _check_size("index", index)
        _check_size("size", size)
    except ValueError as e:
        raise ProofError(str(e)) from None
    if index >= size:
        raise ProofError(f"index {index} not in a tree of size {size}")
    _check_hash("leaf hash", leaf)
    _check_hash("root", root_hash)
    for i, p in enumerate(proof):
        _check_hash(f"proof[{i}]", p)
    fn, sn, r = index, size - 1, bytes(leaf)
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                # fn is a right-edge node with no right sibling at these levels: climb until it is
                # a right child again (or the walk reaches the left edge).
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof too short")
    if r != root_hash:
        raise ProofError("inclusion proof does not lead to the root")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 §2.1.4.2: check that the tree ``old_root`` of ``old_size`` leaves is a prefix of
    the tree ``new_root`` of ``new_size`` leaves. Raises ProofError otherwise.

    Edge rules (module docstring): equal sizes need an empty proof and equal roots; old size 0
    needs an empty proof and old_root == EMPTY_ROOT.
    """
    try:
        _check_size("old_size", old_size)
        _check_size("new_size", new_size)
    except ValueError as e:
        raise ProofError(str(e)) from None
    if old_size > new_size:
        raise ProofError(f"old size {old_size} > new size {new_size}")
    _check_hash("old root", old_root)
    _check_hash("new root", new_root)
    for i, p in enumerate(proof):
        _check_hash(f"proof[{i}]", p)
    if old_size == 0:
        if proof:
            raise ProofError("consistency from size 0 takes an empty proof")
        if old_root != EMPTY_ROOT:
            raise ProofError("the root of size 0 must be SHA-256('')")
        if new_size == 0 and new_root != EMPTY_ROOT:
            raise ProofError("the root of size 0 must be SHA-256('')")
        return
    if old_size == new_size:
        if proof:
            raise ProofError("consistency between equal sizes takes an empty proof")
        if old_root != new_root:
            raise ProofError("different roots for the same size")
        return
    if not proof:
        raise ProofError("empty consistency proof")
    path = list(proof)
    # Step 2: a power-of-two old tree is a complete subtree of the new one; its root was left out
    # of the proof because the verifier already holds it.
    if old_size & (old_size - 1) == 0:
        path.insert(0, bytes(old_root))
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof too short")
    if fr != old_root:
        raise ProofError("consistency proof does not lead to the old root")
    if sr != new_root:
        raise ProofError("consistency proof does not lead to the new root")


class CompactRange:
    """The right frontier of a tree: the roots of the perfect subtrees that make up [0, size).

    For size n these are the subtrees given by the 1-bits of n, largest (leftmost) first, so a log
    can keep O(log n) state, append in O(log n) and derive the root without rereading leaves
    (transparency-dev/merkle `compact.Range`, C2SP tlog-tiles "right edge"). ``append`` reports the
    perfect subtrees each leaf completes, so a store writes every node exactly once and can then
    answer any RFC 9162 proof via subtree_from_nodes.

    ``frontier`` is a list of hashes (left to right); the (level, index) of each follows from size,
    see ``nodes``.
    """

    __slots__ = ("_size", "_hashes")

    def __init__(self, size: int = 0, frontier: Iterable[bytes] = ()) -> None:
        _check_size("size", size)
        hashes = [bytes(h) for h in frontier]
        if len(hashes) != bin(size).count("1"):
            want = bin(size).count("1")
            raise ValueError(f"a frontier of size {size} has {want} hashes, got {len(hashes)}")
        for h in hashes:
            if len(h) != HASH_SIZE:
                raise ValueError(f"frontier hashes must be {HASH_SIZE} bytes")
        self._size = size
        self._hashes = hashes

    @property
    def size(self) -> int:
        """Number of leaves covered."""
        return self._size

    @property
    def frontier(self) -> list[bytes]:
        """Perfect-subtree roots, left to right (a copy: safe to persist)."""
        return list(self._hashes)

    @property
    def nodes(self) -> list[tuple[int, int, bytes]]:
        """The frontier as (level, index, hash), left to right."""
        out: list[tuple[int, int, bytes]] = []
        start, it = 0, iter(self._hashes)
        for level in range(self._size.bit_length() - 1, -1, -1):
            if self._size >> level & 1:
                out.append((level, start >> level, next(it)))
                start += 1 << level
        return out

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add one leaf hash; return the perfect subtrees it completes as (level, index, hash),
        the leaf itself (level 0) first, then each parent up to the highest merged one."""
        if len(leaf) != HASH_SIZE:
            raise ValueError(f"leaf hash must be {HASH_SIZE} bytes")
        index = self._size
        h = bytes(leaf)
        created = [(0, index, h)]
        level = 0
        # Each trailing 1-bit of the old size is a same-level left sibling waiting on the frontier:
        # merging is binary addition with carries.
        while (index >> level) & 1:
            h = node_hash(self._hashes.pop(), h)
            level += 1
            created.append((level, index >> level, h))
        self._hashes.append(h)
        self._size += 1
        return created

    def extend(self, leaves: Iterable[bytes]) -> list[tuple[int, int, bytes]]:
        """Append several leaf hashes; return every node they complete, in creation order."""
        created: list[tuple[int, int, bytes]] = []
        for leaf in leaves:
            created.extend(self.append(leaf))
        return created

    def root(self) -> bytes:
        """RFC 9162 MTH of the covered leaves: fold the frontier right to left (the rightmost,
        smallest subtree is the deepest right child)."""
        if not self._hashes:
            return EMPTY_ROOT
        r = self._hashes[-1]
        for h in reversed(self._hashes[:-1]):
            r = node_hash(h, r)
        return r

    def copy(self) -> CompactRange:
        return CompactRange(self._size, self._hashes)

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size}, root={self.root().hex()[:16]}…)"
