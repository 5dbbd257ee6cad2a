"""Auditing a node's whole log: findings and their evidence (issue: auditors).

Pure. An audit reads a log entry by entry, from a live node or a bundle, and proves without
trusting the node that:

1. every entry verifies, signed by a key of the node that was valid at its ``created``
   time, under the key windows of the node's newest document (a revocation counts
   backwards: whatever the key signed from its revocation time on is a finding);
2. the entries, in order and without gaps, hash to the root of every checkpoint the node
   signed (its own, in the bundle or at ``/checkpoint``);
3. that tree is consistent with every checkpoint somebody else holds (``--trusted-
   checkpoints``, and those gossiped by partners at ``/checkpoints``): a validly signed
   checkpoint that the log does not extend is equivocation, one larger than the node's
   own is a rollback;
4. every key change is in the log: each key keeps its material in every version of the
   node document, and the served document is the last one the log records;
5. every erased entry is accounted for by a signed erasure (a ``Delete`` with an
   ``erasure`` member listing it); any other ``Redacted`` entry is a silent erasure.

The CPU-bound part, :func:`~exchange.audit_entries.check_entry`, is picklable and runs in
worker processes; the fold, :class:`AuditFold`, sees the verdicts in log order and keeps
O(log n) state besides the findings. The shell (``exchange.auditor``) does the reading.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from exchange.audit_entries import (
    FINDING_KINDS,
    MAX_LISTED_PER_KIND,
    EntryVerdict,
    Erasure,
    Finding,
    check_entry,
    check_lines,
    check_page_entries,
)
from exchange.checkpoint import Checkpoint, NoteVerifier, open_note, parse_checkpoint
from exchange.errors import CheckpointError, IntegrityError, UsageError
from exchange.merge import keyring_from_node_document
from exchange.merkle import CompactRange, verify_consistency
from exchange.timestamps import format_timestamp

__all__ = [
    "FINDING_KINDS",
    "AuditFold",
    "AuditReport",
    "CheckpointSource",
    "EntryVerdict",
    "Erasure",
    "Finding",
    "SignedCheckpoint",
    "check_entry",
    "check_lines",
    "check_node_documents",
    "check_page_entries",
    "verify_checkpoints",
]

# --- checkpoints ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckpointSource:
    """A signed note and where the auditor got it: ``node`` (the node's own checkpoint),
    ``bundle`` (the node's checkpoint history), ``trusted`` (the auditor's file) or
    ``gossip <url>`` (a partner's ``/checkpoints``). ``consistency`` is the bundle's proof
    from this checkpoint to the node's newest one, when it carries one."""

    note: str
    source: str
    consistency: tuple[bytes, ...] | None = None


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    checkpoint: Checkpoint
    note: str
    source: str
    consistency: tuple[bytes, ...] | None = None

    @property
    def size(self) -> int:
        return self.checkpoint.size

    def to_json(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "rootHash": base64.b64encode(self.checkpoint.root_hash).decode(),
            "source": self.source,
            "note": self.note,
        }


def note_verifiers(document: Mapping[str, Any]) -> list[NoteVerifier]:
    """A signed-note verifier for every key the node document lists (older checkpoints were
    signed by the keys of their time), the checkpointKey first."""
    origin = str(document["logOrigin"])
    verifiers = [NoteVerifier.parse(str(document["checkpointKey"]))]
    for key in keyring_from_node_document(document).keys:
        verifier = NoteVerifier(origin, key)
        if verifier.key_id != verifiers[0].key_id:
            verifiers.append(verifier)
    return verifiers


def verify_checkpoints(
    sources: Iterable[CheckpointSource], document: Mapping[str, Any]
) -> tuple[list[SignedCheckpoint], list[Finding]]:
    """Verify each signed note with the node's keys; the node's own newest checkpoint
    (source ``node``) must verify with its current ``checkpointKey``. A trusted note that
    does not verify raises UsageError: the auditor's own evidence is wrong, not the node."""
    origin = str(document["logOrigin"])
    current = NoteVerifier.parse(str(document["checkpointKey"]))
    verifiers = note_verifiers(document)
    verified: list[SignedCheckpoint] = []
    findings: list[Finding] = []
    trusted_number = 0
    for source in sources:
        trusted_number += source.source == "trusted"
        try:
            text, _ = open_note(source.note, [current] if source.source == "node" else verifiers)
            checkpoint = parse_checkpoint(text, origin)
        except CheckpointError as error:
            if source.source == "trusted":
                raise UsageError(
                    f"trusted checkpoint {trusted_number}: {error.detail}; it is not a "
                    f"checkpoint of {origin} signed by one of its keys"
                ) from None
            # A partner's note that no key of the node signed is no evidence of anything.
            if source.source in ("node", "bundle"):
                evidence = {"note": source.note, "source": source.source}
                findings.append(Finding("invalid-checkpoint", error.detail, None, evidence))
            continue
        verified.append(
            SignedCheckpoint(checkpoint, source.note, source.source, source.consistency)
        )
    return verified, findings


def _conflicts(checkpoints: Sequence[SignedCheckpoint]) -> list[Finding]:
    """Two signed checkpoints of one size with different roots: equivocation on their face."""
    by_size: dict[int, SignedCheckpoint] = {}
    findings = []
    for item in checkpoints:
        seen = by_size.setdefault(item.size, item)
        if seen.checkpoint.root_hash != item.checkpoint.root_hash:
            findings.append(_equivocation(seen, item, f"two different roots for size {item.size}"))
    return findings


def _equivocation(first: SignedCheckpoint, second: SignedCheckpoint, why: str) -> Finding:
    evidence = {"checkpoints": [first.to_json(), second.to_json()]}
    message = f"{why} ({first.source} and {second.source})"
    return Finding("equivocation", message, None, evidence)


# --- the node document history -----------------------------------------------------------


def _keys_of(document: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    methods = document.get("assertionMethod", [])
    return {str(m.get("id")): m for m in methods if isinstance(m, Mapping)}


def check_node_documents(
    logged: Mapping[str, Any], current: Mapping[str, Any], seq: int
) -> list[Finding]:
    """Compare a node document the log records (at ``seq``) with the node's current one:
    no key may change its material, and no key may silently disappear."""
    findings = []
    now_keys = _keys_of(current)
    for key_id, method in _keys_of(logged).items():
        present = now_keys.get(key_id)
        if present is None:
            message = f"key {key_id}, listed by the node document at entry {seq}, is gone"
            findings.append(Finding("node-document-mismatch", message, seq))
        elif present.get("publicKeyMultibase") != method.get("publicKeyMultibase"):
            message = f"key {key_id} has other material than the node document at entry {seq}"
            evidence = {
                "key": key_id,
                "logged": method.get("publicKeyMultibase"),
                "served": present.get("publicKeyMultibase"),
            }
            findings.append(Finding("key-replaced", message, seq, evidence))
    return findings


def _key_summary(document: Mapping[str, Any]) -> tuple[Any, ...]:
    methods = sorted(_keys_of(document).items())
    keys = tuple(
        (key_id, m.get("publicKeyMultibase"), m.get("created"), m.get("revoked"))
        for key_id, m in methods
    )
    return (document.get("checkpointKey"), keys)


def current_document_findings(document: Mapping[str, Any]) -> list[Finding]:
    """The checkpointKey names a key the document lists, with the same material."""
    try:
        verifier = NoteVerifier.parse(str(document["checkpointKey"]))
        keys = keyring_from_node_document(document).keys
    except IntegrityError as error:
        return [Finding("key-replaced", f"the node document's keys do not parse: {error.detail}")]
    if not any(key.raw == verifier.public.raw for key in keys):
        message = "the checkpointKey is none of the keys the node document lists"
        evidence = {"checkpointKey": document["checkpointKey"]}
        return [Finding("key-replaced", message, None, evidence)]
    return []


# --- the fold ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditReport:
    node: str
    source: str
    audited_at: str
    size: int  # entries read
    checkpoint: SignedCheckpoint | None
    findings: tuple[Finding, ...]
    counts: Mapping[str, int]
    entries_by_activity: Mapping[str, int]
    entries_by_key: Mapping[str, int]
    erasures: tuple[Erasure, ...]
    checkpoints_checked: int
    key_changes: tuple[int, ...]

    @property
    def clean(self) -> bool:
        return not self.counts

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "source": self.source,
            "auditedAt": self.audited_at,
            "clean": self.clean,
            "entries": self.size,
            "checkpoint": self.checkpoint.to_json() if self.checkpoint else None,
            "checkpointsChecked": self.checkpoints_checked,
            "findingCounts": dict(self.counts),
            "findings": [finding.to_json() for finding in self.findings],
            "entriesByActivity": dict(self.entries_by_activity),
            "entriesByKey": dict(self.entries_by_key),
            "keyChanges": list(self.key_changes),
            "erasures": [erasure.to_json() for erasure in self.erasures],
        }


class AuditFold:
    """Folds entry verdicts, in log order, into findings.

    ``node_checkpoint`` is the node's own newest signed checkpoint (it decides how many
    entries the log must have); ``others`` are every other verified checkpoint (the node's
    history, trusted and gossiped ones), checked against the recomputed tree at their size.
    """

    def __init__(
        self,
        *,
        base_url: str,
        source: str,
        document: Mapping[str, Any],
        node_checkpoint: SignedCheckpoint | None,
        others: Sequence[SignedCheckpoint],
        findings: Sequence[Finding] = (),
        now: datetime,
    ) -> None:
        self.base_url = base_url
        self.source = source
        self.document = document
        self.now = now
        self.node_checkpoint = node_checkpoint
        self.tree = CompactRange()
        self._findings: list[Finding] = []
        self._counts: Counter[str] = Counter()
        self._activities: Counter[str] = Counter()
        self._keys: Counter[str] = Counter()
        self._erasures: list[Erasure] = []
        self._redacted: list[int] = []
        self._out_of_place: dict[int, int] = {}  # position -> seq claimed there
        self._last_logged_document: tuple[int, Mapping[str, Any]] | None = None
        self._key_changes: list[int] = []
        self._broken_at: int | None = None  # position of a line that cannot be hashed
        self._read = 0
        self._foreign_mismatches: list[SignedCheckpoint] = []
        everything = ([node_checkpoint] if node_checkpoint else []) + list(others)
        self._checked = len(everything)
        self._targets: dict[int, list[SignedCheckpoint]] = {}
        for item in everything:
            self._targets.setdefault(item.size, []).append(item)
        self._roots: dict[int, bytes] = {}
        for finding in (
            list(findings) + current_document_findings(document) + _conflicts(everything)
        ):
            self.add_finding(finding)
        self._check_target(0)

    def add_finding(self, finding: Finding) -> None:
        self._counts[finding.kind] += 1
        if self._counts[finding.kind] <= MAX_LISTED_PER_KIND:
            self._findings.append(finding)

    def add(self, verdict: EntryVerdict) -> None:
        position = verdict.position
        self._read += 1
        if verdict.finding is not None:
            self.add_finding(verdict.finding)
        if verdict.seq != position:
            self._out_of_place[position] = -1 if verdict.seq is None else verdict.seq
        self._activities[verdict.activity or "invalid"] += 1
        if verdict.key and verdict.finding is None:
            self._keys[verdict.key] += 1
        if verdict.activity == "Redacted" and verdict.finding is None:
            self._redacted.append(position)
        if verdict.erasure is not None:
            self._erasures.append(verdict.erasure)
        if verdict.node_document is not None:
            self._key_changes.append(position)
            self._last_logged_document = (position, verdict.node_document)
            for finding in check_node_documents(verdict.node_document, self.document, position):
                self.add_finding(finding)
        if self._broken_at is not None:
            return
        if verdict.leaf_hash is None:
            self._broken_at = position
            return
        self.tree.append_hash(verdict.leaf_hash)
        self._check_target(self.tree.size)

    def _check_target(self, size: int) -> None:
        targets = self._targets.get(size)
        if not targets:
            return
        root = self.tree.root()
        self._roots[size] = root
        for target in targets:
            if target.checkpoint.root_hash == root:
                continue
            self._root_finding(target, root)

    def _root_finding(self, target: SignedCheckpoint, root: bytes) -> None:
        if target.source in ("node", "bundle"):
            evidence = {
                "checkpoint": target.to_json(),
                "computedRoot": base64.b64encode(root).decode(),
            }
            message = f"the entries up to {target.size} do not hash to the root the node signed"
            self.add_finding(Finding("root-mismatch", message, None, evidence))
        else:
            self._foreign_mismatches.append(target)

    def finish(self) -> AuditReport:
        """The report, once every entry has been added."""
        size = self.tree.size
        node = self.node_checkpoint
        self._order_findings()
        if self._broken_at is not None:
            message = f"entry {self._broken_at} cannot be read, so nothing after it is checked"
            self.add_finding(Finding("invalid-entry", message, self._broken_at))
        if node is not None:
            if size < node.size and self._broken_at is None:
                message = f"the log has {size} entries; its signed checkpoint covers {node.size}"
                evidence = {"checkpoint": node.to_json(), "entries": size}
                self.add_finding(Finding("truncated", message, size, evidence))
            self._check_foreign(node)
            self._check_proofs(node)
        self._check_erasures()
        self._check_last_document()
        return AuditReport(
            node=self.base_url,
            source=self.source,
            audited_at=format_timestamp(self.now),
            size=self._read,
            checkpoint=node,
            findings=tuple(self._findings),
            counts=dict(self._counts),
            entries_by_activity=dict(self._activities),
            entries_by_key=dict(self._keys),
            erasures=tuple(self._erasures),
            checkpoints_checked=self._checked,
            key_changes=tuple(self._key_changes),
        )

    def _check_foreign(self, node: SignedCheckpoint) -> None:
        """Checkpoints others hold: larger than the node's is a rollback; one that the
        node's own (verified) log does not extend is equivocation."""
        for target_size, targets in sorted(self._targets.items()):
            if target_size <= node.size:
                continue
            for target in targets:
                message = (
                    f"{target.source} holds a signed checkpoint of size {target.size}, "
                    f"larger than the node's {node.size}: the node rolled its log back"
                )
                evidence = {"checkpoints": [node.to_json(), target.to_json()]}
                self.add_finding(Finding("rollback", message, None, evidence))
        if self._roots.get(node.size) != node.checkpoint.root_hash:
            return  # the log does not even match the node's own checkpoint: reported above
        for target in self._foreign_mismatches:
            if target.size == node.size:
                continue  # already equivocation on its face
            why = f"the node's log does not extend the checkpoint of size {target.size}"
            self.add_finding(_equivocation(node, target, why))

    def _order_findings(self) -> None:
        """Classify the entries whose seq is not their position: dropped, duplicated or
        swapped. A dropped entry shifts every later one down by one: the drop is reported,
        not the shift."""
        if not self._out_of_place:
            return
        positions = set(self._out_of_place)
        claimed = Counter(s for s in self._out_of_place.values() if s >= 0)
        for seq, count in sorted(claimed.items()):
            if count > 1 or (seq < self._read and seq not in positions):
                times = count + (seq < self._read and seq not in positions)
                self.add_finding(
                    Finding("duplicate-entry", f"seq {seq} appears {times} times", seq)
                )
        if sorted(claimed) == sorted(positions) and len(claimed) == len(positions):
            pairs = {str(p): self._out_of_place[p] for p in sorted(positions)[:20]}
            message = f"entries at positions {sorted(positions)[:10]} are out of order"
            finding = Finding("reordered-entries", message, min(positions), {"seqClaimed": pairs})
            self.add_finding(finding)
            return
        missing = [p for p in sorted(positions) if p not in claimed]
        highest = max(claimed, default=-1)
        if highest - self._read < 10_000:
            missing += [s for s in range(self._read, highest) if s not in claimed]
        for seq in missing:
            self.add_finding(Finding("missing-entry", f"entry {seq} is not in the log", seq))

    def _check_proofs(self, node: SignedCheckpoint) -> None:
        for targets in self._targets.values():
            for target in targets:
                if target.consistency is None or target.size > node.size or target.size == 0:
                    continue
                try:
                    verify_consistency(
                        target.size,
                        node.size,
                        target.checkpoint.root_hash,
                        node.checkpoint.root_hash,
                        target.consistency,
                    )
                except IntegrityError as error:
                    message = f"consistency {target.size} -> {node.size}: {error.detail}"
                    self.add_finding(Finding("invalid-proof", message))

    def _check_erasures(self) -> None:
        covered: set[int] = set()
        for erasure in self._erasures:
            covered.update(s for s in erasure.redacted if s < erasure.seq)
        for seq in self._redacted:
            if seq not in covered:
                message = f"entry {seq} is Redacted, but no signed erasure lists it"
                self.add_finding(Finding("silent-erasure", message, seq))

    def _check_last_document(self) -> None:
        if self._last_logged_document is None:
            return
        seq, logged = self._last_logged_document
        if _key_summary(logged) != _key_summary(self.document):
            message = (
                f"the served node document's keys differ from the last node document the "
                f"log records (entry {seq}): a key change outside the log"
            )
            self.add_finding(Finding("node-document-mismatch", message, seq))
