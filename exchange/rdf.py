"""The RDF view of exchange documents, built from shipped files only.

``to_graph`` reads a content object (a Case, Event or BestPractice) as JSON-LD. Every
``@context`` IRI is swapped for the context document the package ships *before* rdflib
sees the document, so nothing is ever fetched: a context IRI we do not ship, or a context
written inline, is an :class:`~exchange.errors.IntegrityError` (protocol.md §1, §3).
Objects embedded in log entries carry no ``@context``; they are read with the entry's
fixed one, :data:`exchange.resources.CONTEXT_IRIS`.

The view adds one fact the JSON leaves implicit: every ``as:Event`` is also a
``cv:PublicEvent`` of the Core Public Event Vocabulary (vocab/exchange.ttl says so).

``vocabulary_graph`` and ``shapes_graph`` load vocab/exchange.ttl and vocab/shapes.ttl.

The merged view (the RDF store behind ``/sparql``, the RDF representations of
``/objects`` and ``exchange export``) is built with Oxigraph, 10x faster than rdflib
(docs/decisions.md, "Linked data and SPARQL"): ``view_document`` is one JSON-LD document
holding a batch of objects, each in the named graph of its own IRI, with the shipped
contexts written inline; ``object_quads`` parses it; ``extra_quads`` adds what JSON-LD
cannot say (the ``cv:PublicEvent`` type, tombstones); ``node_quads`` says which country
each origin node is in.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import orjson
import pyoxigraph as ox
from rdflib import Graph, Namespace
from rdflib.namespace import RDF

from exchange import resources
from exchange.errors import IntegrityError, ResourceMissing

__all__ = [
    "AS",
    "CONTENT_TYPES",
    "CV",
    "EXV",
    "PREFIXES",
    "NodeFacts",
    "extra_quads",
    "node_quads",
    "object_quads",
    "shapes_graph",
    "to_graph",
    "view_document",
    "vocabulary_graph",
]

AS = Namespace("https://www.w3.org/ns/activitystreams#")
CV = Namespace("http://data.europa.eu/m8g/")
EXV = Namespace("https://w3id.org/exchange/ns#")

_CONTEXT_KEY = "@context"


def to_graph(document: Mapping[str, Any]) -> Graph:
    """The RDF graph of a content object, read with shipped contexts only.

    Raises IntegrityError when a ``@context`` anywhere in ``document`` names an IRI
    the package does not ship, or is not a list of IRIs.
    """
    resolved = _with_shipped_contexts(dict(document))
    if _CONTEXT_KEY not in resolved:
        resolved[_CONTEXT_KEY] = _shipped_contexts(list(resources.CONTEXT_IRIS))
    graph = Graph()
    graph.parse(data=json.dumps(resolved), format="json-ld")
    _type_events_as_public_events(graph)
    return graph


def vocabulary_graph() -> Graph:
    """The exchange vocabulary, vocab/exchange.ttl."""
    return _shipped_turtle("exchange.ttl")


def shapes_graph() -> Graph:
    """The SHACL shapes of the three content types, vocab/shapes.ttl."""
    return _shipped_turtle("shapes.ttl")


def _with_shipped_contexts(node: Any) -> Any:
    """``node`` with every ``@context``, at any depth, replaced by the shipped documents."""
    if isinstance(node, list):
        return [_with_shipped_contexts(item) for item in node]
    if not isinstance(node, Mapping):
        return node
    resolved: dict[str, Any] = {}
    for key, value in node.items():
        if key == _CONTEXT_KEY:
            resolved[key] = _shipped_contexts(value)
        else:
            resolved[key] = _with_shipped_contexts(value)
    return resolved


def _shipped_contexts(value: Any) -> list[Any]:
    """The inner ``@context`` of each shipped document a context value names, in order."""
    iris = [value] if isinstance(value, str) else value
    if not isinstance(iris, list) or not iris:
        raise IntegrityError("@context must be an IRI or a non-empty list of IRIs")
    return [_shipped_context(iri) for iri in iris]


def _shipped_context(iri: Any) -> Any:
    if not isinstance(iri, str):
        raise IntegrityError("an inline @context is not accepted; name a shipped context IRI")
    if iri not in resources.CONTEXT_FILES:
        raise IntegrityError(f"@context {iri} is not shipped with exchange and is never fetched")
    return resources.context_document(iri)[_CONTEXT_KEY]


def _type_events_as_public_events(graph: Graph) -> None:
    for event in set(graph.subjects(RDF.type, AS.Event)):
        graph.add((event, RDF.type, CV.PublicEvent))


def _shipped_turtle(filename: str) -> Graph:
    source = resources.data_dir("vocab").joinpath(filename)
    if not source.is_file():
        raise ResourceMissing(f"vocab/{filename} is missing from the installed package")
    graph = Graph()
    graph.parse(data=source.read_text(encoding="utf-8"), format="turtle")
    return graph


# --- the merged view, with Oxigraph ------------------------------------------------------

#: The types of content objects; only they (and their tombstones) enter the view.
CONTENT_TYPES = frozenset(("Case", "Event", "BestPractice"))
#: Prefixes written in Turtle output.
PREFIXES = {
    "as": str(AS),
    "cv": str(CV),
    "exv": str(EXV),
    "dct": "http://purl.org/dc/terms/",
    "locn": "http://www.w3.org/ns/locn#",
    "schema": "http://schema.org/",
    "skos": "http://www.w3.org/2004/02/skos/core#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
}
_RDF_TYPE = ox.NamedNode("http://www.w3.org/1999/02/22-rdf-syntax-ns#type")
_AS_EVENT = ox.NamedNode(f"{AS}Event")
_PUBLIC_EVENT = ox.NamedNode(f"{CV}PublicEvent")
_TYPE_IRIS = {"Case": f"{EXV}Case", "Event": f"{AS}Event", "BestPractice": f"{EXV}BestPractice"}
_DATE_TIME = ox.NamedNode("http://www.w3.org/2001/XMLSchema#dateTime")


@dataclass(frozen=True, slots=True)
class NodeFacts:
    """What the view says about an origin node: its country (ISO 3166-1 alpha-2, from its
    pinned node document, or the settings for the node itself) and its names by language."""

    base_url: str
    country: str
    names: Mapping[str, str]


@cache
def _inline_contexts() -> tuple[Any, ...]:
    return tuple(_shipped_contexts(list(resources.CONTEXT_IRIS)))


def view_document(bodies: Iterable[Mapping[str, Any]], *, inline: bool = True) -> dict[str, Any]:
    """A batch of content objects (or tombstones) as one JSON-LD document: each object in
    the named graph of its own IRI. ``inline``: the shipped contexts are written into the
    document (what a processor reads, nothing to fetch); otherwise their IRIs (what is
    published)."""
    graphs = []
    for body in bodies:
        if body.get("type") == "Tombstone":
            continue  # a tombstone has no JSON-LD content; extra_quads says it is one
        member = _with_shipped_contexts(dict(body)) if inline else dict(body)
        if not inline:
            member.pop(_CONTEXT_KEY, None)
        graphs.append({"@id": body["id"], "@graph": [member]})
    context = list(_inline_contexts()) if inline else list(resources.CONTEXT_IRIS)
    return {_CONTEXT_KEY: context, "@graph": graphs}


def object_quads(bodies: Sequence[Mapping[str, Any]]) -> list[ox.Quad]:
    """The quads of content objects, each in the named graph of its IRI, read with the
    shipped contexts only. Raises ValueError or SyntaxError (Oxigraph's) when one object
    is not valid JSON-LD: the caller may retry object by object."""
    data = orjson.dumps(view_document(bodies))
    quads = list(ox.parse(data, format=ox.RdfFormat.JSON_LD))
    return quads + extra_quads(bodies, quads)


def extra_quads(
    bodies: Sequence[Mapping[str, Any]], parsed: Iterable[ox.Quad] | None = None
) -> list[ox.Quad]:
    """What JSON-LD does not say: every ``as:Event`` is a ``cv:PublicEvent`` (nested ones
    too when ``parsed`` is given, else the objects themselves), and a tombstone is a bare
    ``as:Tombstone`` with its former type and deletion time, nothing else."""
    extra: list[ox.Quad] = []
    if parsed is None:
        for body in bodies:
            if body.get("type") == "Event":
                node = ox.NamedNode(str(body["id"]))
                extra.append(ox.Quad(node, _RDF_TYPE, _PUBLIC_EVENT, node))
    else:
        for quad in parsed:
            if quad.predicate == _RDF_TYPE and quad.object == _AS_EVENT:
                extra.append(ox.Quad(quad.subject, _RDF_TYPE, _PUBLIC_EVENT, quad.graph_name))
    for body in bodies:
        if body.get("type") == "Tombstone":
            extra.extend(tombstone_quads(body))
    return extra


def tombstone_quads(body: Mapping[str, Any]) -> list[ox.Quad]:
    node = ox.NamedNode(str(body["id"]))
    quads = [ox.Quad(node, _RDF_TYPE, ox.NamedNode(f"{AS}Tombstone"), node)]
    former = _TYPE_IRIS.get(str(body.get("formerType")))
    if former is not None:
        quads.append(ox.Quad(node, ox.NamedNode(f"{AS}formerType"), ox.NamedNode(former), node))
    if isinstance(body.get("deleted"), str):
        deleted = ox.Literal(body["deleted"], datatype=_DATE_TIME)
        quads.append(ox.Quad(node, ox.NamedNode(f"{AS}deleted"), deleted, node))
    return quads


def node_quads(nodes: Iterable[NodeFacts]) -> list[ox.Quad]:
    """Each origin node, in the named graph of its base URL: ``as:Service``, its
    ``exv:country`` and its ``as:name`` by language."""
    quads: list[ox.Quad] = []
    for facts in nodes:
        node = ox.NamedNode(facts.base_url)
        quads.append(ox.Quad(node, _RDF_TYPE, ox.NamedNode(f"{AS}Service"), node))
        quads.append(ox.Quad(node, ox.NamedNode(f"{EXV}country"), ox.Literal(facts.country), node))
        for language, name in sorted(facts.names.items()):
            literal = ox.Literal(name, language=language)
            quads.append(ox.Quad(node, ox.NamedNode(f"{AS}name"), literal, node))
    return quads
