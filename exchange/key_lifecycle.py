"""The key lifecycle of a node: the keys of its node document, rotation and revocation.

Pure: documents and keys in, documents out; time comes in as a parameter. The node
document lists every key the node ever signed with, each with its ``created`` time and its
``revoked`` time (``null`` while it is not revoked); ``checkpointKey`` is the signed-note
form of the *active* key, the one that signs new entries (protocol.md §1).

- A **rotation** adds a new key and makes it active. The old key is retired from signing
  but stays valid: it keeps co-signing checkpoints (and HTTP messages) until it is
  revoked, so that a partner still pinning the old node document can verify the newest
  checkpoint, pull the node-document ``Update`` and re-pin.
- A **revocation** sets one retired key's ``revoked`` time; signatures it made at or after
  that time no longer verify anywhere. The active key is never revoked: rotate first.

Both changes are an ``Update`` of the node document in the node's own log, signed by the
key that was active before the change (protocol.md §3).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from exchange.checkpoint import NoteVerifier, verifier_key
from exchange.errors import InvalidKey, KeyChangeRefused, UsageError
from exchange.keys import KeyPair, public_key_from_multibase
from exchange.timestamps import format_timestamp, parse_timestamp

__all__ = [
    "NodeIdentity",
    "active_method",
    "cosigning_methods",
    "genesis_document",
    "key_file",
    "key_method",
    "key_name",
    "key_state",
    "next_key_name",
    "node_document",
    "resolve_key",
    "revocation_time",
    "revoke",
    "rotate",
]

#: Key names are ``{year}-{n}``: the year the key was made and a counter within that year.
_KEY_NAME = re.compile(r"^([0-9]{4})-([1-9][0-9]*)$")


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    """The descriptive members of a node document: they come from the node's settings."""

    base_url: str
    name: str
    language: str
    country: str
    page_size: int

    @property
    def origin(self) -> str:
        """protocol.md §1: the log origin, the base URL without its scheme."""
        return self.base_url.split("://", 1)[1]

    def key_id(self, name: str) -> str:
        return f"{self.base_url}/keys/{name}"


def key_method(
    key_id: str, controller: str, public_multibase: str, created: str, revoked: str | None
) -> dict[str, Any]:
    """One Multikey of ``assertionMethod`` (protocol.md §1)."""
    return {
        "id": key_id,
        "type": "Multikey",
        "controller": controller,
        "publicKeyMultibase": public_multibase,
        "created": created,
        "revoked": revoked,
    }


def key_file(pair: KeyPair, controller: str, created: datetime) -> dict[str, Any]:
    """The key file of a node key (``{home}/keys/{name}.json``, mode 0600)."""
    return {
        "type": "Multikey",
        "id": pair.id,
        "controller": controller,
        "publicKeyMultibase": pair.public_multibase,
        "secretKeyMultibase": pair.secret_multibase,
        "created": format_timestamp(created),
    }


def node_document(
    identity: NodeIdentity, methods: Sequence[Mapping[str, Any]], checkpoint_key: str
) -> dict[str, Any]:
    """protocol.md §1: the node document without ``@context`` (as an entry's object holds
    it); descriptive members from ``identity``, keys from ``methods`` and ``checkpoint_key``."""
    base = identity.base_url
    return {
        "id": base,
        "type": "Service",
        "nameMap": {identity.language: identity.name},
        "country": identity.country,
        "inbox": f"{base}/inbox",
        "outbox": f"{base}/feed",
        "checkpoint": f"{base}/checkpoint",
        "logOrigin": identity.origin,
        "checkpointKey": _parsed(checkpoint_key),
        "pageSize": identity.page_size,
        "assertionMethod": [dict(method) for method in methods],
    }


def _parsed(checkpoint_key: str) -> str:
    """A checkpoint key, checked to parse (``name+keyid+key``)."""
    NoteVerifier.parse(checkpoint_key)
    return checkpoint_key


def genesis_document(identity: NodeIdentity, key: KeyPair, created: str) -> dict[str, Any]:
    """The node document before any rotation: the one key made by ``exchange init``."""
    method = key_method(key.id, identity.base_url, key.public_multibase, created, None)
    return node_document(identity, [method], verifier_key(identity.origin, key.public_raw))


def key_state(
    identity: NodeIdentity, document: Mapping[str, Any]
) -> tuple[list[dict[str, Any]], str]:
    """The key members of a stored node document: its keys and its checkpoint key."""
    methods = [dict(method) for method in document.get("assertionMethod", [])]
    if not methods:
        raise InvalidKey(f"the node document of {identity.base_url} lists no keys")
    return methods, str(document["checkpointKey"])


