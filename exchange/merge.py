"""Verifying a partner's entries and deciding what they change (protocol.md §3, §7).

Pure: :func:`verify_entry` checks one entry of origin ``B`` (shape, schema, ids, origin
authority, proof by a key of ``B`` valid at its time) and returns a :class:`VerifiedEntry`
or raises an :class:`~exchange.errors.IntegrityError` whose message is the recorded reason.
:func:`decide` maps (stored state, verified entry) to an :class:`Outcome`. Ordering,
idempotence by ``seq`` and checkpoint consistency (rules 2, 3, 7) are the ingest shell's.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from exchange.canonical import canonicalize
from exchange.checkpoint import NoteVerifier
from exchange.entries import ObjectRecord
from exchange.errors import (
    InvalidKey,
    MergeRejected,
    SchemaError,
)
from exchange.keys import PublicKey, public_key_from_multibase
from exchange.merkle import leaf_hash
from exchange.origins import OriginError, is_under
from exchange.proof import verify_proof
from exchange.resources import CONTEXT_FILES
from exchange.schema import check
from exchange.timestamps import parse_timestamp

__all__ = [
    "FORBIDDEN_KEYWORDS",
    "KeyRing",
    "MergeRejected",
    "Outcome",
    "VerifiedEntry",
    "check_context",
    "check_dates",
    "check_node_document",
    "check_shape",
    "decide",
    "keyring_from_node_document",
    "verify_entry",
]

#: protocol.md §3: reshaping signed JSON-LD with these kept signatures valid in real exploits.
FORBIDDEN_KEYWORDS = frozenset({"@graph", "@reverse", "@included", "@nest", "@id", "@type"})


@dataclass(frozen=True, slots=True)
class KeyRing:
    """The keys a partner's node document lists, with their validity windows."""

    base_url: str
    keys: tuple[PublicKey, ...]

    def resolve(self, method: str) -> PublicKey:
        for key in self.keys:
            if key.id == method:
                return key
        raise InvalidKey(f"verificationMethod {method} is not a key of {self.base_url}")


@dataclass(frozen=True, slots=True)
class VerifiedEntry:
    origin: str
    seq: int
    activity: str  # Create | Update | Delete | Redacted
    object_id: str | None
    document: Mapping[str, Any]
    leaf_hash: bytes
    leaf: bytes = b""  # the JCS bytes that were verified (empty for a Redacted entry)


def check_shape(entry: Mapping[str, Any]) -> None:
    """protocol.md §3: no JSON-LD keyword but ``@context``, and that only at the top and in
    the proof."""
    stack: list[tuple[object, str]] = [(entry, "")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, Mapping):
            for name, value in node.items():
                where = f"{path}/{name}"
                if name in FORBIDDEN_KEYWORDS:
                    raise SchemaError(f"{where}: the JSON-LD keyword {name} is not allowed")
                if name == "@context" and path not in ("", "/proof"):
                    raise SchemaError(
                        f"{where}: @context is allowed only at the top and in the proof"
                    )
                stack.append((value, where))
        elif isinstance(node, list):
            stack.extend((item, f"{path}/{index}") for index, item in enumerate(node))


def check_context(message: Mapping[str, Any]) -> None:
    """protocol.md §1: a message names only contexts the node ships, by their IRI. Any
    other IRI could only be read by fetching it, and an inline context redefines terms, so
    that the signed JSON would read otherwise as JSON-LD; both are refused."""
    if "@context" not in message:
        return
    value = message["@context"]
    for name in value if isinstance(value, list) else [value]:
        if not isinstance(name, str) or name not in CONTEXT_FILES:
            shown = name if isinstance(name, str) else "an inline context"
            raise SchemaError(f"/@context: {shown} is not a context this node ships")


def _check_shape_canonical(entry: Mapping[str, Any], leaf: bytes) -> None:
    """:func:`check_shape` on the entry's JCS bytes: in canonical JSON a quote inside a
    string is escaped, so ``"@`` opens a string or a member name that starts with ``@``.
    Exactly the two ``"@context":`` members are fine; anything else is walked, to name
    the place or to find that it was only a string."""
    if leaf.count(b'"@') != 2 or leaf.count(b'"@context":') != 2:
        check_shape(entry)


