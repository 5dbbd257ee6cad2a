"""Helpers for tests that run a node: create one in a temporary home, publish through it."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from exchange.config import Settings
from exchange.operator import InitResult, init_node

PROJECT = Path(__file__).resolve().parents[1]
EXAMPLES = PROJECT / "examples"


def make_node(home: Path, base_url: str = "http://127.0.0.1:8080", **changes: Any) -> InitResult:
    result = init_node(home, base_url=base_url, name="Testknooppunt", country="NL")
    if changes:
        result = replace(result, settings=replace(result.settings, **changes))
    return result


def postgres_url() -> str:
    """The PostgreSQL of the tests (EXCHANGE_DATABASE_URL, else the machine's own); a test
    that needs it fails when CI is set and it does not answer, else it is skipped."""
    import os

    import psycopg

    url = os.environ.get("EXCHANGE_DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/test"
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.OperationalError as error:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL does not answer at {url}: {error}")
        pytest.skip(f"PostgreSQL does not answer at {url} (with CI set this fails)")
    return url


#: The schemas fresh_schema() named: dropped at the end of the run (tests/conftest.py).
FRESH_SCHEMAS: list[str] = []


def fresh_schema() -> str:
    """A new schema name, dropped at the end of the test run."""
    import secrets

    name = f"exchange_t{secrets.token_hex(6)}"
    FRESH_SCHEMAS.append(name)
    return name


def files_holding(folder: Path, needle: bytes) -> list[str]:
    """The files under ``folder`` (a SQLite database with its -wal and -shm, cached pages,
    keys, config) that hold ``needle``'s bytes."""
    return sorted(
        str(path.relative_to(folder))
        for path in folder.rglob("*")
        if path.is_file() and needle in path.read_bytes()
    )


def holding(settings: Settings, needle: bytes) -> list[str]:
    """Where the node keeps ``needle``: the files of its home and, when its store is in
    PostgreSQL, each table of its schema that has a row holding it (``table NAME``)."""
    found = files_holding(settings.home, needle)
    if settings.database_url:
        import psycopg
        from psycopg import sql

        with psycopg.connect(settings.database_url) as connection:
            tables = [
                row[0]
                for row in connection.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                    (settings.store_schema,),
                )
            ]
            for table in tables:
                rows = connection.execute(
                    sql.SQL("SELECT * FROM {}.{}").format(
                        sql.Identifier(settings.store_schema), sql.Identifier(table)
                    )
                ).fetchall()
                values = (value for row in rows for value in row)
                if any(
                    needle in (value if isinstance(value, bytes) else str(value).encode())
                    for value in values
                ):
                    found.append(f"table {table}")
    return found


def store_created(settings: Settings) -> bool:
    """Whether the node's store exists: its SQLite file, or its PostgreSQL schema with a
    signed checkpoint (and then no SQLite file)."""
    if not settings.database_url:
        return settings.database.is_file()
    import psycopg
    from psycopg import sql

    with psycopg.connect(settings.database_url) as connection:
        row = connection.execute(
            sql.SQL("SELECT count(*) FROM {}.checkpoints").format(
                sql.Identifier(settings.store_schema)
            )
        ).fetchone()
    return row is not None and row[0] > 0 and not settings.database.exists()


def example(name: str) -> dict[str, Any]:
    """An example object as a publishable draft: no @context, no id."""
    document: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text())
    document.pop("@context")
    document.pop("id")
    return document


def practice(number: int) -> dict[str, Any]:
    return {
        "type": "BestPractice",
        "nameMap": {"en": f"Practice {number}", "nl": f"Praktijk {number}"},
        "practiceKind": "experience",
    }


Condition = Callable[[], Awaitable[bool]]


async def eventually(condition: Condition, timeout_s: float = 15.0) -> None:
    """Wait until ``condition`` holds, or fail the test after ``timeout_s``."""
    import asyncio

    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail("the condition did not hold in time")
        await asyncio.sleep(0.05)


async def pin(subscriber: RunningNode, publisher: RunningNode) -> None:
    """Pin the publisher's current node document, as 'exchange partner add --yes' does."""
    from datetime import UTC, datetime

    from exchange.federation import fetch_node_document, partner_from_document

    document = await fetch_node_document(subscriber.federation.fetcher, publisher.base_url)
    await subscriber.node.store.put_partner(partner_from_document(document, datetime.now(UTC)))


