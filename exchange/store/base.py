"""The storage interface every backend implements, and the one contract suite tests.

It is narrow on purpose: an atomic :meth:`Store.append` of signed entries together with
their Merkle nodes, the objects' new state, the redactions of an erasure and a checkpoint
over the new root; and reads of entries, Merkle subtrees, checkpoints and objects.
Everything else is computed by the core.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from exchange.delivery import DeliveryState
from exchange.entries import ObjectRecord, Redaction, SignedEntry
from exchange.merkle import DictSubtrees, SubtreeSource, needed_subtrees
from exchange.partners import OriginState, Partner, Rejection
from exchange.query import ObjectQuery, StoredObject

__all__ = [
    "Append",
    "AppendResult",
    "Counts",
    "MergeView",
    "MergeWrite",
    "ObjectPage",
    "QueryPage",
    "Store",
    "Transaction",
    "merkle_proof",
]


class Transaction(Protocol):
    """A consistent view inside :meth:`Store.append`: the log as it is before the append."""

    @property
    def size(self) -> int: ...

    def get_object(self, object_id: str) -> ObjectRecord | None: ...

    def perfect(self, level: int, index: int) -> bytes: ...

    def entries_of(self, object_id: str) -> Sequence[tuple[int, bytes, bytes]]:
        """(seq, leaf, leaf hash) of every entry of the log about ``object_id``, in order."""
        ...


@dataclass(frozen=True, slots=True)
class Append:
    """What one append writes: entries in seq order, the objects' new state, and earlier
    entries replaced by their Redacted form (an erasure; their leaf hashes stay)."""

    entries: Sequence[SignedEntry]
    objects: Sequence[ObjectRecord]
    redactions: Sequence[Redaction] = ()


@dataclass(frozen=True, slots=True)
class AppendResult:
    append: Append
    size: int
    root: bytes
    checkpoint: str


class MergeView(Protocol):
    """A consistent view inside :meth:`Store.merge`."""

    def origin_state(self, base_url: str) -> OriginState | None: ...

    def get_object(self, object_id: str) -> ObjectRecord | None: ...

    def get_objects(self, object_ids: Sequence[str]) -> Mapping[str, ObjectRecord]:
        """The stored objects among ``object_ids`` (absent ones are left out)."""
        ...


@dataclass(frozen=True, slots=True)
class MergeWrite:
    """What merging a run of one origin's entries writes, all in one transaction."""

    origin: OriginState
    #: (seq, leaf hash, verified entry JSON, its object's id or None)
    received: Sequence[tuple[int, bytes, str, str | None]] = ()
    objects: Sequence[ObjectRecord] = ()
    rejections: Sequence[Rejection] = ()
    partner_document: Mapping[str, Any] | None = None
    #: Objects of the origin deleted by this run: every entry of them merged earlier that
    #: still carries content is replaced by its Redacted form (protocol.md §7 rule 5).
    purge: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class ObjectPage:
    items: Sequence[ObjectRecord]
    next_after: str | None = field(default=None)


@dataclass(frozen=True, slots=True)
class QueryPage:
    """One page of :meth:`Store.query_objects`; ``next_after`` is the last item's change
    number when more items match."""

    items: Sequence[StoredObject]
    next_after: int | None = field(default=None)


@dataclass(frozen=True, slots=True)
class Counts:
    """What :meth:`Store.counts` tallies, for the node's metrics."""

    #: (origin, type, deleted) -> objects in that group; never the ``Service`` records.
    objects: Mapping[tuple[str, str, bool], int]
    #: (origin, problem type) -> rejected entries in that group.
    rejections: Mapping[tuple[str, str], int]


