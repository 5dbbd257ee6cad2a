"""The RDF view of the merged store: an Oxigraph store held in memory.

Each content object (own or merged) is the named graph of its own IRI, so that an update
replaces it and a delete or an erasure removes it as a unit; a deleted object leaves a
bare ``as:Tombstone`` (its former type and deletion time, nothing else). Each origin node
is the named graph of its base URL: ``as:Service``, ``exv:country``, ``as:name``.

The view follows the objects table, off the ingest path: every write of an object row
takes the next value of a change counter in the same transaction (store migration 4), and
:func:`catch_up` applies the rows past the counter the view reached, in batches, from a
background task of the server. At start the view is built from the objects table.

Why in memory and not on disk: Oxigraph's disk store (RocksDB) never deletes the strings
it has stored (literals longer than a few bytes live in a string table that removing
quads does not touch; compaction keeps them), so an erased name would stay in the files
under the node's home. The objects table is the durable state; the view is derived from
it, and a view that lives in the process leaves nothing behind (docs/decisions.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO

import orjson
import pyoxigraph as ox

from exchange.entries import ObjectRecord
from exchange.errors import ExchangeError, QueryRefused, QueryTimeout
from exchange.partners import Partner
from exchange.rdf import (
    CONTENT_TYPES,
    PREFIXES,
    NodeFacts,
    extra_quads,
    node_quads,
    object_quads,
    view_document,
)
from exchange.sparql import Answer, check_read_only

__all__ = [
    "BATCH",
    "EXPORT_FORMATS",
    "RdfView",
    "catch_up",
    "export_view",
    "node_facts",
    "quads_of",
]

_log = logging.getLogger(__name__)
#: Object rows applied per batch (one store transaction each).
BATCH = 1000
_CHECK_EVERY = 64  # solutions between two looks at the clock


def node_facts(
    base_url: str, country: str, language: str, name: str, partners: Iterable[Partner]
) -> list[NodeFacts]:
    """The node itself (from its settings) and every approved partner, with the country
    and names of its pinned node document."""
    facts = [NodeFacts(base_url, country, {language: name})]
    for partner in partners:
        if not partner.approved:
            continue
        document = partner.document
        names = document.get("nameMap")
        if not isinstance(names, Mapping) or not names:
            names = {"": partner.name}
        facts.append(
            NodeFacts(
                partner.base_url,
                str(document.get("country") or partner.country),
                {str(k): str(v) for k, v in names.items()},
            )
        )
    return facts


def _bodies(records: Sequence[ObjectRecord]) -> list[Mapping[str, Any]]:
    """What the view holds of each record: the object, or a bare tombstone."""
    bodies: list[Mapping[str, Any]] = []
    for record in records:
        if record.deleted:
            tombstone = {"id": record.id, "type": "Tombstone", "formerType": record.type}
            if isinstance(record.body.get("deleted"), str):
                tombstone["deleted"] = record.body["deleted"]
            bodies.append(tombstone)
        else:
            bodies.append(record.body)
    return bodies


class RdfView:
    """The Oxigraph store of the merged view, in memory.

    Writes run on one thread (``writer``); queries each on a daemon thread of their own, at
    most ``query_workers`` at once (:class:`exchange.http.linked_data.LinkedData` counts
    them). Oxigraph releases the GIL while it evaluates, so the event loop keeps serving.
    """

    def __init__(self, *, query_workers: int = 2) -> None:
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rdf-write")
        self.query_workers = query_workers
        self.store = ox.Store()
        self._applied = 0
        self._nodes = ""

    @property
    def applied(self) -> int:
        """The change counter of the last object row the view holds."""
        return self._applied

    def reset(self) -> None:
        """Drop everything: the view is built again from the objects table."""
        self.store.clear()
        self._applied = 0
        self._nodes = ""

    def close(self) -> None:
        """Stop writing. A query still running keeps the store until it ends."""
        self.writer.shutdown(wait=True)

    # --- writes (on the writer thread) -------------------------------------------------

    def set_nodes(self, nodes: Sequence[NodeFacts]) -> bool:
        """Replace the graphs of origin nodes when their facts changed; True if they did."""
        fingerprint = orjson.dumps(
            [[n.base_url, n.country, sorted(n.names.items())] for n in nodes]
        ).decode()
        if fingerprint == self._nodes:
            return False
        old = json.loads(self._nodes) if self._nodes else []
        for base_url, *_ in old:
            self.store.remove_graph(ox.NamedNode(base_url))
        self.store.extend(node_quads(nodes))
        self._nodes = fingerprint
        return True

    def apply(self, changes: Sequence[tuple[int, ObjectRecord]]) -> None:
        """Apply changed object rows (counter order): each object's graph is replaced by
        its current state, in one transaction, so a query sees the old or the new state of
        a batch, never a gap. Rows of other types (the node document) are skipped."""
        if not changes:
            return
        latest: dict[str, ObjectRecord] = {}
        for _, record in changes:
            latest[record.id] = record
        records = [r for r in latest.values() if r.type in CONTENT_TYPES]
        if self._applied == 0:  # an empty view (at start): load at speed
            self._load(_bodies(records))
        else:
            self._replace(records)
        self._applied = changes[-1][0]

    def _replace(self, records: Sequence[ObjectRecord]) -> None:
        """One SPARQL update: drop each record's graph, insert its current quads."""
        graphs: dict[str, list[str]] = {}
        for quad in quads_of(records):
            graphs.setdefault(str(quad.graph_name), []).append(
                f"{quad.subject} {quad.predicate} {quad.object} ."
            )
        operations = [f"DROP SILENT GRAPH <{record.id}>" for record in records]
        inserts = " ".join(f"GRAPH {g} {{ {' '.join(lines)} }}" for g, lines in graphs.items())
        if inserts:
            operations.append(f"INSERT DATA {{ {inserts} }}")
        if operations:
            self.store.update(" ;\n".join(operations))

    def _load(self, bodies: Sequence[Mapping[str, Any]]) -> None:
        if not bodies:
            return
        try:
            self.store.load(orjson.dumps(view_document(bodies)), format=ox.RdfFormat.JSON_LD)
        except (SyntaxError, ValueError):
            if len(bodies) == 1:
                _log.warning(
                    "object %s is not valid JSON-LD: left out of the RDF view", bodies[0].get("id")
                )
                return
            for body in bodies:  # find the one object that spoils the batch
                self._load([body])
            return
        self.store.extend(extra_quads(bodies))

    # --- queries (on a reader thread) --------------------------------------------------

    def query(
        self,
        text: str,
        *,
        deadline: float,
        max_results: int,
        default_graphs: Sequence[str] = (),
        named_graphs: Sequence[str] = (),
    ) -> Answer:
        """Run a read-only query over the union of every graph (or the graphs named).

        Raises QueryRefused for a refused or invalid query and for more than
        ``max_results`` solutions or triples; QueryTimeout once ``deadline``
        (time.monotonic) is past.
        """
        check_read_only(text)
        failure: tuple[type[ExchangeError], str] | None = None
        try:
            return self._evaluate(text, deadline, max_results, default_graphs, named_graphs)
        except ExchangeError as error:
            failure = (type(error), error.detail)
        # Raised afresh, outside the evaluation's frames: Oxigraph's result iterators must
        # be dropped on this thread, not kept alive by a traceback handed to another.
        raise failure[0](failure[1])

    def _evaluate(
        self,
        text: str,
        deadline: float,
        max_results: int,
        default_graphs: Sequence[str],
        named_graphs: Sequence[str],
    ) -> Answer:
        options: dict[str, Any] = {}
        if default_graphs:
            options["default_graph"] = [ox.NamedNode(iri) for iri in default_graphs]
        else:
            options["use_default_graph_as_union"] = True
        if named_graphs:
            options["named_graphs"] = [ox.NamedNode(iri) for iri in named_graphs]
        try:
            result = self.store.query(text, **options)
            if isinstance(result, ox.QueryBoolean):
                return Answer("boolean", boolean=bool(result))
            if isinstance(result, ox.QuerySolutions):
                variables = tuple(v.value for v in result.variables)
                rows = _collect(
                    (tuple(solution[v] for v in variables) for solution in result),
                    deadline,
                    max_results,
                    "solutions",
                )
                return Answer("solutions", variables, rows)
            triples = _collect(iter(result), deadline, max_results, "triples")
            return Answer("graph", triples=triples)
        except (SyntaxError, ValueError, OSError) as error:
            raise QueryRefused(f"the query did not run: {error}") from None


