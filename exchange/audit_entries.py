"""Checking each entry of a log for an audit: the findings one entry can give.

Pure and picklable: :func:`check_lines` (bundle lines) and :func:`check_page_entries` (a
served feed page) run in worker processes and return one small :class:`EntryVerdict` per
entry; :mod:`exchange.audit` folds them in log order. Which key was valid when, and why a
window finding is made only for a signature that verifies, is explained at
:func:`check_entry`.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, NamedTuple

import orjson

from exchange.canonical import canonicalize, parse, parse_canonical_entry
from exchange.errors import IntegrityError, InvalidKey, ProofError
from exchange.keys import PublicKey
from exchange.merge import KeyRing, VerifiedEntry, keyring_from_node_document, verify_entry
from exchange.merkle import leaf_hash
from exchange.timestamps import format_timestamp, parse_timestamp
from exchange.verification import parse_page

__all__ = [
    "FINDING_KINDS",
    "MAX_LISTED_PER_KIND",
    "EntryVerdict",
    "Erasure",
    "Finding",
    "check_entry",
    "check_lines",
    "check_page_entries",
]

#: Every kind of finding, with what it means, for the report and docs/auditing.md.
FINDING_KINDS: Mapping[str, str] = {
    "invalid-entry": "an entry is malformed: not canonical I-JSON, fails its schema, "
    "or names ids or keys outside its node",
    "invalid-signature": "an entry's signature does not verify with the key it names",
    "unknown-key": "an entry is signed with a key the node document does not list",
    "revoked-key": "an entry is validly signed, but by a key after its revocation time",
    "key-not-yet-valid": "an entry is validly signed, but before its key was created",
    "missing-entry": "an entry is missing: the log skips a sequence number",
    "reordered-entries": "entries are out of order",
    "duplicate-entry": "a sequence number appears twice",
    "truncated": "the log holds fewer entries than its signed checkpoint covers",
    "root-mismatch": "the entries do not hash to the root the node signed",
    "invalid-checkpoint": "a checkpoint is malformed or not signed by the node's key",
    "invalid-proof": "a consistency proof in the bundle does not hold",
    "rollback": "somebody holds a validly signed checkpoint larger than the node's",
    "equivocation": "two validly signed checkpoints of the node that no log can satisfy both",
    "key-replaced": "a key changed its material between versions of the node document",
    "node-document-mismatch": "the node document differs from the last one the log records",
    "silent-erasure": "an entry was erased without a signed erasure that lists it",
}

#: At most this many findings of one kind are listed; the rest are counted.
MAX_LISTED_PER_KIND = 50


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    message: str
    seq: int | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in FINDING_KINDS:
            raise ValueError(f"unknown finding kind {self.kind!r}")

    def to_json(self) -> dict[str, Any]:
        result: dict[str, Any] = {"kind": self.kind, "message": self.message}
        if self.seq is not None:
            result["seq"] = self.seq
        if self.evidence:
            result["evidence"] = dict(self.evidence)
        return result


@dataclass(frozen=True, slots=True)
class Erasure:
    """A signed erasure: the Delete that carries it, its reason and the entries it redacted."""

    seq: int
    object_id: str
    reason: str
    redacted: tuple[int, ...]
    published: str

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "object": self.object_id,
            "reason": self.reason,
            "redacted": list(self.redacted),
            "published": self.published,
        }


class EntryVerdict(NamedTuple):
    """What one entry contributes to the audit; a tuple, so that it pickles cheaply on its
    way back from a worker process."""

    position: int
    seq: int | None  # the seq the entry claims (None if it has none)
    leaf_hash: bytes | None  # None: the line is not even JSON, so the tree cannot go on
    finding: Finding | None = None
    activity: str = ""
    key: str = ""  # the verification method that signed it
    node_document: Mapping[str, Any] | None = None  # a verified Update of the node document
    erasure: Erasure | None = None


# --- entries -------------------------------------------------------------------------------


def check_lines(
    lines: Sequence[bytes], start: int, base_url: str, keys: KeyRing, now: datetime
) -> list[EntryVerdict]:
    """:func:`check_entry` over lines ``start, start+1, ...`` of a bundle (one entry's JCS
    bytes per line); run in worker processes."""
    verdicts = []
    for offset, line in enumerate(lines):
        position = start + offset
        document = parse_canonical_entry(line)
        if document is not None:
            verdicts.append(check_entry(document, line, position, base_url, keys, now, True))
            continue
        try:
            document = orjson.loads(line)
        except orjson.JSONDecodeError:
            try:
                document = parse(line)  # names the reason precisely, or accepts it
            except IntegrityError as error:
                finding = Finding("invalid-entry", f"not JSON: {error.detail}", position)
                verdicts.append(EntryVerdict(position, None, None, finding))
                continue
        verdicts.append(check_entry(document, line, position, base_url, keys, now))
    return verdicts


def check_page_entries(
    raw: bytes, start: int, limit: int, base_url: str, keys: KeyRing, now: datetime
) -> list[EntryVerdict]:
    """:func:`check_entry` over the first ``limit`` entries of a served feed page whose first
    entry is ``start``; run in worker processes."""
    try:
        page, leaves = parse_page(raw)
    except IntegrityError as error:
        return [EntryVerdict(start, None, None, Finding("invalid-entry", error.detail, start))]
    verdicts = []
    for offset, (document, leaf) in enumerate(zip(page["orderedItems"], leaves, strict=True)):
        if offset >= limit:
            break
        if leaf is None:
            try:
                leaf = canonicalize(document)  # I-JSON but not an entry: hash it as served
            except IntegrityError as error:
                finding = Finding("invalid-entry", error.detail, start + offset)
                verdicts.append(EntryVerdict(start + offset, None, None, finding))
                continue
        verdicts.append(check_entry(document, leaf, start + offset, base_url, keys, now))
    return verdicts


def check_entry(
    document: object,
    leaf: bytes,
    position: int,
    base_url: str,
    keys: KeyRing,
    now: datetime,
    canonical: bool = False,
) -> EntryVerdict:
    """Verify one entry as served: ``leaf`` is the exact bytes the Merkle tree covers
    (``canonical``: the caller knows ``leaf`` is the entry's JCS with integers only)."""
    hashed = leaf_hash(leaf)
    claimed = document.get("seq") if isinstance(document, dict) else None
    seq = claimed if isinstance(claimed, int) and not isinstance(claimed, bool) else None
    where = seq if seq is not None else position
    if not isinstance(document, dict):
        return EntryVerdict(position, seq, hashed, Finding("invalid-entry", "not an object", where))
    if document.get("type") == "Redacted":
        return _redacted(document, position, seq, base_url, keys, now)
    try:
        canonical = canonical or canonicalize(document, integers_only=True) == leaf
    except IntegrityError as error:
        return EntryVerdict(position, seq, hashed, Finding("invalid-entry", error.detail, where))
    if not canonical:
        message = "the entry is not in its canonical (RFC 8785) form, so it is not what was signed"
        return EntryVerdict(position, seq, hashed, Finding("invalid-entry", message, where))
    method = _method(document)
    try:
        try:
            verified = verify_entry(
                document, base_url=base_url, expected_seq=where, keys=keys, now=now, leaf=leaf
            )
        except ProofError as first:
            self_listed = _self_listed(document, leaf, where, base_url, now)
            if self_listed is None:
                raise first from None
            verified = self_listed
    except InvalidKey as error:
        finding = _key_finding(document, leaf, where, base_url, keys, now, error)
        return EntryVerdict(position, seq, hashed, finding, str(document.get("type")), method)
    except ProofError as error:
        finding = Finding("invalid-signature", error.detail, where, {"verificationMethod": method})
        return EntryVerdict(position, seq, hashed, finding, str(document.get("type")), method)
    except IntegrityError as error:
        return EntryVerdict(position, seq, hashed, Finding("invalid-entry", error.detail, where))
    obj = document["object"]
    node_document = obj if verified.object_id == base_url else None
    erasure = _erasure(document, where) if verified.activity == "Delete" else None
    return EntryVerdict(
        position, seq, hashed, None, verified.activity, method, node_document, erasure
    )


def _self_listed(
    document: Mapping[str, Any], leaf: bytes, where: int, base_url: str, now: datetime
) -> VerifiedEntry | None:
    """A node-document Update that does not verify with the served document's keys, but
    does with the keys it lists itself: the served document changed a key's material (the
    fold reports key-replaced). None for anything else."""
    obj = document.get("object")
    if not isinstance(obj, Mapping) or obj.get("id") != base_url:
        return None
    try:
        own = keyring_from_node_document(obj)
        return verify_entry(
            document, base_url=base_url, expected_seq=where, keys=own, now=now, leaf=leaf
        )
    except IntegrityError:
        return None


def _method(document: Mapping[str, Any]) -> str:
    proof = document.get("proof")
    return str(proof.get("verificationMethod", "")) if isinstance(proof, Mapping) else ""


def _redacted(
    document: Mapping[str, Any],
    position: int,
    seq: int | None,
    base_url: str,
    keys: KeyRing,
    now: datetime,
) -> EntryVerdict:
    """protocol.md §3: a Redacted entry stands in the tree by the leaf hash it carries."""
    where = seq if seq is not None else position
    try:
        verify_entry(document, base_url=base_url, expected_seq=where, keys=keys, now=now)
        hashed = base64.b64decode(str(document["leafHash"]), validate=True)
    except (IntegrityError, ValueError) as error:
        detail = error.detail if isinstance(error, IntegrityError) else str(error)
        finding = Finding("invalid-entry", f"a malformed Redacted entry: {detail}", where)
        return EntryVerdict(position, seq, None, finding, "Redacted")
    if set(document) != {"id", "type", "seq", "leafHash"} or len(hashed) != 32:
        finding = Finding("invalid-entry", "a Redacted entry has exactly id, type, seq, leafHash")
        return EntryVerdict(position, seq, hashed, replace(finding, seq=where), "Redacted")
    return EntryVerdict(position, seq, hashed, None, "Redacted")


def _key_finding(
    document: Mapping[str, Any],
    leaf: bytes,
    where: int,
    base_url: str,
    keys: KeyRing,
    now: datetime,
    error: InvalidKey,
) -> Finding:
    """A key problem: unknown key, or a real signature outside the key's window."""
    method = _method(document)
    known = next((key for key in keys.keys if key.id == method), None)
    if known is None:
        return Finding("unknown-key", error.detail, where, {"verificationMethod": method})
    open_window = KeyRing(
        keys.base_url,
        tuple(PublicKey(k.id, k.raw) if k.id == method else k for k in keys.keys),
    )
    evidence = {
        "verificationMethod": method,
        "created": str(document["proof"].get("created")),
        "keyCreated": _stamp(known.created),
        "keyRevoked": _stamp(known.revoked),
    }
    try:
        verify_entry(
            document, base_url=base_url, expected_seq=where, keys=open_window, now=now, leaf=leaf
        )
    except IntegrityError as other:
        return Finding("invalid-signature", other.detail, where, evidence)
    signed_at = parse_timestamp(str(document["proof"]["created"]))
    if known.revoked is not None and signed_at >= known.revoked:
        message = f"signed by {method} at {format_timestamp(signed_at)}, after its revocation"
        return Finding("revoked-key", message, where, evidence)
    if known.created is not None and signed_at < known.created:
        message = f"signed by {method} at {format_timestamp(signed_at)}, before it was created"
        return Finding("key-not-yet-valid", message, where, evidence)
    return Finding("invalid-signature", error.detail, where, evidence)


def _stamp(value: datetime | None) -> str | None:
    return format_timestamp(value) if value is not None else None


def _erasure(document: Mapping[str, Any], seq: int) -> Erasure | None:
    erasure = document.get("erasure")
    if not isinstance(erasure, Mapping):
        return None
    redacted = erasure.get("redacted")
    seqs = tuple(int(s) for s in redacted) if isinstance(redacted, list) else ()
    return Erasure(
        seq,
        str(document["object"]["id"]),
        str(erasure.get("reason", "")),
        seqs,
        str(document.get("published", "")),
    )
