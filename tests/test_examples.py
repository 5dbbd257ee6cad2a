"""The shipped examples (``examples/*.json``): the seed content as exchange objects.

They are what the demo publishes and what the schema tests break on purpose, so each must
be valid, marked for personal data, free of HTML and published under its own node.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exchange import schema
from exchange.resources import CONTEXT_IRIS

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
EXAMPLE_FILES = sorted(EXAMPLES_DIR.glob("*.json"))
# The two nodes of the demo federation (protocol.md §2: ids live under the node base B).
NODE_BASES = (
    "https://samenwerken.example.nl/exchange",
    "https://vlaanderen.example.be/exchange",
)
# Anything that could open an HTML tag, comment or processing instruction.
HTML_TAG = re.compile(r"<[A-Za-z!/?]")
TIMESTAMP_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def nodes(value: Any, pointer: str = "") -> Iterator[tuple[str, Any]]:
    """Every JSON value inside ``value`` with its RFC 6901 pointer, depth first."""
    yield pointer, value
    if isinstance(value, dict):
        for key, sub in value.items():
            escaped = key.replace("~", "~0").replace("/", "~1")
            yield from nodes(sub, f"{pointer}/{escaped}")
    elif isinstance(value, list):
        for index, sub in enumerate(value):
            yield from nodes(sub, f"{pointer}/{index}")


def strings(value: Any) -> Iterator[tuple[str, str]]:
    """Every string in ``value`` (member names included) with where it stands."""
    for pointer, item in nodes(value):
        if isinstance(item, str):
            yield pointer, item
        elif isinstance(item, dict):
            for key in item:
                yield f"{pointer} (member name)", key


example_params = pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)


def test_examples_exist() -> None:
    assert len(EXAMPLE_FILES) >= 7, "the seeds give three cases, three best practices, an event"


def test_each_type_has_an_example() -> None:
    types = {load(path)["type"] for path in EXAMPLE_FILES}
    assert types >= set(schema.OBJECT_TYPES)


@example_params
def test_file_name_matches_id(path: Path) -> None:
    doc = load(path)
    assert doc["id"].rsplit("/", 1)[-1] == path.stem


@example_params
def test_valid_against_its_type_schema(path: Path) -> None:
    doc = load(path)
    name = schema.schema_for_type(doc["type"])
    assert name != "object"
    assert schema.issues(doc, name) == ()
    schema.check(doc, name)


@example_params
def test_valid_against_the_dispatching_object_schema(path: Path) -> None:
    doc = load(path)
    assert schema.issues(doc, "object") == ()
    schema.check(doc, "object")


@example_params
def test_standalone_document_without_signing_fields(path: Path) -> None:
    doc = load(path)
    assert doc["@context"] == list(CONTEXT_IRIS)
    assert next(iter(doc)) == "@context", "@context comes first in a standalone document"
    assert not {"proof", "signature", "seq", "leafHash"} & set(doc)


@example_params
def test_dutch_and_english(path: Path) -> None:
    doc = load(path)
    for pointer, item in nodes(doc):
        if pointer.endswith("Map") and isinstance(item, dict):
            assert set(item) == {"nl", "en"}, f"{path.name}{pointer} must be in nl and en"
    for member in ("nameMap", "summaryMap", "contentMap"):
        assert set(doc[member]) == {"nl", "en"}, f"{path.name}: {member}"


@example_params
def test_list_maps_translate_item_by_item(path: Path) -> None:
    doc = load(path)
    for member in ("actionsMap", "lessonsMap"):
        if member in doc:
            assert len(doc[member]["nl"]) == len(doc[member]["en"]), f"{path.name}: {member}"


@example_params
def test_no_html(path: Path) -> None:
    doc = load(path)
    found = [(p, s) for p, s in strings(doc) if HTML_TAG.search(s)]
    assert found == []


@example_params
def test_id_is_under_its_attributed_node(path: Path) -> None:
    doc = load(path)
    base = doc["attributedTo"]
    assert base in NODE_BASES
    assert doc["id"].startswith(base + "/objects/")
    assert doc["id"] != base + "/objects/"


@example_params
def test_publication_metadata(path: Path) -> None:
    doc = load(path)
    assert doc["version"] == 1
    assert doc["license"] == "https://creativecommons.org/licenses/by/4.0/"
    assert TIMESTAMP_UTC.match(doc["published"])
    assert TIMESTAMP_UTC.match(doc["updated"])
    assert doc["updated"] >= doc["published"]


@example_params
def test_personal_data_is_marked(path: Path) -> None:
    doc = load(path)
    for pointer, item in nodes(doc):
        if not isinstance(item, dict):
            continue
        if item.get("type") == "Person":
            assert item.get("personalData") is True, f"{path.name}{pointer}: Person"
        if item.get("type") == "ContactPoint" and "name" in item:
            assert item.get("personalData") is True, f"{path.name}{pointer}: named ContactPoint"
        if item.get("type") in ("Organization", "PublicOrganisation"):
            assert "personalData" not in item, f"{path.name}{pointer}: organisations are not"


# The real civil servants' e-mail addresses and phone numbers in shared/seeds/ must never be
# republished by an example; these are the fragments that would give them away.
SEED_CONTACT_FRAGMENTS = (
    "lne.vlaanderen.be",
    "@zorgboog",
    "553 79 18",
    "479 82 03 99",
    "653322801",
    "553 27 23",
    "553 17 60",
)
FICTIONAL_EMAIL = re.compile(r"@example\.(org|com|net)$")
FICTIONAL_PHONE = re.compile(r"^\+\d{1,3}( \d)?( 0+)+$")


@example_params
def test_contact_details_are_fictional(path: Path) -> None:
    doc = load(path)
    text = json.dumps(doc, ensure_ascii=False)
    for fragment in SEED_CONTACT_FRAGMENTS:
        assert fragment not in text
    for pointer, item in nodes(doc):
        if pointer.endswith("/email"):
            assert FICTIONAL_EMAIL.search(item), f"{path.name}{pointer}"
        if pointer.endswith("/telephone"):
            assert FICTIONAL_PHONE.match(item), f"{path.name}{pointer}"


def test_the_helpers_can_find_what_they_look_for() -> None:
    # Guard the guards: the walkers above must see nested members, or the tests are vacuous.
    doc = {"a": [{"type": "Person", "name": "<b>x</b>"}], "b~/c": 1}
    assert ("/a/0/name", "<b>x</b>") in set(strings(doc))
    assert ("/b~0~1c", 1) in list(nodes(doc))
    assert any(HTML_TAG.search(s) for _, s in strings(doc))
    assert not HTML_TAG.search("a < b and 3<4")
