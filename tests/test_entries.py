"""Building the node's own entries: object preparation, policy, signing limits (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from exchange.entries import (
    ObjectRecord,
    ObjectRevived,
    build_entry,
    prepare_object,
    sign_entry,
    strip_personal_data,
    tombstone_for,
    unchanged,
)
from exchange.errors import SchemaError, UsageError
from exchange.keys import KeyPair
from exchange.proof import verify_document
from tests.nodes import example, practice

BASE = "https://samenwerken.example.nl/exchange"
NOW = datetime(2026, 11, 23, 10, 0, 0, 123456, tzinfo=UTC)
KEY = KeyPair(f"{BASE}/keys/2026-1", bytes(range(32)))


def prepare(
    draft: dict[str, object], current: ObjectRecord | None = None, policy: str = "public-roles"
) -> dict[str, object]:
    return prepare_object(draft, base_url=BASE, current=current, now=NOW, personal_data=policy)


def test_a_new_object_gets_a_minted_id_version_one_and_utc_timestamps() -> None:
    obj = prepare(example("event-reuring-cafe-115"))
    assert str(obj["id"]).startswith(f"{BASE}/objects/event-reuring-cafe-115-een-overheid-")
    assert obj["version"] == 1
    assert obj["attributedTo"] == BASE
    assert obj["published"] == obj["updated"] == "2026-11-23T10:00:00Z"
    assert "@context" not in obj


def test_an_update_keeps_published_and_counts_the_version_up() -> None:
    first = prepare({**practice(1), "id": f"{BASE}/objects/p1"})
    record = ObjectRecord(
        str(first["id"]),
        BASE,
        "BestPractice",
        4,
        False,
        9,
        {**first, "published": "2020-01-01T00:00:00Z"},
    )
    second = prepare({**practice(1), "id": record.id, "summaryMap": {"en": "more"}}, record)
    assert second["version"] == 5
    assert second["published"] == "2020-01-01T00:00:00Z"
    assert not unchanged(second, record)
    assert unchanged({**record.body, "version": 5, "updated": "2030-01-01T00:00:00Z"}, record)


@pytest.mark.parametrize(
    ("draft", "error", "reason"),
    [
        ({**practice(1), "proof": {}}, UsageError, "publish unsigned objects only"),
        ({**practice(1), "id": "https://other.example/objects/x"}, UsageError, "is not under"),
        ({**practice(1), "type": "Note"}, SchemaError, "type must be one of"),
        ({**practice(1), "practiceKind": "anecdote"}, SchemaError, "/practiceKind"),
        ({**practice(1), "rating": 1.5}, Exception, "integer"),
    ],
    ids=["signed draft", "foreign id", "unknown type", "schema", "float"],
)
def test_bad_drafts_are_refused(
    draft: dict[str, object], error: type[Exception], reason: str
) -> None:
    with pytest.raises(error, match=reason):
        prepare(draft)


def test_type_cannot_change_and_tombstones_are_final() -> None:
    record = ObjectRecord(f"{BASE}/objects/p1", BASE, "Case", 1, False, 0, {})
    with pytest.raises(SchemaError, match="cannot change its type"):
        prepare({**practice(1), "id": record.id}, record)
    dead = ObjectRecord(record.id, BASE, "Case", 1, True, 3, {})
    with pytest.raises(ObjectRevived):
        prepare({**practice(1), "id": record.id}, dead)
    with pytest.raises(ObjectRevived):
        tombstone_for(dead, NOW)
    assert tombstone_for(record, NOW) == {
        "id": record.id,
        "type": "Tombstone",
        "formerType": "Case",
        "deleted": "2026-11-23T10:00:00Z",
    }


def test_policy_public_roles_refuses_a_person_in_another_role() -> None:
    event = example("event-reuring-cafe-115")
    event["participation"][0]["role"] = "organiser"
    assert strip_personal_data(event, "public-roles")  # organiser is a public role
    with pytest.raises(SchemaError):
        strip_personal_data(
            {**event, "participation": [{**event["participation"][0], "role": "guest"}]},
            "public-roles",
        )


def test_signed_entry_verifies_and_oversized_entries_are_refused() -> None:
    obj = prepare(practice(1))
    entry = build_entry(0, "Create", obj, BASE, NOW)
    signed = sign_entry(entry, KEY, NOW, 256 * 1024)
    assert signed.document["proof"]["created"] == "2026-11-23T10:00:00Z"
    verify_document(signed.document, lambda _: KEY.public, NOW)
    with pytest.raises(SchemaError, match="at most 1000 bytes"):
        sign_entry(entry, KEY, NOW, 1000)