@contextlib.asynccontextmanager
async def pinned_pair(
    root: Path, flemish_name: str = "Vlaamse overheid"
) -> AsyncIterator[tuple[RunningNode, RunningNode]]:
    """A Dutch and a Flemish node on loopback ports, each pinning the other."""
    dutch = RunningNode(root / "nl", "Samenwerkende overheid", "NL")
    flemish = RunningNode(root / "be", flemish_name, "BE")
    await dutch.start()
    await flemish.start()
    try:
        await pin(flemish, dutch)
        await pin(dutch, flemish)
        yield dutch, flemish
    finally:
        await flemish.stop()
        await dutch.stop()


async def get_as_operator(node: RunningNode, path: str) -> str:
    """The body of ``GET B{path}`` with the operator's bearer token; asserts a 200 that is
    never cached (the dashboard, the metrics)."""
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{node.base_url}{path}", headers={"Authorization": f"Bearer {node.token}"}
        ) as response,
    ):
        assert response.status == 200
        assert response.headers["Cache-Control"] == "no-store"
        return await response.text()


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def free_ports(count: int) -> int:
    """The first of ``count`` consecutive loopback ports that are free now."""
    import socket

    for _ in range(50):
        base = free_port()
        probes = []
        try:
            for port in range(base, base + count):
                probe = socket.socket()
                probes.append(probe)
                probe.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise RuntimeError(f"no {count} consecutive free ports")


class SeenRequest(NamedTuple):
    """A request that reached a :class:`RunningNode`'s application."""

    method: str
    path: str
    headers: dict[str, str]
    #: The body of a POST to the inbox (empty for any other request).
    body: bytes = b""


class RunningNode:
    """A node served on a real loopback port (as partners see it), restartable. Every
    request that reaches its application is kept in ``requests``, in order; with
    ``keep_bodies`` (the default) the body of each POST to the inbox too, read before the
    node sees the request (so a test of the node's own body limits turns it off).
    ``environ`` is what ``init_node`` reads (the store's ``EXCHANGE_DATABASE_*``; default:
    this process's environment)."""

    def __init__(
        self,
        home: Path,
        name: str,
        country: str,
        *,
        keep_bodies: bool = True,
        environ: Mapping[str, str] | None = None,
        **changes: Any,
    ) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        result = init_node(
            home, base_url=self.base_url, name=name, country=country, environ=environ
        )
        self.token = result.token
        defaults: dict[str, Any] = {
            "sync_interval_s": 3600.0,
            "delivery_interval_s": 0.05,
            "push_timeout_s": 2.0,
            "verify_workers": 0,
        }
        self.settings = replace(result.settings, **{**defaults, **changes})
        self.server: Any = None
        self.requests: list[SeenRequest] = []
        self.keep_bodies = keep_bodies

    @classmethod
    def reopen(cls, home: Path, **changes: Any) -> RunningNode:
        """The node of an existing home (its settings from its config, with ``changes``),
        not started; its operator token is not known."""
        from exchange.config import load_settings

        node = cls.__new__(cls)
        node.settings = replace(load_settings(home, {}), **changes)
        node.port = node.settings.port
        node.base_url = node.settings.base_url
        node.token = ""
        node.server = None
        node.requests = []
        node.keep_bodies = True
        return node

    def seen(self, path: str, method: str = "GET") -> int:
        """How many ``method`` requests for ``path`` (with its query, if any) reached the node."""
        return sum(1 for r in self.requests if r.method == method and r.path == path)

    @property
    def node(self) -> Any:
        from exchange.http.server import NODE

        return self.server.app[NODE]

    @property
    def federation(self) -> Any:
        from exchange.http.server import FEDERATION

        return self.server.app[FEDERATION]

    async def start(self) -> None:
        from aiohttp import web
        from aiohttp.test_utils import TestServer

        from exchange.http.server import create_app

        @web.middleware
        async def record(request: web.Request, handler: Any) -> web.StreamResponse:
            inbox = (
                self.keep_bodies and request.method == "POST" and request.path.endswith("/inbox")
            )
            body = await request.read() if inbox else b""
            self.requests.append(
                SeenRequest(request.method, request.path_qs, dict(request.headers), body)
            )
            response: web.StreamResponse = await handler(request)
            return response

        app = create_app(self.settings)
        app.middlewares.append(record)
        self.server = TestServer(app, host="127.0.0.1", port=self.port)
        await self.server.start_server()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.close()
            self.server = None
