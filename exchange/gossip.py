"""Checkpoint gossip (protocol.md §5): what partners hold of an origin, against what this node
verified.

Pure. A node publishes the newest checkpoint it verified for each origin it follows as
``B/checkpoints`` (:func:`checkpoints_document`); another node reads that document
(:func:`parse_checkpoints`), verifies every note about an origin with that origin's pinned
checkpoint key (the shell does, with :mod:`exchange.checkpoint`), and decides with
:func:`compare` whether the two signed checkpoints are consistent:

- the same size: consistent when the roots are equal, equivocation otherwise;
- different sizes: a consistency proof from the smaller to the larger is needed, fetched
  from the origin itself; it must verify against both signed roots, or it is equivocation.

Only the origin's signature makes a gossiped note count: a partner can relay a
conflicting checkpoint but cannot forge one. Whether a proof could be fetched at all is the
shell's business: an origin that does not answer is inconclusive, never equivocation.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from exchange.errors import IntegrityError, MerkleProofError
from exchange.ingest import CheckpointClaim
from exchange.merkle import EMPTY_ROOT, verify_consistency
from exchange.partners import OriginState

__all__ = [
    "MAX_CHECKPOINTS_BYTES",
    "MAX_GOSSIP_ITEMS",
    "Decision",
    "GossipItem",
    "checkpoints_document",
    "compare",
    "parse_checkpoints",
]

#: The most a ``B/checkpoints`` document may weigh, and the most items it may list.
MAX_CHECKPOINTS_BYTES = 4 * 1024 * 1024
MAX_GOSSIP_ITEMS = 10_000

Verdict = Literal["consistent", "equivocation", "need-proof"]


@dataclass(frozen=True, slots=True)
class Decision:
    """What two verified checkpoints of one origin say about it.

    ``need-proof``: fetch the origin's consistency proof from size ``first`` to ``second``
    and decide again with it. ``equivocation``: ``reason`` says why.
    """

    verdict: Verdict
    reason: str = ""
    first: int = 0
    second: int = 0


def compare(
    mine: CheckpointClaim, theirs: CheckpointClaim, proof: Sequence[bytes] | None = None
) -> Decision:
    """Decide whether two signed checkpoints of one origin are consistent (protocol.md §5).

    Both must already be verified with the origin's checkpoint key. ``proof`` is the
    origin's consistency proof from the smaller size to the larger (RFC 9162 §2.1.4), when
    one was fetched.
    """
    if mine.size == theirs.size:
        if mine.root == theirs.root:
            return Decision("consistent")
        return Decision("equivocation", f"two different roots for size {mine.size}")
    small, large = (mine, theirs) if mine.size < theirs.size else (theirs, mine)
    if small.size == 0:  # every tree extends the empty one, whose root is SHA-256("")
        if small.root == EMPTY_ROOT:
            return Decision("consistent")
        return Decision("equivocation", "a checkpoint of size 0 whose root is not the empty root")
    if proof is None:
        return Decision("need-proof", first=small.size, second=large.size)
    try:
        verify_consistency(small.size, large.size, small.root, large.root, proof)
    except MerkleProofError as error:
        return Decision(
            "equivocation",
            f"checkpoint {large.size} is not consistent with checkpoint {small.size}: "
            f"{error.detail}",
        )
    return Decision("consistent")


# --- the B/checkpoints document -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GossipItem:
    """One origin as another node holds it: its newest verified signed note (unverified
    here: only the origin's pinned key can make it count), and whether it halted it."""

    origin: str
    note: str
    halted: bool = False
    evidence: tuple[str, ...] = ()


def checkpoints_document(base_url: str, states: Iterable[OriginState]) -> dict[str, Any]:
    """``B/checkpoints``: the newest verified checkpoint of every origin with one, by
    origin; a halted origin's conflicting signed notes as its ``evidence``."""
    items = [
        {
            "origin": state.base_url,
            "logOrigin": state.base_url.split("://", 1)[1],  # protocol.md §1
            "size": state.checkpoint_size,
            "rootHash": base64.b64encode(state.checkpoint_root).decode(),
            "note": state.checkpoint_note,
            "halted": state.halted,
            "evidence": [note for note in state.evidence if note] if state.halted else [],
        }
        for state in sorted(states, key=lambda s: s.base_url)
        if state.checkpoint_note
    ]
    return {"id": f"{base_url}/checkpoints", "checkpoints": items}


def parse_checkpoints(document: Any, url: str) -> list[GossipItem]:
    """The items of a ``B/checkpoints`` document read from ``url``; raise IntegrityError
    when it does not have the shape of one. Nothing in it is trusted yet."""
    if not isinstance(document, dict) or not isinstance(document.get("checkpoints"), list):
        raise IntegrityError(f"{url}: not a checkpoints document")
    raw = document["checkpoints"]
    if len(raw) > MAX_GOSSIP_ITEMS:
        raise IntegrityError(f"{url}: more than {MAX_GOSSIP_ITEMS} checkpoints")
    items = []
    for index, item in enumerate(raw):
        where = f"{url}: /checkpoints/{index}"
        if not isinstance(item, dict):
            raise IntegrityError(f"{where} is not an object")
        origin, note = item.get("origin"), item.get("note")
        if not isinstance(origin, str) or not isinstance(note, str):
            raise IntegrityError(f"{where} needs a string origin and note")
        halted = item.get("halted", False)
        evidence = item.get("evidence", [])
        if not isinstance(halted, bool) or not isinstance(evidence, list):
            raise IntegrityError(f"{where}: halted is a boolean and evidence a list")
        if not all(isinstance(e, str) for e in evidence):
            raise IntegrityError(f"{where}: evidence holds signed notes")
        items.append(GossipItem(origin, note, halted, tuple(evidence)))
    return items
