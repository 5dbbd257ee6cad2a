"""The SHACL shapes over the RDF view of content objects, and the RDF view itself.

Valid documents (the fixtures below and every examples/*.json) conform; each named broken
variant fails on the member it breaks, at the node that holds it. ``to_graph`` reads only
the contexts the package ships and never opens a network connection.
"""

from __future__ import annotations

import copy
import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pyshacl import validate
from rdflib import RDF, Graph, Namespace, URIRef
from rdflib.term import Node

from exchange import resources
from exchange.errors import IntegrityError
from exchange.rdf import shapes_graph, to_graph, vocabulary_graph

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CONTENT_TYPES = ("Case", "Event", "BestPractice")

AS = Namespace("https://www.w3.org/ns/activitystreams#")
CV = Namespace("http://data.europa.eu/m8g/")
EXV = Namespace("https://w3id.org/exchange/ns#")
LOCN = Namespace("http://www.w3.org/ns/locn#")
SCHEMA = Namespace("http://schema.org/")
SH = Namespace("http://www.w3.org/ns/shacl#")

NODE = "https://samenwerken.example.nl/exchange"
CONTEXT = list(resources.CONTEXT_IRIS)

CASE: dict[str, Any] = {
    "@context": CONTEXT,
    "id": f"{NODE}/objects/case-doetank-jonge-kinderen",
    "type": "Case",
    "nameMap": {"nl": "Preventieve zorg voor jonge kinderen over de grens"},
    "summaryMap": {"en": "Case files of young children follow them across the border."},
    "published": "2026-11-23T10:00:00Z",
    "version": 1,
    "attributedTo": NODE,
    "centralQuestionMap": {
        "nl": "Hoe volgt het dossier van een jong kind het gezin over de grens?",
        "en": "How does a young child's case file follow the family across the border?",
    },
    "participatingCountry": ["BE", "NL"],
    "participant": [
        {"type": "PublicOrganisation", "nameMap": {"nl": "Kind en Gezin"}, "country": "BE"},
        {"type": "Organization", "nameMap": {"nl": "GGD West-Brabant"}, "country": "NL"},
    ],
    "approachMap": {"nl": "Een eerste bijeenkomst bij de Europese Commissie."},
    "status": "active",
    "contactPoint": [
        {"type": "ContactPoint", "url": f"{NODE}/contact", "personalData": False},
    ],
    "tag": [
        {
            "type": "Concept",
            "id": "http://eurovoc.europa.eu/1000",
            "nameMap": {"en": "child care"},
        }
    ],
}

EVENT: dict[str, Any] = {
    "@context": CONTEXT,
    "id": f"{NODE}/objects/reuring-cafe-115",
    "type": "Event",
    "nameMap": {"nl": "Reuring!Café #115 — Eén overheid?! De samenwerkende overheid"},
    "version": 2,
    "attributedTo": NODE,
    "startTime": "2023-11-21T17:00:00+01:00",
    "doorTime": "2023-11-21T16:30:00+01:00",
    "location": {
        "type": "Place",
        "nameMap": {"nl": "De Glazen Zaal"},
        "address": {"type": "Address", "postName": "Den Haag", "adminUnitL1": "NL"},
    },
    "organizer": [
        {"type": "Organization", "nameMap": {"nl": "Vereniging voor Overheidsmanagement"}}
    ],
    "participation": [
        {
            "type": "Participation",
            "role": "moderator",
            "participant": {"type": "Person", "name": "A. Debatleider", "personalData": True},
        },
        {
            "type": "Participation",
            "role": "panellist",
            "participant": {"type": "PublicOrganisation", "nameMap": {"nl": "Een ministerie"}},
        },
    ],
    "registrationPage": "https://events.example.nl/reuring-115",
    "inLanguage": ["nl"],
}

BEST_PRACTICE: dict[str, Any] = {
    "@context": CONTEXT,
    "id": f"{NODE}/objects/groene-tafels",
    "type": "BestPractice",
    "nameMap": {"nl": "Natuurbeleid verbinden met de samenleving"},
    "version": 1,
    "attributedTo": NODE,
    "practiceKind": "experience",
    "outcome": "enriching-failure",
    "actionsMap": {"nl": ["Groene tafels met sectoren", "Een fieldlab in Eindhoven"]},
    "lessonsMap": {"en": ["Start small; a score of 3 < 5 is fine."]},
    "relatedCase": [f"{NODE}/objects/case-doetank-jonge-kinderen"],
    "publisher": {"type": "PublicOrganisation", "nameMap": {"nl": "Een ministerie"}},
    "attachment": [
        {"type": "Document", "nameMap": {"nl": "Actiekit"}, "url": f"{NODE}/files/kit.pdf"}
    ],
}

