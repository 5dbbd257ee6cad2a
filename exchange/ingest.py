"""Merging a run of one origin's entries against a signed checkpoint (protocol.md §5, §7).

Pure. Before any entry of a run is merged, the run's checkpoint must be proven consistent
with the newest checkpoint already verified for that origin; a rollback is refused, and two
validly signed but inconsistent checkpoints are equivocation, which halts the origin. The
entries themselves must then lie on that checkpoint's tree: the Merkle peaks of everything
merged so far, extended with the run, must reach the checkpoint's root directly or through
a consistency proof. Only then do the run's effects (objects, rejections, new state) form
a :class:`~exchange.store.base.MergeWrite`, written in one transaction by the shell.

After a Delete an object's content is purged (rule 5): the run's own entries of a deleted
object are kept in their Redacted form, and the write names the objects whose earlier
entries the store must redact.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from exchange.entries import ObjectRecord, redacted_leaf
from exchange.errors import (
    Equivocation,
    GapError,
    HaltedOrigin,
    IntegrityError,
    MerkleProofError,
    NotYetValid,
    Rollback,
)
from exchange.merge import decide
from exchange.merkle import EMPTY_ROOT, CompactRange, verify_consistency
from exchange.partners import OriginState, Rejection
from exchange.store.base import MergeWrite
from exchange.timestamps import format_timestamp
from exchange.verification import Checked

__all__ = [
    "CheckpointClaim",
    "Equivocation",
    "GapError",
    "HaltedOrigin",
    "NotYetValid",
    "Rollback",
    "accept_checkpoint",
    "check_overtaken",
    "halted",
    "plan_run",
    "ready",
]


@dataclass(frozen=True, slots=True)
class CheckpointClaim:
    """A checkpoint whose signature the shell verified, with the proofs fetched for it.

    ``from_previous``: consistency proof from the newest verified checkpoint to this one.
    ``prefix``: consistency proof from the size the run ends at to this checkpoint (empty
    when the run ends exactly at its size).
    """

    size: int
    root: bytes
    note: str
    from_previous: Sequence[bytes] = ()
    prefix: Sequence[bytes] = ()


def accept_checkpoint(state: OriginState, claim: CheckpointClaim) -> OriginState:
    """The state with ``claim`` as its newest checkpoint, or raise Rollback/Equivocation."""
    if state.halted:
        raise HaltedOrigin(f"{state.base_url} is halted: {state.halt_reason}")
    old_size = state.checkpoint_size
    old_root = state.checkpoint_root or EMPTY_ROOT
    if claim.size < old_size:
        raise Rollback(f"checkpoint size {claim.size} is smaller than the verified size {old_size}")
    if claim.size == old_size:
        if claim.root != old_root:
            raise Equivocation(f"two different roots for size {old_size}")
        return state
    if old_size > 0:
        try:
            verify_consistency(old_size, claim.size, old_root, claim.root, claim.from_previous)
        except MerkleProofError as error:
            raise Equivocation(
                f"checkpoint {claim.size} is not consistent with verified checkpoint "
                f"{old_size}: {error.detail}"
            ) from None
    return replace(
        state, checkpoint_size=claim.size, checkpoint_root=claim.root, checkpoint_note=claim.note
    )


def check_overtaken(older: CheckpointClaim, newer: CheckpointClaim, proof: Sequence[bytes]) -> None:
    """A pushed checkpoint older than the newest verified one (the push was overtaken by a
    pull or a later push) is no rollback, but it must still be consistent with the newer
    one: two inconsistent checkpoints are equivocation (protocol.md §5)."""
    try:
        verify_consistency(older.size, newer.size, older.root, newer.root, proof)
    except MerkleProofError as error:
        raise Equivocation(
            f"pushed checkpoint {older.size} is not consistent with verified checkpoint "
            f"{newer.size}: {error.detail}"
        ) from None


def halted(state: OriginState, error: IntegrityError, evidence: Sequence[str]) -> OriginState:
    return replace(state, halted=True, halt_reason=error.detail, evidence=tuple(evidence))


def ready(checked: Sequence[Checked]) -> tuple[list[Checked], Checked | None]:
    """The entries of a run that may merge now, and the first one that waits: an entry
    signed ahead of this node's clock (NotYetValid) is neither merged nor rejected; the run
    stops before it, and a later pull checks it again."""
    for index, item in enumerate(checked):
        if item.problem == NotYetValid.problem:
            return list(checked[:index]), item
    return list(checked), None


def plan_run(
    state: OriginState,
    checked: Sequence[Checked],
    start: int,
    claim: CheckpointClaim,
    *,
    now: datetime,
    get_objects: Callable[[Sequence[str]], Mapping[str, ObjectRecord]],
) -> MergeWrite:
    """Merge checked entries ``start, start+1, ...`` of ``state``'s origin under ``claim``.

    Entries already merged are skipped (rule 3); a run that starts after the next expected
    seq raises GapError (rule 2). Raises Rollback, Equivocation or MerkleProofError when the
    run does not lie on a checkpoint consistent with the verified history; nothing of it
    is then merged. Rejected entries are recorded and still count in the tree (rule 6); the
    store keeps the JSON of merged entries only, so a stale or reviving entry that verified
    but broke rule 4 or 5 leaves no content behind.
    """
    checked_state = accept_checkpoint(state, claim)
    skip = state.next_seq - start
    if skip < 0:
        raise GapError(f"entries start at {start}, but {state.next_seq} is the next expected")
    run = list(checked[skip:])
    if state.next_seq + len(run) > claim.size:
        raise MerkleProofError(
            f"entries up to {state.next_seq + len(run)} are beyond the checkpoint size {claim.size}"
        )
    tree = CompactRange(state.next_seq, state.peaks)
    stored = get_objects([i.entry.object_id for i in run if i.entry and i.entry.object_id])
    overlay: dict[str, ObjectRecord | None] = {}
    received: list[tuple[int, bytes, str, str | None]] = []
    content: set[int] = set()  # seqs of received Creates and Updates
    purge: list[str] = []  # objects a Delete of this run deleted (or found deleted)
    rejections: list[Rejection] = []
    partner_document: Mapping[str, Any] | None = None
    stamp = format_timestamp(now)
    for offset, item in enumerate(run):
        seq = state.next_seq + offset
        if item.seq != seq:
            raise GapError(f"checked entry {item.seq} is not entry {seq}")
        if item.leaf_hash is None:  # not even I-JSON: the run cannot be placed on the tree
            raise MerkleProofError(f"entry {seq} cannot be hashed: {item.reason}")
        if item.problem == NotYetValid.problem:  # it waits (see ready): never rejected
            raise NotYetValid(f"entry {seq} waits: {item.reason}")
        tree.append_hash(item.leaf_hash)
        entry = item.entry
        if entry is None:
            rejections.append(Rejection(state.base_url, seq, item.reason, item.problem, stamp))
            continue
        current: ObjectRecord | None = None
        if entry.object_id is not None:
            current = (
                overlay[entry.object_id]
                if entry.object_id in overlay
                else stored.get(entry.object_id)
            )
        try:
            outcome = decide(current, entry)
        except IntegrityError as error:  # verified, but not merged: nothing of it is kept
            rejections.append(Rejection(state.base_url, seq, error.detail, error.problem, stamp))
            continue
        text = entry.leaf.decode() if entry.leaf else _json(entry.document)
        received.append((seq, entry.leaf_hash, text, entry.object_id))
        if entry.activity in ("Create", "Update"):
            content.add(seq)
        if outcome.record is not None:
            overlay[outcome.record.id] = outcome.record
        if outcome.action == "node-document":
            partner_document = dict(entry.document["object"])
        if entry.activity == "Delete" and entry.object_id is not None:
            purge.append(entry.object_id)
    if run:
        _check_prefix(tree, claim)
    new_state = replace(checked_state, next_seq=tree.size, peaks=tuple(tree.peaks))
    objects = [record for record in overlay.values() if record is not None]

    def gone(object_id: str | None) -> bool:
        """The object ends this run deleted (rule 5: then none of its content is kept)."""
        if object_id is None:
            return False
        record = overlay[object_id] if object_id in overlay else stored.get(object_id)
        return record is not None and record.deleted and record.origin == state.base_url

    kept = [
        (seq, hashed, redacted_leaf(state.base_url, seq, hashed).decode(), object_id)
        if seq in content and gone(object_id)
        else (seq, hashed, text, object_id)
        for seq, hashed, text, object_id in received
    ]
    return MergeWrite(
        new_state, kept, objects, rejections, partner_document, list(dict.fromkeys(purge))
    )


def _check_prefix(tree: CompactRange, claim: CheckpointClaim) -> None:
    """The merged prefix must be a prefix of the checkpoint's tree."""
    if tree.size == claim.size:
        if tree.root() != claim.root:
            raise MerkleProofError(
                f"the entries do not hash to the root of signed checkpoint {claim.size}"
            )
    elif tree.size > 0:
        verify_consistency(tree.size, claim.size, tree.root(), claim.root, claim.prefix)


def _json(document: Mapping[str, Any]) -> str:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))
