"""Corpus layers inside a push whose transport checks pass: JSON-LD, object proof, and
authorisation and merge (protocol.md §3, §7). The partner signs the HTTP request correctly;
the entries it pushes are hostile. The inbox answers 202 and records each rejected entry
with its problem type (§6); nothing of it may reach the merged store.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from exchange.keys import KeyPair, encode_multibase
from exchange.proof import create_proof, hash_data
from exchange.resources import CONTEXT_IRIS
from tests.adversarial.corpus import Case, Inbox, Message, Stage, push_of, signed
from tests.feed_simulator import FeedSimulator, key_pair

__all__ = ["AUTHORISATION", "JSON_LD", "OBJECT_PROOF", "entries"]

OTHER = "https://other.example"
Plant = Callable[[Stage], object]


def entries(
    plant: Plant, setup: Callable[[FeedSimulator], object] | None = None, *, again: bool = False
) -> Inbox:
    """A push of the entries ``plant`` appends to the partner's log. ``setup`` appends valid
    entries first, which are pushed (and merged) before the store digest is taken. With
    ``again`` the push starts over from entry 0 (``plant`` rewrote the log)."""

    async def prepare(stage: Stage) -> None:
        assert setup is not None
        setup(stage.sim)
        message = push_of(stage, 0)
        answer = await stage.world.post(message.body, message.headers)
        assert answer.status == 202, answer
        assert await stage.world.rejections(stage.sim.base_url) == []

    async def build(stage: Stage) -> Message:
        start = 0 if again else stage.sim.size
        plant(stage)
        return push_of(stage, start)

    return Inbox(build, None if setup is None else prepare)


def _create(
    name: str,
    *,
    key: Callable[[Stage], KeyPair] | None = None,
    at: Callable[[], datetime] | None = None,
    **craft: Any,
) -> Plant:
    """A Create of BestPractice ``name``, signed by ``key(stage)`` at ``at()`` when given."""

    def plant(stage: Stage) -> None:
        options = dict(craft)
        if key is not None:
            options["key"] = key(stage)
        if at is not None:
            options["at"] = at()
        stage.sim.craft("Create", stage.sim.best_practice(name), **options)

    return plant


def _before(change: Callable[[dict[str, Any]], None], name: str = "shaped") -> Plant:
    return _create(name, before_signing=change)


def _after(change: Callable[[Stage, dict[str, Any]], None], name: str = "altered") -> Plant:
    def plant(stage: Stage) -> None:
        stage.sim.craft(
            "Create",
            stage.sim.best_practice(name),
            after_signing=lambda entry: change(stage, entry),
        )

    return plant


# --- JSON-LD (protocol.md §1, §3; Fedify GHSA-9rfg-v8g9-9367) -------------------------------


def _context(value: list[Any]) -> Callable[[dict[str, Any]], None]:
    return lambda entry: entry.update({"@context": value})


def _member(where: str, name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def add(entry: dict[str, Any]) -> None:
        (entry if where == "top" else entry["object"])[name] = value

    return add


def _message(context: object) -> Inbox:
    """A Follow of the node by the partner, under ``context``."""

    async def build(stage: Stage) -> Message:
        follow = {
            "@context": context,
            "id": f"{stage.sim.base_url}/activities/follow",
            "type": "Follow",
            "actor": stage.sim.base_url,
            "object": stage.world.base_url,
        }
        return signed(stage, json.dumps(follow).encode())

    return Inbox(build)


JSON_LD = [
    Case(
        "ld-unknown-context",
        "json-ld",
        "schema",
        202,
        entries(_before(_context([*CONTEXT_IRIS, "https://evil.example/context.jsonld"]))),
        "a context the node does not ship: it would have to fetch it (protocol.md §1)",
    ),
    Case(
        "ld-http-context",
        "json-ld",
        "schema",
        202,
        entries(_before(_context(["http://www.w3.org/ns/activitystreams", *CONTEXT_IRIS[1:]]))),
        "the AS2 context by http: what a man in the middle serves is another context",
    ),
    Case(
        "ld-inline-context-redefines-a-term",
        "json-ld",
        "schema",
        202,
        entries(_before(_context([*CONTEXT_IRIS, {"actor": {"@id": "as:object"}}]))),
        "an inline context maps 'actor' to as:object: the signed JSON reads otherwise as RDF",
    ),
    Case(
        "ld-graph",
        "json-ld",
        "schema",
        202,
        entries(_before(_member("top", "@graph", [{"id": f"{OTHER}/x", "type": "Note"}]))),
        "Fedify GHSA-9rfg-v8g9-9367: @graph reshapes signed JSON-LD under a valid signature",
    ),
    Case(
        "ld-reverse",
        "json-ld",
        "schema",
        202,
        entries(_before(_member("object", "@reverse", {"attributedTo": {"id": OTHER}}))),
    ),
    Case(
        "ld-included",
        "json-ld",
        "schema",
        202,
        entries(_before(_member("top", "@included", [{"id": f"{OTHER}/x", "type": "Note"}]))),
    ),
    Case(
        "ld-nest",
        "json-ld",
        "schema",
        202,
        entries(_before(_member("object", "@nest", {"nameMap": {"en": "nested"}}))),
    ),
    Case(
        "ld-id-and-at-id-differ",
        "json-ld",
        "schema",
        202,
        entries(_before(_member("object", "@id", f"{OTHER}/objects/taken"))),
        "JSON reads 'id', JSON-LD reads '@id': two identities for one signed object",
    ),
    Case(
        "ld-context-inside-the-object",
        "json-ld",
        "schema",
        202,
        entries(_before(_member("object", "@context", {"nameMap": "as:summaryMap"}))),
    ),
    Case(
        "ld-message-inline-context",
        "json-ld",
        "schema",
        422,
        _message(["https://www.w3.org/ns/activitystreams", {"object": "as:actor"}]),
        "a Follow whose inline context swaps 'object' and 'actor' for a JSON-LD reader",
    ),
    Case(
        "ld-message-unknown-context",
        "json-ld",
        "schema",
        422,
        _message("https://evil.example/context.jsonld"),
        "a context the node would have to fetch to read the message",
    ),
]


# --- object proof (protocol.md §3, W3C eddsa-jcs-2022) --------------------------------------


def _drop_proof(stage: Stage, entry: dict[str, Any]) -> None:
    del entry["proof"]


def _tamper(stage: Stage, entry: dict[str, Any]) -> None:
    entry["object"]["nameMap"] = {"en": "Changed after signing"}


def _proof_member(name: str, value: Any) -> Callable[[Stage, dict[str, Any]], None]:
    return lambda stage, entry: entry["proof"].update({name: value})


def _resign(stage: Stage, entry: dict[str, Any], **options: Any) -> None:
    """Sign the entry again with a proof made with ``options`` (a valid signature)."""
    unsecured = {name: value for name, value in entry.items() if name != "proof"}
    created = datetime.now(UTC) - timedelta(minutes=1)
    entry["proof"] = create_proof(unsecured, stage.key, created, **options)


def _non_canonical(stage: Stage, entry: dict[str, Any]) -> None:
    """A signature over the pretty-printed, unsorted JSON instead of its JCS bytes."""
    proof = entry["proof"]
    options = {name: value for name, value in proof.items() if name != "proofValue"}
    unsecured = {name: value for name, value in entry.items() if name != "proof"}
    hashed = hash_data(
        json.dumps(unsecured, indent=2).encode(), json.dumps(options, indent=2).encode()
    )
    proof["proofValue"] = encode_multibase(stage.key.sign(hashed))


def _proof_set(stage: Stage, entry: dict[str, Any]) -> None:
    entry["proof"] = [entry["proof"], entry["proof"]]


OBJECT_PROOF = [
    Case("proof-missing", "object-proof", "schema", 202, entries(_after(_drop_proof))),
    Case(
        "proof-by-another-partners-key",
        "object-proof",
        "origin",
        202,
        entries(_create("foreign", key=lambda s: s.world.bystander.key)),
        "signed by a key of another pinned partner (rule 1: the key must be the origin's)",
    ),
    Case(
        "proof-keyid-of-partner-key-of-another",
        "object-proof",
        "proof",
        202,
        entries(_create("impostor", key=lambda s: KeyPair(s.key.id, s.world.bystander.key.seed))),
        "the partner's verificationMethod, signed by another partner's private key",
    ),
    Case(
        "proof-over-non-canonical-bytes",
        "object-proof",
        "proof",
        202,
        entries(_after(_non_canonical)),
        "eddsa-jcs-2022 signs the JCS bytes; any other serialisation must fail",
    ),
    Case("proof-tampered-field", "object-proof", "proof", 202, entries(_after(_tamper))),
    Case(
        "proof-unsupported-cryptosuite",
        "object-proof",
        "schema",
        202,
        entries(_after(_proof_member("cryptosuite", "eddsa-rdfc-2022"))),
    ),
    Case(
        "proof-wrong-purpose",
        "object-proof",
        "schema",
        202,
        entries(_after(lambda s, e: _resign(s, e, proof_purpose="authentication"))),
        "a valid signature made for authentication, not assertionMethod",
    ),
    Case(
        "proof-key-not-listed",
        "object-proof",
        "key",
        202,
        entries(_create("unlisted", key=lambda s: key_pair(f"{s.sim.base_url}/keys/x", "x"))),
        "a key under no id the partner's node document lists",
    ),
    Case(
        "proof-value-not-multibase",
        "object-proof",
        "schema",
        202,
        entries(_after(_proof_member("proofValue", "u" + "A" * 86))),
    ),
    Case(
        "proof-value-wrong-length",
        "object-proof",
        "proof",
        202,
        entries(_after(_proof_member("proofValue", "z" + "2" * 80))),
        "base58btc, the schema's pattern, but not 64 bytes of Ed25519 signature",
    ),
    Case(
        "proof-context-not-a-prefix",
        "object-proof",
        "schema",
        202,
        entries(_after(_proof_member("@context", list(reversed(CONTEXT_IRIS))))),
    ),
    Case(
        "proof-created-in-the-future",
        "object-proof",
        "key",
        202,
        entries(_create("future", at=lambda: datetime.now(UTC) + timedelta(hours=1))),
    ),
    Case("proof-set-of-two", "object-proof", "schema", 202, entries(_after(_proof_set))),
]


# --- authorisation and merge (protocol.md §7) -----------------------------------------------


def _victim(stage: Stage) -> dict[str, Any]:
    """The node's own object, as a partner would copy it."""
    return {
        "id": stage.world.victim_id,
        "type": "BestPractice",
        "nameMap": {"en": "Taken over"},
        "practiceKind": "experience",
        "attributedTo": stage.sim.base_url,
        "version": 2,
        "published": "2026-01-01T00:00:00Z",
        "updated": "2026-01-02T00:00:00Z",
    }


