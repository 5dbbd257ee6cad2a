"""Partners and the merge state of each followed origin: the records the federation shell
keeps in the store."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FOLLOW_STATES", "OriginState", "Partner", "Rejection"]

#: Our Follow of a partner: none sent, sent and waiting, accepted, rejected.
FOLLOW_STATES = ("none", "requested", "accepted", "rejected")


@dataclass(frozen=True, slots=True)
class Partner:
    """A node this node trusts: its pinned node document decides which keys verify it."""

    base_url: str
    name: str
    country: str
    document: Mapping[str, Any]
    approved: bool = True  # False: it asked to follow us and waits for the operator
    following: str = "none"  # our Follow of it, one of FOLLOW_STATES
    subscriber: bool = False  # it follows us and we accepted: we push to it
    added_at: str = ""

    @property
    def inbox(self) -> str:
        return str(self.document.get("inbox", f"{self.base_url}/inbox"))


@dataclass(frozen=True, slots=True)
class OriginState:
    """How far this node merged an origin's log, and the newest checkpoint it verified."""

    base_url: str
    next_seq: int = 0
    peaks: tuple[bytes, ...] = ()
    checkpoint_size: int = 0
    checkpoint_root: bytes = b""
    checkpoint_note: str = ""
    halted: bool = False
    halt_reason: str = ""
    evidence: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class Rejection:
    origin: str
    seq: int | None
    reason: str
    problem: str
    at: str
