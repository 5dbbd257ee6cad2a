"""The publishing node: the operations an operator runs, over a store and the node's keys.

Every operation appends signed entries (protocol.md §3) in one atomic store append, which
also writes the Merkle nodes and a checkpoint signed over the new root.

The node's key state lives in its store: after the first rotation or revocation, the
current node document is an object record with the node's own id (``B``, type
``Service``), written in the same append as the node-document ``Update`` that announced
it; before that, the node document is the genesis one built from the settings and the
key ``exchange init`` made. Every append reads that record inside its transaction and
signs with the key it names, so that a server and a CLI sharing one home never sign with
a stale key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from exchange.checkpoint import Checkpoint, sign_checkpoint
from exchange.config import Settings
from exchange.documents import read_key_pair, write_secret_json
from exchange.entries import (
    ObjectRecord,
    SignedEntry,
    build_entry,
    check_reason,
    erasure_member,
    prepare_object,
    redactions_for,
    sign_entry,
    signing_time,
    tombstone_for,
    unchanged,
)
from exchange.errors import InvalidKey, NotFound, StoreError
from exchange.key_lifecycle import (
    NodeIdentity,
    active_method,
    cosigning_methods,
    genesis_document,
    key_file,
    key_name,
    key_state,
    next_key_name,
    node_document,
    resolve_key,
    revoke,
    rotate,
)
from exchange.keys import KeyPair, generate
from exchange.query import ObjectQuery
from exchange.resources import CONTEXT_IRIS
from exchange.schema import OBJECT_TYPES
from exchange.store import store_for
from exchange.store.base import Append, AppendResult, QueryPage, Store, Transaction

__all__ = [
    "ErasureOutcome",
    "KeyChange",
    "Node",
    "NotFound",
    "PublishOutcome",
    "SigningKeys",
    "open_node",
    "token_digest",
]


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


@dataclass(frozen=True, slots=True)
class SigningKeys:
    """The node's key state: its current node document (without ``@context``), the active
    key that signs entries, and the retired, unrevoked keys that co-sign checkpoints and
    HTTP messages (newest first)."""

    document: Mapping[str, Any]
    active: KeyPair
    cosigners: tuple[KeyPair, ...] = ()

    @property
    def all(self) -> tuple[KeyPair, ...]:
        """Every key that signs a checkpoint or a message: the active one first."""
        return (self.active, *self.cosigners)


@dataclass(frozen=True, slots=True)
class KeyChange:
    """A rotation or revocation, as the node-document ``Update`` at ``seq`` recorded it."""

    action: str  # rotated | revoked
    key_id: str  # the new key (rotated) or the revoked one
    seq: int
    signed_by: str  # the key that was active before the change
    document: Mapping[str, Any]
    key_path: Path | None = None  # the new key's file (rotated)


@dataclass(frozen=True, slots=True)
class _Changed:
    seq: int
    signed_by: str
    document: Mapping[str, Any]


#: A plan for one append: the transaction's view and the key state read inside it.
Plan = Callable[[Transaction, SigningKeys], Append]


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Node:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        key: KeyPair,
        key_created: str,
        *,
        document: Mapping[str, Any] | None = None,
    ) -> None:
        """``key`` is the key the node starts signing with. Without ``document`` it is the
        genesis key (``[keys] active`` of the config, made by ``exchange init``) and
        ``key_created`` its created time. With ``document``, the node document the store
        holds, it is that document's active key: the genesis key file is then no longer
        needed (the stored record is never removed)."""
        self.settings = settings
        self.store = store
        self.identity = NodeIdentity(
            settings.base_url,
            settings.name,
            settings.language,
            settings.country,
            settings.page_size,
        )
        self._genesis = None if document else genesis_document(self.identity, key, key_created)
        #: The current node document (without @context), as last read from the store.
        self._document: Mapping[str, Any] = document or self._genesis or {}
        #: The keys of the document last signed for; loaded from disk only when needed,
        #: so that reading the node document never depends on a key file.
        self._keys = SigningKeys({} if document else self._document, key)
        self._pairs: dict[str, KeyPair] = {key.id: key}
        #: Called after every append that wrote entries (wakes the delivery worker).
        self.on_append: Callable[[], None] | None = None

    @classmethod
    def key_path(cls, settings: Settings) -> Path:
        return settings.key_dir / f"{settings.active_key}.json"

    @classmethod
    def load_key(cls, settings: Settings) -> tuple[KeyPair, str]:
        """The genesis key named by ``[keys] active`` of the config, and its created time."""
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
        moment = now or self.settings.now()
        outcomes: list[PublishOutcome] = []

        def plan(transaction: Transaction, keys: SigningKeys) -> Append:
            outcomes.clear()
            entries: list[SignedEntry] = []
            records: dict[str, ObjectRecord] = {}
            for draft in drafts:
                draft_id = draft.get("id")
                current = None
                if isinstance(draft_id, str):
                    current = records.get(draft_id) or transaction.get_object(draft_id)
                at = signing_time(moment, current)
                obj = prepare_object(
                    draft,
                    base_url=self.settings.base_url,
                    current=current,
                    now=at,
                    personal_data=self.settings.personal_data,
                )
                if unchanged(obj, current):
                    assert current is not None
                    outcomes.append(PublishOutcome(obj["id"], "unchanged", current.version, None))
                    continue
                seq = transaction.size + len(entries)
                activity = "Create" if current is None else "Update"
                entry = build_entry(seq, activity, obj, self.base_url, at)
                entries.append(self._sign(entry, keys, at))
                records[obj["id"]] = self._record(obj, seq)
                action = "created" if current is None else "updated"
                outcomes.append(PublishOutcome(obj["id"], action, obj["version"], seq))
            return Append(entries, list(records.values()))

        await self._append(plan)
        return list(outcomes)

    async def delete(self, object_id: str, now: datetime | None = None) -> PublishOutcome:
        moment = now or self.settings.now()
        outcome: list[PublishOutcome] = []

        def plan(transaction: Transaction, keys: SigningKeys) -> Append:
            current = transaction.get_object(object_id)
            if current is None or current.origin != self.base_url or current.id == self.base_url:
                raise NotFound(f"{object_id}: no object of this node has that id")
            at = signing_time(moment, current)
            tombstone = tombstone_for(current, at)
            seq = transaction.size
            entry = build_entry(seq, "Delete", tombstone, self.base_url, at)
            record = ObjectRecord(
                object_id, self.base_url, current.type, current.version, True, seq, tombstone
            )
            outcome[:] = [PublishOutcome(object_id, "deleted", current.version, seq)]
            return Append([self._sign(entry, keys, at)], [record])

        await self._append(plan)
        return outcome[0]

    async def rotate_key(self, now: datetime | None = None) -> KeyChange:
        """Make a new key (``{year}-{n}``, file mode 0600) the active one.

        One append writes the node-document ``Update`` (signed by the key active until
        now, protocol.md §3) and the new node document; its checkpoint is signed by the
        new key and co-signed by every retired key not revoked. The old key is retired,
        not revoked: ``exchange keys revoke`` is a separate act.
        """
        moment = (now or self.settings.now()).replace(microsecond=0)
        document = await self.refresh()
        folder = self.settings.key_dir
        folder.mkdir(mode=0o700, exist_ok=True)
        taken = [key_name(str(m["id"]), self.base_url) for m in document["assertionMethod"]]
        taken += [path.stem for path in folder.glob("*.json")]
        name = next_key_name(taken, moment.year)
        pair = generate(self.settings.key_id(name))
        path = folder / f"{name}.json"
        # The key is on disk (fsync) before the log names it: a crash in between leaves an
        # unused key file, never a node document whose key is lost.
        write_secret_json(path, key_file(pair, self.base_url, moment))
        self._pairs[pair.id] = pair

        def change(identity: NodeIdentity, document: Mapping[str, Any]) -> dict[str, Any]:
            return rotate(identity, document, pair, moment)

        result = await self._change_keys(change, moment)
        return KeyChange("rotated", pair.id, result.seq, result.signed_by, result.document, path)

    async def revoke_key(
        self, reference: str, at: datetime, now: datetime | None = None
    ) -> KeyChange:
        """Revoke a retired key (a name such as ``2026-1`` or its IRI) from ``at`` on.

        Refused (:class:`~exchange.errors.KeyChangeRefused`) for the active key, an
        unknown key and a key already revoked. The checkpoints signed from then on no
        longer carry the revoked key's signature.
        """
        moment = (now or self.settings.now()).replace(microsecond=0)
        revoked: list[str] = []

        def change(identity: NodeIdentity, document: Mapping[str, Any]) -> dict[str, Any]:
            revoked[:] = [resolve_key(identity, document, reference)]
            return revoke(identity, document, reference, at)

        result = await self._change_keys(change, moment)
        return KeyChange("revoked", revoked[0], result.seq, result.signed_by, result.document)

    async def erase(
        self, object_id: str, reason: str, now: datetime | None = None
    ) -> ErasureOutcome:
        """protocol.md §3 "Erasure", in one atomic append: every Create and Update of
        ``object_id`` in this node's log is replaced by its Redacted form (leaf hashes, the
        tree and every checkpoint stay valid), and a Delete whose ``erasure`` member gives
        ``reason`` and the redacted seqs is appended, also when the object was deleted
        before."""
        moment = now or self.settings.now()
        check_reason(reason)
        outcome: list[ErasureOutcome] = []

        def plan(transaction: Transaction, keys: SigningKeys) -> Append:
            current = transaction.get_object(object_id)
            if current is None or current.origin != self.base_url:
                raise NotFound(f"{object_id}: no object of this node has that id")
            if current.type not in OBJECT_TYPES:  # the node document is no content object
                raise NotFound(f"{object_id}: not a Case, Event or BestPractice of this node")
            redactions = redactions_for(self.base_url, transaction.entries_of(object_id))
            redacted = [redaction.seq for redaction in redactions]
            at = signing_time(moment, current)
            tombstone = dict(current.body) if current.deleted else tombstone_for(current, at)
            seq = transaction.size
            entry = build_entry(seq, "Delete", tombstone, self.base_url, at)
            entry["erasure"] = erasure_member(reason, redacted)
            record = ObjectRecord(
                object_id, self.base_url, current.type, current.version, True, seq, tombstone
            )
            outcome[:] = [ErasureOutcome(object_id, seq, tuple(redacted))]
            return Append([self._sign(entry, keys, at)], [record], redactions)

        await self._append(plan)
        return outcome[0]

    async def countries(self) -> dict[str, str]:
        """Each origin's country: this node's own from its settings, a partner's from the
        partners table."""
        countries = {p.base_url: p.country for p in await self.store.list_partners()}
        countries[self.base_url] = self.settings.country
        return countries

    async def query_objects(self, query: ObjectQuery) -> tuple[QueryPage, dict[str, str]]:
        """A page of own and merged objects (query.py), with the countries of the origins;
        ``query.country`` becomes the origins of that country."""
        countries = await self.countries()
        if query.country is not None:
            in_country = tuple(o for o, c in sorted(countries.items()) if c == query.country)
            origins = (
                in_country
                if query.origins is None
                else tuple(o for o in query.origins if o in in_country)
            )
            query = replace(query, origins=origins)
        return await self.store.query_objects(query), countries

    async def ensure_checkpoint(self) -> AppendResult:
        """Sign the current size's checkpoint if missing, so /checkpoint always answers."""
        return await self._append(lambda _transaction, _keys: Append([], []))

    async def refresh(self) -> Mapping[str, Any]:
        """Read the node document from the store (a CLI on the same home may have rotated
        or revoked a key since): the keys it names sign from now on."""
        self._document = self._document_of(await self.store.get_object(self.base_url))
        return self._document

    # --- appends --------------------------------------------------------------------------

    async def _append(self, plan: Plan) -> AppendResult:
        """Run ``plan`` in one store append, with the key state read in its transaction.

        The plan signs with the active key of the stored node document. The checkpoint
        over the new root is signed by the keys of the node document the append leaves
        behind: after a rotation, the new key co-signed by the retired ones; after a
        revocation, without the revoked one (so that a lost retired key file can be
        revoked: only the keys that still co-sign are read).
        """
        after: list[Mapping[str, Any]] = []

        def planned(transaction: Transaction) -> Append:
            document = self._document_of(transaction.get_object(self.base_url))
            self._document = document  # committed: safe to adopt at once
            keys = self._keys
            if document != keys.document:
                keys = SigningKeys(document, self._pair(active_method(document)))
            append = plan(transaction, keys)
            written = next((r for r in append.objects if r.id == self.base_url), None)
            after[:] = [document if written is None else written.body]
            return append

        def sign(size: int, root_hash: bytes) -> str:
            # Called only when the new size has no checkpoint yet, inside the transaction.
            self._keys = self._keys_of(after[0])
            return self._sign_checkpoint(self._keys, size, root_hash)

        result = await self.store.append(planned, sign)
        self._document = after[0]
        if result.append.entries and self.on_append is not None:
            self.on_append()
        return result

    async def _change_keys(
        self,
        change: Callable[[NodeIdentity, Mapping[str, Any]], dict[str, Any]],
        moment: datetime,
    ) -> _Changed:
        """Append the node-document ``Update`` that ``change`` makes of the current one,
        signed by the active key, together with the new document's record."""
        changed: list[_Changed] = []

        def plan(transaction: Transaction, keys: SigningKeys) -> Append:
            document = change(self.identity, keys.document)
            seq = transaction.size
            entry = build_entry(seq, "Update", document, self.base_url, moment)
            signed = self._sign(entry, keys, moment)
            previous = transaction.get_object(self.base_url)
            version = 1 if previous is None else previous.version + 1
            record = ObjectRecord(
                self.base_url, self.base_url, "Service", version, False, seq, document
            )
            changed[:] = [_Changed(seq, keys.active.id, document)]
            return Append([signed], [record])

        await self._append(plan)
        return changed[0]

    # --- keys -----------------------------------------------------------------------------

    def _document_of(self, record: ObjectRecord | None) -> Mapping[str, Any]:
        """The stored node document (the genesis one when there is none)."""
        if record is not None:
            return record.body
        if self._genesis is None:
            raise StoreError(f"{self.settings.database}: the node document is gone from the store")
        return self._genesis

    def _keys_of(self, document: Mapping[str, Any]) -> SigningKeys:
        """The keys that sign for a node document: its active key and every retired key
        not revoked (raises StoreError when one of their files is missing)."""
        if document == self._keys.document:  # self._keys is always fully loaded
            return self._keys
        active = self._pair(active_method(document))
        cosigners = [self._pair(method) for method in cosigning_methods(document)]
        return SigningKeys(document, active, tuple(reversed(cosigners)))

    def _pair(self, method: Mapping[str, Any]) -> KeyPair:
        key_id = str(method["id"])
        known = self._pairs.get(key_id)
        if known is None or known.public_multibase != method["publicKeyMultibase"]:
            known = self._pairs[key_id] = read_node_key(self.settings, method)
        return known

    @property
    def document(self) -> Mapping[str, Any]:
        """The current node document, without ``@context``."""
        return self._document

    @property
    def key(self) -> KeyPair:
        """The active signing key."""
        return self._pair(active_method(self._document))

    def signing_keys(self) -> tuple[KeyPair, ...]:
        """The keys outbound HTTP messages are signed with: the active one first, then the
        retired keys that are not revoked, newest first."""
        self._keys = self._keys_of(self._document)
        return self._keys.all

    # --- building blocks ------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return self.settings.base_url

    def _sign(self, entry: dict[str, Any], keys: SigningKeys, moment: datetime) -> SignedEntry:
        return sign_entry(entry, keys.active, moment, self.settings.max_entry_bytes)

    def _record(self, obj: Mapping[str, Any], seq: int) -> ObjectRecord:
        return ObjectRecord(obj["id"], self.base_url, obj["type"], obj["version"], False, seq, obj)

    def _sign_checkpoint(self, keys: SigningKeys, size: int, root_hash: bytes) -> str:
        checkpoint = Checkpoint(self.settings.origin, size, root_hash)
        return sign_checkpoint(checkpoint, self.settings.origin, keys.active, keys.cosigners)

    def sign_checkpoint(self, size: int, root_hash: bytes) -> str:
        """A checkpoint signed by the current keys (for callers of ``store.append``)."""
        self._keys = self._keys_of(self._document)
        return self._sign_checkpoint(self._keys, size, root_hash)

    @property
    def checkpoint_key(self) -> str:
        return str(self._document["checkpointKey"])

    def key_document(self, key_id: str | None = None) -> dict[str, Any] | None:
        """The Multikey ``key_id`` names among every key the node had (default: the
        active one), with its ``created`` and ``revoked`` times; None if there is none."""
        wanted = key_id or str(active_method(self._document)["id"])
        for method in self._document["assertionMethod"]:
            if method["id"] == wanted:
                return dict(method)
        return None

    def node_document(self) -> dict[str, Any]:
        """protocol.md §1: the node document; descriptive members from the settings, the
        keys and the checkpoint key from the current key state."""
        methods, checkpoint_key = key_state(self.identity, self._document)
        return {
            "@context": list(CONTEXT_IRIS),
            **node_document(self.identity, methods, checkpoint_key),
        }