def _update_victim(stage: Stage) -> None:
    stage.sim.craft("Update", _victim(stage))


def _delete_victim(stage: Stage) -> None:
    tombstone = {
        "id": stage.world.victim_id,
        "type": "Tombstone",
        "formerType": "BestPractice",
        "deleted": "2026-01-03T00:00:00Z",
    }
    stage.sim.craft("Delete", tombstone)


def _create_and_delete(sim: FeedSimulator) -> None:
    sim.create("gone")
    sim.delete("gone")


def _create_and_update(sim: FeedSimulator) -> None:
    sim.create("versioned")
    sim.update("versioned", summaryMap={"en": "Version 2"})


def _same_seq_other_bytes(stage: Stage) -> None:
    """Entry 0 again, other bytes, under a newly signed checkpoint of the forked log."""
    sim = stage.sim
    sim.fork(0, sim.sign(0, "Create", sim.best_practice("first", nameMap={"en": "Other bytes"})))


def _reused_activity_id(stage: Stage) -> None:
    sim = stage.sim
    sim.craft(
        "Create",
        sim.best_practice("second"),
        before_signing=lambda entry: entry.update(id=f"{sim.base_url}/log/0"),
    )


def _absurd(**members: str) -> Plant:
    def plant(stage: Stage) -> None:
        stage.sim.craft("Create", stage.sim.best_practice("absurd", **members))

    return plant


