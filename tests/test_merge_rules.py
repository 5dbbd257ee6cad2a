"""A hostile partner, as tables of named attacks (protocol.md §3, §5, §7).

A subscriber node pins a :class:`~tests.feed_simulator.FeedSimulator` as a partner and
pulls from it over real loopback HTTP with :meth:`Federation.sync`. Each entry attack is
planted among valid entries, across a page boundary: the bad entry must be rejected with
its recorded reason (origin, seq, problem type, reason text) and never reach the merged
store, while the entries around it still merge, so that one bad entry never stalls an
origin. Checkpoint and feed attacks follow: equivocation halts the origin with both signed
notes as evidence, a rollback is refused without halting, a looping ``next`` ends the
pull, and entries that do not hash to the signed root are not merged at all.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from exchange.checkpoint import (
    Checkpoint,
    NoteVerifier,
    open_note,
    parse_checkpoint,
    sign_checkpoint,
)
from exchange.entries import ObjectRecord
from exchange.federation import Federation, SyncReport, fetch_node_document, partner_from_document
from exchange.http.client import fetcher
from exchange.keys import KeyPair
from exchange.merge import keyring_from_node_document, verify_entry
from exchange.merkle import root
from exchange.node import Node, open_node
from exchange.partners import OriginState, Partner, Rejection
from exchange.resources import CONTEXT_IRIS
from exchange.timestamps import format_timestamp
from tests.feed_simulator import FeedSimulator, free_port, key_pair, running_simulator
from tests.nodes import example, make_node, practice

OTHER = "https://other.example"


# --- the subscriber and the simulated partner -------------------------------------------


@dataclass(frozen=True)
class Subscriber:
    """A real node (SQLite store, its own key) with its federation shell and HTTP client."""

    node: Node
    federation: Federation

    async def pin(self, sim: FeedSimulator) -> Partner:
        """Pin the simulator as an accepted partner, as 'exchange partner add' would."""
        document = await fetch_node_document(self.federation.fetcher, sim.base_url)
        partner = replace(partner_from_document(document, datetime.now(UTC)), following="accepted")
        await self.node.store.put_partner(partner)
        return partner

    async def sync(self, sim: FeedSimulator) -> SyncReport:
        return await asyncio.wait_for(self.federation.sync(sim.base_url), timeout=20)

    async def state(self, sim: FeedSimulator) -> OriginState:
        state = await self.node.store.origin_state(sim.base_url)
        assert state is not None
        return state

    async def rejections(self) -> list[Rejection]:
        """Every recorded rejection, oldest first."""
        return list(reversed(await self.node.store.list_rejections(limit=1000)))

    async def get(self, object_id: str) -> ObjectRecord | None:
        return await self.node.store.get_object(object_id)

    async def partner(self, sim: FeedSimulator) -> Partner:
        found = await self.node.store.get_partner(sim.base_url)
        assert found is not None
        return found


@asynccontextmanager
async def subscribed(home: Path, base_url: str) -> AsyncIterator[Subscriber]:
    result = make_node(home, base_url=base_url)
    async with open_node(result.settings) as node, fetcher(node.key, timeout_s=10) as client:
        yield Subscriber(node, Federation(node, client))


@pytest.fixture
async def subscriber(tmp_path: Path) -> AsyncIterator[Subscriber]:
    async with subscribed(tmp_path / "subscriber", "http://127.0.0.1:8080") as running:
        yield running


def with_old_keys(sim: FeedSimulator) -> FeedSimulator:
    """Give the simulator a retired key (revoked two days ago) and a fresh one (an hour old)."""
    sim.add_key(
        "retired", created=sim.now - timedelta(days=60), revoked=sim.now - timedelta(days=2)
    )
    sim.add_key("fresh", created=sim.now - timedelta(hours=1))
    return sim


@pytest.fixture
async def sim() -> AsyncIterator[FeedSimulator]:
    async with running_simulator() as simulator:
        yield with_old_keys(simulator)


def sim_key(sim: FeedSimulator, name: str) -> KeyPair:
    return next(k.pair for k in sim.keys if k.pair.id == f"{sim.base_url}/keys/{name}")


# --- entry attacks ------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """What an attack planted: the bad entry's seq, the object it aims at, and what that
    object must still be afterwards: ``None`` (never stored) or ``(version, deleted)``."""

    seq: int
    object_id: str
    keeps: tuple[int, bool] | None = None


#: plant(simulator, a subscriber's own object) -> Target
Plant = Callable[[FeedSimulator, ObjectRecord], Target]


@dataclass(frozen=True)
class Attack:
    name: str
    plant: Plant
    problem: str  # the recorded problem type
    reason: str  # a part of the recorded reason


def _create(sim: FeedSimulator, name: str, **kwargs: Any) -> Target:
    obj = sim.best_practice(name)
    return Target(sim.craft("Create", obj, **kwargs), str(obj["id"]))


def object_id_under_another_node(sim: FeedSimulator, victim: ObjectRecord) -> Target:
    """Mastodon CVE-2024-23832: an activity creates an object with another node's id."""
    obj = sim.best_practice("x", id=f"{OTHER}/objects/x")
    return Target(sim.craft("Create", obj), f"{OTHER}/objects/x")


def object_attributed_to_another_node(sim: FeedSimulator, victim: ObjectRecord) -> Target:
    obj = sim.best_practice("attributed", attributedTo=OTHER)
    return Target(sim.craft("Create", obj), str(obj["id"]))


def actor_is_another_node(sim: FeedSimulator, victim: ObjectRecord) -> Target:
    return _create(sim, "actor", before_signing=lambda e: e.update(actor=OTHER))


def actor_look_alike(sim: FeedSimulator, victim: ObjectRecord) -> Target:
    return _create(sim, "actor2", before_signing=lambda e: e.update(actor=sim.base_url + ".evil"))


