"""A node's log built in memory, without a store or a server: for audit tests and the audit
benchmark. It signs with the real core (entries, proof, checkpoint, merkle) and writes
bundles in the format of :mod:`exchange.bundle`, so that tests can tamper with any line.
"""

from __future__ import annotations

import base64
import gzip
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from exchange.bundle import BundleHeader, checkpoint_line, header_line
from exchange.canonical import canonicalize
from exchange.checkpoint import Checkpoint, sign_checkpoint, verifier_key
from exchange.entries import ObjectRecord, build_entry, prepare_object, sign_entry, tombstone_for
from exchange.keys import KeyPair, generate
from exchange.merkle import (
    MemorySubtrees,
    consistency_proof,
    leaf_hash,
    perfect_subtrees_completed_by,
)
from exchange.resources import CONTEXT_IRIS
from exchange.timestamps import format_timestamp

BASE_URL = "https://samenwerken.example.nl/exchange"
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class _Tree(MemorySubtrees):
    def append_hash(self, hashed: bytes) -> None:
        for level, index, value in perfect_subtrees_completed_by(self, self.size, hashed):
            self._nodes[(level, index)] = value
        self.size += 1


@dataclass
class KeyEntry:
    pair: KeyPair
    created: datetime
    revoked: datetime | None = None

    def method(self) -> dict[str, Any]:
        return {
            "id": self.pair.id,
            "type": "Multikey",
            "controller": BASE_URL,
            "publicKeyMultibase": self.pair.public_multibase,
            "created": format_timestamp(self.created),
            "revoked": format_timestamp(self.revoked) if self.revoked else None,
        }


