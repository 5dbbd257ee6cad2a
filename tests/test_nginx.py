"""deploy/nginx.conf with Debian's nginx in front of a running node.

Full feed pages come from nginx's cache after the first request (the node sees one request
however many clients ask); the last page, the collection and everything else reach the node
every time. After an erasure nginx keeps serving the old page until deploy/purge-feed-pages
removes it. The inbox takes bodies up to the node's 8 MiB, other routes 1 MiB, and /metrics
is not served through the proxy.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.nginx import Nginx, running_nginx
from tests.nodes import PROJECT, RunningNode, practice

PAGE_SIZE = 4
IMMUTABLE = "public, max-age=31536000, immutable"
#: The public host name clients use; nginx passes it on as Host.
HOST = "exchange.test"
PURGE = PROJECT / "deploy" / "purge-feed-pages"
MiB = 1024 * 1024


@pytest.fixture
async def proxied(tmp_path: Path) -> AsyncIterator[tuple[RunningNode, Nginx]]:
    """A node with two full pages (seqs 0-7) and a partial last one (8-9), behind nginx."""
    node = RunningNode(tmp_path / "node", "Samenwerkende overheid", "NL", page_size=PAGE_SIZE)
    await node.start()
    try:
        await node.node.publish([practice(number) for number in range(10)])
        async with running_nginx(tmp_path / "nginx", [f"127.0.0.1:{node.port}"]) as nginx:
            yield node, nginx
    finally:
        await node.stop()


class Answer:
    def __init__(self, status: int, headers: Any, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def cache(self) -> str | None:
        value: str | None = self.headers.get("X-Cache-Status")
        return value


async def get(nginx: Nginx, path: str, **headers: str) -> Answer:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{nginx.url}{path}", headers={"Host": HOST, **headers}) as response,
    ):
        return Answer(response.status, response.headers, await response.read())


async def post(nginx: Nginx, path: str, size: int, content_type: str) -> Answer:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{nginx.url}{path}", data=b" " * size, headers={"Content-Type": content_type}
        ) as response,
    ):
        return Answer(response.status, response.headers, await response.read())


def purge(nginx: Nginx, *pages: str) -> str:
    done = subprocess.run(
        [PURGE, str(nginx.cache_dir), *pages], capture_output=True, text=True, check=True
    )
    return done.stdout


async def test_a_full_page_reaches_the_node_once(proxied: tuple[RunningNode, Nginx]) -> None:
    node, nginx = proxied
    answers = [await get(nginx, "/feed/0") for _ in range(4)]

    assert [a.cache for a in answers] == ["MISS", "HIT", "HIT", "HIT"]
    assert node.seen("/feed/0") == 1
    assert all(a.status == 200 and a.body == answers[0].body for a in answers)
    assert {a.headers["Cache-Control"] for a in answers} == {IMMUTABLE}
    assert len({a.headers["ETag"] for a in answers}) == 1
    page = json.loads(answers[0].body)
    assert [entry["seq"] for entry in page["orderedItems"]] == [0, 1, 2, 3]
    # A client that holds the page revalidates it against the cache alone.
    revalidated = await get(nginx, "/feed/0", **{"If-None-Match": answers[0].headers["ETag"]})
    assert (revalidated.status, revalidated.cache) == (304, "HIT")
    assert node.seen("/feed/0") == 1
    # What reached the node says whom it came from and under which name.
    (request,) = [r for r in node.requests if r.path == "/feed/0"]
    assert request.headers["Host"] == HOST
    assert request.headers["X-Forwarded-For"] == "127.0.0.1"
    assert request.headers["X-Forwarded-Proto"] == "http"


async def test_the_last_page_and_the_rest_are_not_cached(
    proxied: tuple[RunningNode, Nginx],
) -> None:
    node, nginx = proxied
    last = [await get(nginx, "/feed/2") for _ in range(3)]
    assert [a.status for a in last] == [200, 200, 200]
    assert {a.headers["Cache-Control"] for a in last} == {"no-cache"}
    assert "HIT" not in [a.cache for a in last]
    assert node.seen("/feed/2") == 3
    for path in ("/feed", "/checkpoint", "/objects"):
        for _ in range(2):
            assert (await get(nginx, path)).status == 200
        assert node.seen(path) == 2, path
    # A page beyond the end is an error, never kept.
    for _ in range(2):
        assert (await get(nginx, "/feed/3")).status == 404
    assert node.seen("/feed/3") == 2


async def test_purge_after_an_erasure(proxied: tuple[RunningNode, Nginx]) -> None:
    node, nginx = proxied
    for path in ("/feed/0", "/feed/1"):
        assert [(await get(nginx, path)).cache for _ in range(2)] == ["MISS", "HIT"]
    before = await get(nginx, "/feed/0")
    page = json.loads(before.body)
    erased = page["orderedItems"][1]["object"]["id"]
    outcome = await node.node.erase(erased, "Published without consent")
    assert outcome.redacted == (1,)

    stale = await get(nginx, "/feed/0")  # what the purge is for
    assert (stale.cache, stale.headers["ETag"], stale.body) == (
        "HIT",
        before.headers["ETag"],
        before.body,
    )

    assert "purged /feed/0" in purge(nginx, "0")
    fresh = await get(nginx, "/feed/0")
    assert fresh.cache == "MISS"
    assert fresh.headers["ETag"] != before.headers["ETag"]
    assert json.loads(fresh.body)["orderedItems"][1]["type"] == "Redacted"
    assert (await get(nginx, "/feed/0")).cache == "HIT"
    assert (await get(nginx, "/feed/1")).cache == "HIT"  # only page 0 was purged
    assert node.seen("/feed/0") == 2

    assert "every cached feed page (2 files)" in purge(nginx)
    assert [(await get(nginx, p)).cache for p in ("/feed/0", "/feed/1")] == ["MISS", "MISS"]
    assert (node.seen("/feed/0"), node.seen("/feed/1")) == (3, 2)


async def test_body_limits_and_metrics(proxied: tuple[RunningNode, Nginx]) -> None:
    node, nginx = proxied
    activity = "application/activity+json"
    # The inbox takes what the node takes (8 MiB): a 2 MiB push reaches the node, which
    # refuses it for its missing signature; 9 MiB stop at nginx.
    assert (await post(nginx, "/inbox", 2 * MiB, activity)).status == 401
    assert node.seen("/inbox", "POST") == 1
    assert (await post(nginx, "/inbox", 9 * MiB, activity)).status == 413
    assert node.seen("/inbox", "POST") == 1
    # Other routes take 1 MiB.
    assert (await post(nginx, "/sparql", 2 * MiB, "application/sparql-query")).status == 413
    assert node.seen("/sparql", "POST") == 0
    # Each worker's metrics are scraped from the worker itself, never through the proxy.
    assert (await get(nginx, "/metrics")).status == 403
    assert node.seen("/metrics") == 0
