"""Several ``exchange serve`` workers on one PostgreSQL store (issue 7 §2).

Two real worker processes serve one Dutch node from one schema, as behind a load balancer:
operators publish on both at once while a Flemish partner's pushes arrive on both, each
page more than once and out of order. Afterwards the log has no gap and no duplicate seq
and audits clean, the partner's entries were merged exactly once, and the Flemish
subscriber got every entry of the Dutch log in pushes that never overlap (no push was sent
twice by the two workers).

PostgreSQL is required: with CI set a database that does not answer fails the test.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from exchange.auditor import audit_node
from exchange.config import Settings
from exchange.federation import fetch_node_document, partner_from_document
from exchange.httpsig import sign_request_by_keys
from exchange.operator import init_node, open_federation
from tests.nodes import PROJECT, RunningNode, eventually, free_port, postgres_url

PUBLISH_REQUESTS = 40  # per worker
DRAFTS_PER_REQUEST = 3
PARTNER_ENTRIES = 60


@pytest.fixture(scope="module")
def database_url() -> str:
    return postgres_url()


@contextmanager
def workers(settings: Settings, ports: list[int], logs: Path) -> Iterator[list[str]]:
    """``exchange serve`` once per port, all on the node's home; their URLs when ready."""
    processes = []
    env = {**os.environ, "EXCHANGE_VERIFY_WORKERS": "0", "EXCHANGE_SYNC_INTERVAL_S": "3600"}
    try:
        for port in ports:
            log = (logs / f"worker-{port}.log").open("w")
            command = [sys.executable, "-m", "exchange.cli", "serve", "--home", str(settings.home)]
            processes.append(
                subprocess.Popen(
                    [*command, "--port", str(port)],
                    cwd=PROJECT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            )
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        for url, process in zip(urls, processes, strict=True):
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/readyz", timeout=1):
                        break
                except OSError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        pytest.fail(f"the worker on {url} did not come up; see {logs}")
                    time.sleep(0.1)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def drafts(worker: int, request: int) -> list[dict[str, Any]]:
    return [
        {
            "type": "BestPractice",
            "nameMap": {"nl": f"Praktijk {worker}-{request}-{n}"},
            "practiceKind": "experience",
        }
        for n in range(DRAFTS_PER_REQUEST)
    ]


def log_rows(settings: Settings) -> list[tuple[int, str]]:
    with psycopg.connect(settings.database_url) as connection:
        rows = connection.execute(
            f'SELECT seq, object_id FROM "{settings.store_schema}".log ORDER BY seq'
        ).fetchall()
    return [(int(seq), str(object_id)) for seq, object_id in rows]


def received_seqs(settings: Settings, origin: str) -> list[int]:
    with psycopg.connect(settings.database_url) as connection:
        rows = connection.execute(
            f'SELECT seq FROM "{settings.store_schema}".received WHERE origin = %s ORDER BY seq',
            (origin,),
        ).fetchall()
    return [int(row[0]) for row in rows]


async def test_two_workers_share_one_log_one_merge_and_one_delivery(
    tmp_path: Path, database_url: str
) -> None:
    ports = [free_port(), free_port()]
    base_url = f"http://127.0.0.1:{ports[0]}"  # where partners reach it: the balancer
    dutch = init_node(
        tmp_path / "nl",
        base_url=base_url,
        name="Samenwerkende overheid",
        country="NL",
        environ={"EXCHANGE_DATABASE_URL": database_url},
    )
    settings = dutch.settings
    assert settings.database_url
    assert not settings.database.exists()
    flemish = RunningNode(tmp_path / "be", "Vlaamse overheid", "BE")
    await flemish.start()
    try:
        # The Flemish node publishes first; the Dutch node pins it (before its workers run).
        await flemish.node.publish(
            [
                {
                    "type": "BestPractice",
                    "nameMap": {"nl": f"Vlaams {n}"},
                    "practiceKind": "experience",
                }
                for n in range(PARTNER_ENTRIES)
            ]
        )
        async with open_federation(settings) as federation:
            await federation.add_partner(flemish.base_url)
        with workers(settings, ports, tmp_path) as urls:
            document = await fetch_node_document(flemish.federation.fetcher, base_url)
            await flemish.node.store.put_partner(partner_from_document(document, datetime.now(UTC)))
            await flemish.federation.follow(base_url)

            async def accepted() -> bool:
                partner = await flemish.node.store.get_partner(base_url)
                return partner is not None and partner.following == "accepted"

            await eventually(accepted)
            statuses = await load(urls, settings, dutch.token, flemish)
            assert all(status in (200, 201, 202) for status in statuses), statuses

            # Every publish landed once, in one log without gap or duplicate seq.
            rows = log_rows(settings)
            assert [seq for seq, _ in rows] == list(range(len(rows)))
            published = [object_id for _, object_id in rows if "/objects/" in object_id]
            assert len(published) == len(set(published)) == 2 * PUBLISH_REQUESTS * 3
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{urls[1]}/checkpoint") as response,
            ):
                note = await response.text()
            assert note.splitlines()[1] == str(len(rows))  # either worker serves the same log
            report = await audit_node(base_url, workers=1)
            assert report.findings == (), report.findings
            assert report.size == len(rows)

            # The partner's entries were merged once each, whatever worker took which push.
            assert received_seqs(settings, flemish.base_url) == list(range(PARTNER_ENTRIES))

            # The subscriber received every entry, in pushes from both workers that never
            # overlap: no push was sent twice.
            async def delivered() -> bool:
                state = await flemish.node.store.origin_state(base_url)
                return state is not None and state.next_seq == len(rows)

            await eventually(delivered, timeout_s=60)
            ranges = sorted(pushes(flemish, base_url))
            covered = [seq for start, count in ranges for seq in range(start, start + count)]
            assert covered == list(range(covered[0], len(rows))), ranges
            with psycopg.connect(database_url) as connection:
                (rejections,) = connection.execute(
                    f'SELECT count(*) FROM "{settings.store_schema}".rejections'
                ).fetchone() or (None,)
            assert rejections == 0
    finally:
        await flemish.stop()