@dataclass
class SyntheticLog:
    """A node's log: entries (leaves as served), the tree, checkpoints, node documents."""

    base_url: str = BASE_URL
    clock: datetime = START
    keys: list[KeyEntry] = field(default_factory=list)
    active: int = 0
    leaves: list[bytes] = field(default_factory=list)
    hashes: list[bytes] = field(default_factory=list)
    tree: _Tree = field(default_factory=_Tree)
    checkpoints: list[tuple[int, str]] = field(default_factory=list)
    objects: dict[str, ObjectRecord] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.keys:
            self.keys.append(KeyEntry(generate(f"{self.base_url}/keys/2026-1"), self.clock))

    @property
    def origin(self) -> str:
        return self.base_url.split("://", 1)[1]

    @property
    def key(self) -> KeyPair:
        return self.keys[self.active].pair

    def tick(self, seconds: int = 60) -> datetime:
        self.clock += timedelta(seconds=seconds)
        return self.clock

    def node_document(self) -> dict[str, Any]:
        return {
            "@context": list(CONTEXT_IRIS),
            "id": self.base_url,
            "type": "Service",
            "nameMap": {"nl": "Samenwerken", "en": "Working together"},
            "country": "NL",
            "inbox": f"{self.base_url}/inbox",
            "outbox": f"{self.base_url}/feed",
            "checkpoint": f"{self.base_url}/checkpoint",
            "logOrigin": self.origin,
            "checkpointKey": verifier_key(self.origin, self.key.public_raw),
            "pageSize": 100,
            "assertionMethod": [key.method() for key in self.keys],
        }

    # --- appending -------------------------------------------------------------------------

    def append_entry(
        self, activity: str, obj: Mapping[str, Any], key: KeyPair | None = None
    ) -> int:
        seq = len(self.leaves)
        moment = self.tick()
        entry = build_entry(seq, activity, obj, self.base_url, moment)
        signed = sign_entry(entry, key or self.key, moment, 256 * 1024)
        self._append_leaf(signed.leaf)
        return seq

    def _append_leaf(self, leaf: bytes) -> None:
        hashed = leaf_hash(leaf)
        self.leaves.append(leaf)
        self.hashes.append(hashed)
        self.tree.append_hash(hashed)

    def publish(self, draft: Mapping[str, Any]) -> int:
        draft_id = draft.get("id")
        current = self.objects.get(draft_id) if isinstance(draft_id, str) else None
        obj = prepare_object(
            draft,
            base_url=self.base_url,
            current=current,
            now=self.clock,
            personal_data="public-roles",
        )
        seq = self.append_entry("Create" if current is None else "Update", obj)
        self.objects[obj["id"]] = ObjectRecord(
            obj["id"], self.base_url, obj["type"], obj["version"], False, seq, obj
        )
        return seq

    def bulk(self, count: int, checkpoint_every: int = 10_000) -> None:
        """``count`` new practices, signed without the publishing checks (they are valid by
        construction): a large log in seconds, for the 100,000-entry audit."""
        from exchange.proof import sign_document

        for _ in range(count):
            seq = len(self.leaves)
            moment = self.tick(1)
            obj = {
                **practice(seq),
                "id": f"{self.base_url}/objects/practice-{seq}",
                "attributedTo": self.base_url,
                "version": 1,
                "published": format_timestamp(moment),
                "updated": format_timestamp(moment),
            }
            entry = build_entry(seq, "Create", obj, self.base_url, moment)
            self._append_leaf(canonicalize(sign_document(entry, self.key, moment)))
            if len(self.leaves) % checkpoint_every == 0:
                self.sign_checkpoint()

    def rotate(self) -> int:
        """A new key; the node-document Update is signed by the old one."""
        old = self.key
        name = f"2026-{len(self.keys) + 1}"
        self.keys.append(KeyEntry(generate(f"{self.base_url}/keys/{name}"), self.tick()))
        self.active = len(self.keys) - 1
        return self.append_entry("Update", self._logged_document(), key=old)

    def revoke(self, index: int, at: datetime) -> int:
        self.keys[index].revoked = at
        return self.append_entry("Update", self._logged_document())

    def _logged_document(self) -> dict[str, Any]:
        """The node document as an entry's object: @context only at the entry's top."""
        return {k: v for k, v in self.node_document().items() if k != "@context"}

    def erase(self, object_id: str, reason: str) -> int:
        """Redact every Create/Update of ``object_id`` and append the erasure's Delete."""
        redacted = []
        for seq, leaf in enumerate(self.leaves):
            if b'"type":"Redacted"' in leaf[:200]:
                continue
            if f'"id":"{object_id}"'.encode() in leaf and (
                b'"type":"Create"' in leaf or b'"type":"Update"' in leaf
            ):
                self.leaves[seq] = redacted_form(self.base_url, seq, self.hashes[seq])
                redacted.append(seq)
        current = self.objects[object_id]
        seq = len(self.leaves)
        moment = self.tick()
        entry = build_entry(seq, "Delete", tombstone_for(current, moment), self.base_url, moment)
        entry["erasure"] = {"type": "Erasure", "reason": reason, "redacted": redacted}
        from exchange.proof import sign_document

        signed = sign_document(entry, self.key, moment)
        self._append_leaf(canonicalize(signed))
        return seq

    def sign_checkpoint(self, key: KeyPair | None = None) -> str:
        size = len(self.leaves)
        root = self.root(size)
        note = sign_checkpoint(Checkpoint(self.origin, size, root), self.origin, key or self.key)
        self.checkpoints.append((size, note))
        return note

    def root(self, size: int) -> bytes:
        from exchange.merkle import root

        return root(self.tree, size)

    # --- bundles ---------------------------------------------------------------------------

    def bundle_lines(self, document: Mapping[str, Any] | None = None) -> list[bytes]:
        """The bundle as lines (each ending in a newline), for tests to tamper with."""
        if not self.checkpoints or self.checkpoints[-1][0] != len(self.leaves):
            self.sign_checkpoint()
        size = self.checkpoints[-1][0]
        header = BundleHeader(
            self.base_url,
            format_timestamp(self.clock),
            document or self.node_document(),
            size,
            len(self.checkpoints),
        )
        lines = [header_line(header)]
        for checkpoint_size, note in self.checkpoints:
            proof = (
                consistency_proof(self.tree, checkpoint_size, size)
                if 0 < checkpoint_size < size
                else []
            )
            lines.append(checkpoint_line(note, proof))
        lines.extend(leaf + b"\n" for leaf in self.leaves)
        return lines

    def write_bundle(self, path: Path, lines: list[bytes] | None = None) -> Path:
        data = b"".join(lines if lines is not None else self.bundle_lines())
        if path.suffix == ".gz":
            path.write_bytes(gzip.compress(data, 1))
        else:
            path.write_bytes(data)
        return path


def redacted_form(base_url: str, seq: int, hashed: bytes) -> bytes:
    """protocol.md §3: exactly id, type, seq and leafHash."""
    return canonicalize(
        {
            "id": f"{base_url}/log/{seq}",
            "type": "Redacted",
            "seq": seq,
            "leafHash": base64.b64encode(hashed).decode(),
        }
    )


def practice(number: int) -> dict[str, Any]:
    return {
        "type": "BestPractice",
        "nameMap": {"en": f"Practice {number}", "nl": f"Praktijk {number}"},
        "practiceKind": "experience",
    }