def _without_proof(leaf: bytes, proof: object) -> bytes | None:
    """The JCS of the entry without its proof, cut from the entry's own JCS bytes.

    ``proof`` sorts after ``object`` and before ``published``, so it is never the first
    member and is preceded by a comma; the cut is used only when it is unambiguous.
    """
    # The leaf passed the I-JSON checks as a whole, so orjson may serialize the proof; if
    # its output is not the JCS of the proof, it is not found in the leaf and nothing is cut.
    needle = b',"proof":' + orjson.dumps(proof, option=orjson.OPT_SORT_KEYS)
    return leaf.replace(needle, b"", 1) if leaf.count(needle) == 1 else None


def _redacted(entry: Mapping[str, Any], base_url: str, seq: int) -> VerifiedEntry:
    check(entry, "entry")
    try:
        hashed = base64.b64decode(str(entry["leafHash"]), validate=True)
    except binascii.Error:
        raise SchemaError("/leafHash: not base64") from None
    return VerifiedEntry(base_url, seq, "Redacted", None, entry, hashed)


def verify_entry(
    entry: Mapping[str, Any],
    *,
    base_url: str,
    expected_seq: int,
    keys: KeyRing,
    now: datetime,
    max_entry_bytes: int = 256 * 1024,
    max_clock_skew_s: int = 300,
    leaf: bytes | None = None,
) -> VerifiedEntry:
    """Verify entry ``expected_seq`` of the log of ``base_url``, or raise with the reason.

    ``leaf``, when the caller has it, is the entry's JCS as ``canonicalize(entry,
    integers_only=True)`` made it (the I-JSON checks ran there).
    """
    if leaf is None:
        leaf = canonicalize(entry, integers_only=True)
    if len(leaf) > max_entry_bytes:
        raise SchemaError(f"the entry is {len(leaf)} bytes; at most {max_entry_bytes} are allowed")
    if entry.get("seq") != expected_seq:
        raise SchemaError(f"/seq: expected {expected_seq}, got {entry.get('seq')!r}")
    if entry.get("id") != f"{base_url}/log/{expected_seq}":
        raise OriginError(f"/id: expected {base_url}/log/{expected_seq}")
    if entry.get("type") == "Redacted":
        return _redacted(entry, base_url, expected_seq)
    _check_shape_canonical(entry, leaf)
    check(entry, "entry")
    # Rule 1: origin authority.
    if entry["actor"] != base_url:
        raise OriginError(f"/actor: {entry['actor']!r} is not {base_url}")
    object_id = str(entry["object"]["id"])
    if not is_under(object_id, base_url):
        raise OriginError(f"/object/id: {object_id!r} is not under {base_url}")
    is_node_document = entry["object"].get("type") == "Service"
    if (object_id == base_url) != is_node_document:
        raise OriginError("/object/id: the node document, and only it, has the node's own id")
    if is_node_document:
        if entry["type"] != "Update":
            raise OriginError(
                f"/type: the node document changes only by an Update, not {entry['type']}"
            )
        check_node_document(entry["object"], base_url)
    attributed = entry["object"].get("attributedTo")
    if attributed is not None and attributed != base_url:
        raise OriginError(f"/object/attributedTo: {attributed!r} is not {base_url}")
    method = str(entry["proof"]["verificationMethod"])
    if not is_under(method, base_url):
        raise OriginError(f"/proof/verificationMethod: {method!r} is not a key of {base_url}")
    unsecured = {name: value for name, value in entry.items() if name != "proof"}
    proof = verify_proof(
        unsecured,
        entry["proof"],
        keys.resolve,
        now,
        max_clock_skew_s=max_clock_skew_s,
        transformed=_without_proof(leaf, entry["proof"]),
    )
    check_dates(entry, proof.created, max_clock_skew_s)
    return VerifiedEntry(
        base_url, expected_seq, str(entry["type"]), object_id, entry, leaf_hash(leaf), leaf
    )


#: The members of an entry that say when it, or its object, was written or deleted.
_DATES = (
    ("", "published"),
    ("/object", "published"),
    ("/object", "updated"),
    ("/object", "deleted"),
)


