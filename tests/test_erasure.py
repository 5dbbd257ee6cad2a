"""Erasure (protocol.md §3 "Erasure", §7 rule 5) with real nodes on loopback.

A publisher erases an object whose text carries a unique marker: its log serves Redacted
entries in their place (the Merkle tree and every checkpoint still verify, as an
independent auditor checks), a Delete records the erasure, and neither its files nor those
of its partners keep a byte of the marker once they have merged the Delete.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from exchange.canonical import canonicalize
from exchange.cli import main
from exchange.config import Settings
from exchange.http.pages import PageCache
from exchange.http.server import create_app
from exchange.merkle import leaf_hash
from exchange.operator import InitResult
from exchange.store.sqlite import MIGRATIONS, SQLiteStore
from tests import independent_verifier as iv
from tests.nodes import (
    PROJECT,
    RunningNode,
    eventually,
    files_holding,
    make_node,
    pin,
    practice,
)
from tests.nodes import holding as nodes_holding

MARKER = "Zwaluwstaart-4471-persoonsgegeven"
REASON = "Personal data of a civil servant, published without consent (GDPR art. 17)"
PAGE_SIZE = 4
REDACTED_MEMBERS = {"id", "type", "seq", "leafHash"}
ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


def secret(version: int) -> dict[str, Any]:
    """A best practice whose summary names a person: the marker stands for the name."""
    return {
        **practice(900),
        "summaryMap": {"en": f"Ask {MARKER} (version {version}) how the pilot went."},
    }


def holding(place: Settings | Path, marker: str = MARKER) -> list[str]:
    """Where the marker is kept: a node's files and store (see tests.nodes.holding), or
    the files under a folder."""
    if isinstance(place, Path):
        return files_holding(place, marker.encode())
    return nodes_holding(place, marker.encode())


async def follow(subscriber: RunningNode, publisher: RunningNode) -> None:
    await pin(subscriber, publisher)
    await pin(publisher, subscriber)
    await subscriber.federation.follow(publisher.base_url)


async def get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as response:
        assert response.status == 200, await response.text()
        return json.loads(await response.read())


class Cluster:
    """Nodes on loopback in one folder, all stopped at the end of the test."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.running: list[RunningNode] = []

    async def start(self, name: str, country: str) -> RunningNode:
        node = RunningNode(self.folder / name, f"Knooppunt {name}", country, page_size=PAGE_SIZE)
        await node.start()
        self.running.append(node)
        return node

    @property
    def publisher(self) -> RunningNode:
        return self.running[0]

    @property
    def partner(self) -> RunningNode:
        return self.running[1]


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    nodes = Cluster(tmp_path)
    await nodes.start("publisher", "NL")
    await nodes.start("partner", "BE")
    yield nodes
    for node in nodes.running:
        await node.stop()


async def published_and_merged(publisher: RunningNode, partner: RunningNode) -> tuple[str, int]:
    """Publish the secret (version 1, then 2) among other entries and let ``partner`` merge
    all of it; returns the object id and the log size."""
    await follow(partner, publisher)
    await publisher.node.publish([practice(0)])
    (created,) = await publisher.node.publish([secret(1)])
    await publisher.node.publish([practice(1)])
    (updated,) = await publisher.node.publish([{**secret(2), "id": created.id}])
    await publisher.node.publish([practice(2), practice(3), practice(4)])
    assert (created.seq, updated.seq) == (1, 3)
    size = await publisher.node.store.log_size()

    async def merged() -> bool:
        state = await partner.node.store.origin_state(publisher.base_url)
        return state is not None and state.next_seq == size

    await eventually(merged)
    record = await partner.node.store.get_object(created.id)
    assert record is not None
    assert record.version == 2
    assert holding(partner.settings)  # the partner holds the content before the erasure
    return created.id, size


async def erase_over_http(publisher: RunningNode, object_id: str) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{publisher.base_url}/admin/erasures",
            json={"id": object_id, "reason": REASON},
            headers={"Authorization": f"Bearer {publisher.token}"},
        ) as response,
    ):
        assert response.status == 201, await response.text()
        result: dict[str, Any] = await response.json()
        return result