def key_name(key_id: str, base_url: str) -> str:
    """``2026-1`` for ``B/keys/2026-1``."""
    prefix = f"{base_url}/keys/"
    if not key_id.startswith(prefix):
        raise InvalidKey(f"{key_id} is not a key of {base_url}")
    return key_id[len(prefix) :]


def active_method(document: Mapping[str, Any]) -> Mapping[str, Any]:
    """The key ``checkpointKey`` names: the one that signs new entries and checkpoints."""
    verifier = NoteVerifier.parse(str(document["checkpointKey"]))
    methods: Sequence[Mapping[str, Any]] = document.get("assertionMethod", [])
    for method in methods:
        public = public_key_from_multibase(str(method["id"]), str(method["publicKeyMultibase"]))
        if public.raw == verifier.public.raw:
            if method.get("revoked") is not None:
                raise InvalidKey(f"the active key {method['id']} is revoked")
            return method
    raise InvalidKey(f"no key of {document['id']} matches its checkpointKey")


def cosigning_methods(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The retired keys that still co-sign: every key but the active one that carries no
    ``revoked`` time, oldest first."""
    active = active_method(document)["id"]
    return [
        method
        for method in document.get("assertionMethod", [])
        if method["id"] != active and method.get("revoked") is None
    ]


def next_key_name(taken: Iterable[str], year: int) -> str:
    """``{year}-{n}`` with the first ``n`` above every key of that year already taken."""
    numbers = [0]
    for name in taken:
        match = _KEY_NAME.fullmatch(name)
        if match is not None and int(match.group(1)) == year:
            numbers.append(int(match.group(2)))
    return f"{year}-{max(numbers) + 1}"


def rotate(
    identity: NodeIdentity, document: Mapping[str, Any], new_key: KeyPair, now: datetime
) -> dict[str, Any]:
    """The node document after a rotation to ``new_key`` (created ``now``): every key it
    had, unchanged, plus the new one, which ``checkpointKey`` now names."""
    methods, _ = key_state(identity, document)
    if any(method["id"] == new_key.id for method in methods):
        raise KeyChangeRefused(f"the node already has a key {new_key.id}")
    if any(method["publicKeyMultibase"] == new_key.public_multibase for method in methods):
        raise KeyChangeRefused("the new key is one the node already has")
    created = format_timestamp(now)
    methods.append(
        key_method(new_key.id, identity.base_url, new_key.public_multibase, created, None)
    )
    return node_document(identity, methods, verifier_key(identity.origin, new_key.public_raw))


def resolve_key(identity: NodeIdentity, document: Mapping[str, Any], reference: str) -> str:
    """The key id that ``reference`` (a key name such as ``2026-1``, or a key IRI) names
    among the node's keys; raise KeyChangeRefused when it names none."""
    key_id = reference if "://" in reference else identity.key_id(reference)
    methods, _ = key_state(identity, document)
    if not any(method["id"] == key_id for method in methods):
        known = ", ".join(key_name(method["id"], identity.base_url) for method in methods)
        raise KeyChangeRefused(f"the node has no key {reference!r} (its keys: {known})")
    return key_id


def revoke(
    identity: NodeIdentity, document: Mapping[str, Any], reference: str, at: datetime
) -> dict[str, Any]:
    """The node document with the key ``reference`` names revoked at ``at``.

    Refused for an unknown key, the active key (rotate first), a key already revoked, and
    a time before the key was created.
    """
    key_id = resolve_key(identity, document, reference)
    if active_method(document)["id"] == key_id:
        raise KeyChangeRefused(
            f"{key_id} is the active signing key; rotate first ('exchange keys rotate'), "
            "then revoke it"
        )
    methods, checkpoint_key = key_state(identity, document)
    for method in methods:
        if method["id"] != key_id:
            continue
        if method.get("revoked") is not None:
            raise KeyChangeRefused(f"{key_id} was already revoked at {method['revoked']}")
        if at < parse_timestamp(str(method["created"])):
            raise KeyChangeRefused(
                f"{key_id} was created at {method['created']}; it cannot be revoked before that"
            )
        method["revoked"] = format_timestamp(at)
    return node_document(identity, methods, checkpoint_key)


def revocation_time(text: str, now: datetime) -> datetime:
    """``now``, or an RFC 3339 time to the second (any offset; normalised to UTC)."""
    if text == "now":
        return now.astimezone(UTC).replace(microsecond=0)
    try:
        moment = parse_timestamp(text)
    except ValueError:
        moment = None
    if moment is None or moment.microsecond:
        raise UsageError(
            f"--at {text!r}: give an RFC 3339 time to the second, such as "
            f"{format_timestamp(now)}, or 'now'"
        )
    return moment.astimezone(UTC)