def _collect(items: Any, deadline: float, limit: int, what: str) -> list[Any]:
    collected: list[Any] = []
    for count, item in enumerate(items, start=1):
        if count > limit:
            raise QueryRefused(
                f"the query has more than {limit} {what}, this node's limit; "
                f"add LIMIT {limit} (and OFFSET to page) or narrow it"
            )
        collected.append(item)
        if count % _CHECK_EVERY == 0 and time.monotonic() > deadline:
            raise QueryTimeout("the query ran past this node's time limit")
    if time.monotonic() > deadline:
        raise QueryTimeout("the query ran past this node's time limit")
    return collected


async def catch_up(store: Any, view: RdfView, nodes: Sequence[NodeFacts]) -> int:
    """Apply every object row written since the view's counter, in batches, on the view's
    writer thread; returns how many rows were applied."""
    loop = asyncio.get_running_loop()
    last = await store.last_change()
    if last < view.applied:  # the objects table is not the one the view was built from
        _log.warning("the RDF view is ahead of the store (%d > %d): rebuilding", view.applied, last)
        await loop.run_in_executor(view.writer, view.reset)
    await loop.run_in_executor(view.writer, view.set_nodes, nodes)
    applied = 0
    while True:
        changes = await store.changed_objects(view.applied, BATCH)
        if not changes:
            break
        await loop.run_in_executor(view.writer, view.apply, changes)
        applied += len(changes)
    return applied