async def test_the_publisher_serves_redacted_entries_and_its_log_still_verifies(
    cluster: Cluster,
) -> None:
    publisher, partner = cluster.publisher, cluster.partner
    object_id, size = await published_and_merged(publisher, partner)
    base = publisher.base_url
    async with aiohttp.ClientSession() as session:
        originals = {seq: await get_json(session, f"{base}/log/{seq}") for seq in (1, 3)}
        async with session.get(f"{base}/feed/0") as response:  # full: cached in memory, on disk
            assert response.headers["Cache-Control"].endswith("immutable")
            old_tag = response.headers["ETag"]
            assert MARKER.encode() in await response.read()
        assert holding(publisher.settings.page_dir) == ["0.page"]
        old_checkpoint = await publisher.node.store.checkpoint(size)
        before = await iv.audit_log(session, base)

        result = await erase_over_http(publisher, object_id)

        assert result == {"id": object_id, "action": "erased", "seq": size, "redacted": [1, 3]}
        for seq, original in originals.items():
            served = await get_json(session, f"{base}/log/{seq}")
            assert set(served) == REDACTED_MEMBERS
            assert served == {
                "id": f"{base}/log/{seq}",
                "type": "Redacted",
                "seq": seq,
                "leafHash": base64.b64encode(leaf_hash(canonicalize(original))).decode(),
            }
        async with session.get(f"{base}/feed/0", headers={"If-None-Match": old_tag}) as response:
            assert response.status == 200  # the old ETag no longer matches
            assert response.headers["ETag"] != old_tag
            page = json.loads(await response.read())
        items = page["orderedItems"]
        assert [item["type"] for item in items] == ["Create", "Redacted", "Create", "Redacted"]
        assert items[1] == await get_json(session, f"{base}/log/1")
        delete = await get_json(session, f"{base}/log/{size}")
        assert delete["type"] == "Delete"
        assert delete["object"]["type"] == "Tombstone"
        assert delete["object"]["id"] == object_id
        assert delete["erasure"] == {"type": "Erasure", "reason": REASON, "redacted": [1, 3]}
        slug = object_id.rsplit("/", 1)[1]
        assert await get_json(session, f"{base}/objects/{slug}") == delete

        after = await iv.audit_log(session, base)  # every proof, and the root, verify
        assert after.checkpoint.size == size + 1
        assert after.leaf_hashes[:size] == before.leaf_hashes
        iv.verify_root(after.leaf_hashes[:size], before.checkpoint.root)
        assert await publisher.node.store.checkpoint(size) == old_checkpoint
        for old_size in (1, 3, size):  # the log after the erasure extends every old tree
            proof = await iv.fetch_consistency_proof(session, base, old_size, size + 1)
            old_root = iv.merkle_root(list(before.leaf_hashes[:old_size]))
            iv.verify_consistency(old_size, size + 1, old_root, after.checkpoint.root, proof)
    assert holding(publisher.settings) == []


async def test_a_partner_purges_what_it_merged_when_it_merges_the_delete(
    cluster: Cluster,
) -> None:
    publisher, partner = cluster.publisher, cluster.partner
    object_id, size = await published_and_merged(publisher, partner)
    before = await partner.node.store.received_entries(publisher.base_url, 0, size)

    await erase_over_http(publisher, object_id)
    report = await partner.federation.sync(publisher.base_url)

    assert report.merged_to == size + 1
    record = await partner.node.store.get_object(object_id)
    assert record is not None
    assert record.deleted
    assert record.body["type"] == "Tombstone"
    received = await partner.node.store.received_entries(publisher.base_url, 0, size + 1)
    for seq in (1, 3):
        entry = json.loads(received[seq])
        assert set(entry) == REDACTED_MEMBERS
        assert (
            entry["leafHash"]
            == base64.b64encode(leaf_hash(canonicalize(json.loads(before[seq])))).decode()
        )
    assert json.loads(received[size])["erasure"]["redacted"] == [1, 3]
    assert not any(MARKER in entry for entry in received)
    async with aiohttp.ClientSession() as session:
        listing = await get_json(session, f"{partner.base_url}/objects?origin={publisher.base_url}")
        assert MARKER not in json.dumps(listing)
        assert object_id not in {item["id"] for item in listing["items"]}
    assert holding(partner.settings) == []
    assert await partner.node.store.list_rejections() == []


