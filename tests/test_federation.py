"""Nodes in different countries on real loopback ports: follow, push, pull after an outage,
updates and deletes, and what the operator sees."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from exchange.federation import partner_from_document
from tests.nodes import RunningNode, eventually, example, pin, pinned_pair, practice


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[RunningNode, RunningNode]]:
    async with pinned_pair(tmp_path) as nodes:
        yield nodes


async def count_from(node: RunningNode, origin: str) -> int:
    count, after = 0, None
    while True:
        page = await node.node.store.list_objects(
            origin=origin, type_name=None, after=after, limit=500
        )
        count += len(page.items)
        if page.next_after is None:
            return count
        after = page.next_after


async def test_follow_is_accepted_and_a_publish_arrives_by_push(
    pair: tuple[RunningNode, RunningNode],
) -> None:
    dutch, flemish = pair
    await dutch.node.publish([example("case-doetank-milieu-initiatieven")])
    partner = await flemish.federation.follow(dutch.base_url)
    assert partner.following == "accepted"
    subscriber = await dutch.node.store.get_partner(flemish.base_url)
    assert subscriber.subscriber
    # The backlog comes by pull after the Accept.
    await eventually(lambda: _has(flemish, dutch.base_url, 1))
    # From now on, entries come by push: no pull runs (the sync interval is an hour).
    (outcome,) = await dutch.node.publish([example("event-reuring-cafe-115")])
    await eventually(lambda: _has(flemish, dutch.base_url, 2), timeout_s=5)
    record = await flemish.node.store.get_object(outcome.id)
    assert record.origin == dutch.base_url
    assert record.body["type"] == "Event"
    state = await dutch.node.store.get_delivery(flemish.base_url)
    assert state.delivered == 2
    assert state.breaker == "closed"


async def _has(node: RunningNode, origin: str, count: int) -> bool:
    return await count_from(node, origin) == count


async def test_a_partner_that_was_down_catches_up_with_nothing_lost_or_duplicated(
    pair: tuple[RunningNode, RunningNode],
) -> None:
    dutch, flemish = pair
    await flemish.federation.follow(dutch.base_url)
    await dutch.node.publish([practice(0)])
    await eventually(lambda: _has(flemish, dutch.base_url, 1))
    await flemish.stop()
    for start in range(1, 501, 100):
        await dutch.node.publish([practice(i) for i in range(start, start + 100)])
    await eventually(lambda: _failed_once(dutch, flemish.base_url))
    await flemish.start()  # pulls on start
    await eventually(lambda: _has(flemish, dutch.base_url, 501), timeout_s=30)
    state = await flemish.node.store.origin_state(dutch.base_url)
    assert state.next_seq == 501
    assert state.checkpoint_size == 501
    received = await flemish.node.store.received_entries(dutch.base_url, 0, 1000)
    assert len(received) == 501
    assert await flemish.node.store.list_rejections() == []


async def _failed_once(publisher: RunningNode, subscriber: str) -> bool:
    state = await publisher.node.store.get_delivery(subscriber)
    return state is not None and state.attempts >= 1 and bool(state.last_error)


async def test_updates_and_deletes_propagate_and_tombstones_stay(
    pair: tuple[RunningNode, RunningNode],
) -> None:
    dutch, flemish = pair
    await flemish.federation.follow(dutch.base_url)
    (created,) = await dutch.node.publish([practice(1)])
    await eventually(lambda: _has(flemish, dutch.base_url, 1))
    (updated,) = await dutch.node.publish(
        [{**practice(1), "id": created.id, "summaryMap": {"en": "v2"}}]
    )
    assert updated.version == 2

    async def at_version_two() -> bool:
        record = await flemish.node.store.get_object(created.id)
        return record is not None and record.version == 2

    await eventually(at_version_two)
    await dutch.node.delete(created.id)

    async def deleted() -> bool:
        record = await flemish.node.store.get_object(created.id)
        return record is not None and record.deleted

    await eventually(deleted)
    record = await flemish.node.store.get_object(created.id)
    assert record.body["type"] == "Tombstone"
    assert "summaryMap" not in record.body  # the content is purged
    assert await count_from(flemish, dutch.base_url) == 0


async def test_both_directions_and_the_operator_view(pair: tuple[RunningNode, RunningNode]) -> None:
    dutch, flemish = pair
    await flemish.federation.follow(dutch.base_url)
    await dutch.federation.follow(flemish.base_url)
    await dutch.node.publish([example("case-doetank-preventieve-zorg")])
    await flemish.node.publish([example("best-practice-meerwaarde-door-participatie")])
    await eventually(lambda: _has(flemish, dutch.base_url, 1))
    await eventually(lambda: _has(dutch, flemish.base_url, 1))
    from exchange.operator import partner_statuses

    (status,) = await partner_statuses(dutch.federation)
    assert status.partner.following == "accepted"
    assert status.partner.subscriber
    assert status.origin.next_seq == 1
    assert status.delivery.delivered == 1


async def test_a_follow_from_a_stranger_is_refused_before_anything_is_fetched(
    pair: tuple[RunningNode, RunningNode], tmp_path: Path
) -> None:
    dutch, _ = pair
    stranger = RunningNode(tmp_path / "xx", "Onbekend", "DE")
    await stranger.start()
    try:
        document = dutch.node.node_document()
        await stranger.node.store.put_partner(partner_from_document(document, _now()))
        from exchange.http.client import FetchError

        with pytest.raises(FetchError) as refused:
            await stranger.federation.follow(dutch.base_url)
        assert refused.value.status_code == 403
    finally:
        await stranger.stop()


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


class Listener:
    """A loopback TCP listener that only counts who connects to it."""

    def __init__(self) -> None:
        self.connections = 0
        self.server: asyncio.base_events.Server | None = None
        self.port = 0

    async def start(self) -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            writer.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


async def _post_signed_as(key_id: str, target: str, body: dict[str, Any]) -> int:
    import json

    import aiohttp

    from exchange.httpsig import sign_request
    from exchange.keys import KeyPair

    key = KeyPair(key_id, bytes(range(32)))
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/activity+json"}
    headers.update(
        sign_request(
            method="POST", target_uri=target, headers=headers, body=data, key=key, now=_now()
        )
    )
    async with (
        aiohttp.ClientSession() as session,
        session.post(target, data=data, headers=headers) as response,
    ):
        return response.status


@pytest.mark.parametrize(
    "keyid_host",
    ["127.0.0.1:{port}", "localhost:{port}", "[::1]:{port}"],
    ids=["loopback", "localhost", "ipv6 loopback"],
)
@pytest.mark.parametrize("open_requests", [False, True], ids=["closed", "open follow requests"])
async def test_a_keyid_naming_a_local_address_is_never_fetched(
    tmp_path: Path, keyid_host: str, open_requests: bool
) -> None:
    listener = Listener()
    await listener.start()
    node = RunningNode(tmp_path / "n", "Knooppunt", "NL", open_follow_requests=open_requests)
    await node.start()
    try:
        for scheme in ("http", "https"):
            key_id = f"{scheme}://{keyid_host.format(port=listener.port)}/keys/1"
            follow = {"type": "Follow", "actor": key_id.split("/keys/")[0], "object": node.base_url}
            status = await _post_signed_as(key_id, f"{node.base_url}/inbox", follow)
            assert status == 403
        assert listener.connections == 0
    finally:
        await node.stop()
        await listener.stop()


async def test_a_stranger_asks_to_follow_and_waits_for_approval(tmp_path: Path) -> None:
    publisher = RunningNode(
        tmp_path / "p",
        "Uitgever",
        "NL",
        open_follow_requests=True,
        unsafe_private_follow_requests=True,
    )
    stranger = RunningNode(tmp_path / "s", "Fremder", "DE")
    await publisher.start()
    await stranger.start()
    try:
        await pin(stranger, publisher)
        partner = await stranger.federation.follow(publisher.base_url)
        assert partner.following == "requested"
        waiting = await publisher.node.store.get_partner(stranger.base_url)
        assert waiting is not None
        assert not waiting.approved
        assert not waiting.subscriber
        await publisher.node.publish([practice(1)])
        await asyncio.sleep(0.3)
        assert await count_from(stranger, publisher.base_url) == 0  # nothing before approval
        await publisher.federation.accept_subscriber(
            waiting, {"type": "Follow", "actor": stranger.base_url, "object": publisher.base_url}
        )
        await eventually(lambda: _has(stranger, publisher.base_url, 1))
        assert (await stranger.node.store.get_partner(publisher.base_url)).following == "accepted"
    finally:
        await stranger.stop()
        await publisher.stop()


async def test_an_unchanged_checkpoint_is_revalidated_with_its_etag(
    pair: tuple[RunningNode, RunningNode],
) -> None:
    dutch, flemish = pair
    await flemish.federation.follow(dutch.base_url)
    await dutch.node.publish([practice(1)])
    await eventually(lambda: _has(flemish, dutch.base_url, 1))
    statuses: list[int] = []
    fetcher = flemish.federation.fetcher
    original = fetcher.get_bytes

    async def recording(url: str, **options: Any) -> tuple[int, bytes, str | None]:
        result = await original(url, **options)
        statuses.append(result[0])
        return result

    fetcher.get_bytes = recording  # type: ignore[method-assign]
    await flemish.federation.sync(dutch.base_url)
    await flemish.federation.sync(dutch.base_url)
    assert statuses[-1] == 304
    assert (await flemish.node.store.origin_state(dutch.base_url)).next_seq == 1


def _dead_pid() -> int:
    """The pid of a process of this host that has ended."""
    import subprocess

    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


async def test_a_lease_left_by_a_killed_process_does_not_hold_up_pushes(
    pair: tuple[RunningNode, RunningNode],
) -> None:
    """A node killed during a push leaves its lease on the delivery (bench/faults.py found
    pushes stopped for the lease's 40 s after every restart): the process started again
    takes it over, since its holder ran on this host and runs no more."""
    import socket
    from datetime import UTC, datetime, timedelta

    dutch, flemish = pair
    await flemish.federation.follow(dutch.base_url)
    await eventually(lambda: _delivery(dutch, flemish.base_url))
    now = datetime.now(UTC)
    killed = f"{socket.gethostname()}:{_dead_pid()}:0123abcd"
    assert await dutch.node.store.lease_delivery(
        flemish.base_url, killed, now, now + timedelta(hours=1)
    )

    (outcome,) = await dutch.node.publish([practice(1)])

    await eventually(lambda: _merged(flemish, outcome.id), timeout_s=10)


async def test_a_lease_of_a_running_or_remote_worker_is_respected(
    pair: tuple[RunningNode, RunningNode],
) -> None:
    import os
    import socket
    from datetime import UTC, datetime, timedelta

    from exchange.federation import _abandoned

    dutch, flemish = pair
    await flemish.federation.follow(dutch.base_url)
    await eventually(lambda: _delivery(dutch, flemish.base_url))
    store, now = dutch.node.store, datetime.now(UTC)
    running = f"{socket.gethostname()}:{os.getppid()}:0123abcd"
    remote = f"elsewhere.example:{_dead_pid()}:0123abcd"
    for holder in (running, remote):
        await store.put_delivery(await store.get_delivery(flemish.base_url))  # no lease
        assert await store.lease_delivery(flemish.base_url, holder, now, now + timedelta(hours=1))
        taken = await store.lease_delivery(
            flemish.base_url, "me:1:x", now, now + timedelta(seconds=40), _abandoned
        )
        assert taken is None, holder
    killed = f"{socket.gethostname()}:{_dead_pid()}:0123abcd"
    await store.put_delivery(await store.get_delivery(flemish.base_url))
    assert await store.lease_delivery(flemish.base_url, killed, now, now + timedelta(hours=1))
    assert await store.lease_delivery(flemish.base_url, "me:1:x", now, now, _abandoned)


async def _delivery(node: RunningNode, partner: str) -> bool:
    return await node.node.store.get_delivery(partner) is not None


async def _merged(node: RunningNode, object_id: str) -> bool:
    return await node.node.store.get_object(object_id) is not None