def read_node_key(settings: Settings, method: Mapping[str, Any]) -> KeyPair:
    """The secret key of one of the node's keys (a Multikey of its node document), from
    ``{home}/keys/{name}.json``."""
    key_id = str(method["id"])
    path = settings.key_dir / f"{key_name(key_id, settings.base_url)}.json"
    if not path.is_file():
        raise StoreError(
            f"{path}: the key file of {key_id} is missing; restore it (a retired key that "
            "is lost can be revoked with 'exchange keys revoke')"
        )
    pair = KeyPair(key_id, read_key_pair(path).seed)
    if pair.public_multibase != method["publicKeyMultibase"]:
        raise InvalidKey(f"{path} does not hold the key {key_id} the node document lists")
    return pair


@asynccontextmanager
async def open_node(settings: Settings) -> AsyncIterator[Node]:
    """The node with its store open and its keys loaded; closes the store on exit."""
    store = store_for(settings)
    await store.open()
    try:
        stored = await store.get_object(settings.base_url)
        latest = await store.latest_checkpoint()
        if latest is not None and not latest[1].startswith(settings.origin + "\n"):
            raise StoreError(
                f"{store!r} holds the log of another node than {settings.base_url}; "
                "give this node a store of its own (database_schema)"
            )
        if stored is None:
            key, created = Node.load_key(settings)
            node = Node(settings, store, key, created)
        else:  # the genesis key file is no longer needed: it may be revoked and gone
            method = active_method(stored.body)
            key = read_node_key(settings, method)
            node = Node(settings, store, key, str(method["created"]), document=stored.body)
        await node.ensure_checkpoint()
        yield node
    finally:
        await store.close()