FIXTURES = {"Case": CASE, "Event": EVENT, "BestPractice": BEST_PRACTICE}


def _example_files() -> list[Path]:
    return sorted(EXAMPLES.glob("*.json")) if EXAMPLES.is_dir() else []


def _content_examples() -> list[Path]:
    return [
        path
        for path in _example_files()
        if json.loads(path.read_text(encoding="utf-8")).get("type") in CONTENT_TYPES
    ]


@pytest.fixture(scope="module")
def shapes() -> Graph:
    return shapes_graph()


def _violations(
    document: dict[str, Any], shapes: Graph
) -> tuple[Graph, list[tuple[Node, Node | None]]]:
    """The data graph and the (focus node, result path) of every violation.

    A rule over a whole node (sh:or of several members) reports no result path.
    """
    data = to_graph(document)
    _, report, _ = validate(data, shacl_graph=shapes)
    assert isinstance(report, Graph)
    violations = []
    for result in report.subjects(RDF.type, SH.ValidationResult):
        focus = report.value(result, SH.focusNode)
        assert focus is not None, "a violation without a focus node"
        violations.append((focus, report.value(result, SH.resultPath)))
    return data, violations


# -- valid documents ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", CONTENT_TYPES)
def test_fixture_conforms(kind: str, shapes: Graph) -> None:
    _, violations = _violations(FIXTURES[kind], shapes)
    assert violations == []


@pytest.mark.parametrize("path", _content_examples(), ids=lambda path: path.name)
def test_example_conforms(path: Path, shapes: Graph) -> None:
    _, violations = _violations(json.loads(path.read_text(encoding="utf-8")), shapes)
    assert violations == []


def test_examples_cover_every_content_type() -> None:
    if not _example_files():
        pytest.skip("examples/ holds no documents yet")
    kinds = {json.loads(path.read_text(encoding="utf-8"))["type"] for path in _content_examples()}
    assert kinds >= set(CONTENT_TYPES)


# -- broken variants ---------------------------------------------------------------------

Mutation = Callable[[dict[str, Any]], None]


def _drop(member: str) -> Mutation:
    return lambda document: document.pop(member)


def _set(member: str, value: Any) -> Mutation:
    return lambda document: document.__setitem__(member, value)


def _name_without_language(document: dict[str, Any]) -> None:
    document["name"] = document.pop("nameMap")["nl"]


def _bad_role(document: dict[str, Any]) -> None:
    document["participation"][0]["role"] = "dictator"


def _person_not_personal_data(document: dict[str, Any]) -> None:
    document["participation"][0]["participant"]["personalData"] = False


def _contact_point_without_personal_data_flag(document: dict[str, Any]) -> None:
    del document["contactPoint"][0]["personalData"]


def _named_contact_point_not_personal_data(document: dict[str, Any]) -> None:
    document["contactPoint"][0]["name"] = "J. Jansen"


def _html_in_address(document: dict[str, Any]) -> None:
    document["location"]["address"]["postName"] = '<a href="https://evil.example">Den Haag</a>'