def node_own_id_as_content(sim: FeedSimulator, victim: ObjectRecord) -> Target:
    obj = sim.best_practice("self", id=sim.base_url)
    return Target(sim.craft("Create", obj), sim.base_url)


def update_of_another_nodes_object(sim: FeedSimulator, victim: ObjectRecord) -> Target:
    obj = {**victim.body, "version": victim.version + 1, "attributedTo": sim.base_url}
    obj["nameMap"] = {"en": "Taken over"}
    return Target(sim.craft("Update", obj), victim.id, (victim.version, False))


def delete_of_another_nodes_object(sim: FeedSimulator, victim: ObjectRecord) -> Target:
    tombstone = {
        "id": victim.id,
        "type": "Tombstone",
        "formerType": victim.type,
        "deleted": "2026-01-01T00:00:00Z",
    }
    return Target(sim.craft("Delete", tombstone), victim.id, (victim.version, False))


def _look_alike(object_id: Callable[[FeedSimulator], str]) -> Plant:
    def plant(sim: FeedSimulator, victim: ObjectRecord) -> Target:
        obj = sim.best_practice("look-alike", id=object_id(sim))
        return Target(sim.craft("Create", obj), str(obj["id"]))

    return plant


def proof_by_unknown_key(sim: FeedSimulator, victim: ObjectRecord) -> Target:
    return _create(sim, "unknown-key", key=key_pair(f"{sim.base_url}/keys/unlisted", "unlisted"))


def proof_by_another_nodes_key(sim: FeedSimulator, victim: ObjectRecord) -> Target:
    return _create(sim, "foreign-key", key=key_pair(f"{OTHER}/keys/1", "other"))


def proof_by_revoked_key(sim: FeedSimulator, victim: ObjectRecord) -> Target:
    """The retired key was revoked two days ago; this proof claims yesterday."""
    return _create(sim, "revoked", key=sim_key(sim, "retired"), at=sim.now - timedelta(days=1))


def proof_before_key_existed(sim: FeedSimulator, victim: ObjectRecord) -> Target:
    """The fresh key is an hour old; this proof claims yesterday (backdated)."""
    return _create(sim, "backdated", key=sim_key(sim, "fresh"), at=sim.now - timedelta(days=1))


def proof_from_the_future(sim: FeedSimulator, victim: ObjectRecord) -> Target:
    return _create(sim, "future", at=datetime.now(UTC) + timedelta(hours=1))


def field_tampered_after_signing(sim: FeedSimulator, victim: ObjectRecord) -> Target:
    def tamper(entry: dict[str, Any]) -> None:
        entry["object"]["nameMap"] = {"en": "Changed after signing"}

    return _create(sim, "tampered", after_signing=tamper)


def proof_time_rewritten(sim: FeedSimulator, victim: ObjectRecord) -> Target:
    def rewrite(entry: dict[str, Any]) -> None:
        entry["proof"]["created"] = format_timestamp(sim.now - timedelta(days=3))

    return _create(sim, "rewritten", after_signing=rewrite)


def entry_replayed_at_another_position(sim: FeedSimulator, victim: ObjectRecord) -> Target:
    """The valid entry just before (object 'before') is appended again, unchanged."""
    replayed = sim.entry(sim.size - 1)
    return Target(sim.append_document(replayed), sim.object_id("before"), (1, False))


def entry_renumbered_for_another_position(sim: FeedSimulator, victim: ObjectRecord) -> Target:
    seq = sim.size
    replayed = {**sim.entry(seq - 1), "seq": seq, "id": f"{sim.base_url}/log/{seq}"}
    return Target(sim.append_document(replayed), sim.object_id("before"), (1, False))


def html_in_a_name(sim: FeedSimulator, victim: ObjectRecord) -> Target:
    obj = sim.best_practice("html", nameMap={"en": "<img src=x onerror=alert(1)>"})
    return Target(sim.craft("Create", obj), str(obj["id"]))


def event_without_start_time(sim: FeedSimulator, victim: ObjectRecord) -> Target:
    event = example("event-reuring-cafe-115")
    del event["startTime"]
    stamp = "2026-11-01T00:00:00Z"
    event.update(
        id=sim.object_id("event"),
        attributedTo=sim.base_url,
        version=1,
        published=stamp,
        updated=stamp,
    )
    return Target(sim.craft("Create", event), str(event["id"]))


def _keyword(where: str, keyword: str) -> Plant:
    """GHSA-9rfg-v8g9-9367 (Fedify): JSON-LD keywords reshape signed JSON."""

    def plant(sim: FeedSimulator, victim: ObjectRecord) -> Target:
        obj = sim.best_practice(f"keyword-{keyword[1:]}")

        def add(entry: dict[str, Any]) -> None:
            values = {"@id": f"{OTHER}/objects/x", "@type": "Note", "@context": CONTEXT_IRIS}
            value = values.get(keyword, [{"type": "Note"}])
            member = entry if where == "top" else entry["object"]
            member[keyword] = value

        return Target(sim.craft("Create", obj, before_signing=add), str(obj["id"]))

    return plant


def stale_update(sim: FeedSimulator, victim: ObjectRecord) -> Target:
    object_id = sim.create("stale")
    sim.update("stale", summaryMap={"en": "Version 2"})
    obj = sim.best_practice("stale", version=1, summaryMap={"en": "Old"})
    return Target(sim.craft("Update", obj), object_id, (2, False))


def update_replayed_at_the_same_version(sim: FeedSimulator, victim: ObjectRecord) -> Target:
    object_id = sim.create("same")
    sim.update("same", summaryMap={"en": "Version 2"})
    obj = sim.best_practice("same", version=2, summaryMap={"en": "Another version 2"})
    return Target(sim.craft("Update", obj), object_id, (2, False))