async def test_a_partner_that_syncs_only_after_the_erasure_holds_no_content(
    cluster: Cluster,
) -> None:
    publisher, partner = cluster.publisher, cluster.partner
    object_id, size = await published_and_merged(publisher, partner)
    await erase_over_http(publisher, object_id)

    newcomer = await cluster.start("newcomer", "DE")
    await follow(newcomer, publisher)

    async def merged() -> bool:
        state = await newcomer.node.store.origin_state(publisher.base_url)
        return state is not None and state.next_seq == size + 1

    await eventually(merged)
    state = await newcomer.node.store.origin_state(publisher.base_url)
    assert state is not None
    assert state.checkpoint_size == size + 1
    assert await newcomer.node.store.list_rejections() == []
    record = await newcomer.node.store.get_object(object_id)
    assert record is not None
    assert record.deleted
    received = await newcomer.node.store.received_entries(publisher.base_url, 0, size + 1)
    assert [json.loads(received[seq])["type"] for seq in (1, 3)] == ["Redacted", "Redacted"]
    assert len(received) == size + 1
    assert holding(newcomer.settings) == []


async def test_a_plain_delete_purges_content_at_partners_old_and_new(
    cluster: Cluster,
) -> None:
    """Rule 5 holds for every Delete, not only for erasures: the publisher's log keeps its
    signed entries, but no partner keeps the content of a deleted object."""
    publisher, partner = cluster.publisher, cluster.partner
    object_id, size = await published_and_merged(publisher, partner)
    await publisher.node.delete(object_id)
    await partner.federation.sync(publisher.base_url)
    newcomer = await cluster.start("newcomer", "DE")
    await follow(newcomer, publisher)  # the Create, Update and Delete arrive in one run

    async def merged() -> bool:
        state = await newcomer.node.store.origin_state(publisher.base_url)
        return state is not None and state.next_seq == size + 1

    await eventually(merged)
    for node in (partner, newcomer):
        received = await node.node.store.received_entries(publisher.base_url, 0, size + 1)
        assert [json.loads(received[seq])["type"] for seq in (1, 3)] == ["Redacted", "Redacted"]
        assert json.loads(received[size])["type"] == "Delete"
        assert holding(node.settings) == []
    assert holding(publisher.settings) != []  # a delete is not an erasure


async def test_erasing_a_deleted_object_still_redacts_and_records_it(
    cluster: Cluster,
) -> None:
    publisher, partner = cluster.publisher, cluster.partner
    object_id, size = await published_and_merged(publisher, partner)
    deleted = await publisher.node.delete(object_id)
    tombstone = (await publisher.node.store.get_object(object_id)).body

    outcome = await publisher.node.erase(object_id, REASON)
    again = await publisher.node.erase(object_id, "Asked twice")

    assert (deleted.seq, outcome.seq, outcome.redacted) == (size, size + 1, (1, 3))
    assert (again.seq, again.redacted) == (size + 2, ())
    entries = [json.loads(e) for e in await publisher.node.store.entries(size + 1, size + 3)]
    assert [e["object"] for e in entries] == [tombstone, tombstone]
    assert [e["erasure"]["redacted"] for e in entries] == [[1, 3], []]
    await partner.federation.sync(publisher.base_url)
    state = await partner.node.store.origin_state(publisher.base_url)
    assert state is not None
    assert state.next_seq == size + 3
    assert await partner.node.store.list_rejections() == []  # a second Delete is no error
    assert holding(partner.settings) == []
    assert holding(publisher.settings) == []


