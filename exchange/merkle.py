"""RFC 6962 / RFC 9162 Merkle tree hashing, inclusion and consistency proofs.

A tree over ``n`` leaves is read through :class:`SubtreeSource`: the hash of any *perfect*
subtree (``2**level`` leaves starting at ``index * 2**level``). A store keeps those hashes
as leaves are appended (:func:`perfect_subtrees_completed_by`), so a root or a proof costs
O(log n) reads and never loads the log. :class:`CompactRange` computes roots while
streaming leaves, in O(log n) memory, for auditors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from exchange.errors import MerkleProofError

__all__ = [
    "EMPTY_ROOT",
    "CompactRange",
    "DictSubtrees",
    "MemorySubtrees",
    "SubtreeSource",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "needed_subtrees",
    "node_hash",
    "perfect_subtrees_completed_by",
    "root",
    "verify_consistency",
    "verify_inclusion",
]

#: RFC 9162 §2.1.1: the hash of an empty tree is the hash of the empty string.
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(leaf: bytes) -> bytes:
    """RFC 9162 §2.1.1: SHA-256(0x00 || leaf)."""
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 §2.1.1: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


class SubtreeSource(Protocol):
    def perfect(self, level: int, index: int) -> bytes:
        """Hash of leaves ``[index * 2**level, (index + 1) * 2**level)``; level 0 is a leaf hash."""
        ...


def _largest_power_of_two_below(n: int) -> int:
    """RFC 9162 §2.1.1: the largest power of two k with k < n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _range_hash(source: SubtreeSource, start: int, end: int) -> bytes:
    """MTH(D[start:end]) for a range the RFC's recursion produces (start aligned)."""
    size = end - start
    if size & (size - 1) == 0:
        level = size.bit_length() - 1
        return source.perfect(level, start >> level)
    split = _largest_power_of_two_below(size)
    return node_hash(
        _range_hash(source, start, start + split), _range_hash(source, start + split, end)
    )


def root(source: SubtreeSource, size: int) -> bytes:
    """MTH of the first ``size`` leaves."""
    if size < 0:
        raise ValueError("tree size must not be negative")
    return EMPTY_ROOT if size == 0 else _range_hash(source, 0, size)