def update_changes_the_type(sim: FeedSimulator, victim: ObjectRecord) -> Target:
    object_id = sim.create("typed")
    case = example("case-doetank-preventieve-zorg")
    case.update(id=object_id, attributedTo=sim.base_url, version=2)
    return Target(sim.craft("Update", case), object_id, (1, False))


def update_after_delete(sim: FeedSimulator, victim: ObjectRecord) -> Target:
    object_id = sim.create("gone")
    sim.delete("gone")
    obj = sim.best_practice("gone", version=2)
    return Target(sim.craft("Update", obj), object_id, (1, True))


def create_after_delete(sim: FeedSimulator, victim: ObjectRecord) -> Target:
    object_id = sim.create("gone")
    sim.delete("gone")
    return Target(sim.craft("Create", sim.best_practice("gone")), object_id, (1, True))


def number_with_a_fraction(sim: FeedSimulator, victim: ObjectRecord) -> Target:
    """protocol.md §3: every number in an entry is an integer written without fraction or
    exponent; the feed serves ``"version":2.0`` (its JCS form, and so its leaf, is ``2``)."""
    object_id = sim.create("fraction")
    seq = sim.craft("Update", sim.best_practice("fraction", version=2))
    served = sim.leaves[seq].replace(b'"version":2', b'"version":2.0', 1)
    assert served != sim.leaves[seq]
    sim.substitute(seq, served)
    return Target(seq, object_id, (1, False))


def node_document_with_another_id(sim: FeedSimulator, victim: ObjectRecord) -> Target:
    """A Service object that is not the node document (id B/objects/...) but would replace
    the pinned one, moving the checkpoint the subscriber fetches to another host."""
    document = sim.node_document()
    del document["@context"]
    document.update(id=sim.object_id("node"), checkpoint=f"{OTHER}/checkpoint")
    return Target(sim.craft("Update", document), sim.object_id("node"))


def node_document_moving_the_feed_away(sim: FeedSimulator, victim: ObjectRecord) -> Target:
    """An update of the node document whose feed and checkpoint are on another host:
    fetch_node_document refuses that when pinning; the log must not let it in later."""
    document = sim.node_document()
    del document["@context"]
    document.update(outbox=f"{OTHER}/feed", checkpoint=f"{OTHER}/checkpoint")
    return Target(sim.craft("Update", document), sim.base_url)


ATTACKS = [
    # Rule 1: origin authority.
    Attack("object-id-under-another-node", object_id_under_another_node, "origin", "/object/id"),
    Attack(
        "object-attributed-to-another-node",
        object_attributed_to_another_node,
        "origin",
        "/object/attributedTo",
    ),
    Attack("actor-is-another-node", actor_is_another_node, "origin", "/actor"),
    Attack("actor-look-alike", actor_look_alike, "origin", "/actor"),
    Attack("node-id-as-a-content-object", node_own_id_as_content, "origin", "node document"),
    Attack(
        "update-of-another-nodes-object", update_of_another_nodes_object, "origin", "/object/id"
    ),
    Attack(
        "delete-of-another-nodes-object", delete_of_another_nodes_object, "origin", "/object/id"
    ),
    # CVE-2023-42451 (Mastodon): origins compared as strings let look-alikes through.
    Attack(
        "look-alike-origin-by-suffix",
        _look_alike(lambda sim: f"{sim.base_url}.evil/objects/x"),
        "origin",
        "/object/id",
    ),
    Attack(
        "look-alike-origin-by-port",
        _look_alike(lambda sim: f"http://127.0.0.1:{sim.port + 1}{sim.prefix}/objects/x"),
        "origin",
        "/object/id",
    ),
    Attack(
        "look-alike-origin-by-scheme",
        _look_alike(lambda sim: f"https://127.0.0.1:{sim.port}{sim.prefix}/objects/x"),
        "origin",
        "/object/id",
    ),
    Attack(
        "look-alike-origin-by-userinfo",
        _look_alike(lambda sim: f"http://127.0.0.1:{sim.port}@evil.example{sim.prefix}/objects/x"),
        "origin",
        "user information",
    ),
    Attack(
        "look-alike-origin-by-dot-segments",
        _look_alike(lambda sim: f"{sim.base_url}/../evil/objects/x"),
        "origin",
        "dot segment",
    ),
    Attack(
        "look-alike-origin-by-encoded-slash",
        _look_alike(lambda sim: f"{sim.base_url}/..%2Fevil/objects/x"),
        "origin",
        "encoded slash",
    ),
    # Rule 1 and protocol.md §1: the proof, by a key of the origin valid at its time.
    Attack("proof-by-unknown-key", proof_by_unknown_key, "key", "is not a key of"),
    Attack(
        "proof-by-another-nodes-key",
        proof_by_another_nodes_key,
        "origin",
        "/proof/verificationMethod",
    ),
    Attack("proof-by-revoked-key", proof_by_revoked_key, "key", "was revoked"),
    Attack("proof-before-the-key-existed", proof_before_key_existed, "key", "did not exist yet"),
    Attack("proof-from-the-future", proof_from_the_future, "key", "in the future"),
    Attack("field-tampered-after-signing", field_tampered_after_signing, "proof", "does not match"),
    Attack("proof-time-rewritten", proof_time_rewritten, "proof", "does not match"),
    Attack("entry-replayed-at-another-seq", entry_replayed_at_another_position, "schema", "/seq"),
    Attack(
        "entry-renumbered-for-another-seq",
        entry_renumbered_for_another_position,
        "proof",
        "does not match",
    ),
    # Rule 6: schema.
    Attack("html-in-a-name", html_in_a_name, "schema", "looks like HTML"),
    Attack("event-without-start-time", event_without_start_time, "schema", "startTime"),
    Attack("number-with-a-fraction", number_with_a_fraction, "invalid-json", "integer"),
    # protocol.md §3: JSON-LD keywords (GHSA-9rfg-v8g9-9367).
    *(
        Attack(f"json-ld-{keyword[1:]}-in-{where}", _keyword(where, keyword), "schema", reason)
        for where, keyword, reason in [
            ("top", "@graph", "JSON-LD keyword @graph"),
            ("top", "@included", "JSON-LD keyword @included"),
            ("object", "@id", "JSON-LD keyword @id"),
            ("object", "@type", "JSON-LD keyword @type"),
            ("object", "@reverse", "JSON-LD keyword @reverse"),
            ("object", "@nest", "JSON-LD keyword @nest"),
            ("object", "@context", "@context is allowed only at the top"),
        ]
    ),
    # Rules 4 and 5: versions and tombstones.
    Attack("stale-update", stale_update, "merge-rule", "not newer"),
    Attack(
        "update-replayed-at-same-version",
        update_replayed_at_the_same_version,
        "merge-rule",
        "not newer",
    ),
    Attack(
        "update-changes-the-type", update_changes_the_type, "merge-rule", "cannot change its type"
    ),
    Attack("update-after-delete", update_after_delete, "merge-rule", "never revives"),
    Attack("create-after-delete", create_after_delete, "merge-rule", "never revives"),
    # protocol.md §3: only the node document (object id B) updates the node document.
    Attack("node-document-with-another-id", node_document_with_another_id, "origin", ""),
    Attack("node-document-moving-the-feed-away", node_document_moving_the_feed_away, "origin", ""),
]


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda attack: attack.name)
async def test_an_entry_attack_is_rejected_and_the_origin_goes_on(
    attack: Attack, sim: FeedSimulator, subscriber: Subscriber
) -> None:
    (own,) = await subscriber.node.publish([practice(1)])
    victim = await subscriber.get(own.id)
    assert victim is not None
    pinned = await subscriber.pin(sim)
    sim.create("early")
    sim.create("before")
    target = attack.plant(sim, victim)
    sim.create("after")
    sim.create("late")
    assert sim.size > sim.page_size  # the pull takes more than one page

    report = await subscriber.sync(sim)

    assert report.error == ""
    state = await subscriber.state(sim)
    assert (state.next_seq, state.checkpoint_size, state.halted) == (sim.size, sim.size, False)
    rejections = await subscriber.rejections()
    assert [(r.origin, r.seq, r.problem) for r in rejections] == [
        (sim.base_url, target.seq, attack.problem)
    ], [r.reason for r in rejections]
    assert attack.reason in rejections[0].reason
    record = await subscriber.get(target.object_id)
    if target.keeps is None:
        assert record is None
    else:
        assert record is not None
        assert (record.version, record.deleted) == target.keeps
    for name in ("early", "before", "after", "late"):
        merged = await subscriber.get(sim.object_id(name))
        assert merged is not None
        assert (merged.origin, merged.version, merged.deleted) == (sim.base_url, 1, False)
    assert await subscriber.get(victim.id) == victim
    assert (await subscriber.partner(sim)).document == pinned.document
    # Redelivery changes nothing and records nothing twice (rule 3).
    again = await subscriber.sync(sim)
    assert (again.error, again.merged_to, again.rejected) == ("", sim.size, 0)
    assert len(await subscriber.rejections()) == 1