class Store(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def append(
        self,
        plan: Callable[[Transaction], Append],
        sign_checkpoint: Callable[[int, bytes], str],
    ) -> AppendResult:
        """Run ``plan`` and write its result atomically, with a checkpoint over the new root.

        The transaction commits durably (fsync) before this returns: a checkpoint is never
        visible before the entries it covers are on disk. An empty plan writes only the
        checkpoint of the current size if there is none yet (the empty log's first start).
        """
        ...

    async def log_size(self) -> int: ...

    async def entries(self, start: int, end: int) -> list[bytes]:
        """The leaves of entries ``[start, end)`` as stored (JCS bytes)."""
        ...

    async def page(self, start: int, end: int) -> tuple[list[bytes], list[bytes], list[int]]:
        """The leaves of entries ``[start, end)``, their leaf hashes and the seqs among them
        that an erasure redacted, in one read."""
        ...

    async def redactions_since(self, generation: int | None) -> tuple[int, list[int]]:
        """The store's erasure generation (0 before any erasure; +1 per erasure that
        redacted entries) and the seqs redacted after ``generation`` (all when None)."""
        ...

    async def subtrees(
        self, coordinates: Sequence[tuple[int, int]]
    ) -> dict[tuple[int, int], bytes]:
        """Perfect subtree hashes at ``(level, index)``; all must exist."""
        ...

    async def latest_checkpoint(self) -> tuple[int, str] | None: ...

    async def checkpoint(self, size: int) -> str | None: ...

    async def list_checkpoints(self, up_to: int) -> list[tuple[int, str]]:
        """Every checkpoint the node signed of size at most ``up_to``, oldest first."""
        ...

    async def get_object(self, object_id: str) -> ObjectRecord | None: ...

    #: Called on the event loop after every append or merge that wrote object rows.
    on_change: Callable[[], None] | None

    async def last_change(self) -> int:
        """The change counter of the object row written last (0: none yet)."""
        ...

    async def changed_objects(self, after: int, limit: int) -> list[tuple[int, ObjectRecord]]:
        """Object rows of every type, deleted ones too, whose change counter is above
        ``after``, in counter order, each with its counter (the RDF view follows them)."""
        ...

    async def list_objects(
        self, *, origin: str | None, type_name: str | None, after: str | None, limit: int
    ) -> ObjectPage:
        """Current, undeleted objects by id. Never the node's own node document (the
        record with id ``B`` and type ``Service`` that holds its key state)."""
        ...

    async def query_objects(self, query: ObjectQuery) -> QueryPage:
        """Objects (own and merged, never a ``Service``) that match every filter of
        ``query``, in change order after ``query.after``; ``query.origins`` already holds
        the origins of ``query.country`` (resolved by the caller)."""
        ...

    async def get_stored(self, object_id: str) -> StoredObject | None:
        """Any object that is not a ``Service``, own or merged, deleted or not."""
        ...

    async def put_partner(self, partner: Partner) -> None: ...

    async def remove_partner(self, base_url: str) -> bool: ...

    async def get_partner(self, base_url: str) -> Partner | None: ...

    async def list_partners(self) -> list[Partner]: ...

    async def partner_urls(self) -> list[str]:
        """The base URLs of :meth:`list_partners`, in its order, without their documents."""
        ...

    async def origin_state(self, base_url: str) -> OriginState | None: ...

    async def list_origin_states(self) -> list[OriginState]: ...

    async def merge(self, plan: Callable[[MergeView], MergeWrite]) -> MergeWrite:
        """Run ``plan`` and write its result in one durable transaction."""
        ...

    async def add_rejections(self, rejections: Sequence[Rejection]) -> None: ...

    async def list_rejections(self, limit: int = 100) -> list[Rejection]: ...

    async def counts(self) -> Counts:
        """Objects by origin, type and deletion, and rejections by origin and problem (two
        grouped counts, read on every metrics scrape)."""
        ...

    async def received_entries(self, origin: str, start: int, end: int) -> list[str]: ...

    async def get_delivery(self, partner: str) -> DeliveryState | None: ...

    async def list_deliveries(self) -> list[DeliveryState]: ...

    async def put_delivery(self, state: DeliveryState) -> None:
        """Write a partner's delivery state; this ends any lease on it."""
        ...

    async def lease_delivery(
        self,
        partner: str,
        owner: str,
        now: datetime,
        until: datetime,
        abandoned: Callable[[str], bool] | None = None,
    ) -> DeliveryState | None:
        """Take the push to ``partner`` for worker ``owner`` until ``until`` and return its
        state, unless another worker holds an unexpired lease (or is taking one): None, as
        when there is no delivery to that partner. Several workers share one store. A lease
        whose holder ``abandoned`` names (a worker known to be dead) is taken over."""
        ...


async def merkle_proof(
    store: Store, operation: Callable[[SubtreeSource], list[bytes]]
) -> list[bytes]:
    """An inclusion or consistency proof computed by ``operation`` over the stored tree:
    the perfect subtrees it needs are read in one query."""
    hashes = await store.subtrees(needed_subtrees(operation))
    return operation(DictSubtrees(hashes))