def inclusion_proof(source: SubtreeSource, index: int, size: int) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(index, D[0:size]), for 0 <= index < size."""
    if not 0 <= index < size:
        raise ValueError(f"need 0 <= index < size, got index {index} and size {size}")
    path: list[bytes] = []
    start, end, target = 0, size, index
    while end - start > 1:
        split = _largest_power_of_two_below(end - start)
        if target - start < split:
            path.append(_range_hash(source, start + split, end))
            end = start + split
        else:
            path.append(_range_hash(source, start, start + split))
            start += split
    path.reverse()
    return path


def consistency_proof(source: SubtreeSource, first: int, second: int) -> list[bytes]:
    """RFC 9162 §2.1.4.1 PROOF(first, D[0:second]), for 0 < first <= second."""
    if not 0 < first <= second:
        raise ValueError(f"need 0 < first <= second, got {first} and {second}")
    proof: list[bytes] = []
    start, end, m, complete = 0, second, first, True
    while True:
        size = end - start
        if m == size:
            if not complete:
                proof.append(_range_hash(source, start, end))
            break
        split = _largest_power_of_two_below(size)
        if m <= split:
            proof.append(_range_hash(source, start + split, end))
            end = start + split
        else:
            proof.append(_range_hash(source, start, start + split))
            start, m, complete = start + split, m - split, False
    proof.reverse()
    return proof


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], expected_root: bytes
) -> None:
    """RFC 9162 §2.1.3.2: raise :class:`MerkleProofError` unless ``leaf`` is at ``index``."""
    if not 0 <= index < size:
        raise MerkleProofError(f"leaf index {index} is outside a tree of size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise MerkleProofError("inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise MerkleProofError("inclusion proof is shorter than the tree is deep")
    if r != expected_root:
        raise MerkleProofError("inclusion proof does not lead to the root")


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 §2.1.4.2: raise :class:`MerkleProofError` unless ``second`` extends ``first``."""
    if first == 0 and second >= 0 and not proof:
        return  # every tree extends the empty tree
    if not 0 < first <= second:
        raise MerkleProofError(f"no consistency between sizes {first} and {second}")
    if first == second:
        if proof:
            raise MerkleProofError("consistency proof between equal sizes must be empty")
        if first_root != second_root:
            raise MerkleProofError("two different roots for the same tree size")
        return
    path = list(proof)
    if first & (first - 1) == 0:  # first is a power of two: its root starts the path
        path.insert(0, first_root)
    if not path:
        raise MerkleProofError("consistency proof is empty")
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise MerkleProofError("consistency proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise MerkleProofError("consistency proof is shorter than the tree is deep")
    if fr != first_root:
        raise MerkleProofError("consistency proof does not lead to the older root")
    if sr != second_root:
        raise MerkleProofError("consistency proof does not lead to the newer root")


def perfect_subtrees_completed_by(
    source: SubtreeSource, index: int, leaf: bytes
) -> list[tuple[int, int, bytes]]:
    """The perfect subtrees that appending leaf hash ``leaf`` at ``index`` completes.

    Returns ``(level, index, hash)`` rows, level 0 (the leaf) first; a store writes them in
    the same transaction as the entry.
    """
    rows = [(0, index, leaf)]
    level, position, current = 0, index, leaf
    while position & 1:
        sibling = source.perfect(level, position - 1)
        current = node_hash(sibling, current)
        level, position = level + 1, position >> 1
        rows.append((level, position, current))
    return rows


class MemorySubtrees:
    """A :class:`SubtreeSource` in memory (tests, fakes, small tools)."""

    def __init__(self) -> None:
        self._nodes: dict[tuple[int, int], bytes] = {}
        self.size = 0

    def perfect(self, level: int, index: int) -> bytes:
        return self._nodes[(level, index)]

    def append(self, leaf: bytes) -> None:
        """Append one leaf (its data, not its hash)."""
        for level, index, value in perfect_subtrees_completed_by(self, self.size, leaf_hash(leaf)):
            self._nodes[(level, index)] = value
        self.size += 1


class CompactRange:
    """The root of a growing tree in O(log n) memory: one hash per set bit of the size."""

    def __init__(self, size: int = 0, peaks: Sequence[bytes] = ()) -> None:
        """A range over ``size`` leaves from its peaks (highest first), as :attr:`peaks` gives."""
        levels = [level for level in range(size.bit_length() - 1, -1, -1) if size >> level & 1]
        if len(levels) != len(peaks):
            raise MerkleProofError(
                f"a tree of size {size} has {len(levels)} peaks, not {len(peaks)}"
            )
        self._peaks: list[tuple[int, bytes]] = list(zip(levels, peaks, strict=True))
        self.size = size

    @property
    def peaks(self) -> list[bytes]:
        return [value for _, value in self._peaks]

    def copy(self) -> CompactRange:
        return CompactRange(self.size, self.peaks)

    def append_hash(self, leaf_hash_value: bytes) -> None:
        level, current = 0, leaf_hash_value
        while self._peaks and self._peaks[-1][0] == level:
            _, left = self._peaks.pop()
            current = node_hash(left, current)
            level += 1
        self._peaks.append((level, current))
        self.size += 1

    def root(self) -> bytes:
        if not self._peaks:
            return EMPTY_ROOT
        result = self._peaks[-1][1]
        for _, peak in reversed(self._peaks[:-1]):
            result = node_hash(peak, result)
        return result


class _Recorder:
    def __init__(self) -> None:
        self.wanted: list[tuple[int, int]] = []

    def perfect(self, level: int, index: int) -> bytes:
        self.wanted.append((level, index))
        return bytes(32)


def needed_subtrees(operation: Callable[[SubtreeSource], object]) -> list[tuple[int, int]]:
    """The perfect subtrees ``operation`` reads: its control flow never depends on hashes,
    so a store can fetch them all in one round trip before computing for real."""
    recorder = _Recorder()
    operation(recorder)
    return recorder.wanted


class DictSubtrees:
    """A :class:`SubtreeSource` over hashes fetched in advance."""

    def __init__(self, hashes: Mapping[tuple[int, int], bytes]) -> None:
        self._hashes = hashes

    def perfect(self, level: int, index: int) -> bytes:
        return self._hashes[(level, index)]