# --- entries that must merge (the controls of the table above) ----------------------------


def signed_by_retired_key_before_revocation(sim: FeedSimulator) -> str:
    at = sim.now - timedelta(days=3)
    stamp = format_timestamp(at)  # written when it was signed, three days ago
    obj = sim.best_practice("old-but-valid", published=stamp, updated=stamp)
    sim.craft("Create", obj, key=sim_key(sim, "retired"), at=at)
    return str(obj["id"])


def signed_by_fresh_key(sim: FeedSimulator) -> str:
    obj = sim.best_practice("fresh")
    sim.craft("Create", obj, key=sim_key(sim, "fresh"), at=sim.now - timedelta(minutes=30))
    return str(obj["id"])


def signed_a_moment_ahead(sim: FeedSimulator) -> str:
    obj = sim.best_practice("skewed")
    sim.craft("Create", obj, at=datetime.now(UTC) + timedelta(seconds=60))
    return str(obj["id"])


def event_with_every_member(sim: FeedSimulator) -> str:
    event = example("event-reuring-cafe-115")
    stamp = "2026-11-01T00:00:00Z"
    event.update(id=sim.object_id("event"), attributedTo=sim.base_url, version=1)
    event.update(published=stamp, updated=stamp)
    sim.publish("Create", event)
    return str(event["id"])


@pytest.mark.parametrize(
    "plant",
    [
        signed_by_retired_key_before_revocation,
        signed_by_fresh_key,
        signed_a_moment_ahead,
        event_with_every_member,
    ],
    ids=lambda plant: plant.__name__.replace("_", "-"),
)
async def test_a_valid_entry_merges(
    plant: Callable[[FeedSimulator], str], sim: FeedSimulator, subscriber: Subscriber
) -> None:
    await subscriber.pin(sim)
    object_id = plant(sim)
    report = await subscriber.sync(sim)
    assert (report.error, report.merged_to, report.rejected) == ("", 1, 0)
    record = await subscriber.get(object_id)
    assert record is not None
    assert record.origin == sim.base_url
    assert await subscriber.rejections() == []


# --- updates, deletes and tombstones ------------------------------------------------------


