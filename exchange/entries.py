"""Log entries of the node's own log (protocol.md §3): preparing objects, building and signing
activities, tombstones. Pure: time comes in as ``now``, keys as values, state as records.
"""

from __future__ import annotations

import base64
import re
import secrets
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from exchange.canonical import canonicalize, check_ijson
from exchange.errors import (
    ObjectRevived,
    SchemaError,
    UsageError,
)
from exchange.keys import KeyPair
from exchange.proof import sign_document
from exchange.resources import CONTEXT_IRIS
from exchange.schema import OBJECT_TYPES, check
from exchange.timestamps import format_timestamp, parse_timestamp

__all__ = [
    "MAX_REASON_CHARS",
    "ObjectRecord",
    "ObjectRevived",
    "Redaction",
    "SignedEntry",
    "build_entry",
    "check_reason",
    "erasure_member",
    "holds_content",
    "object_id_of",
    "object_iri",
    "prepare_object",
    "purged_rows",
    "redacted_entry",
    "redacted_leaf",
    "redactions_for",
    "sign_entry",
    "signing_time",
    "strip_personal_data",
    "tombstone_for",
    "unchanged",
]

_PUBLIC_ROLES = {"moderator", "host", "panellist", "speaker", "performer", "organiser"}


@dataclass(frozen=True, slots=True)
class ObjectRecord:
    """The current state of one object in the store (own or merged)."""

    id: str
    origin: str
    type: str
    version: int
    deleted: bool
    seq: int
    body: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class SignedEntry:
    """A signed entry and its leaf: the exact JCS bytes that the Merkle tree covers."""

    seq: int
    object_id: str
    document: Mapping[str, Any]
    leaf: bytes


def _slug(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:60].rstrip("-") or "object"


def _mint_id(base_url: str, draft: Mapping[str, Any]) -> str:
    names = draft.get("nameMap")
    first_name = next(iter(names.values()), "") if isinstance(names, Mapping) else ""
    label = _slug(f"{draft.get('type', '')} {first_name}")
    return f"{base_url}/objects/{label}-{secrets.token_hex(4)}"


def strip_personal_data(obj: Mapping[str, Any], policy: str) -> dict[str, Any]:
    """Remove what the operator's policy does not publish (protocol.md §2).

    ``all`` keeps everything; ``public-roles`` drops contact points marked personalData;
    ``none`` also drops every Person (participants, organisers, contributors).
    """
    result = dict(obj)
    if policy == "all":
        return result
    contacts = [c for c in result.get("contactPoint", []) if not _is_personal(c)]
    _set_or_drop(result, "contactPoint", contacts)
    if policy == "none":
        participation = [
            p for p in result.get("participation", []) if not _is_personal(p.get("participant"))
        ]
        _set_or_drop(result, "participation", participation)
        for member in ("organizer", "contributor"):
            if member in result:
                _set_or_drop(result, member, [a for a in result[member] if not _is_personal(a)])
    else:
        for item in result.get("participation", []):
            if _is_personal(item.get("participant")) and item.get("role") not in _PUBLIC_ROLES:
                raise SchemaError("a person may only be published in a public role")
    return result


def _is_personal(node: object) -> bool:
    return isinstance(node, Mapping) and node.get("personalData") is True


def _set_or_drop(target: dict[str, Any], member: str, items: list[Any]) -> None:
    if items:
        target[member] = items
    elif member in target:
        del target[member]


def prepare_object(
    draft: Mapping[str, Any],
    *,
    base_url: str,
    current: ObjectRecord | None,
    now: datetime,
    personal_data: str,
) -> dict[str, Any]:
    """The object a publish will sign: node-set members filled in, policy applied, validated.

    ``current`` is the stored state of the same id (None for a new object).
    """
    if "proof" in draft:
        raise UsageError("the object carries a proof; publish unsigned objects only")
    if draft.get("type") not in OBJECT_TYPES:
        raise SchemaError(
            f"type must be one of {', '.join(OBJECT_TYPES)}, not {draft.get('type')!r}"
        )
    object_id = draft.get("id") or _mint_id(base_url, draft)
    if not isinstance(object_id, str) or not object_id.startswith(f"{base_url}/objects/"):
        raise UsageError(
            f"id {object_id!r} is not under {base_url}/objects/; leave id out to mint a new one"
        )
    if current is not None and current.deleted:
        raise ObjectRevived(f"{object_id} was deleted; deleted objects are never revived")
    if current is not None and current.type != draft["type"]:
        raise SchemaError(f"{object_id} is a {current.type}; an update cannot change its type")
    stamp = format_timestamp(now)
    obj = {name: value for name, value in draft.items() if name != "@context"}
    obj.update(
        id=object_id,
        attributedTo=base_url,
        version=1 if current is None else current.version + 1,
        published=stamp if current is None else current.body.get("published", stamp),
        updated=stamp,
    )
    obj = strip_personal_data(obj, personal_data)
    check_ijson(obj, integers_only=True)
    check(obj, OBJECT_TYPES[obj["type"]])
    return obj


def unchanged(obj: Mapping[str, Any], current: ObjectRecord | None) -> bool:
    """True when an update would only bump version and timestamps."""
    if current is None or current.deleted:
        return False
    volatile = ("version", "updated", "published")

    def content(value: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in value.items() if k not in volatile}

    return content(obj) == content(current.body)


def signing_time(now: datetime, current: ObjectRecord | None) -> datetime:
    """When an entry about ``current`` is signed: ``now``, but never before the dates the
    stored object already carries. A clock set back since it was published (a wrong clock
    corrected, NTP stepping back) would otherwise sign an update or delete of an object
    published after its own signature, which every partner rejects for good (rule 6)."""
    if current is None:
        return now
    dates = [now]
    for member in ("published", "updated", "deleted"):
        value = current.body.get(member)
        if isinstance(value, str):
            try:
                dates.append(parse_timestamp(value))
            except ValueError:
                continue
    return max(dates)


