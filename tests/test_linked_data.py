"""Linked data: the RDF of objects (same graph as rdflib's reading with the shipped
contexts), content negotiation on /objects, the view following the store (and built
again at start), erasure leaving no content, and ``exchange export --format``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pyoxigraph as ox
import pytest
from rdflib import Graph
from rdflib.compare import isomorphic

from exchange import rdf
from exchange.cli import main
from exchange.config import load_settings
from exchange.entries import ObjectRecord
from exchange.http.linked_data import LINKED_DATA, rdf_bytes
from exchange.rdf_view import RdfView
from exchange.resources import CONTEXT_IRIS
from exchange.store.sqlite import SQLiteStore
from tests.nodes import EXAMPLES, RunningNode, example, make_node, practice

ALL_TRIPLES = "SELECT (COUNT(*) AS ?n) WHERE { ?s ?p ?o }"


def _graph_of(quads: list[ox.Quad]) -> Graph:
    lines = "".join(f"{q.subject} {q.predicate} {q.object} .\n" for q in quads)
    return Graph().parse(data=lines, format="nt")


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.json")), ids=lambda p: p.stem)
def test_oxigraph_reads_every_example_as_rdflib_does(path: Path) -> None:
    document = json.loads(path.read_text())
    body = {k: v for k, v in document.items() if k != "@context"}
    quads = rdf.object_quads([body])
    assert {q.graph_name for q in quads} == {ox.NamedNode(body["id"])}
    assert isomorphic(_graph_of(quads), rdf.to_graph(document))


def test_an_unshipped_context_is_refused_not_fetched() -> None:
    body = {**example("case-doetank-milieu-initiatieven"), "id": "https://a.example/objects/x"}
    body["@context"] = "https://evil.example/context.jsonld"
    with pytest.raises(rdf.IntegrityError):
        rdf.object_quads([body])


def _record(body: dict[str, Any], *, deleted: bool = False) -> ObjectRecord:
    return ObjectRecord(body["id"], "https://a.example", body["type"], 1, deleted, 0, body)


def test_the_view_replaces_an_object_as_a_unit_and_keeps_a_bare_tombstone() -> None:
    view = RdfView()
    first = {**example("case-doetank-milieu-initiatieven"), "id": "https://a.example/objects/c"}
    view.apply([(1, _record(first)), (2, _record({**practice(1), "id": "https://a.example/p"}))])
    before = len(view.store)
    view.apply([(3, _record({**first, "nameMap": {"en": "Renamed"}}))])
    names = [q.object.value for q in view.store.quads_for_pattern(None, rdf_name(), None)]
    assert "Renamed" in names
    assert "Milieu-initiatieven" not in " ".join(names)
    assert len(view.store) < before  # the old names left with the old graph
    tombstone = {"id": first["id"], "type": "Tombstone", "deleted": "2026-01-01T00:00:00Z"}
    view.apply([(4, ObjectRecord(first["id"], "x", "Case", 1, True, 5, tombstone))])
    graph = ox.NamedNode(first["id"])
    left = {
        (q.predicate.value, str(q.object))
        for q in view.store.quads_for_pattern(None, None, None, graph)
    }
    assert left == {
        ("http://www.w3.org/1999/02/22-rdf-syntax-ns#type", f"<{rdf.AS}Tombstone>"),
        (f"{rdf.AS}formerType", f"<{rdf.EXV}Case>"),
        (f"{rdf.AS}deleted", '"2026-01-01T00:00:00Z"^^<http://www.w3.org/2001/XMLSchema#dateTime>'),
    }
    assert view.applied == 4


def rdf_name() -> ox.NamedNode:
    return ox.NamedNode(f"{rdf.AS}name")


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[RunningNode]:
    running = RunningNode(tmp_path / "n", "Vlaamse overheid", "BE")
    await running.start()
    yield running
    await running.stop()


async def _get(url: str, accept: str | None) -> tuple[int, str, bytes, Any]:
    headers = {"Accept": accept} if accept else {}
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        return response.status, response.content_type, await response.read(), response.headers


async def test_an_object_by_content_negotiation(node: RunningNode) -> None:
    (outcome,) = await node.node.publish([example("event-reuring-cafe-115")])
    url = outcome.id
    status, content_type, body, headers = await _get(url, "text/turtle")
    assert (status, content_type) == (200, "text/turtle")
    assert "Accept" in headers["Vary"]
    graph = Graph().parse(data=body.decode(), format="turtle")
    record = await node.node.store.get_object(outcome.id)
    expected = rdf.to_graph({"@context": list(CONTEXT_IRIS), **record.body})
    assert isomorphic(graph, expected)
    status, content_type, body, _ = await _get(url, "application/n-triples")
    assert content_type == "application/n-triples"
    assert isomorphic(Graph().parse(data=body.decode(), format="nt"), expected)
    status, content_type, body, _ = await _get(url, "application/ld+json")
    assert content_type == "application/ld+json"
    assert json.loads(body) == {"@context": list(CONTEXT_IRIS), **record.body}
    # JSON (and no preference) is the signed entry, as before.
    for accept in (None, "application/activity+json", "*/*"):
        status, content_type, body, _ = await _get(url, accept)
        assert (status, content_type) == (200, "application/activity+json")
        assert json.loads(body)["object"] == record.body


async def test_the_object_list_as_rdf_pages_with_a_link_header(node: RunningNode) -> None:
    outcomes = await node.node.publish([practice(i) for i in range(3)])
    url = f"{node.base_url}/objects?type=BestPractice&limit=2"
    status, content_type, body, headers = await _get(url, "application/n-triples")
    assert (status, content_type) == (200, "application/n-triples")
    subjects = {line.split(" ", 1)[0].strip("<>") for line in body.decode().splitlines()}
    ids = sorted(o.id for o in outcomes)
    assert set(ids[:2]) <= subjects
    assert ids[2] not in subjects
    assert headers["Link"].endswith('>; rel="next"')
    next_url = headers["Link"][1:].split(">", 1)[0]
    _, _, body, headers = await _get(next_url, "application/ld+json")
    document = json.loads(body)
    assert document["@context"] == list(CONTEXT_IRIS)
    assert [member["@id"] for member in document["@graph"]] == [ids[2]]
    assert "Link" not in headers
    status, content_type, body, _ = await _get(url, "application/json")
    assert content_type == "application/json"
    assert len(json.loads(body)["items"]) == 2


async def _triples(node: RunningNode) -> int:
    answer = await node.server.app[LINKED_DATA].query(ALL_TRIPLES)
    (row,) = answer.rows
    return int(row[0].value)


async def test_the_view_is_built_again_at_start_without_duplicates(node: RunningNode) -> None:
    await node.node.publish([example("event-reuring-cafe-115"), practice(1)])
    await node.server.app[LINKED_DATA].catch_up()
    before = await _triples(node)
    assert before > 100
    await node.stop()
    await node.start()
    await node.server.app[LINKED_DATA].catch_up()
    assert await _triples(node) == before
    await node.server.app[LINKED_DATA].catch_up()  # nothing new: nothing applied twice
    assert await _triples(node) == before


async def test_sparql_waits_for_the_first_build(node: RunningNode) -> None:
    linked = node.server.app[LINKED_DATA]
    async with linked._catching_up:  # the background task cannot finish a build meanwhile
        linked.built = False
        status, content_type, body, _ = await _get(
            f"{node.base_url}/sparql?query=ASK%7B%7D", "application/sparql-results+json"
        )
    assert (status, content_type) == (503, "application/problem+json")
    assert json.loads(body)["type"].endswith("/sparql-unavailable")
    await linked.catch_up()
    status, _, body, _ = await _get(f"{node.base_url}/sparql?query=ASK%7B%7D", None)
    assert (status, json.loads(body)["boolean"]) == (200, True)


async def test_an_erased_object_leaves_the_view_and_no_file_holds_it(node: RunningNode) -> None:
    marker = "Zwaluwstaart-9921-persoonsgegeven"
    secret = {**practice(7), "summaryMap": {"en": f"Ask {marker} how it went."}}
    (outcome,) = await node.node.publish([secret])
    linked = node.server.app[LINKED_DATA]
    await linked.catch_up()
    find = f'ASK {{ ?s ?p ?o FILTER (CONTAINS(STR(?o), "{marker}")) }}'
    assert (await linked.query(find)).boolean
    await node.node.erase(outcome.id, "Personal data published without consent")
    await linked.catch_up()
    assert not (await linked.query(find)).boolean
    left = await linked.query(f"SELECT ?p WHERE {{ <{outcome.id}> ?p ?o }}")
    assert len(left.rows) == 3  # type Tombstone, formerType, deleted
    home = node.settings.home
    assert [p for p in home.rglob("*") if p.is_file() and marker.encode() in p.read_bytes()] == []


def _export(home: Path, *args: str) -> int:
    return main(["export", "--home", str(home), *args])


def test_export_writes_the_whole_view_in_each_format(tmp_path: Path) -> None:
    import asyncio

    from exchange.node import open_node

    home = tmp_path / "n"
    make_node(home)
    settings = load_settings(home, {})

    async def publish() -> str:
        async with open_node(settings) as node:
            await node.publish([example("event-reuring-cafe-115"), practice(1), practice(2)])
            (gone,) = await node.publish([practice(3)])
            await node.delete(gone.id)
            return gone.id

    gone = asyncio.run(publish())
    outputs = {}
    for name in ("turtle", "ntriples", "nquads", "jsonld"):
        out = tmp_path / f"view.{name}"
        assert _export(home, "--format", name, "--out", str(out)) == 0
        outputs[name] = out.read_bytes()
    turtle = Graph().parse(data=outputs["turtle"].decode(), format="turtle")
    ntriples = Graph().parse(data=outputs["ntriples"].decode(), format="nt")
    assert isomorphic(turtle, ntriples)
    subjects = {str(s) for s in ntriples.subjects()}
    assert gone not in subjects  # deleted objects are not exported
    assert settings.base_url in subjects  # the node itself, with its country
    assert (None, rdf.EXV.country, None) in ntriples
    quads = list(ox.parse(outputs["nquads"], format=ox.RdfFormat.N_QUADS))
    assert len({q.graph_name for q in quads}) == 4  # three objects and the node
    document = json.loads(outputs["jsonld"])
    assert document["@context"] == list(CONTEXT_IRIS)
    inline = rdf._with_shipped_contexts(document)
    from_jsonld = list(ox.parse(json.dumps(inline).encode(), format=ox.RdfFormat.JSON_LD))
    # JSON-LD is the objects as signed: the same triples, less the implied cv:PublicEvent.
    assert len(from_jsonld) == len(quads) - 1
    assert _export(home, "--format", "turtle", "--out", str(tmp_path / "view.turtle")) == 2
    assert _export(home, "--format", "turtle", "--bundle", str(tmp_path / "b.gz")) == 2
    assert _export(home) == 2


async def test_migration_numbers_existing_objects_for_the_view(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "db.sqlite")
    await store.open()
    try:
        assert await store.last_change() == 0
        assert await store.changed_objects(0, 10) == []
    finally:
        await store.close()


def test_sparql_limits_come_from_the_config_and_the_environment(tmp_path: Path) -> None:
    home = tmp_path / "n"
    make_node(home)
    settings = load_settings(home, {})
    assert (settings.sparql_timeout_s, settings.sparql_max_results) == (5.0, 10_000)
    with open(home / "exchange.toml", "a") as config:
        config.write("\n[sparql]\ntimeout_s = 2.5\nmax_results = 500\n")
    settings = load_settings(home, {"EXCHANGE_SPARQL_TIMEOUT_S": "1.5"})
    assert (settings.sparql_timeout_s, settings.sparql_max_results) == (1.5, 500)
    from exchange.errors import UsageError

    with pytest.raises(UsageError):
        load_settings(home, {"EXCHANGE_SPARQL_TIMEOUT_S": "0"})
    with pytest.raises(UsageError):
        load_settings(home, {"EXCHANGE_SPARQL_MAX_RESULTS": "lots"})


def test_rdf_bytes_of_a_page_is_one_jsonld_graph_per_object() -> None:
    bodies = [{**practice(i), "id": f"https://a.example/objects/p{i}"} for i in range(2)]
    document = json.loads(rdf_bytes([_record(b) for b in bodies], "application/ld+json"))
    assert [m["@id"] for m in document["@graph"]] == [b["id"] for b in bodies]