async def test_updates_and_deletes_propagate_and_a_tombstone_is_never_revived(
    sim: FeedSimulator, subscriber: Subscriber
) -> None:
    partner = await subscriber.pin(sim)
    kept, deleted = sim.create("kept"), sim.create("deleted")
    await subscriber.sync(sim)
    sim.update("kept", summaryMap={"en": "Second"})
    sim.update("kept", summaryMap={"en": "Third"})
    sim.update("deleted", summaryMap={"en": "Personal details"})
    sim.delete("deleted")
    assert (await subscriber.sync(sim)).merged_to == 6

    record = await subscriber.get(kept)
    assert record is not None
    assert (record.version, record.body["summaryMap"]) == (3, {"en": "Third"})
    tombstone = await subscriber.get(deleted)
    assert tombstone is not None
    assert (tombstone.deleted, tombstone.version, tombstone.seq) == (True, 2, 5)
    assert tombstone.body["type"] == "Tombstone"
    assert "summaryMap" not in tombstone.body  # the content is purged (rule 5)

    # A later Create, Update or Delete of the tombstone revives nothing, in any later sync.
    sim.craft("Create", sim.best_practice("deleted"))
    sim.craft("Update", sim.best_practice("deleted", version=3, summaryMap={"en": "Back"}))
    sim.delete("deleted")  # a second Delete is a no-op
    assert (await subscriber.sync(sim)).merged_to == 9
    assert await subscriber.get(deleted) == tombstone
    assert [(r.seq, r.problem) for r in await subscriber.rejections()] == [
        (6, "merge-rule"),
        (7, "merge-rule"),
    ]
    page = await subscriber.node.store.list_objects(
        origin=sim.base_url, type_name=None, after=None, limit=10
    )
    assert [item.id for item in page.items] == [kept]

    # A push that redelivers the whole log, from the start, changes nothing (rule 3).
    pushed = {
        "type": "OrderedCollectionPage",
        "partOf": f"{sim.base_url}/feed",
        "startIndex": 0,
        "orderedItems": [sim.entry(seq) for seq in range(sim.size)],
        "checkpoint": sim.signed_checkpoint(),
    }
    await subscriber.federation.receive_push(partner, pushed)
    assert await subscriber.get(kept) == record
    assert await subscriber.get(deleted) == tombstone
    assert len(await subscriber.rejections()) == 2
    assert (await subscriber.state(sim)).next_seq == 9


# --- a partner nested under the subscriber's own base URL ---------------------------------


def _own_update(sim: FeedSimulator, own: ObjectRecord) -> None:
    obj = {**own.body, "version": own.version + 1, "attributedTo": sim.base_url}
    # Signed now, after the object's own dates: only rule 1 is broken.
    sim.craft("Update", {**obj, "nameMap": {"en": "Taken over"}}, at=datetime.now(UTC))


def _own_delete(sim: FeedSimulator, own: ObjectRecord) -> None:
    tombstone = {"id": own.id, "type": "Tombstone", "formerType": own.type}
    sim.craft("Delete", {**tombstone, "deleted": "2026-01-01T00:00:00Z"})


@pytest.mark.parametrize(
    "plant", [_own_update, _own_delete], ids=["update-of-own-object", "delete-of-own-object"]
)
async def test_a_partner_whose_base_url_contains_ours_cannot_touch_our_objects(
    plant: Callable[[FeedSimulator, ObjectRecord], None], tmp_path: Path
) -> None:
    """Rule 1: no node can update or delete another node's object. Here the partner is
    http://127.0.0.1:P and the subscriber http://127.0.0.1:P/subscriber, so the
    subscriber's object ids lie under the partner's base URL (shared hosting)."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    async with (
        running_simulator(port=port, prefix="") as sim,
        subscribed(tmp_path / "sub", f"{base_url}/subscriber") as subscriber,
    ):
        (outcome,) = await subscriber.node.publish([practice(1)])
        own = await subscriber.get(outcome.id)
        assert own is not None
        await subscriber.pin(sim)
        plant(sim, own)
        await subscriber.sync(sim)
        assert await subscriber.get(own.id) == own
        (rejection,) = await subscriber.rejections()
        assert (rejection.seq, rejection.problem) == (0, "origin")


# --- key history published in the log ------------------------------------------------------


#: How the same log reaches the subscriber: (page size, a pull after each entry?).
DELIVERIES = {
    "a-pull-after-each-entry": (4, True),
    "one-pull-of-one-page": (4, False),
    "one-pull-of-one-entry-pages": (1, False),
}


async def _deliver(
    subscriber: Subscriber, sim: FeedSimulator, steps: Sequence[Callable[[], object]], each: bool
) -> None:
    """Append ``steps`` to the simulator's log; pull after each one, or once at the end."""
    for step in steps:
        step()
        if each:
            await subscriber.sync(sim)
    await subscriber.sync(sim)


@pytest.mark.parametrize(("page_size", "each"), DELIVERIES.values(), ids=DELIVERIES.keys())
async def test_a_revocation_in_the_log_applies_to_the_entries_after_it(
    page_size: int, each: bool, subscriber: Subscriber
) -> None:
    """protocol.md §1, §3: an Update of the node document revokes a key; an entry signed by
    that key after the revocation is rejected, however the log is delivered (rule 7)."""
    async with running_simulator(page_size=page_size) as sim:
        retired = sim.add_key("retired", created=sim.now - timedelta(days=60))
        await subscriber.pin(sim)
        sim.keys[-1] = replace(retired, revoked=sim.now - timedelta(days=2))
        document = sim.node_document()
        del document["@context"]
        stolen = sim.best_practice("stolen")
        steps = [
            lambda: sim.publish("Update", document),
            lambda: sim.craft("Create", stolen, key=retired.pair, at=sim.now - timedelta(hours=1)),
            lambda: sim.create("after"),
        ]
        await _deliver(subscriber, sim, steps, each)
        assert await subscriber.get(str(stolen["id"])) is None
        (rejection,) = await subscriber.rejections()
        assert (rejection.seq, rejection.problem) == (1, "key")
        pinned = (await subscriber.partner(sim)).document
        assert pinned["assertionMethod"] == document["assertionMethod"]