async def test_an_erasure_by_the_cli_is_served_at_once_by_a_running_server(
    cluster: Cluster,
) -> None:
    """``exchange erase`` runs in its own process on the server's home: the server is not
    told, yet its next answer shows the erasure (the page held in its memory is dropped)."""
    publisher, partner = cluster.publisher, cluster.partner
    object_id, _ = await published_and_merged(publisher, partner)
    config = publisher.settings.home / "exchange.toml"
    config.write_text(config.read_text().replace("page_size = 100", f"page_size = {PAGE_SIZE}"))
    url = f"{publisher.base_url}/feed/0"
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            old_tag = response.headers["ETag"]
        slug = object_id.rsplit("/", 1)[1]
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "exchange.cli",
            "erase",
            "--home",
            str(publisher.settings.home),
            slug,
            "--reason",
            REASON,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(PROJECT)},
        )
        out, err = await process.communicate()
        assert process.returncode == 0, err.decode()
        assert out.decode().startswith(f"erased: {object_id} ")

        async with session.get(url) as response:
            assert response.headers["ETag"] != old_tag
            body = await response.read()
        assert MARKER.encode() not in body
        assert [item["type"] for item in json.loads(body)["orderedItems"]][1::2] == [
            "Redacted",
            "Redacted",
        ]
    assert holding(publisher.settings) == []


def test_the_page_cache_drops_redacted_pages_and_keeps_none_built_before(tmp_path: Path) -> None:
    cache = PageCache(max_bytes=1000, folder=tmp_path)
    cache.sync(None, 0, [], PAGE_SIZE)
    for number in range(3):
        cache.put(number, b"page %d" % number, f'"{number}"', generation=0)
    cache.sync(0, 2, [5], PAGE_SIZE)  # entry 5 is on page 1
    assert cache.get(1) is None
    assert not (tmp_path / "1.page").exists()
    assert cache.get(0) == (b"page 0", '"0"')
    cache.put(1, b"stale", '"stale"', generation=0)  # read before generation 2: not kept
    assert cache.get(1) is None
    cache.sync(0, 1, [9], PAGE_SIZE)  # a slower request's older answer
    assert cache.generation == 2
    assert cache.get(2) is None
    cache.sync(2, 0, [], PAGE_SIZE)  # the store went back (a restored backup): all pages go
    assert cache.generation == 0
    assert cache.get(0) is None
    assert list(tmp_path.glob("*.page")) == []


# --- errors -------------------------------------------------------------------------------


@pytest.fixture
def offline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> InitResult:
    node = make_node(tmp_path / "node")
    assert main(["publish", "--home", str(node.settings.home), _draft(tmp_path)]) == 0
    capsys.readouterr()
    return node


