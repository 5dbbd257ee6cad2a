"""``GET B/openapi.json``: it describes every route of the app and nothing else, and the
read-only endpoints of a running node (with published and merged content) conform to it,
as schemathesis checks over real loopback HTTP."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from exchange.federation import fetch_node_document, partner_from_document
from exchange.http.openapi import openapi_document
from exchange.http.server import create_app
from tests.nodes import RunningNode, example, make_node, practice

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
#: Examples per operation: with 16 read-only operations this stays well under a minute.
MAX_EXAMPLES = 30


def documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }


def routed(settings: Any) -> set[tuple[str, str]]:
    app = create_app(settings, run_background=False)
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None  # HEAD comes with GET
    }


@pytest.mark.parametrize("base_url", ["http://127.0.0.1:8080", "https://gov.example/exchange/v1"])
def test_every_route_is_documented_and_every_documented_route_exists(
    base_url: str, tmp_path: Path
) -> None:
    result = make_node(tmp_path, base_url=base_url)
    document = openapi_document(base_url, result.settings.path_prefix)
    assert document["openapi"] == "3.1.0"
    assert documented(document) == routed(result.settings)
    (server,) = document["servers"]
    assert base_url.startswith(server["url"])
    assert ("GET", "/.well-known/exchange") in documented(document)


def test_every_error_response_is_problem_json() -> None:
    """Problem+json everywhere, but for the pages people read (portal, login): an unknown
    object or a wrong token there is answered with a page in their language."""
    document = openapi_document("http://127.0.0.1:8080", "")
    html_errors = set()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if int(status) < 400:
                    continue
                if list(response["content"]) == ["text/html"]:
                    assert path.startswith(("/portal", "/admin/login")), (method, path, status)
                    html_errors.add((path, status))
                    continue
                assert list(response["content"]) == ["application/problem+json"], (
                    method,
                    path,
                    status,
                )
    assert ("/portal/object", "404") in html_errors


class ServedPair:
    """Two federating nodes on real loopback ports, served from a thread of their own so
    that schemathesis' blocking HTTP client can call them."""

    def __init__(self, tmp_path: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.dutch = RunningNode(tmp_path / "nl", "Samenwerkende overheid", "NL")
        self.flemish = RunningNode(tmp_path / "be", "Vlaamse overheid", "BE")

    def run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=60)

    async def _start(self) -> None:
        for node in (self.dutch, self.flemish):
            await node.start()
        for subscriber, publisher in ((self.flemish, self.dutch), (self.dutch, self.flemish)):
            document = await fetch_node_document(subscriber.federation.fetcher, publisher.base_url)
            partner = partner_from_document(document, datetime.now(UTC))
            await subscriber.node.store.put_partner(partner)
        await self.dutch.node.publish(
            [example("case-doetank-milieu-initiatieven"), example("event-reuring-cafe-115")]
        )
        (gone,) = await self.flemish.node.publish([practice(2)])
        await self.flemish.node.publish([practice(1)])
        await self.flemish.node.delete(gone.id)
        await self.flemish.federation.follow(self.dutch.base_url)
        await self.flemish.federation.sync(self.dutch.base_url)

    async def _stop(self) -> None:
        for node in (self.flemish, self.dutch):
            await node.stop()

    def __enter__(self) -> ServedPair:
        self.thread.start()
        self.run(self._start())
        return self

    def __exit__(self, *_: object) -> None:
        self.run(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedPair]:
    with ServedPair(tmp_path_factory.mktemp("served")) as pair:
        yield pair


def test_the_served_document_is_the_built_one(served: ServedPair) -> None:
    node = served.flemish
    response = requests.get(f"{node.base_url}/openapi.json", timeout=10)
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == openapi_document(node.base_url, "")
    listing = requests.get(f"{node.base_url}/objects", timeout=10).json()
    assert {item["verification"] for item in listing["items"]} == {"own", "verified"}


def read_only_operations(served: ServedPair) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{served.flemish.base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    return [op for op in operations if op.method.upper() == "GET"]


def check(operation: Any, base_url: str) -> set[int]:
    """Run schemathesis' generated cases of one operation; the statuses it was answered."""
    statuses: set[int] = set()

    @given(case=operation.as_strategy())
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def conforms(case: Any) -> None:
        response = case.call(base_url=base_url, timeout=10)
        case.validate_response(response, checks=CHECKS)
        statuses.add(response.status_code)

    conforms()
    return statuses


def test_read_only_endpoints_conform_to_the_document(served: ServedPair) -> None:
    operations = read_only_operations(served)
    gets = {
        path
        for method, path in documented(openapi_document(served.flemish.base_url, ""))
        if method == "GET"
    }
    # schemathesis leaves out the operation that serves the schema it loaded.
    assert {operation.path for operation in operations} == gets - {"/openapi.json"}
    answered = {op.path: check(op, served.flemish.base_url) for op in operations}
    # An operation without parameters in its path answered with success, not only problems.
    for path, statuses in answered.items():
        # Those needing an IRI, a query or the operator (the token) that random input lacks
        # are left out.
        unguessable = ("proof", "by-id", "/portal/object", "/sparql", "/admin/", "/metrics")
        if "{" not in path and not any(part in path for part in unguessable):
            assert 200 in statuses, (path, statuses)