@pytest.mark.parametrize(("page_size", "each"), DELIVERIES.values(), ids=DELIVERIES.keys())
async def test_a_key_added_in_the_log_signs_the_entries_after_it(
    page_size: int, each: bool, subscriber: Subscriber
) -> None:
    """protocol.md §3: key rotation is an Update of the node document; the entries signed
    by the new key after it merge, however the log is delivered (rule 7)."""
    async with running_simulator(page_size=page_size) as sim:
        await subscriber.pin(sim)
        new = sim.add_key("2026-2", created=sim.now - timedelta(days=1, hours=1))
        document = sim.node_document()
        del document["@context"]
        rotated = sim.best_practice("signed-by-the-new-key")
        steps = [
            lambda: sim.publish("Update", document),
            lambda: sim.craft("Create", rotated, key=new.pair),
        ]
        await _deliver(subscriber, sim, steps, each)
        assert await subscriber.rejections() == []
        assert await subscriber.get(str(rotated["id"])) is not None


# --- checkpoint attacks: equivocation ------------------------------------------------------


def _fork_same_size(sim: FeedSimulator) -> None:
    sim.fork(2, sim.sign(2, "Create", sim.best_practice("forked")))


def _fork_and_grow(sim: FeedSimulator) -> None:
    _fork_same_size(sim)
    for name in ("grown-1", "grown-2", "grown-3"):
        sim.create(name)


def _rewrite_last_and_grow(sim: FeedSimulator) -> None:
    last = sim.size - 1
    sim.fork(last, sim.sign(last, "Create", sim.best_practice("rewritten")))
    sim.create("grown-1")


def _forged_root(sim: FeedSimulator) -> None:
    sim.checkpoint_override = sim.signed_checkpoint(root_hash=hashlib.sha256(b"fork").digest())


def _extension_with_a_wrong_proof(sim: FeedSimulator) -> None:
    """The log grows, but the served root is of another tree: no proof can connect them."""
    for name in ("grown-1", "grown-2"):
        sim.create(name)
    forged = hashlib.sha256(b"another tree").digest()
    sim.checkpoint_override = sim.signed_checkpoint(root_hash=forged)


EQUIVOCATIONS = {
    "fork-same-size-other-root": _fork_same_size,
    "fork-then-grow": _fork_and_grow,
    "rewrite-last-entry-then-grow": _rewrite_last_and_grow,
    "forged-root-same-size": _forged_root,
    "larger-checkpoint-not-consistent": _extension_with_a_wrong_proof,
}


@pytest.mark.parametrize("attack", EQUIVOCATIONS.values(), ids=EQUIVOCATIONS.keys())
async def test_equivocation_halts_the_origin_with_both_notes_as_evidence(
    attack: Callable[[FeedSimulator], None], sim: FeedSimulator, subscriber: Subscriber
) -> None:
    partner = await subscriber.pin(sim)
    for number in range(6):
        sim.create(f"object-{number}")
    await subscriber.sync(sim)
    verified = await subscriber.state(sim)
    assert (verified.next_seq, verified.checkpoint_size) == (6, 6)

    attack(sim)
    fork_note = sim.checkpoint_override or sim.signed_checkpoint()
    report = await subscriber.sync(sim)

    assert report.error
    state = await subscriber.state(sim)
    assert state.halted
    assert state.evidence == (verified.checkpoint_note, fork_note)
    verifier = NoteVerifier.parse(str(partner.document["checkpointKey"]))
    (first, second) = (parse_checkpoint(open_note(n, [verifier])[0]) for n in state.evidence)
    assert first != second  # two validly signed, different checkpoints of one origin
    assert (state.next_seq, state.checkpoint_size) == (6, 6)
    (rejection,) = await subscriber.rejections()
    assert (rejection.seq, rejection.problem) == (None, "equivocation")
    objects = await subscriber.node.store.list_objects(
        origin=sim.base_url, type_name=None, after=None, limit=100
    )
    assert len(objects.items) == 6

    # Nothing merges from a halted origin any more: not by pull, not by push, not even once
    # the partner serves a consistent log again.
    sim.checkpoint_override = None
    sim.create("later")
    again = await subscriber.sync(sim)
    assert "halted" in again.error
    pushed = {
        "type": "OrderedCollectionPage",
        "partOf": f"{sim.base_url}/feed",
        "startIndex": 6,
        "orderedItems": [sim.entry(seq) for seq in range(6, sim.size)],
        "checkpoint": sim.signed_checkpoint(),
    }
    await subscriber.federation.receive_push(partner, pushed)
    assert await subscriber.state(sim) == state
    assert await subscriber.get(sim.object_id("later")) is None
    assert len(await subscriber.rejections()) == 1


# --- checkpoint attacks: rollback and bad notes -------------------------------------------


@pytest.mark.parametrize("size", [0, 3, 5])
async def test_a_rollback_is_refused_but_does_not_halt(
    size: int, sim: FeedSimulator, subscriber: Subscriber
) -> None:
    await subscriber.pin(sim)
    for number in range(6):
        sim.create(f"object-{number}")
    await subscriber.sync(sim)
    before = await subscriber.state(sim)

    sim.checkpoint_size = size
    report = await subscriber.sync(sim)

    assert "smaller" in report.error
    assert await subscriber.state(sim) == before
    (rejection,) = await subscriber.rejections()
    assert (rejection.seq, rejection.problem) == (None, "rollback")
    # Once the partner serves its newest checkpoint again, the pull goes on.
    sim.checkpoint_size = None
    sim.create("later")
    assert (await subscriber.sync(sim)).merged_to == 7
    assert not (await subscriber.state(sim)).halted


def _note_by_another_key(sim: FeedSimulator) -> None:
    sim.checkpoint_override = sim.signed_checkpoint(key=key_pair("x", "another checkpoint key"))


def _note_for_another_origin(sim: FeedSimulator) -> None:
    """Signed by the right key under the right name, but for the log of another origin."""
    other = Checkpoint("other.example", sim.size, root(sim.tree, sim.size))
    sim.checkpoint_override = sign_checkpoint(other, sim.origin, sim.key)