async def load(urls: list[str], settings: Settings, token: str, flemish: RunningNode) -> list[int]:
    """Publish on both workers while the partner's pages are pushed to both, each page
    twice and the later ones first; the statuses of every request."""
    leaves = await flemish.node.store.entries(0, PARTNER_ENTRIES)
    latest = await flemish.node.store.latest_checkpoint()
    assert latest is not None
    pages = [
        {
            "@context": ["https://www.w3.org/ns/activitystreams"],
            "type": "OrderedCollectionPage",
            "partOf": f"{flemish.base_url}/feed",
            "startIndex": start,
            "orderedItems": [json.loads(leaf) for leaf in leaves[start : start + 10]],
            "checkpoint": latest[1],
        }
        for start in range(0, PARTNER_ENTRIES, 10)
    ]
    keys = flemish.federation.fetcher._keys()

    async with aiohttp.ClientSession() as session:

        async def publish(url: str, worker: int, request: int) -> int:
            async with session.post(
                f"{url}/admin/objects",
                json=drafts(worker, request),
                headers={"Authorization": f"Bearer {token}"},
            ) as response:
                return response.status

        async def push(url: str, page: dict[str, Any]) -> int:
            body = json.dumps(page).encode()
            headers = {"Content-Type": "application/activity+json"}
            headers.update(
                sign_request_by_keys(
                    method="POST",
                    target_uri=f"{settings.base_url}/inbox",  # what the balancer's URL says
                    headers=headers,
                    body=body,
                    keys=keys,
                    now=datetime.now(UTC),
                )
            )
            async with session.post(f"{url}/inbox", data=body, headers=headers) as response:
                return response.status

        work = [
            publish(url, worker, request)
            for request in range(PUBLISH_REQUESTS)
            for worker, url in enumerate(urls)
        ]
        work += [push(url, page) for page in reversed(pages) for url in urls]
        work += [push(urls[n % 2], page) for n, page in enumerate(pages)]
        return list(await asyncio.gather(*work))


def pushes(subscriber: RunningNode, base_url: str) -> list[tuple[int, int]]:
    """(startIndex, entries) of every push the subscriber received from ``base_url``."""
    found = []
    for request in subscriber.requests:
        if request.method != "POST" or not request.body:
            continue
        message = json.loads(request.body)
        if message.get("type") == "OrderedCollectionPage" and message.get("partOf") == (
            f"{base_url}/feed"
        ):
            found.append((int(message["startIndex"]), len(message["orderedItems"])))
    return found