def tombstone_for(current: ObjectRecord, now: datetime) -> dict[str, Any]:
    """protocol.md §3: the object of a Delete."""
    if current.deleted:
        raise ObjectRevived(f"{current.id} is already deleted")
    return {
        "id": current.id,
        "type": "Tombstone",
        "formerType": current.type,
        "deleted": format_timestamp(now),
    }


def build_entry(
    seq: int, activity: str, obj: Mapping[str, Any], base_url: str, now: datetime
) -> dict[str, Any]:
    """The unsigned activity for log position ``seq``."""
    return {
        "@context": list(CONTEXT_IRIS),
        "id": f"{base_url}/log/{seq}",
        "type": activity,
        "seq": seq,
        "actor": base_url,
        "published": format_timestamp(now),
        "object": dict(obj),
    }


def sign_entry(
    entry: Mapping[str, Any], key: KeyPair, now: datetime, max_entry_bytes: int
) -> SignedEntry:
    """Sign an entry and produce its leaf; refuse one larger than the protocol allows."""
    signed = sign_document(entry, key, now)
    check(signed, "entry")
    leaf = canonicalize(signed)
    if len(leaf) > max_entry_bytes:
        raise SchemaError(
            f"the entry is {len(leaf)} bytes; an entry is at most {max_entry_bytes} bytes"
        )
    return SignedEntry(int(entry["seq"]), str(entry["object"]["id"]), signed, leaf)


# --- erasure (protocol.md §3 "Erasure") ---------------------------------------------------

#: The longest reason an erasure may give, in characters (code points).
MAX_REASON_CHARS = 1000

#: Activities whose entries carry an object's content; an erasure redacts exactly these.
_CONTENT_ACTIVITIES = frozenset({"Create", "Update"})
_TAG_OPENING = re.compile(r"<[A-Za-z!/?]")


@dataclass(frozen=True, slots=True)
class Redaction:
    """Entry ``seq`` of the node's own log replaced by its Redacted form ``leaf``; the Merkle
    leaf hash ``leaf_hash`` of the erased entry stays, and with it the tree."""

    seq: int
    leaf_hash: bytes
    leaf: bytes


def object_iri(reference: str, base_url: str) -> str:
    """An object IRI as the operator names it: the IRI itself, or its last part (slug)."""
    return reference if "://" in reference else f"{base_url}/objects/{reference}"


def redacted_entry(base_url: str, seq: int, leaf_hash: bytes) -> dict[str, Any]:
    """protocol.md §3: an erased entry reads exactly these four members."""
    return {
        "id": f"{base_url}/log/{seq}",
        "type": "Redacted",
        "seq": seq,
        "leafHash": base64.b64encode(leaf_hash).decode("ascii"),
    }


def redacted_leaf(base_url: str, seq: int, leaf_hash: bytes) -> bytes:
    """The JCS bytes of :func:`redacted_entry`, as they are stored and served."""
    return canonicalize(redacted_entry(base_url, seq, leaf_hash))


def holds_content(entry: bytes | str) -> bool:
    """True for the JSON of a Create or Update: an entry that carries an object's content
    (a Delete carries only a Tombstone, a Redacted entry nothing)."""
    document = orjson.loads(entry)
    return isinstance(document, dict) and document.get("type") in _CONTENT_ACTIVITIES


def object_id_of(entry: bytes | str) -> str | None:
    """The id of the object an entry's JSON is about (None for a Redacted entry)."""
    document = orjson.loads(entry)
    obj = document.get("object") if isinstance(document, dict) else None
    object_id = obj.get("id") if isinstance(obj, dict) else None
    return object_id if isinstance(object_id, str) else None


def redactions_for(base_url: str, rows: Iterable[tuple[int, bytes, bytes]]) -> list[Redaction]:
    """The redactions that erase an object from ``rows`` (seq, leaf, leaf hash) of the node's
    own log: every Create and Update, in seq order."""
    return [
        Redaction(seq, hashed, redacted_leaf(base_url, seq, hashed))
        for seq, leaf, hashed in sorted(rows)
        if holds_content(leaf)
    ]


def purged_rows(origin: str, rows: Iterable[tuple[int, bytes, str]]) -> list[tuple[int, str]]:
    """protocol.md §7 rule 5 at a partner: the merged entries ``rows`` (seq, leaf hash,
    entry JSON) of a deleted object of ``origin`` that still carry content, each with the
    Redacted JSON that replaces it."""
    return [
        (seq, redacted_leaf(origin, seq, hashed).decode())
        for seq, hashed, entry in rows
        if holds_content(entry)
    ]


def check_reason(reason: object) -> str:
    """An erasure's reason: required, plain text, at most :data:`MAX_REASON_CHARS`."""
    if not isinstance(reason, str) or not reason.strip():
        raise UsageError("an erasure needs a reason: say in plain text why the content is erased")
    if len(reason) > MAX_REASON_CHARS:
        raise UsageError(
            f"the reason has {len(reason)} characters; at most {MAX_REASON_CHARS} are allowed"
        )
    if _TAG_OPENING.search(reason):
        raise UsageError("the reason must be plain text: no '<' that could open an HTML tag")
    return reason


def erasure_member(reason: str, redacted: Sequence[int]) -> dict[str, Any]:
    """The ``erasure`` member of the Delete that records an erasure."""
    return {"type": "Erasure", "reason": check_reason(reason), "redacted": sorted(redacted)}