def quads_of(records: Sequence[ObjectRecord]) -> list[ox.Quad]:
    """The quads of records as the view holds them (for one response or an export)."""
    bodies = _bodies([r for r in records if r.type in CONTENT_TYPES])
    try:
        return object_quads(bodies)
    except (SyntaxError, ValueError):
        quads: list[ox.Quad] = []
        for body in bodies:
            try:
                quads += object_quads([body])
            except (SyntaxError, ValueError):
                _log.warning("object %s is not valid JSON-LD: left out", body.get("id"))
        return quads


#: ``exchange export --format``: name -> (Oxigraph format, or None for compact JSON-LD).
EXPORT_FORMATS: dict[str, ox.RdfFormat | None] = {
    "jsonld": None,
    "turtle": ox.RdfFormat.TURTLE,
    "ntriples": ox.RdfFormat.N_TRIPLES,
    "nquads": ox.RdfFormat.N_QUADS,
}


async def export_view(
    store: Any, nodes: Sequence[NodeFacts], format_name: str, out: BinaryIO
) -> int:
    """Write the whole merged view (undeleted content objects, own and merged, and the
    origin nodes) to ``out``, reading the objects table in batches; returns how many
    objects were written. JSON-LD is compact, with the shipped context IRIs: a ``@graph``
    of named graphs, one per object and per node, as the view holds them. Turtle and
    N-Triples hold the union of the graphs; N-Quads keeps them."""
    rdf_format = EXPORT_FORMATS[format_name]
    loop = asyncio.get_running_loop()
    written, after, first = 0, 0, True
    if rdf_format is None:
        context = orjson.dumps(view_document([], inline=False)["@context"])
        out.write(b'{"@context":' + context + b',"@graph":[')
        for facts in nodes:
            out.write(b"" if first else b",")
            out.write(orjson.dumps({"@id": facts.base_url, "@graph": [_node_object(facts)]}))
            first = False
    else:
        out.write(_serialized(node_quads(nodes), rdf_format))
    while True:
        changes = await store.changed_objects(after, BATCH)
        if not changes:
            break
        after = changes[-1][0]
        records = [r for _, r in changes if r.type in CONTENT_TYPES and not r.deleted]
        written += len(records)
        if rdf_format is None:
            for member in view_document([r.body for r in records], inline=False)["@graph"]:
                out.write((b"" if first else b",") + orjson.dumps(member))
                first = False
        else:
            quads = await loop.run_in_executor(None, quads_of, records)
            out.write(_serialized(quads, rdf_format))
    if rdf_format is None:
        out.write(b"]}\n")
    return written


def _node_object(facts: NodeFacts) -> dict[str, Any]:
    names = {k: v for k, v in facts.names.items() if k}
    node: dict[str, Any] = {"id": facts.base_url, "type": "Service", "country": facts.country}
    if names:
        node["nameMap"] = names
    elif facts.names:
        node["name"] = next(iter(facts.names.values()))
    return node


def _serialized(quads: Sequence[ox.Quad], rdf_format: ox.RdfFormat) -> bytes:
    if rdf_format.supports_datasets:
        written = ox.serialize(quads, format=rdf_format, prefixes=PREFIXES)
    else:
        triples = [ox.Triple(q.subject, q.predicate, q.object) for q in quads]
        written = ox.serialize(triples, format=rdf_format, prefixes=PREFIXES)
    assert written is not None  # no output file given: the bytes are returned
    return written