def _note_with_a_broken_signature(sim: FeedSimulator) -> None:
    note = sim.signed_checkpoint()
    lines = note.split("\n")
    lines[1] = str(sim.size + 1)
    sim.checkpoint_override = "\n".join(lines)


BAD_NOTES = {
    "checkpoint-by-another-key": (_note_by_another_key, "no signature"),
    "checkpoint-for-another-origin": (_note_for_another_origin, "is for origin"),
    "checkpoint-with-a-changed-size": (_note_with_a_broken_signature, "does not verify"),
}


@pytest.mark.parametrize(("attack", "reason"), BAD_NOTES.values(), ids=BAD_NOTES.keys())
async def test_a_checkpoint_that_does_not_verify_merges_nothing(
    attack: Callable[[FeedSimulator], None], reason: str, sim: FeedSimulator, subscriber: Subscriber
) -> None:
    await subscriber.pin(sim)
    sim.create("object")
    attack(sim)
    report = await subscriber.sync(sim)
    assert reason in report.error
    assert await subscriber.node.store.origin_state(sim.base_url) is None
    (rejection,) = await subscriber.rejections()
    assert rejection.problem == "checkpoint"


# --- feed attacks ------------------------------------------------------------------------


def _next_loops_to_itself(sim: FeedSimulator) -> None:
    sim.next_links[1] = f"{sim.base_url}/feed/1"


def _next_loops_to_the_start(sim: FeedSimulator) -> None:
    sim.next_links[1] = f"{sim.base_url}/feed/0"


def _next_leaves_the_feed(sim: FeedSimulator) -> None:
    sim.next_links[1] = f"{OTHER}/feed/2"


def _page_served_twice(sim: FeedSimulator) -> None:
    """Page 2 serves the entries of page 1 again, under its own number."""
    sim.page_alias[2] = 1


FEED_ATTACKS = {
    "next-loops-to-itself": (_next_loops_to_itself, "integrity", 4),
    "next-loops-to-the-start": (_next_loops_to_the_start, "integrity", 4),
    "next-leaves-the-feed": (_next_leaves_the_feed, "integrity", 4),
    "page-served-twice": (_page_served_twice, "merkle-proof", 8),
}


@pytest.mark.parametrize(
    ("attack", "problem", "merged"), FEED_ATTACKS.values(), ids=FEED_ATTACKS.keys()
)
async def test_a_feed_that_misleads_ends_the_pull_without_stalling_the_origin(
    attack: Callable[[FeedSimulator], None],
    problem: str,
    merged: int,
    sim: FeedSimulator,
    subscriber: Subscriber,
) -> None:
    await subscriber.pin(sim)
    for number in range(14):  # pages 0, 1, 2 full, page 3 half
        sim.create(f"object-{number}")
    attack(sim)

    report = await subscriber.sync(sim)

    assert report.error
    state = await subscriber.state(sim)
    assert (state.next_seq, state.halted) == (merged, False)
    assert len([path for path in sim.requests if "/feed/" in path]) <= 4
    assert [(r.seq, r.problem) for r in await subscriber.rejections()] == [(None, problem)]
    for number in range(merged, 14):
        assert await subscriber.get(sim.object_id(f"object-{number}")) is None
    # Once the feed is honest again, the pull resumes where it stopped.
    sim.next_links.clear()
    sim.page_alias.clear()
    sim.requests.clear()
    assert (await subscriber.sync(sim)).merged_to == 14
    assert sim.requests[1] == f"{sim.prefix}/feed/{merged // sim.page_size}"


@pytest.mark.parametrize(
    ("seq", "merged"),
    [(5, 4), (13, 12)],
    ids=["in-a-full-page", "in-the-last-page"],
)
@pytest.mark.parametrize("entry", ["valid", "tampered"])
async def test_entries_that_do_not_hash_to_the_signed_root_are_not_merged(
    seq: int, merged: int, entry: str, sim: FeedSimulator, subscriber: Subscriber
) -> None:
    """The feed serves another entry at ``seq`` than the signed tree holds: nothing of that
    page is merged, not even the entries before ``seq`` on it, and nothing is recorded
    against an entry; the pull resumes once the feed matches the checkpoint again."""
    await subscriber.pin(sim)
    for number in range(14):
        sim.create(f"object-{number}")
    swapped = sim.sign(seq, "Create", sim.best_practice("swapped"))
    if entry == "tampered":
        swapped["object"]["nameMap"] = {"en": "Tampered"}
    sim.substitute(seq, swapped)

    report = await subscriber.sync(sim)

    assert report.error
    state = await subscriber.state(sim)
    assert (state.next_seq, state.checkpoint_size, state.halted) == (merged, 14, False)
    assert [(r.seq, r.problem) for r in await subscriber.rejections()] == [(None, "merkle-proof")]
    assert await subscriber.get(sim.object_id("swapped")) is None
    assert await subscriber.get(sim.object_id(f"object-{merged}")) is None
    received = await subscriber.node.store.received_entries(sim.base_url, 0, 100)
    assert len(received) == merged

    sim.substituted.clear()
    assert (await subscriber.sync(sim)).merged_to == 14
    assert await subscriber.get(sim.object_id("object-13")) is not None


# --- faults the fault campaign (bench/faults.py) found ------------------------------------


def _push(
    sim: FeedSimulator, start: int, end: int | None = None, note: str | None = None
) -> dict[str, Any]:
    """A push of entries ``start..end`` with ``note`` (default: the newest checkpoint)."""
    return {
        "type": "OrderedCollectionPage",
        "partOf": f"{sim.base_url}/feed",
        "startIndex": start,
        "orderedItems": [sim.entry(seq) for seq in range(start, sim.size if end is None else end)],
        "checkpoint": note or sim.signed_checkpoint(),
    }


