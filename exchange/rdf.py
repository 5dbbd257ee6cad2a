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
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from rdflib import Graph, Namespace
from rdflib.namespace import RDF

from exchange import resources
from exchange.errors import IntegrityError, ResourceMissing

__all__ = ["AS", "CV", "EXV", "shapes_graph", "to_graph", "vocabulary_graph"]

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