def check_dates(entry: Mapping[str, Any], signed_at: datetime, max_clock_skew_s: int) -> None:
    """No entry is dated after the moment its verified proof says it was signed (beyond the
    clock skew), and no object was updated before it was published: such dates are absurd,
    and would pin an object at the top of every "recently updated" listing (rule 6).

    A timestamp the schema admits but no clock shows (second 60, year 0000) is refused
    too: it cannot be compared with anything."""
    latest = signed_at + timedelta(seconds=max_clock_skew_s)
    moments: dict[str, datetime] = {}
    for where, name in _DATES:
        holder = entry if not where else entry.get("object")
        value = holder.get(name) if isinstance(holder, Mapping) else None
        if value is None:
            continue
        pointer = f"{where}/{name}"
        try:
            moment = parse_timestamp(value)
            moment.astimezone(UTC)
        except (ValueError, OverflowError):
            raise SchemaError(f"{pointer}: {value!r} is no instant this node can compare") from None
        if moment > latest:
            raise MergeRejected(f"{pointer}: {value} is after the proof's created time {signed_at}")
        moments[pointer] = moment
    published, updated = moments.get("/object/published"), moments.get("/object/updated")
    if published is not None and updated is not None and updated < published:
        raise MergeRejected("/object/updated: the object was updated before it was published")


def check_node_document(document: Mapping[str, Any], base_url: str) -> None:
    """A node document names itself, its log origin and endpoints under its own base URL,
    and lists keys that parse (protocol.md §1); raise OriginError otherwise."""
    check(document, "node")
    if document["id"] != base_url:
        raise OriginError(f"/id: the node document names itself {document['id']!r}, not {base_url}")
    if document["logOrigin"] != base_url.split("://", 1)[1]:
        raise OriginError(f"/logOrigin: {document['logOrigin']!r} is not the origin of {base_url}")
    for member in ("inbox", "outbox", "checkpoint"):
        if not is_under(str(document[member]), base_url):
            raise OriginError(f"/{member}: {document[member]!r} is not under {base_url}")
    keyring_from_node_document(document)
    NoteVerifier.parse(str(document["checkpointKey"]))


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a verified entry does to the merged store."""

    action: str  # create | update | delete | node-document | redact | skip
    record: ObjectRecord | None = None
    reason: str = ""


def decide(current: ObjectRecord | None, entry: VerifiedEntry) -> Outcome:
    """protocol.md §7 rules 4 and 5 for one verified entry; raises MergeRejected."""
    if entry.activity == "Redacted":
        return Outcome("redact")
    obj = entry.document["object"]
    if entry.activity == "Update" and obj.get("type") == "Service":
        return Outcome("node-document")
    assert entry.object_id is not None
    if current is not None and current.origin != entry.origin:
        # Rule 1 by ownership: an id under B that another node holds (a base URL nested in
        # another, as on shared hosting) is still not B's to change.
        raise OriginError(f"{entry.object_id} belongs to {current.origin}, not {entry.origin}")
    if entry.activity == "Delete":
        if current is not None and current.deleted:
            return Outcome("skip", reason="already deleted")
        record = ObjectRecord(
            entry.object_id,
            entry.origin,
            str(obj["formerType"]),
            current.version if current else 0,
            True,
            entry.seq,
            obj,
        )
        return Outcome("delete", record)
    if current is not None and current.deleted:
        raise MergeRejected(
            f"{entry.object_id} was deleted; a {entry.activity} never revives it (rule 5)"
        )
    version = int(obj["version"])
    if current is not None and version <= current.version:
        raise MergeRejected(
            f"version {version} of {entry.object_id} is not newer than the stored "
            f"version {current.version} (rule 4)"
        )
    if current is not None and current.type != obj["type"]:
        raise MergeRejected(
            f"{entry.object_id} is a {current.type}; an update cannot change its type"
        )
    record = ObjectRecord(
        entry.object_id, entry.origin, str(obj["type"]), version, False, entry.seq, obj
    )
    return Outcome("create" if current is None else "update", record)


def keyring_from_node_document(document: Mapping[str, Any]) -> KeyRing:
    """The keys of a (verified or pinned) node document, with their validity windows."""
    base_url = str(document["id"])
    keys: list[PublicKey] = []
    methods: Sequence[Mapping[str, Any]] = document.get("assertionMethod", [])
    for method in methods:
        key = public_key_from_multibase(str(method["id"]), str(method["publicKeyMultibase"]))
        created = parse_timestamp(method["created"]) if method.get("created") else None
        revoked = parse_timestamp(method["revoked"]) if method.get("revoked") else None
        keys.append(PublicKey(key.id, key.raw, created=created, revoked=revoked))
    if not keys:
        raise InvalidKey(f"the node document of {base_url} lists no keys")
    return KeyRing(base_url, tuple(keys))