def _published(value: str) -> Plant:
    return _create("absurd-activity", before_signing=lambda entry: entry.update(published=value))


def _node_document_moved(stage: Stage) -> None:
    document = stage.sim.node_document()
    del document["@context"]
    document.update(checkpoint=f"{OTHER}/checkpoint", outbox=f"{OTHER}/feed")
    stage.sim.craft("Update", document)


AUTHORISATION = [
    Case(
        "merge-update-of-another-nodes-object",
        "authorisation",
        "origin",
        202,
        entries(_update_victim),
        "rule 1: a partner updates an object of the node itself",
    ),
    Case(
        "merge-delete-of-another-nodes-object",
        "authorisation",
        "origin",
        202,
        entries(_delete_victim),
    ),
    Case(
        "merge-actor-not-the-origin",
        "authorisation",
        "origin",
        202,
        entries(_before(lambda entry: entry.update(actor=OTHER))),
    ),
    Case(
        "merge-object-id-of-another-origin",
        "authorisation",
        "origin",
        202,
        entries(lambda s: s.sim.craft("Create", s.sim.best_practice("x", id=f"{OTHER}/objects/x"))),
        "Mastodon CVE-2024-23832: an object id that is not the sender's",
    ),
    Case(
        "merge-attributed-to-another-node",
        "authorisation",
        "origin",
        202,
        entries(lambda s: s.sim.craft("Create", s.sim.best_practice("a", attributedTo=OTHER))),
    ),
    Case(
        "merge-node-document-moves-the-feed",
        "authorisation",
        "origin",
        202,
        entries(_node_document_moved),
        "an Update of the node document whose feed and checkpoint live on another host",
    ),
    Case(
        "merge-tombstone-resurrected",
        "authorisation",
        "merge-rule",
        202,
        entries(
            lambda s: s.sim.craft("Create", s.sim.best_practice("gone")),
            setup=_create_and_delete,
        ),
        "rule 5: a Create of a deleted id",
    ),
    Case(
        "merge-tombstone-updated",
        "authorisation",
        "merge-rule",
        202,
        entries(
            lambda s: s.sim.craft("Update", s.sim.best_practice("gone", version=2)),
            setup=_create_and_delete,
        ),
    ),
    Case(
        "merge-stale-update",
        "authorisation",
        "merge-rule",
        202,
        entries(
            lambda s: s.sim.craft("Update", s.sim.best_practice("versioned", version=1)),
            setup=_create_and_update,
        ),
        "rule 4: version 1 after version 2",
    ),
    Case(
        "merge-same-seq-other-bytes",
        "authorisation",
        "equivocation",
        202,
        entries(_same_seq_other_bytes, setup=lambda sim: sim.create("first"), again=True),
        "the same activity id (B/log/0) with other bytes: two signed histories, the origin halts",
    ),
    Case(
        "merge-activity-id-reused",
        "authorisation",
        "origin",
        202,
        entries(_reused_activity_id, setup=lambda sim: sim.create("first")),
        "entry 1 names itself B/log/0",
    ),
    Case(
        "merge-published-in-year-9999",
        "authorisation",
        "merge-rule",
        202,
        entries(_absurd(published="9999-12-31T23:59:59Z", updated="9999-12-31T23:59:59Z")),
        "an object dated after the signature that vouches for it: it would top every listing",
    ),
    Case(
        "merge-activity-published-in-year-9999",
        "authorisation",
        "merge-rule",
        202,
        entries(_published("9999-12-31T23:59:59Z")),
    ),
    Case(
        "merge-updated-before-published",
        "authorisation",
        "merge-rule",
        202,
        entries(_absurd(published="2026-01-02T00:00:00Z", updated="1970-01-01T00:00:00Z")),
    ),
    Case(
        "merge-leap-second",
        "authorisation",
        "schema",
        202,
        entries(_absurd(published="2016-12-31T23:59:60Z", updated="2016-12-31T23:59:60Z")),
        "RFC 3339 allows second 60, Python's datetime does not: refused, never a crash",
    ),
    Case(
        "merge-year-zero",
        "authorisation",
        "schema",
        202,
        entries(_absurd(published="0000-01-01T00:00:00Z", updated="0000-01-01T00:00:00Z")),
    ),
]
