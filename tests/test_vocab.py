"""The shipped contexts against the vocabulary and against the standards' own contexts.

Every term of our three context files must expand to an IRI that vocab/exchange.ttl either
defines (exv:) or declares as reused, with rdfs:isDefinedBy naming the vocabulary that owns
it. Our written subsets of the AS2, Data Integrity and Multikey contexts must say exactly
what the originals in shared/contexts/ say.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from rdflib import RDF, RDFS, Graph, Literal, URIRef

from exchange import resources
from exchange.rdf import vocabulary_graph

SHARED_CONTEXTS = Path(__file__).resolve().parents[2] / "shared" / "contexts"

EXV = "https://w3id.org/exchange/ns#"
EXV_ONTOLOGY = URIRef("https://w3id.org/exchange/ns")
XSD = "http://www.w3.org/2001/XMLSchema#"

#: The vocabulary each reused namespace belongs to, as rdfs:isDefinedBy must name it.
DEFINING_VOCABULARY = {
    EXV: "https://w3id.org/exchange/ns",
    "https://www.w3.org/ns/activitystreams#": "https://www.w3.org/ns/activitystreams",
    "http://www.w3.org/ns/ldp#": "http://www.w3.org/ns/ldp",
    "http://data.europa.eu/m8g/": "http://data.europa.eu/m8g",
    "http://www.w3.org/ns/locn#": "http://www.w3.org/ns/locn",
    "http://schema.org/": "http://schema.org/",
    "http://purl.org/dc/terms/": "http://purl.org/dc/terms/",
    "http://www.w3.org/2004/02/skos/core#": "http://www.w3.org/2004/02/skos/core",
    "https://w3id.org/security#": "https://w3id.org/security#",
}


def _our_context(iri: str) -> dict[str, Any]:
    context: dict[str, Any] = resources.context_document(iri)["@context"]
    return context


def _shared_context(filename: str) -> dict[str, Any]:
    document = json.loads((SHARED_CONTEXTS / filename).read_text(encoding="utf-8"))
    context: dict[str, Any] = document["@context"]
    return context


def _prefixes(context: Mapping[str, Any]) -> dict[str, str]:
    return {
        term: value
        for term, value in context.items()
        if isinstance(value, str) and value.endswith(("#", "/"))
    }


def _expand(value: str, prefixes: Mapping[str, str]) -> str:
    prefix, _, local = value.partition(":")
    if prefix in prefixes:
        return prefixes[prefix] + local
    return value


def _definitions(
    context: Mapping[str, Any], prefixes: Mapping[str, str]
) -> Iterator[tuple[str, str, str | None]]:
    """(term, expanded IRI, expanded datatype) of every term, scoped contexts included."""
    for term, definition in context.items():
        if term.startswith("@") or term in prefixes:
            continue
        if isinstance(definition, Mapping):
            iri = definition.get("@id")
            datatype = definition.get("@type")
            scoped = definition.get("@context")
            if isinstance(scoped, Mapping):
                yield from _definitions(scoped, prefixes)
        else:
            iri, datatype = definition, None
        if not isinstance(iri, str) or iri.startswith("@"):
            continue
        expanded_type = None
        if isinstance(datatype, str) and not datatype.startswith("@"):
            expanded_type = _expand(datatype, prefixes)
        yield term, _expand(iri, prefixes), expanded_type


def _terms(context: Mapping[str, Any]) -> dict[str, tuple[str, str | None]]:
    """term -> (expanded IRI, expanded datatype), scoped contexts included."""
    return {
        term: (iri, datatype) for term, iri, datatype in _definitions(context, _prefixes(context))
    }


def _all_definitions() -> list[tuple[str, str, str, str | None]]:
    rows = []
    for context_iri in resources.CONTEXT_FILES:
        context = _our_context(context_iri)
        for term, iri, datatype in _definitions(context, _prefixes(context)):
            rows.append((context_iri, term, iri, datatype))
    return rows


def _namespace_of(iri: str) -> str:
    matches = [namespace for namespace in DEFINING_VOCABULARY if iri.startswith(namespace)]
    assert matches, f"{iri} is in no namespace the vocabulary knows"
    return max(matches, key=len)


@pytest.fixture(scope="module")
def vocabulary() -> Graph:
    return vocabulary_graph()


def test_every_context_term_resolves_to_a_declared_iri(vocabulary: Graph) -> None:
    undeclared = []
    for context_iri, term, iri, _ in _all_definitions():
        defined_by = vocabulary.value(URIRef(iri), RDFS.isDefinedBy)
        expected = DEFINING_VOCABULARY[_namespace_of(iri)]
        has_type = (URIRef(iri), RDF.type, None) in vocabulary
        if defined_by != URIRef(expected) or not has_type:
            undeclared.append(f"{term} -> {iri} (in {context_iri})")
    assert undeclared == []


def test_every_context_datatype_is_xsd_or_declared(vocabulary: Graph) -> None:
    for _, term, _, datatype in _all_definitions():
        if datatype is None or datatype.startswith(XSD):
            continue
        assert (URIRef(datatype), RDF.type, RDFS.Datatype) in vocabulary, term


def test_context_maps_participation_to_the_cpev_property() -> None:
    # CPEV 1.1.1 context: "hasParticipation" -> http://data.europa.eu/m8g/hasParticipation
    iris = {
        term: iri for term, (iri, _) in _terms(_our_context(resources.EXCHANGE_CONTEXT)).items()
    }
    assert iris["participation"] == "http://data.europa.eu/m8g/hasParticipation"
    assert iris["registrationPage"] == "http://data.europa.eu/m8g/registrationPage"
    assert iris["role"] == "http://data.europa.eu/m8g/role"
    assert iris["PublicOrganisation"] == "http://data.europa.eu/m8g/PublicOrganisation"


def test_activitystreams_terms_match_the_published_context() -> None:
    ours = _our_context("https://www.w3.org/ns/activitystreams")
    published = _shared_context("activitystreams.jsonld")
    differing = [term for term, value in ours.items() if published.get(term) != value]
    assert differing == []


def test_data_integrity_context_matches_the_published_context() -> None:
    ours = _our_context("https://w3id.org/security/data-integrity/v2")
    assert ours == _shared_context("data-integrity-v2.jsonld")


def test_multikey_terms_agree_with_the_multikey_context() -> None:
    ours = _terms(_our_context(resources.EXCHANGE_CONTEXT))
    published = _terms(_shared_context("multikey-v1.jsonld"))
    shared_terms = ours.keys() & published.keys()
    assert {"Multikey", "controller", "revoked", "publicKeyMultibase"} <= shared_terms
    for term in shared_terms:
        assert ours[term] == published[term], term


def test_key_created_agrees_with_data_integrity_created() -> None:
    ours = _terms(_our_context(resources.EXCHANGE_CONTEXT))
    proof_terms = _shared_context("data-integrity-v2.jsonld")["DataIntegrityProof"]["@context"]
    published = _terms(proof_terms)
    assert ours["created"] == published["created"]


def _exchange_terms(vocabulary: Graph) -> set[URIRef]:
    return {
        subject
        for subject in vocabulary.subjects(RDF.type, None)
        if isinstance(subject, URIRef) and str(subject).startswith(EXV)
    }


def test_vocabulary_is_an_ontology(vocabulary: Graph) -> None:
    assert vocabulary.value(EXV_ONTOLOGY, RDF.type) is not None
    assert len(_exchange_terms(vocabulary)) >= 20


@pytest.mark.parametrize("predicate", [RDFS.label, RDFS.comment])
@pytest.mark.parametrize("language", ["en", "nl"])
def test_every_exchange_term_has_labels_and_comments(
    vocabulary: Graph, predicate: URIRef, language: str
) -> None:
    missing = [
        str(term)
        for term in _exchange_terms(vocabulary)
        if not any(
            isinstance(value, Literal) and value.language == language
            for value in vocabulary.objects(term, predicate)
        )
    ]
    assert missing == []


def test_exchange_properties_have_ranges(vocabulary: Graph) -> None:
    properties = [
        term for term in _exchange_terms(vocabulary) if (term, RDF.type, RDF.Property) in vocabulary
    ]
    assert properties
    without_range = [str(term) for term in properties if vocabulary.value(term, RDFS.range) is None]
    assert without_range == []