def _draft(folder: Path) -> str:
    path = folder / "draft.json"
    path.write_text(json.dumps({**secret(1), "id": "http://127.0.0.1:8080/objects/secret"}))
    return str(path)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param(["secret"], "needs a reason", id="reason-missing"),
        pytest.param(["secret", "--reason", "  "], "needs a reason", id="reason-blank"),
        pytest.param(["secret", "--reason", "x" * 1001], "at most 1000", id="reason-too-long"),
        pytest.param(["secret", "--reason", "see <b>this</b>"], "plain text", id="reason-html"),
        pytest.param(["unknown", "--reason", REASON], "no object of this node", id="unknown-id"),
        pytest.param(
            ["https://other.example/objects/secret", "--reason", REASON],
            "no object of this node",
            id="other-origin",
        ),
    ],
)
def test_the_cli_refuses_an_erasure_in_one_line(
    offline: InitResult, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    code = main(["erase", "--home", str(offline.settings.home), *arguments])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith("exchange: error: ")
    assert message in line
    assert holding(offline.settings) != []  # nothing was erased


def test_the_cli_erases_by_slug(offline: InitResult, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["erase", "--home", str(offline.settings.home), "secret", "--reason", REASON])
    assert code == 0
    assert capsys.readouterr().out == (
        "erased: http://127.0.0.1:8080/objects/secret (Delete at seq 1; redacted entries: 0)\n"
    )
    assert holding(offline.settings) == []


@pytest.mark.parametrize(
    ("body", "status", "problem"),
    [
        pytest.param({"id": "secret"}, 400, "usage", id="reason-missing"),
        pytest.param({"id": "secret", "reason": ""}, 400, "usage", id="reason-empty"),
        pytest.param({"id": "secret", "reason": 7}, 400, "usage", id="reason-not-text"),
        pytest.param({"reason": REASON}, 400, "bad-request", id="id-missing"),
        pytest.param({"id": "unknown", "reason": REASON}, 404, "not-found", id="unknown-id"),
        pytest.param(
            {"id": "http://127.0.0.1:8080", "reason": REASON}, 404, "not-found", id="node-itself"
        ),
    ],
)
async def test_the_api_refuses_an_erasure_with_problem_json(
    offline: InitResult,
    aiohttp_client: ClientFactory,
    body: dict[str, Any],
    status: int,
    problem: str,
) -> None:
    client = await aiohttp_client(create_app(offline.settings))
    headers = {"Authorization": f"Bearer {offline.token}"}
    response = await client.post("/admin/erasures", json=body, headers=headers)
    assert response.status == status
    assert response.content_type == "application/problem+json"
    document = await response.json()
    assert document["type"] == f"https://w3id.org/exchange/problems/{problem}"
    assert document["status"] == status
    assert document["detail"]
    unauthorized = await client.post("/admin/erasures", json={"id": "secret", "reason": REASON})
    assert unauthorized.status == 401
    assert unauthorized.content_type == "application/problem+json"
    assert holding(offline.settings) != []


# --- migration 3 ----------------------------------------------------------------------------


async def test_migration_3_indexes_merged_entries_and_purges_deleted_objects(
    tmp_path: Path,
) -> None:
    """A store of schema version 2 that merged a Create and, later, a Delete of the same
    object (before partners purged): the upgrade names every entry's object and purges
    the content that rule 5 says is gone."""
    path = tmp_path / "old.sqlite3"
    origin = "https://nl.example"
    object_id = f"{origin}/objects/secret"
    create = {"type": "Create", "seq": 0, "object": {"id": object_id, "summaryMap": MARKER}}
    delete = {"type": "Delete", "seq": 1, "object": {"id": object_id, "type": "Tombstone"}}
    redacted = {"id": f"{origin}/log/2", "type": "Redacted", "seq": 2, "leafHash": "AA=="}
    hashes = [bytes([seq]) * 32 for seq in range(3)]
    connection = sqlite3.connect(path)
    for migration in MIGRATIONS[:2]:
        assert isinstance(migration, str)
        connection.executescript(migration)
    connection.executescript(
        "CREATE TABLE schema_version (version INTEGER NOT NULL);"
        "INSERT INTO schema_version VALUES (1); INSERT INTO schema_version VALUES (2);"
    )
    connection.executemany(
        "INSERT INTO received (origin, seq, leaf_hash, entry) VALUES (?, ?, ?, ?)",
        [
            (origin, seq, hashes[seq], json.dumps(entry))
            for seq, entry in enumerate((create, delete, redacted))
        ],
    )
    connection.execute(
        "INSERT INTO objects VALUES (?, ?, 'BestPractice', 1, 1, 1, ?)",
        (object_id, origin, json.dumps(delete["object"])),
    )
    connection.commit()
    connection.close()

    store = SQLiteStore(path)
    await store.open()
    try:
        received = [json.loads(e) for e in await store.received_entries(origin, 0, 3)]
    finally:
        await store.close()

    assert received[0] == {
        "id": f"{origin}/log/0",
        "type": "Redacted",
        "seq": 0,
        "leafHash": base64.b64encode(hashes[0]).decode(),
    }
    assert received[1:] == [delete, redacted]
    connection = sqlite3.connect(path)
    rows = connection.execute("SELECT seq, object_id FROM received ORDER BY seq").fetchall()
    connection.close()
    assert rows == [(0, object_id), (1, object_id), (2, None)]
    assert holding(tmp_path) == []
