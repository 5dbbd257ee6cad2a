"""The publishing node: the operations an operator runs, over a store and the node's key.

Every operation appends signed entries (protocol.md §3) in one atomic store append, which
also writes the Merkle nodes and a checkpoint signed over the new root.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from exchange.checkpoint import Checkpoint, sign_checkpoint, verifier_key
from exchange.config import Settings
from exchange.documents import read_key_pair
from exchange.entries import (
    ObjectRecord,
    SignedEntry,
    build_entry,
    check_reason,
    erasure_member,
    prepare_object,
    redactions_for,
    sign_entry,
    tombstone_for,
    unchanged,
)
from exchange.errors import (
    NotFound,
)
from exchange.keys import KeyPair
from exchange.resources import CONTEXT_IRIS
from exchange.schema import OBJECT_TYPES
from exchange.store.base import Append, AppendResult, Store, Transaction
from exchange.store.sqlite import SQLiteStore

__all__ = ["ErasureOutcome", "Node", "NotFound", "PublishOutcome", "open_node", "token_digest"]


@dataclass(frozen=True, slots=True)
class PublishOutcome:
    id: str
    action: str  # created | updated | unchanged | deleted
    version: int
    seq: int | None


@dataclass(frozen=True, slots=True)
class ErasureOutcome:
    id: str
    seq: int  # the Delete that records the erasure
    redacted: tuple[int, ...]  # the entries it redacted, ascending


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Node:
    def __init__(self, settings: Settings, store: Store, key: KeyPair, key_created: str) -> None:
        self.settings = settings
        self.store = store
        self.key = key
        self.key_created = key_created
        #: Called after every append that wrote entries (wakes the delivery worker).
        self.on_append: Callable[[], None] | None = None

    @classmethod
    def key_path(cls, settings: Settings) -> Path:
        return settings.key_dir / f"{settings.active_key}.json"

    @classmethod
    def load_key(cls, settings: Settings) -> tuple[KeyPair, str]:
        path = cls.key_path(settings)
        pair = read_key_pair(path)
        created = json.loads(path.read_text())["created"]
        return KeyPair(settings.key_id(settings.active_key), pair.seed), str(created)

    # --- the operator's operations --------------------------------------------------------

    def check_token(self, token: str) -> bool:
        return hmac.compare_digest(token_digest(token), self.settings.token_sha256)

    async def publish(
        self, drafts: Sequence[Mapping[str, Any]], now: datetime | None = None
    ) -> list[PublishOutcome]:
        """Create or update objects (matched by id), all in one atomic append."""
        moment = now or datetime.now(UTC)
        outcomes: list[PublishOutcome] = []

        def plan(transaction: Transaction) -> Append:
            outcomes.clear()
            entries: list[SignedEntry] = []
            records: dict[str, ObjectRecord] = {}
            for draft in drafts:
                draft_id = draft.get("id")
                current = None
                if isinstance(draft_id, str):
                    current = records.get(draft_id) or transaction.get_object(draft_id)
                obj = prepare_object(
                    draft,
                    base_url=self.settings.base_url,
                    current=current,
                    now=moment,
                    personal_data=self.settings.personal_data,
                )
                if unchanged(obj, current):
                    assert current is not None
                    outcomes.append(PublishOutcome(obj["id"], "unchanged", current.version, None))
                    continue
                seq = transaction.size + len(entries)
                activity = "Create" if current is None else "Update"
                entry = build_entry(seq, activity, obj, self.base_url, moment)
                entries.append(self._sign(entry, moment))
                records[obj["id"]] = self._record(obj, seq)
                action = "created" if current is None else "updated"
                outcomes.append(PublishOutcome(obj["id"], action, obj["version"], seq))
            return Append(entries, list(records.values()))

        await self._append(plan)
        return list(outcomes)

    async def delete(self, object_id: str, now: datetime | None = None) -> PublishOutcome:
        moment = now or datetime.now(UTC)
        outcome: list[PublishOutcome] = []

        def plan(transaction: Transaction) -> Append:
            current = transaction.get_object(object_id)
            if current is None or current.origin != self.base_url:
                raise NotFound(f"{object_id}: no object of this node has that id")
            tombstone = tombstone_for(current, moment)
            seq = transaction.size
            entry = self._sign(build_entry(seq, "Delete", tombstone, self.base_url, moment), moment)
            record = ObjectRecord(
                object_id, self.base_url, current.type, current.version, True, seq, tombstone
            )
            outcome[:] = [PublishOutcome(object_id, "deleted", current.version, seq)]
            return Append([entry], [record])

        await self._append(plan)
        return outcome[0]

    async def erase(
        self, object_id: str, reason: str, now: datetime | None = None
    ) -> ErasureOutcome:
        """protocol.md §3 "Erasure", in one atomic append: every Create and Update of
        ``object_id`` in this node's log is replaced by its Redacted form (leaf hashes, the
        tree and every checkpoint stay valid), and a Delete whose ``erasure`` member gives
        ``reason`` and the redacted seqs is appended, also when the object was deleted
        before."""
        moment = now or datetime.now(UTC)
        check_reason(reason)
        outcome: list[ErasureOutcome] = []

        def plan(transaction: Transaction) -> Append:
            current = transaction.get_object(object_id)
            if current is None or current.origin != self.base_url:
                raise NotFound(f"{object_id}: no object of this node has that id")
            if current.type not in OBJECT_TYPES:  # the node document is no content object
                raise NotFound(f"{object_id}: not a Case, Event or BestPractice of this node")
            redactions = redactions_for(self.base_url, transaction.entries_of(object_id))
            redacted = [redaction.seq for redaction in redactions]
            tombstone = dict(current.body) if current.deleted else tombstone_for(current, moment)
            seq = transaction.size
            entry = build_entry(seq, "Delete", tombstone, self.base_url, moment)
            entry["erasure"] = erasure_member(reason, redacted)
            record = ObjectRecord(
                object_id, self.base_url, current.type, current.version, True, seq, tombstone
            )
            outcome[:] = [ErasureOutcome(object_id, seq, tuple(redacted))]
            return Append([self._sign(entry, moment)], [record], redactions)

        await self._append(plan)
        return outcome[0]

    async def ensure_checkpoint(self) -> AppendResult:
        """Sign the current size's checkpoint if missing, so /checkpoint always answers."""
        return await self.store.append(lambda _: Append([], []), self.sign_checkpoint)

    async def _append(self, plan: Callable[[Transaction], Append]) -> AppendResult:
        result = await self.store.append(plan, self.sign_checkpoint)
        if result.append.entries and self.on_append is not None:
            self.on_append()
        return result

    # --- building blocks ------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return self.settings.base_url

    def _sign(self, entry: dict[str, Any], moment: datetime) -> SignedEntry:
        return sign_entry(entry, self.key, moment, self.settings.max_entry_bytes)

    def _record(self, obj: Mapping[str, Any], seq: int) -> ObjectRecord:
        return ObjectRecord(obj["id"], self.base_url, obj["type"], obj["version"], False, seq, obj)

    def sign_checkpoint(self, size: int, root_hash: bytes) -> str:
        checkpoint = Checkpoint(self.settings.origin, size, root_hash)
        return sign_checkpoint(checkpoint, self.settings.origin, self.key)

    @property
    def checkpoint_key(self) -> str:
        return verifier_key(self.settings.origin, self.key.public_raw)

    def key_document(self) -> dict[str, Any]:
        return {
            "id": self.key.id,
            "type": "Multikey",
            "controller": self.base_url,
            "publicKeyMultibase": self.key.public_multibase,
            "created": self.key_created,
            "revoked": None,
        }

    def node_document(self) -> dict[str, Any]:
        """protocol.md §1: the node document."""
        settings = self.settings
        return {
            "@context": list(CONTEXT_IRIS),
            "id": self.base_url,
            "type": "Service",
            "nameMap": {settings.language: settings.name},
            "country": settings.country,
            "inbox": f"{self.base_url}/inbox",
            "outbox": f"{self.base_url}/feed",
            "checkpoint": f"{self.base_url}/checkpoint",
            "logOrigin": settings.origin,
            "checkpointKey": self.checkpoint_key,
            "pageSize": settings.page_size,
            "assertionMethod": [self.key_document()],
        }


@asynccontextmanager
async def open_node(settings: Settings) -> AsyncIterator[Node]:
    """The node with its store open and its key loaded; closes the store on exit."""
    key, created = Node.load_key(settings)
    store = SQLiteStore(settings.database)
    await store.open()
    try:
        node = Node(settings, store, key, created)
        await node.ensure_checkpoint()
        yield node
    finally:
        await store.close()