BROKEN = [
    # fixture, mutation, class of the failing focus node, failing path; id names the attack
    pytest.param(
        "Case",
        _drop("centralQuestionMap"),
        EXV.Case,
        EXV.centralQuestion,
        id="case-missing-central-question",
    ),
    pytest.param(
        "Case", _name_without_language, EXV.Case, AS.name, id="case-name-without-language"
    ),
    pytest.param("Case", _set("version", 0), EXV.Case, EXV.version, id="case-version-zero"),
    pytest.param(
        "Case", _set("status", "abandoned"), EXV.Case, EXV.caseStatus, id="case-unknown-status"
    ),
    pytest.param(
        "Case",
        _set("participatingCountry", ["nl"]),
        EXV.Case,
        EXV.participatingCountry,
        id="case-lowercase-country",
    ),
    pytest.param(
        "Case",
        _set("published", "2026-11-23T11:00:00+01:00"),
        EXV.Case,
        AS.published,
        id="case-published-not-utc",
    ),
    pytest.param(
        "Case",
        _contact_point_without_personal_data_flag,
        CV.ContactPoint,
        EXV.personalData,
        id="case-contact-point-without-flag",
    ),
    pytest.param(
        "Case",
        _named_contact_point_not_personal_data,
        CV.ContactPoint,
        None,  # a rule over the whole contact point: name present => personalData true
        id="case-named-contact-point-not-personal-data",
    ),
    pytest.param(
        "Event",
        _set("nameMap", {"nl": "<script>alert(1)</script>"}),
        AS.Event,
        AS.name,
        id="event-html-in-name",
    ),
    pytest.param(
        "Event",
        _set("startTime", "21-11-2023 17:00"),
        AS.Event,
        AS.startTime,
        id="event-start-time-not-datetime",
    ),
    pytest.param("Event", _drop("location"), AS.Event, AS.location, id="event-missing-location"),
    pytest.param(
        "Event",
        _drop("organizer"),
        AS.Event,
        SCHEMA.organizer,
        id="event-missing-organizer",
    ),
    pytest.param("Event", _bad_role, CV.Participation, CV.role, id="event-bad-role"),
    pytest.param(
        "Event",
        _person_not_personal_data,
        AS.Person,
        EXV.personalData,
        id="event-person-not-personal-data",
    ),
    pytest.param(
        "Event", _html_in_address, LOCN.Address, LOCN.postName, id="event-html-in-address"
    ),
    pytest.param(
        "BestPractice",
        _set("practiceKind", "anecdote"),
        EXV.BestPractice,
        EXV.practiceKind,
        id="practice-unknown-kind",
    ),
    pytest.param(
        "BestPractice",
        _set("lessonsMap", {"en": ["<b>Bold</b>"]}),
        EXV.BestPractice,
        EXV.lesson,
        id="practice-html-in-lesson",
    ),
    pytest.param(
        "BestPractice",
        _drop("version"),
        EXV.BestPractice,
        EXV.version,
        id="practice-missing-version",
    ),
]


@pytest.mark.parametrize(("kind", "mutate", "focus_class", "path"), BROKEN)
def test_broken_variant_fails_on_its_member(
    kind: str, mutate: Mutation, focus_class: URIRef, path: URIRef | None, shapes: Graph
) -> None:
    document = copy.deepcopy(FIXTURES[kind])
    mutate(document)
    data, violations = _violations(document, shapes)
    assert violations, "the broken variant conforms"
    for focus, failing_path in violations:
        assert failing_path == path
        assert (focus, RDF.type, focus_class) in data


# -- the RDF view ------------------------------------------------------------------------


def test_every_event_is_also_a_public_event() -> None:
    graph = to_graph(EVENT)
    assert (URIRef(EVENT["id"]), RDF.type, CV.PublicEvent) in graph


def test_embedded_object_is_read_with_the_entry_context() -> None:
    embedded = {member: value for member, value in CASE.items() if member != "@context"}
    assert to_graph(embedded).isomorphic(to_graph(CASE))


def test_reused_terms_map_to_their_vocabularies() -> None:
    graph = to_graph(EVENT)
    subject = URIRef(EVENT["id"])
    assert graph.value(subject, CV.hasParticipation) is not None
    assert graph.value(subject, CV.registrationPage) == URIRef(EVENT["registrationPage"])


@pytest.mark.parametrize(
    "context",
    [
        pytest.param([*CONTEXT, "https://evil.example/context.jsonld"], id="unknown-iri"),
        pytest.param("https://schema.org/", id="remote-context-not-shipped"),
        pytest.param([{"@vocab": "https://evil.example/ns#"}], id="inline-object"),
        pytest.param({"name": "https://evil.example/ns#name"}, id="inline-map"),
        pytest.param([], id="empty-list"),
    ],
)
def test_unshipped_context_is_rejected(context: Any) -> None:
    document = {**CASE, "@context": context}
    with pytest.raises(IntegrityError):
        to_graph(document)


def test_nested_unshipped_context_is_rejected() -> None:
    document = copy.deepcopy(CASE)
    document["participant"][0]["@context"] = "https://evil.example/context.jsonld"
    with pytest.raises(IntegrityError):
        to_graph(document)


def _no_network(*args: object, **kwargs: object) -> None:
    raise AssertionError("exchange.rdf opened a network connection")


def test_to_graph_never_opens_a_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _no_network)
    monkeypatch.setattr(socket.socket, "connect_ex", _no_network)
    monkeypatch.setattr(socket, "create_connection", _no_network)
    monkeypatch.setattr(socket, "getaddrinfo", _no_network)
    for document in FIXTURES.values():
        assert len(to_graph(document)) > 0
    assert len(vocabulary_graph()) > 0
    assert len(shapes_graph()) > 0
    with pytest.raises(IntegrityError):
        to_graph({**EVENT, "@context": [*CONTEXT, "https://evil.example/context.jsonld"]})