async def test_an_overtaken_push_with_an_older_checkpoint_merges_and_is_no_rollback(
    sim: FeedSimulator, subscriber: Subscriber
) -> None:
    """A push of entries 1..4 under checkpoint 4 arrives after a push of entries 0..2
    under checkpoint 6 (sent later, delivered first): its checkpoint is older than the
    verified one, yet consistent with it, and its entries are new. Before, this was
    recorded as a rollback of entry 1 (found by tests/test_stateful_sync.py); now the
    entries merge under the verified checkpoint. A stale checkpoint that is not
    consistent with the verified one is still equivocation."""
    partner = await subscriber.pin(sim)
    for number in range(6):
        sim.create(f"object-{number}")
    await subscriber.federation.receive_push(partner, _push(sim, 0, 2))
    state = await subscriber.state(sim)
    assert (state.next_seq, state.checkpoint_size) == (2, 6)

    await subscriber.federation.receive_push(partner, _push(sim, 1, 4, sim.signed_checkpoint(4)))

    state = await subscriber.state(sim)
    assert (state.next_seq, state.checkpoint_size, state.halted) == (4, 6, False)
    assert await subscriber.rejections() == []
    assert await subscriber.get(sim.object_id("object-3")) is not None

    forked = sim.signed_checkpoint(5, root_hash=hashlib.sha256(b"another tree").digest())
    await subscriber.federation.receive_push(partner, _push(sim, 4, 5, forked))
    state = await subscriber.state(sim)
    assert state.halted
    assert state.evidence == (sim.signed_checkpoint(6), forked)


async def test_a_push_whose_proof_cannot_be_fetched_blames_no_entry_and_is_pulled(
    sim: FeedSimulator, subscriber: Subscriber
) -> None:
    """The checkpoint of a push is newer than the verified one, and the partner does not
    answer for the consistency proof: a transport failure, recorded against no entry (the
    entries merge by the pull it asks for once the partner answers)."""
    partner = await subscriber.pin(sim)
    for number in range(3):
        sim.create(f"early-{number}")
    assert (await subscriber.sync(sim)).merged_to == 3
    for number in range(3):
        sim.create(f"late-{number}")
    pulls: list[str] = []
    subscriber.federation.on_pull_request = pulls.append
    pushed = _push(sim, 3)
    await sim.close()

    await subscriber.federation.receive_push(partner, pushed)

    assert pulls == [sim.base_url]
    assert await subscriber.rejections() == []
    assert (await subscriber.state(sim)).next_seq == 3
    await sim.start()
    assert (await subscriber.sync(sim)).merged_to == 6
    assert await subscriber.rejections() == []


@asynccontextmanager
async def later(subscriber: Subscriber, seconds: float) -> AsyncIterator[Subscriber]:
    """The subscriber's node opened again with its clock ``seconds`` later."""
    settings = replace(subscriber.node.settings, clock_skew_s=seconds)
    async with open_node(settings) as node, fetcher(node.key, timeout_s=10) as client:
        yield Subscriber(node, Federation(node, client))


async def test_an_entry_signed_minutes_ahead_waits_until_the_clock_reaches_it(
    sim: FeedSimulator, subscriber: Subscriber
) -> None:
    """An origin whose clock is 10 minutes fast signs an entry: it is not valid yet, and not
    rejected either (rule 7: the same log merges the same, whenever it is pulled). The
    origin's merge stops before it, by pull or push, with nothing recorded; once this
    node's clock reaches it, it merges with the entries after it. (An hour ahead, it is
    rejected: see proof-from-the-future.)"""
    partner = await subscriber.pin(sim)
    sim.create("before")
    ahead = sim.best_practice("ahead")
    sim.craft("Create", ahead, at=datetime.now(UTC) + timedelta(minutes=10))
    sim.create("after")
    pulls: list[str] = []
    subscriber.federation.on_pull_request = pulls.append

    report = await subscriber.sync(sim)
    await subscriber.federation.receive_push(partner, _push(sim, 1))

    assert "entry 1 waits" in report.error
    state = await subscriber.state(sim)
    assert (state.next_seq, state.checkpoint_size) == (1, 3)
    assert await subscriber.rejections() == []
    assert pulls == []  # a pull now would only find it waiting again
    assert await subscriber.get(ahead["id"]) is None
    assert await subscriber.get(sim.object_id("after")) is None
    async with later(subscriber, 600) as moved_on:
        report = await moved_on.sync(sim)
        assert (report.error, report.merged_to, report.rejected) == ("", 3, 0)
        assert await moved_on.get(ahead["id"]) is not None
        assert await moved_on.get(sim.object_id("after")) is not None
        assert await moved_on.rejections() == []


async def test_a_node_whose_clock_was_set_back_signs_updates_its_partners_accept(
    subscriber: Subscriber,
) -> None:
    """A node publishes an object, then its clock is set back 10 minutes (a fast clock
    corrected; the fault campaign's skew): its update and delete must not be signed before
    the object's publication, which every partner rejects for good (rule 6, dates of
    entries). They are signed at the object's own latest date instead."""
    node = subscriber.node
    now = datetime.now(UTC).replace(microsecond=0)
    (created,) = await node.publish([practice(1)], now=now)
    draft = {**practice(1), "id": created.id, "summaryMap": {"en": "Later"}}
    (updated,) = await node.publish([draft], now=now - timedelta(minutes=10))
    deleted = await node.delete(created.id, now=now - timedelta(minutes=20))

    keys = keyring_from_node_document(await node.refresh())
    for seq in (updated.seq, deleted.seq):
        assert seq is not None
        (leaf,) = await node.store.entries(seq, seq + 1)
        entry = json.loads(leaf)
        assert entry["proof"]["created"] == format_timestamp(now)
        verify_entry(entry, base_url=node.base_url, expected_seq=seq, keys=keys, now=now)
