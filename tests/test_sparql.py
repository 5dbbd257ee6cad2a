"""The SPARQL endpoint on real nodes over loopback: the acceptance query (events in the next
30 days from Belgian nodes) on a Dutch node that follows a Belgian one, the protocol's GET
and POST forms, what is refused, and the time and result limits."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from exchange.http.linked_data import LINKED_DATA
from exchange.sparql import BELGIAN_EVENTS_NEXT_30_DAYS
from tests.nodes import PROJECT, RunningNode, eventually, pin, practice

JSON_RESULTS = "application/sparql-results+json"


def event(name: str, start: datetime) -> dict[str, Any]:
    return {
        "type": "Event",
        "nameMap": {"nl": name, "fr": f"{name} (fr)"},
        "startTime": start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "location": {"type": "Place", "nameMap": {"nl": "Zaal"}},
        "organizer": [{"type": "Organization", "nameMap": {"nl": "Organisator"}, "country": "BE"}],
    }


async def sparql_get(
    node: RunningNode, query: str, accept: str = JSON_RESULTS
) -> tuple[int, str, bytes]:
    url = f"{node.base_url}/sparql?{urlencode({'query': query})}"
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers={"Accept": accept}) as response,
    ):
        return response.status, response.content_type, await response.read()


async def sparql_post(
    node: RunningNode, body: str | bytes, content_type: str, accept: str = JSON_RESULTS
) -> tuple[int, str, bytes]:
    headers = {"Content-Type": content_type, "Accept": accept}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{node.base_url}/sparql", data=body, headers=headers) as response,
    ):
        return response.status, response.content_type, await response.read()


def bindings(body: bytes, name: str) -> list[str]:
    import json

    document = json.loads(body)
    return [row[name]["value"] for row in document["results"]["bindings"] if name in row]


@pytest.fixture
async def belgium_and_netherlands(
    tmp_path: Path,
) -> AsyncIterator[tuple[RunningNode, RunningNode, dict[str, str]]]:
    """A Dutch node following a Belgian node; each publishes events around today."""
    dutch = RunningNode(tmp_path / "nl", "Samenwerkende overheid", "NL")
    belgian = RunningNode(tmp_path / "be", "Vlaamse overheid", "BE")
    await dutch.start()
    await belgian.start()
    try:
        await pin(dutch, belgian)
        await pin(belgian, dutch)
        now = datetime.now(UTC)
        outcomes = await belgian.node.publish(
            [
                event("Binnenkort in Gent", now + timedelta(days=3)),
                event("Over drie weken in Brussel", now + timedelta(days=21)),
                event("Na de zomer in Leuven", now + timedelta(days=45)),
                event("Vorige maand in Antwerpen", now - timedelta(days=30)),
                practice(1),
            ]
        )
        names = ("soon", "three", "later", "past", "p")
        ids = {name: o.id for name, o in zip(names, outcomes, strict=True)}
        (own,) = await dutch.node.publish([event("Volgende week in Utrecht", now + timedelta(7))])
        ids["dutch"] = own.id
        await dutch.federation.follow(belgian.base_url)

        async def merged() -> bool:
            return await dutch.node.store.get_object(ids["p"]) is not None

        await eventually(merged)
        yield dutch, belgian, ids
    finally:
        await belgian.stop()
        await dutch.stop()


async def test_belgian_events_in_the_next_30_days_on_a_dutch_node(
    belgium_and_netherlands: tuple[RunningNode, RunningNode, dict[str, str]],
) -> None:
    dutch, belgian, ids = belgium_and_netherlands
    await dutch.server.app[LINKED_DATA].catch_up()
    status, content_type, body = await sparql_get(dutch, BELGIAN_EVENTS_NEXT_30_DAYS)
    assert status == 200
    assert content_type == JSON_RESULTS
    assert bindings(body, "event") == [ids["soon"], ids["three"]]  # soonest first
    assert bindings(body, "name") == ["Binnenkort in Gent", "Over drie weken in Brussel"]
    assert set(bindings(body, "node")) == {belgian.base_url}
    # The same question on the Belgian node itself: its own events count as Belgian too.
    await belgian.server.app[LINKED_DATA].catch_up()
    _, _, own = await sparql_get(belgian, BELGIAN_EVENTS_NEXT_30_DAYS)
    assert bindings(own, "event") == [ids["soon"], ids["three"]]


async def test_the_view_follows_updates_and_deletes_without_being_asked(
    belgium_and_netherlands: tuple[RunningNode, RunningNode, dict[str, str]],
) -> None:
    dutch, belgian, ids = belgium_and_netherlands
    await dutch.server.app[LINKED_DATA].catch_up()
    _, _, body = await sparql_get(dutch, BELGIAN_EVENTS_NEXT_30_DAYS)
    assert bindings(body, "event") == [ids["soon"], ids["three"]]
    soon = await belgian.node.store.get_object(ids["soon"])
    moved = {**soon.body, "startTime": "2001-01-01T10:00:00Z"}
    await belgian.node.publish([moved])  # now in the past
    await belgian.node.delete(ids["three"])

    ask = f"ASK {{ <{ids['three']}> a <https://www.w3.org/ns/activitystreams#Tombstone> }}"

    async def deleted() -> bool:
        return (await sparql_get(dutch, ask))[2] == b'{"head": {}, "boolean": true}'

    await eventually(deleted)  # the background task, woken by the merges
    _, _, body = await sparql_get(dutch, BELGIAN_EVENTS_NEXT_30_DAYS)
    assert bindings(body, "event") == []
    names = f"SELECT ?p WHERE {{ <{ids['three']}> ?p ?o }}"
    _, _, body = await sparql_get(dutch, names)
    assert sorted(bindings(body, "p")) == [
        "http://www.w3.org/1999/02/22-rdf-syntax-ns#type",
        "https://www.w3.org/ns/activitystreams#deleted",
        "https://www.w3.org/ns/activitystreams#formerType",
    ]


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[RunningNode]:
    running = RunningNode(tmp_path / "n", "Knooppunt", "BE", sparql_max_results=3)
    await running.start()
    await running.node.publish([practice(i) for i in range(5)])
    await running.server.app[LINKED_DATA].catch_up()
    yield running
    await running.stop()


COUNT = "SELECT (COUNT(*) AS ?n) WHERE { ?s a <https://w3id.org/exchange/ns#BestPractice> }"


async def test_post_forms_and_result_formats(node: RunningNode) -> None:
    status, _, body = await sparql_post(node, COUNT, "application/sparql-query")
    assert (status, bindings(body, "n")) == (200, ["5"])
    form = urlencode({"query": COUNT})
    status, _, body = await sparql_post(node, form, "application/x-www-form-urlencoded")
    assert (status, bindings(body, "n")) == (200, ["5"])
    status, content_type, body = await sparql_get(node, COUNT, "text/csv")
    assert (status, content_type) == (200, "text/csv")
    assert list(csv.reader(io.StringIO(body.decode()))) == [["n"], ["5"]]
    status, content_type, body = await sparql_get(node, COUNT, "application/sparql-results+xml")
    assert content_type == "application/sparql-results+xml"
    assert (
        b'<binding name="n"><literal datatype="http://www.w3.org/2001/XMLSchema#integer">5' in body
    )
    construct = (
        "CONSTRUCT { ?s a ?t } WHERE { ?s a ?t . "
        "FILTER (?t = <https://w3id.org/exchange/ns#BestPractice>) } LIMIT 2"
    )
    status, content_type, body = await sparql_get(node, construct, "text/turtle")
    assert (status, content_type) == (200, "text/turtle")
    assert body.count(b"exv:BestPractice") == 2
    status, content_type, body = await sparql_get(node, construct, "application/n-triples")
    assert content_type == "application/n-triples"
    assert len(body.strip().splitlines()) == 2


@pytest.mark.parametrize(
    "query",
    [
        "INSERT DATA { <http://a.example/s> <http://a.example/p> 1 }",
        "SELECT * WHERE { SERVICE <http://127.0.0.1:9/sparql> { ?s ?p ?o } }",
        "LOAD <http://127.0.0.1:9/data.ttl>",
        "DROP ALL",
        "SELECT WHERE nonsense",
    ],
    ids=["insert", "service", "load", "drop", "syntax"],
)
async def test_updates_service_and_bad_queries_are_refused(node: RunningNode, query: str) -> None:
    import json

    status, content_type, body = await sparql_get(node, query)
    assert (status, content_type) == (400, "application/problem+json")
    assert json.loads(body)["type"].endswith("/sparql-refused")
    status, _, _ = await sparql_post(node, query, "application/sparql-update")
    assert status == 400


async def test_keywords_inside_strings_and_iris_are_not_refused(node: RunningNode) -> None:
    query = (
        'SELECT ?s WHERE { ?s ?p "SERVICE LOAD" . '
        "?s <http://example.org/service#delete> ?o } # DROP ALL"
    )
    status, _, body = await sparql_get(node, query)
    assert (status, bindings(body, "s")) == (200, [])


async def test_more_results_than_the_limit_are_refused_not_cut(node: RunningNode) -> None:
    import json

    many = "SELECT ?s WHERE { ?s a <https://w3id.org/exchange/ns#BestPractice> }"
    status, _, body = await sparql_get(node, many)
    assert status == 400
    assert "more than 3 solutions" in json.loads(body)["detail"]
    status, _, body = await sparql_get(node, many + " LIMIT 3")
    assert (status, len(bindings(body, "s"))) == (200, 3)


async def test_a_query_past_the_time_limit_is_answered_503_and_the_node_keeps_serving(
    tmp_path: Path,
) -> None:
    import json

    running = RunningNode(
        tmp_path / "n", "Knooppunt", "BE", sparql_timeout_s=0.3, sparql_max_results=10**7
    )
    await running.start()
    try:
        await running.node.publish([practice(i) for i in range(150)])
        await running.server.app[LINKED_DATA].catch_up()
        # A cross join of every triple with itself, three times: billions of solutions.
        slow = "SELECT * WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i }"
        started = asyncio.get_running_loop().time()
        slow_task = asyncio.create_task(sparql_get(running, slow))
        await asyncio.sleep(0.05)
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{running.base_url}/checkpoint") as response,
        ):
            assert response.status == 200  # served while the query runs
        status, content_type, body = await slow_task
        assert asyncio.get_running_loop().time() - started < 3
        assert (status, content_type) == (503, "application/problem+json")
        assert json.loads(body)["type"].endswith("/sparql-timeout")
    finally:
        await running.stop()


def test_the_decisions_give_the_acceptance_query_verbatim() -> None:
    decisions = (PROJECT / "docs" / "decisions.md").read_text(encoding="utf-8")
    assert BELGIAN_EVENTS_NEXT_30_DAYS in decisions
