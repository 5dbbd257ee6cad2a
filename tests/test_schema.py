"""exchange.schema against broken variants of the shipped examples.

Each row of BROKEN takes one valid example, breaks exactly one thing and names the RFC 6901
pointer of the broken member: validation must report that pointer with a plain message,
both against the type's own schema and against the dispatching ``object`` schema.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import referencing

from exchange import schema
from exchange.errors import SchemaError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_DIR = ROOT / "examples"
SCHEMAS_DIR = ROOT / "schemas"

EVENT = "event-reuring-cafe-115"
CASE = "case-doetank-milieu-initiatieven"
CASE_EU = "case-doetank-kennisdeling-governance"
FAILURE_LESSONS = "best-practice-spring-uit-de-band"
TIPS = "best-practice-natuurvisie-synergie"
COMMITMENTS = "best-practice-meerwaarde-door-participatie"


def example(name: str) -> Any:
    return json.loads((EXAMPLES_DIR / f"{name}.json").read_text(encoding="utf-8"))


def _parts(pointer: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in pointer.split("/")[1:]]


def _parent(doc: Any, pointer: str) -> tuple[Any, str | int]:
    *head, last = _parts(pointer)
    node = doc
    for part in head:
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node, (int(last) if isinstance(node, list) else last)


# Edits, each applied to a deep copy of an example (pointers are RFC 6901).
Edit = tuple[str, str, Any]


def put(pointer: str, value: Any) -> Edit:
    return ("put", pointer, value)


def drop(pointer: str) -> Edit:
    return ("drop", pointer, None)


def rename(pointer: str, new_name: str) -> Edit:
    return ("rename", pointer, new_name)


def broken(name: str, *edits: Edit) -> Any:
    doc = copy.deepcopy(example(name))
    for op, pointer, arg in edits:
        parent, key = _parent(doc, pointer)
        if op == "put":
            parent[key] = arg
        elif op == "drop":
            del parent[key]
        else:
            parent[arg] = parent.pop(key)
    return doc


BROKEN = [
    # -- required members --------------------------------------------------------------
    pytest.param(EVENT, [drop("/startTime")], "/startTime", id="event-missing-startTime"),
    pytest.param(EVENT, [drop("/location")], "/location", id="event-missing-location"),
    pytest.param(EVENT, [put("/organizer", [])], "/organizer", id="event-no-organizer"),
    pytest.param(CASE, [drop("/participant")], "/participant", id="case-missing-participant"),
    pytest.param(CASE, [put("/participant", [])], "/participant", id="case-empty-participant"),
    pytest.param(
        CASE,
        [drop("/centralQuestionMap")],
        "/centralQuestionMap",
        id="case-missing-central-question",
    ),
    pytest.param(CASE, [drop("/status")], "/status", id="case-missing-status"),
    pytest.param(
        TIPS, [drop("/practiceKind")], "/practiceKind", id="practice-missing-practiceKind"
    ),
    pytest.param(TIPS, [drop("/nameMap")], "/nameMap", id="missing-nameMap"),
    pytest.param(
        CASE,
        [drop("/contactPoint/0/personalData")],
        "/contactPoint/0/personalData",
        id="contact-point-without-personalData",
    ),
    # -- language maps and plain text ----------------------------------------------------
    pytest.param(
        EVENT,
        [rename("/nameMap/en", "en_US")],
        "/nameMap/en_US",
        id="language-tag-underscore-en_US",
    ),
    pytest.param(
        COMMITMENTS,
        [rename("/actionsMap/nl", "nl_BE")],
        "/actionsMap/nl_BE",
        id="language-tag-underscore-in-list-map",
    ),
    pytest.param(
        EVENT, [put("/inLanguage", ["en_US"])], "/inLanguage/0", id="inLanguage-not-a-language-tag"
    ),
    pytest.param(EVENT, [put("/nameMap", {})], "/nameMap", id="empty-nameMap"),
    pytest.param(CASE, [put("/nameMap/nl", "")], "/nameMap/nl", id="empty-name-string"),
    pytest.param(
        EVENT, [put("/summaryMap/nl", 5)], "/summaryMap/nl", id="non-string-in-language-map"
    ),
    pytest.param(
        FAILURE_LESSONS,
        [put("/lessonsMap/en", "just one lesson")],
        "/lessonsMap/en",
        id="string-instead-of-list-in-lessonsMap",
    ),
    pytest.param(
        FAILURE_LESSONS,
        [put("/lessonsMap/en", [])],
        "/lessonsMap/en",
        id="empty-list-in-lessonsMap",
    ),
    pytest.param(EVENT, [put("/nameMap/en", "<b>x</b>")], "/nameMap/en", id="html-in-name"),
    pytest.param(
        TIPS,
        [put("/actionsMap/nl/0", 'Zie <a href="https://example.org">hier</a>')],
        "/actionsMap/nl/0",
        id="html-link-in-action-item",
    ),
    pytest.param(
        CASE,
        [put("/contentMap/en", "text <!-- hidden -->")],
        "/contentMap/en",
        id="html-comment-in-content",
    ),
    # -- enumerations --------------------------------------------------------------------
    pytest.param(
        FAILURE_LESSONS,
        [put("/practiceKind", "anecdote")],
        "/practiceKind",
        id="unknown-practiceKind",
    ),
    pytest.param(
        FAILURE_LESSONS, [put("/outcome", "failure")], "/outcome", id="outcome-not-allowed"
    ),
    pytest.param(
        EVENT,
        [put("/participation/0/role", "juggler")],
        "/participation/0/role",
        id="role-not-allowed",
    ),
    pytest.param(CASE, [put("/status", "done")], "/status", id="status-not-allowed"),
    pytest.param(EVENT, [put("/tag/0/type", "Tag")], "/tag/0/type", id="tag-not-a-concept"),
    # -- dates and times -----------------------------------------------------------------
    pytest.param(
        EVENT, [put("/startTime", "21-11-2023 17:00")], "/startTime", id="startTime-not-rfc3339"
    ),
    pytest.param(
        EVENT,
        [put("/startTime", "2023-11-21T17:00:00")],
        "/startTime",
        id="startTime-without-offset",
    ),
    pytest.param(EVENT, [put("/doorTime", "16:30")], "/doorTime", id="doorTime-clock-only"),
    pytest.param(
        EVENT,
        [put("/published", "2026-11-01T10:00:00+01:00")],
        "/published",
        id="published-not-utc",
    ),
    pytest.param(
        CASE,
        [put("/updated", "2026-11-01T09:00:00.5Z")],
        "/updated",
        id="updated-fractional-seconds",
    ),
    # -- IRIs ----------------------------------------------------------------------------
    pytest.param(
        EVENT,
        [put("/registrationPage", "not a uri")],
        "/registrationPage",
        id="registrationPage-not-a-uri",
    ),
    pytest.param(
        EVENT,
        [put("/registrationPage", "https://not a uri")],
        "/registrationPage",
        id="registrationPage-space-in-iri",
    ),
    pytest.param(
        EVENT,
        [put("/registrationPage", "/aanmelden")],
        "/registrationPage",
        id="registrationPage-relative",
    ),
    pytest.param(
        CASE, [put("/license", "ftp://example.org/licence")], "/license", id="license-ftp-uri"
    ),
    pytest.param(
        CASE, [put("/id", "urn:uuid:8f6c4a52-3c38-4d37-9f0e-1d2a9c0f5b11")], "/id", id="id-not-http"
    ),
    pytest.param(
        CASE,
        [put("/attributedTo", "samenwerken.example.nl")],
        "/attributedTo",
        id="attributedTo-without-scheme",
    ),
    # -- numbers -------------------------------------------------------------------------
    pytest.param(EVENT, [put("/version", 0)], "/version", id="version-zero"),
    pytest.param(EVENT, [put("/version", "1")], "/version", id="version-as-string"),
    # -- countries and contact details ---------------------------------------------------
    pytest.param(
        CASE,
        [put("/participatingCountry", ["BE", "nl"])],
        "/participatingCountry/1",
        id="country-code-lowercase",
    ),
    pytest.param(
        CASE,
        [put("/participant/0/country", "NLD")],
        "/participant/0/country",
        id="country-code-alpha3",
    ),
    pytest.param(
        CASE,
        [put("/participatingCountry", ["BE", "BE"])],
        "/participatingCountry",
        id="country-listed-twice",
    ),
    pytest.param(
        CASE,
        [put("/contactPoint/0/telephone", "0031653322801")],
        "/contactPoint/0/telephone",
        id="telephone-not-international",
    ),
    pytest.param(
        CASE,
        [put("/contactPoint/0/telephone", "+31 (0)6 12345678")],
        "/contactPoint/0/telephone",
        id="telephone-with-trunk-prefix",
    ),
    pytest.param(
        CASE,
        [put("/contactPoint/0/email", "lotte.voorbeeld(at)example.org")],
        "/contactPoint/0/email",
        id="email-not-an-address",
    ),
    pytest.param(
        EVENT,
        [put("/location/address/adminUnitL1", "Nederland")],
        "/location/address/adminUnitL1",
        id="address-country-not-a-code",
    ),
    # -- members that do not belong --------------------------------------------------------
    pytest.param(EVENT, [put("/colour", "red")], "/colour", id="unknown-member"),
    pytest.param(
        CASE,
        [put("/participant/0/colour", "red")],
        "/participant/0/colour",
        id="unknown-member-in-organisation",
    ),
    pytest.param(
        CASE_EU,
        [put("/startTime", "2013-05-03T10:00:00+02:00")],
        "/startTime",
        id="event-member-on-a-case",
    ),
    pytest.param(
        COMMITMENTS,
        [put("/publisher", {"type": "Person", "name": "Lotte Voorbeeld", "personalData": True})],
        "/publisher/type",
        id="publisher-is-a-person",
    ),
    pytest.param(
        CASE,
        [put("/@context", ["https://www.w3.org/ns/activitystreams"])],
        "/@context",
        id="context-incomplete",
    ),
    # -- Tombstone-ish misuse: a deleted object is a Tombstone inside a Delete entry,
    #    never a content object with a changed type or Tombstone members.
    pytest.param(CASE, [put("/type", "Tombstone")], "/type", id="tombstone-as-content-type"),
    pytest.param(
        CASE, [put("/formerType", "Case")], "/formerType", id="tombstone-formerType-on-content"
    ),
    pytest.param(
        EVENT,
        [put("/deleted", "2026-11-02T00:00:00Z")],
        "/deleted",
        id="tombstone-deleted-on-content",
    ),
    # -- personal data and agents ---------------------------------------------------------
    pytest.param(
        EVENT,
        [put("/participation/2/participant/personalData", False)],
        "/participation/2/participant/personalData",
        id="person-personalData-false",
    ),
    pytest.param(
        EVENT,
        [drop("/participation/0/participant/personalData")],
        "/participation/0/participant/personalData",
        id="person-without-personalData",
    ),
    pytest.param(
        CASE,
        [put("/contactPoint/0/personalData", False)],
        "/contactPoint/0/personalData",
        id="named-contact-point-not-personal",
    ),
    pytest.param(
        EVENT,
        [put("/organizer/0/colour", "red")],
        "/organizer/0/colour",
        id="unknown-member-in-organizer",
    ),
    pytest.param(
        EVENT,
        [put("/organizer/0/type", "Robot")],
        "/organizer/0/type",
        id="organizer-neither-organisation-nor-person",
    ),
    pytest.param(
        CASE,
        [put("/contactPoint/1", {"type": "ContactPoint", "personalData": False})],
        "/contactPoint/1",
        id="contact-point-without-any-channel",
    ),
    pytest.param(CASE, [put("/url", "http://")], "/url", id="iri-without-host"),
]


def _patterns(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                yield value
            else:
                yield from _patterns(value)
    elif isinstance(node, list):
        for value in node:
            yield from _patterns(value)


SCHEMA_PATTERNS = sorted(
    {p for f in SCHEMAS_DIR.glob("*.schema.json") for p in _patterns(json.loads(f.read_text()))}
)


def assert_plain(message: str) -> None:
    """A message a person can read: short, no regex, no JSON object dump."""
    assert message.strip(), "empty message"
    assert len(message) <= 300, message
    assert '{"' not in message, f"dumps a JSON object: {message}"
    for pattern in SCHEMA_PATTERNS:
        assert pattern not in message, f"dumps a regex: {message}"
    assert not re.search(r"\^\S*\$", message), f"dumps a regex: {message}"


@pytest.mark.parametrize(("name", "edits", "pointer"), BROKEN)
def test_broken_variant_is_reported_at_its_pointer(
    name: str, edits: list[Edit], pointer: str
) -> None:
    doc = broken(name, *edits)
    own = schema.schema_for_type(example(name)["type"])
    for schema_name in (own, "object"):
        found = schema.issues(doc, schema_name)
        at_pointer = [issue for issue in found if issue.pointer == pointer]
        assert at_pointer, f"{schema_name}: no issue at {pointer}; got {found}"
        for issue in at_pointer:
            assert_plain(issue.message)
        with pytest.raises(SchemaError) as raised:
            schema.check(doc, schema_name)
        assert set(raised.value.issues) == set(found)


def test_the_table_is_large_enough_and_readable() -> None:
    plain_rows = [row for row in BROKEN if not row.marks]
    assert len(plain_rows) >= 25
    ids = [row.id for row in BROKEN]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("name", [EVENT, CASE, CASE_EU, FAILURE_LESSONS, TIPS, COMMITMENTS])
def test_unbroken_examples_have_no_issues(name: str) -> None:
    # The baseline of every row: without the edit there is nothing to report.
    assert schema.issues(example(name), "object") == ()


ACCEPTED = [
    pytest.param(FAILURE_LESSONS, [put("/outcome", "enriching-failure")], id="enriching-failure"),
    pytest.param(FAILURE_LESSONS, [put("/practiceKind", "connector")], id="kind-connector"),
    pytest.param(TIPS, [put("/practiceKind", "knowledge"), drop("/outcome")], id="kind-knowledge"),
    pytest.param(CASE, [rename("/nameMap/nl", "nl-BE")], id="regional-language-tag"),
    pytest.param(CASE, [put("/status", "completed")], id="status-completed"),
    pytest.param(EVENT, [put("/endTime", "2023-11-21T19:30:00+01:00")], id="with-endTime"),
    pytest.param(EVENT, [put("/participation/0/role", "speaker")], id="role-speaker"),
    pytest.param(CASE, [put("/contentMap/en", "a < b, and 3<4")], id="less-than-sign-is-text"),
    pytest.param(
        CASE, [put("/version", 2), put("/updated", "2026-11-02T08:00:00Z")], id="second-version"
    ),
]


@pytest.mark.parametrize(("name", "edits"), ACCEPTED)
def test_allowed_variant_is_accepted(name: str, edits: list[Edit]) -> None:
    # The schemas must not be stricter than the model: these are all legitimate content.
    doc = broken(name, *edits)
    assert schema.issues(doc, "object") == ()


def test_broken_leaves_the_example_file_alone() -> None:
    before = example(EVENT)
    broken(EVENT, drop("/startTime"), put("/nameMap/en", "x"), rename("/summaryMap/nl", "fr"))
    assert example(EVENT) == before


def test_assert_plain_rejects_dumps() -> None:
    with pytest.raises(AssertionError):
        assert_plain("'x' does not match '^[A-Z]{2}$'")
    with pytest.raises(AssertionError):
        assert_plain('{"type":"Place"} is not valid under any of the schemas')
    assert_plain("'nl' does not have the required form")


# -- formats are really checked ---------------------------------------------------------------


def _plain_jsonschema_validator(name: str) -> jsonschema.Draft202012Validator:
    docs = [json.loads(f.read_text(encoding="utf-8")) for f in SCHEMAS_DIR.glob("*.schema.json")]
    registry: referencing.Registry[Any] = referencing.Registry().with_resources(
        (doc["$id"], referencing.Resource.from_contents(doc)) for doc in docs
    )
    root = next(doc for doc in docs if doc["$id"] == f"{schema.SCHEMA_BASE}{name}.schema.json")
    return jsonschema.Draft202012Validator(root, registry=registry)  # no format_checker


def test_formats_are_checked_not_just_annotated() -> None:
    doc = broken(
        EVENT, put("/startTime", "21-11-2023 17:00"), put("/registrationPage", "https://not a uri")
    )
    plain = _plain_jsonschema_validator("event")
    # Draft 2020-12 treats "format" as an annotation: without a format checker both pass.
    assert list(plain.iter_errors(doc)) == []
    assert plain.is_valid(example(EVENT))
    pointers = {issue.pointer for issue in schema.issues(doc, "event")}
    assert {"/startTime", "/registrationPage"} <= pointers


def test_a_uri_without_scheme_is_caught_even_without_format_checking() -> None:
    # "not a uri" fails the iri pattern (^https?://) in both validators; exchange.schema
    # additionally rejects it as a format.
    doc = broken(
        EVENT, put("/startTime", "21-11-2023 17:00"), put("/registrationPage", "not a uri")
    )
    plain_paths = {
        "/" + "/".join(map(str, e.absolute_path))
        for e in _plain_jsonschema_validator("event").iter_errors(doc)
    }
    assert plain_paths == {"/registrationPage"}
    issues = schema.issues(doc, "event")
    assert {"/startTime", "/registrationPage"} <= {i.pointer for i in issues}
    assert any("not a valid iri" in i.message for i in issues)


# -- personal data in the schemas -----------------------------------------------------------

CONTACT_POINT_PATHS = {"/contactPoint/*/name", "/contactPoint/*/email", "/contactPoint/*/telephone"}


def test_personal_data_paths_of_the_event() -> None:
    paths = set(schema.personal_data_paths("event"))
    assert paths >= CONTACT_POINT_PATHS | {
        "/organizer/*",
        "/organizer/*/name",
        "/participation/*/participant",
        "/participation/*/participant/name",
    }
    # Organisations, places and times are not personal data.
    assert not {p for p in paths if re.search(r"/(nameMap|url|country|address|role)\b", p)}
    assert not {p for p in paths if p.startswith(("/location", "/startTime", "/doorTime"))}


def test_personal_data_paths_of_the_case() -> None:
    # A case's participants are organisations: only its contact points can reach a person.
    assert set(schema.personal_data_paths("case")) == CONTACT_POINT_PATHS


def test_personal_data_paths_of_the_best_practice() -> None:
    paths = set(schema.personal_data_paths("best-practice"))
    assert paths >= CONTACT_POINT_PATHS | {"/contributor/*", "/contributor/*/name"}
    assert not {p for p in paths if p.startswith("/publisher")}


def _template(pointer: str) -> str:
    return "/".join("*" if part.isdigit() else part for part in pointer.split("/"))


@pytest.mark.parametrize("path", sorted(EXAMPLES_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_schema_marks_cover_what_the_examples_mark(path: Path) -> None:
    """Whatever an instance marks as personal sits where its schema says personal data is."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    paths = set(schema.personal_data_paths(schema.schema_for_type(doc["type"])))

    def walk(node: Any, pointer: str) -> Iterator[str]:
        if isinstance(node, dict):
            if node.get("personalData") is True:
                if node.get("type") == "Person":
                    yield pointer
                for member in ("name", "email", "telephone"):
                    if member in node:
                        yield f"{pointer}/{member}"
            for key, value in node.items():
                yield from walk(value, f"{pointer}/{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                yield from walk(value, f"{pointer}/{index}")

    for marked in walk(doc, ""):
        assert _template(marked) in paths, f"{path.name}{marked} is not marked in the schema"


# -- the log entry schema --------------------------------------------------------------------

REDACTED = {
    "id": "https://samenwerken.example.nl/exchange/log/3",
    "type": "Redacted",
    "seq": 3,
    "leafHash": base64.b64encode(bytes(range(32))).decode("ascii"),
}


def test_entry_accepts_a_redacted_entry() -> None:
    assert len(base64.b64decode(REDACTED["leafHash"])) == 32
    assert schema.issues(REDACTED, "entry") == ()
    schema.check(REDACTED, "entry")


@pytest.mark.parametrize(
    ("member", "value", "pointer"),
    [
        pytest.param("object", {"type": "Case"}, "/object", id="extra-object"),
        pytest.param("proof", {}, "/proof", id="extra-proof"),
        pytest.param(
            "leafHash", base64.b64encode(bytes(31)).decode(), "/leafHash", id="hash-of-31-bytes"
        ),
        pytest.param("seq", -1, "/seq", id="negative-seq"),
    ],
)
def test_entry_rejects_a_bad_redacted_entry(member: str, value: Any, pointer: str) -> None:
    entry = {**REDACTED, member: value}
    found = schema.issues(entry, "entry")
    assert pointer in {issue.pointer for issue in found}, found
    with pytest.raises(SchemaError):
        schema.check(entry, "entry")
