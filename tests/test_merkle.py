"""RFC 6962 / RFC 9162 Merkle tree: vectors and properties."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exchange.errors import MerkleProofError
from exchange.merkle import (
    EMPTY_ROOT,
    CompactRange,
    MemorySubtrees,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root,
    verify_consistency,
    verify_inclusion,
)


# Source: RFC 6962 / RFC 9162 §2.1, Certificate Transparency's 8 test leaves
# (shared/vectors/tlog/merkle-rfc6962.json).
@pytest.fixture(scope="module")
def rfc6962(vectors: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((vectors / "tlog" / "merkle-rfc6962.json").read_text())
    return data


def tree_of(leaves: list[bytes]) -> MemorySubtrees:
    tree = MemorySubtrees()
    for leaf in leaves:
        tree.append(leaf)
    return tree


def vector_tree(rfc6962: dict[str, Any]) -> MemorySubtrees:
    return tree_of([bytes.fromhex(h) for h in rfc6962["leaves_hex"]])


def test_empty_root(rfc6962: dict[str, Any]) -> None:
    assert EMPTY_ROOT.hex() == rfc6962["empty_root"]
    assert root(MemorySubtrees(), 0) == EMPTY_ROOT
    assert CompactRange().root() == EMPTY_ROOT


def test_roots_by_size(rfc6962: dict[str, Any]) -> None:
    tree = vector_tree(rfc6962)
    compact = CompactRange()
    for size, leaf_hex in enumerate(rfc6962["leaves_hex"], start=1):
        compact.append_hash(leaf_hash(bytes.fromhex(leaf_hex)))
        assert root(tree, size).hex() == rfc6962["roots_by_size"][str(size)]
        assert compact.root().hex() == rfc6962["roots_by_size"][str(size)]


def test_inclusion_proof_vectors(rfc6962: dict[str, Any]) -> None:
    tree = vector_tree(rfc6962)
    for case in rfc6962["inclusion_proofs"]:
        index, size = case["leaf_index"], case["tree_size"]
        proof = inclusion_proof(tree, index, size)
        assert [h.hex() for h in proof] == case["proof"]
        leaf = leaf_hash(bytes.fromhex(rfc6962["leaves_hex"][index]))
        verify_inclusion(
            leaf, index, size, proof, bytes.fromhex(rfc6962["roots_by_size"][str(size)])
        )


def test_consistency_proof_vectors(rfc6962: dict[str, Any]) -> None:
    tree = vector_tree(rfc6962)
    roots = {int(k): bytes.fromhex(v) for k, v in rfc6962["roots_by_size"].items()}
    for case in rfc6962["consistency_proofs"]:
        first, second = case["first"], case["second"]
        proof = consistency_proof(tree, first, second)
        assert [h.hex() for h in proof] == case["proof"]
        verify_consistency(first, second, roots[first], roots[second], proof)


sizes = st.integers(min_value=1, max_value=70)


@given(sizes, st.data())
def test_every_inclusion_proof_verifies_and_a_flipped_bit_fails(
    size: int, data: st.DataObject
) -> None:
    tree = tree_of([i.to_bytes(4, "big") for i in range(size)])
    tree_root = root(tree, size)
    index = data.draw(st.integers(0, size - 1), label="index")
    proof = inclusion_proof(tree, index, size)
    leaf = leaf_hash(index.to_bytes(4, "big"))
    verify_inclusion(leaf, index, size, proof, tree_root)
    with pytest.raises(MerkleProofError):
        verify_inclusion(leaf_hash(b"other"), index, size, proof, tree_root)
    if proof:
        position = data.draw(st.integers(0, len(proof) - 1), label="position")
        broken = list(proof)
        broken[position] = bytes([broken[position][0] ^ 1]) + broken[position][1:]
        with pytest.raises(MerkleProofError):
            verify_inclusion(leaf, index, size, broken, tree_root)
        with pytest.raises(MerkleProofError):
            verify_inclusion(leaf, index, size, proof[:-1], tree_root)


@given(sizes, st.data())
def test_every_consistency_proof_verifies_and_a_fork_fails(size: int, data: st.DataObject) -> None:
    leaves = [i.to_bytes(4, "big") for i in range(size)]
    tree = tree_of(leaves)
    first = data.draw(st.integers(1, size), label="first")
    proof = consistency_proof(tree, first, size)
    verify_consistency(first, size, root(tree, first), root(tree, size), proof)
    # A fork: the same size with one leaf rewritten has another root.
    rewritten = data.draw(st.integers(0, size - 1), label="rewritten leaf")
    fork = tree_of([b"forged" if i == rewritten else leaf for i, leaf in enumerate(leaves)])
    if rewritten < first:
        with pytest.raises(MerkleProofError):
            verify_consistency(first, size, root(fork, first), root(tree, size), proof)
    with pytest.raises(MerkleProofError):
        verify_consistency(first, size, root(tree, first), root(fork, size), proof)


@given(st.integers(min_value=0, max_value=300))
def test_compact_range_matches_the_stored_tree(size: int) -> None:
    tree = MemorySubtrees()
    compact = CompactRange()
    for i in range(size):
        tree.append(i.to_bytes(4, "big"))
        compact.append_hash(leaf_hash(i.to_bytes(4, "big")))
    assert compact.root() == root(tree, size)


def test_proofs_read_logarithmically_many_subtrees() -> None:
    class Counting(MemorySubtrees):
        reads = 0

        def perfect(self, level: int, index: int) -> bytes:
            Counting.reads += 1
            return super().perfect(level, index)

    tree = Counting()
    for i in range(5000):
        tree.append(i.to_bytes(4, "big"))
    Counting.reads = 0
    inclusion_proof(tree, 1234, 4999)
    consistency_proof(tree, 1234, 4999)
    root(tree, 4999)
    assert Counting.reads <= 3 * 2 * 13  # three operations, each at most ~2 log2(n) reads


@pytest.mark.parametrize(
    ("index", "size"), [(-1, 3), (3, 3), (0, 0)], ids=["negative", "at size", "empty tree"]
)
def test_inclusion_outside_the_tree_is_refused(index: int, size: int) -> None:
    with pytest.raises(ValueError, match="index"):
        inclusion_proof(MemorySubtrees(), index, size)
    with pytest.raises(MerkleProofError):
        verify_inclusion(EMPTY_ROOT, index, size, [], EMPTY_ROOT)


def test_equal_sizes_with_different_roots_are_inconsistent() -> None:
    with pytest.raises(MerkleProofError, match="two different roots"):
        verify_consistency(4, 4, b"a" * 32, b"b" * 32, [])
