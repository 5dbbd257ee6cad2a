"""The query API over own and merged objects (``GET B/objects``, ``GET B/objects/by-id``),
with a Dutch and a Flemish node federating on real loopback ports."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from exchange.errors import InvalidParameter
from exchange.query import decode_cursor, encode_cursor, languages, parse_query, search_text
from exchange.store.base import Store
from exchange.store.postgres import PostgresStore
from exchange.store.sqlite import MIGRATIONS, SQLiteStore
from tests.nodes import (
    RunningNode,
    eventually,
    example,
    fresh_schema,
    holding,
    pinned_pair,
    postgres_url,
    practice,
)

PROBLEM = "application/problem+json"
#: A word that occurs in no other object, with no prefix shared by another indexed word.
RARE = "qxjwaluwstaartmerk"


def french_only(word: str = RARE) -> dict[str, Any]:
    return {
        "type": "BestPractice",
        "nameMap": {"fr-BE": "Le Café Numérique de Liège"},
        "summaryMap": {"fr-BE": f"Un lieu où les citoyens apprennent {word} ensemble."},
        "practiceKind": "experience",
    }


class Pair:
    def __init__(self, dutch: RunningNode, flemish: RunningNode) -> None:
        self.dutch, self.flemish = dutch, flemish
        self.session = aiohttp.ClientSession()

    async def get(self, url: str) -> tuple[int, str, Any]:
        async with self.session.get(url) as response:
            return response.status, response.content_type, await response.json()

    async def objects(self, query: str = "") -> dict[str, Any]:
        status, content_type, body = await self.get(f"{self.flemish.base_url}/objects{query}")
        assert (status, content_type) == (200, "application/json"), body
        return dict(body)

    async def ids(self, query: str = "") -> list[str]:
        return [item["id"] for item in (await self.objects(query))["items"]]

    async def merged_from_dutch(self, count: int) -> None:
        async def done() -> bool:
            origin = quote(self.dutch.base_url, safe="")
            return len(await self.ids(f"?origin={origin}&limit=500")) == count

        await eventually(done)


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    async with pinned_pair(tmp_path) as (dutch, flemish):
        await dutch.node.publish(
            [
                example("case-doetank-milieu-initiatieven"),
                example("event-reuring-cafe-115"),
                example("best-practice-natuurvisie-synergie"),
            ]
        )
        await flemish.node.publish([practice(1), french_only()])
        await flemish.federation.follow(dutch.base_url)
        result = Pair(dutch, flemish)
        await result.merged_from_dutch(3)
        yield result
        await result.session.close()


async def test_lists_own_and_merged_objects_with_origin_country_and_verification(
    pair: Pair,
) -> None:
    listing = await pair.objects()
    assert listing["next"] is None
    items = listing["items"]
    assert len(items) == 5  # never a node document (type Service)
    by_origin = {item["origin"] for item in items}
    assert by_origin == {pair.dutch.base_url, pair.flemish.base_url}
    for item in items:
        own = item["origin"] == pair.flemish.base_url
        assert item["verification"] == ("own" if own else "verified")
        assert item["country"] == ("BE" if own else "NL")
        assert item["deleted"] is False
        assert item["object"]["id"] == item["id"]
        assert item["object"]["version"] == item["version"]
        assert item["type"] == item["object"]["type"]
        assert isinstance(item["seq"], int)
        datetime.fromisoformat(item["received"].replace("Z", "+00:00"))
    # The order is the order of storing: ascending received.
    received = [item["received"] for item in items]
    assert received == sorted(received)


async def test_each_filter_narrows_the_listing(pair: Pair) -> None:
    dutch, flemish = pair.dutch.base_url, pair.flemish.base_url
    everything = await pair.objects()
    by_id = {item["id"]: item for item in everything["items"]}
    event = next(i for i, item in by_id.items() if item["type"] == "Event")
    french = next(i for i, item in by_id.items() if "fr-BE" in item["object"]["nameMap"])

    assert await pair.ids("?type=Event") == [event]
    assert set(await pair.ids(f"?origin={quote(dutch)}")) == {
        i for i, item in by_id.items() if item["origin"] == dutch
    }
    assert set(await pair.ids("?country=NL")) == set(await pair.ids(f"?origin={quote(dutch)}"))
    assert set(await pair.ids("?country=be")) == {
        i for i, item in by_id.items() if item["origin"] == flemish
    }
    assert await pair.ids("?country=DE") == []
    assert await pair.ids(f"?country=NL&origin={quote(flemish)}") == []
    # lang: RFC 4647 basic filtering, fr matches fr-BE; nl matches every Dutch text.
    assert await pair.ids("?lang=fr") == [french]
    assert await pair.ids("?lang=FR-be") == [french]
    assert french not in await pair.ids("?lang=nl")
    assert len(await pair.ids("?lang=nl")) == 4
    # q: case and diacritics folded, word prefixes, names, summaries and contents.
    assert await pair.ids(f"?q={RARE.upper()}") == [french]
    assert await pair.ids("?q=numerique") == [french]
    assert await pair.ids("?q=caf%C3%A9%20li%C3%A8g") == [french]
    assert await pair.ids("?q=numerique%20nonexistentword") == []
    assert await pair.ids("?q=Reuring") == [event]
    # id, repeatable
    two = sorted(by_id)[:2]
    assert sorted(await pair.ids(f"?id={quote(two[0])}&id={quote(two[1])}")) == two
    assert await pair.ids(f"?id={quote(dutch)}") == []  # the node document is never listed
    # filters combine
    assert await pair.ids(f"?type=Event&country=NL&lang=nl&id={quote(event)}") == [event]


async def test_updated_since_compares_instants(pair: Pair) -> None:
    items = (await pair.objects())["items"]
    latest = max(
        datetime.fromisoformat(item["object"]["updated"].replace("Z", "+00:00")) for item in items
    )
    newest = {
        item["id"]
        for item in items
        if datetime.fromisoformat(item["object"]["updated"].replace("Z", "+00:00")) == latest
    }
    stamp = latest.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert set(await pair.ids(f"?updated_since={stamp}")) == newest
    # The same instant in another offset.
    shifted = latest.astimezone(datetime.strptime("+0200", "%z").tzinfo).isoformat()
    assert set(await pair.ids(f"?updated_since={quote(shifted)}")) == newest
    assert await pair.ids("?updated_since=2999-01-01T00:00:00Z") == []
    assert len(await pair.ids("?updated_since=2000-01-01T00:00:00%2B01:00")) == len(items)


async def test_the_cursor_walks_everything_once_while_objects_arrive(pair: Pair) -> None:
    everything = await pair.ids()
    seen: list[str] = []
    url: str | None = f"{pair.flemish.base_url}/objects?limit=2"
    published_meanwhile = None
    while url is not None:
        status, _, page = await pair.get(url)
        assert status == 200
        assert len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        if published_meanwhile is None:
            (outcome,) = await pair.flemish.node.publish([practice(77)])
            published_meanwhile = outcome.id
        url = page["next"]
        if url is not None:
            assert url.startswith(f"{pair.flemish.base_url}/objects?")
            assert "limit=2" in url
    assert seen == [*everything, published_meanwhile]  # none skipped, none twice


async def test_an_update_moves_to_the_end_and_a_delete_leaves_the_listing(pair: Pair) -> None:
    first = (await pair.objects())["items"][0]
    own = next(i for i in (await pair.objects())["items"] if i["verification"] == "own")
    draft = practice(1) | {"id": own["id"], "practiceKind": "instrument"}
    await pair.flemish.node.publish([draft])
    items = (await pair.objects())["items"]
    assert items[-1]["id"] == own["id"]
    assert items[-1]["version"] == 2
    assert items[-1]["received"] >= first["received"]

    await pair.flemish.node.delete(own["id"])
    assert own["id"] not in await pair.ids()
    included = {i["id"]: i for i in (await pair.objects("?deleted=include"))["items"]}
    assert included[own["id"]]["deleted"] is True
    assert included[own["id"]]["object"]["type"] == "Tombstone"
    assert await pair.ids("?deleted=exclude") == await pair.ids()


BAD_PARAMETERS = {
    "limit zero": ("limit=0", "limit"),
    "limit too large": ("limit=501", "limit"),
    "limit not a number": ("limit=ten", "limit"),
    "limit negative": ("limit=-1", "limit"),
    "unknown type": ("type=Note", "type"),
    "type twice": ("type=Case&type=Event", "type"),
    "country of three letters": ("country=NLD", "country"),
    "lang not a tag": ("lang=n%20l", "lang"),
    "q without words": ("q=%21%21", "q"),
    "updated_since without offset": ("updated_since=2026-01-01T00:00:00", "updated_since"),
    "updated_since not a date": ("updated_since=yesterday", "updated_since"),
    "a forged cursor": ("after=42", "after"),
    "deleted=maybe": ("deleted=maybe", "deleted"),
    "origin not a URL": ("origin=nl", "origin"),
    "an empty id": ("id=", "id"),
    "unknown parameter": ("sort=name", "sort"),
}


@pytest.mark.parametrize(("query", "parameter"), BAD_PARAMETERS.values(), ids=BAD_PARAMETERS.keys())
async def test_bad_parameters_are_problems_naming_the_parameter(
    pair: Pair, query: str, parameter: str
) -> None:
    status, content_type, body = await pair.get(f"{pair.flemish.base_url}/objects?{query}")
    assert (status, content_type) == (400, PROBLEM)
    assert body["type"] == "https://w3id.org/exchange/problems/invalid-parameter"
    assert body["parameter"] == parameter
    assert parameter in body["detail"]


async def test_by_id_serves_own_and_merged_objects(pair: Pair) -> None:
    for item in (await pair.objects())["items"]:
        url = f"{pair.flemish.base_url}/objects/by-id?id={quote(item['id'], safe='')}"
        status, content_type, body = await pair.get(url)
        assert (status, content_type) == (200, "application/json")
        assert body == item
    base = pair.flemish.base_url
    unknown = f"{base}/objects/by-id?id={quote(pair.dutch.base_url + '/objects/nope')}"
    assert (await pair.get(unknown))[:2] == (404, PROBLEM)
    assert (await pair.get(f"{base}/objects/by-id?id={quote(base)}"))[0] == 404  # Service
    status, _, body = await pair.get(f"{base}/objects/by-id")
    assert (status, body["parameter"]) == (400, "id")
    status, _, body = await pair.get(f"{base}/objects/by-id?id=a&id=b")
    assert (status, body["parameter"]) == (400, "id")


async def test_a_slug_still_serves_the_own_signed_entry(pair: Pair) -> None:
    own = next(i for i in (await pair.objects())["items"] if i["verification"] == "own")
    slug = own["id"].rsplit("/", 1)[1]
    async with pair.session.get(f"{pair.flemish.base_url}/objects/{slug}") as response:
        assert response.status == 200
        assert response.content_type == "application/activity+json"
        entry = await response.json(content_type=None)
    assert entry["object"] == own["object"]
    merged = next(i for i in (await pair.objects())["items"] if i["verification"] != "own")
    slug = merged["id"].rsplit("/", 1)[1]
    async with pair.session.get(f"{pair.flemish.base_url}/objects/{slug}") as response:
        assert response.status == 404


async def test_a_merged_delete_leaves_no_indexed_word_on_disk(pair: Pair) -> None:
    """Rule 5 for the text index: FTS5 keeps a deleted document's words in its segments
    until they merge; the store merges them and truncates the WAL after a purge."""
    dutch, flemish = pair.dutch, pair.flemish
    word = "zqvxmerkwoordtweede"
    (outcome,) = await dutch.node.publish([french_only(word)])
    await pair.merged_from_dutch(4)
    assert await pair.ids(f"?q={word}") == [outcome.id]
    assert holding(flemish.settings, word.encode()) != []
    await dutch.node.delete(outcome.id)
    await pair.merged_from_dutch(3)
    assert await pair.ids(f"?q={word}") == []
    assert holding(flemish.settings, word.encode()) == []


# --- the pure core -----------------------------------------------------------------------


def test_the_cursor_round_trips_and_is_opaque() -> None:
    for change in (0, 1, 35, 36, 10**9):
        assert decode_cursor(encode_cursor(change)) == change
    with pytest.raises(InvalidParameter):
        decode_cursor("C1")


def test_index_text_and_languages() -> None:
    body = {
        "nameMap": {"nl-BE": "Één Café", "en": "One café"},
        "summaryMap": {"fr": "Données_ouvertes"},
        "contentMap": "not a map",
        "tag": [{"name": "hidden"}],
    }
    assert search_text(body) == "een cafe one cafe donnees ouvertes"
    assert languages(body) == {"nl", "nl-be", "en", "fr"}
    assert parse_query([("q", "CAFÉ  café één")]).terms == ("cafe", "een")


def test_migration_4_backfills_existing_objects(tmp_path: Path) -> None:
    """A store written before the query API gets received times, change numbers and its
    index from the objects it holds."""
    path = tmp_path / "store.db"
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for version, migration in enumerate(MIGRATIONS[:3], 1):
        if callable(migration):
            migration(connection)
        else:
            for statement in migration.split(";"):
                if statement.strip():
                    connection.execute(statement)
        connection.execute("INSERT INTO schema_version VALUES (?)", (version,))
    body = '{"id":"http://a.example/objects/x","type":"Case","nameMap":{"nl":"Oude zaak"},'
    body += '"updated":"2025-01-02T03:04:05Z","version":1}'
    connection.execute(
        "INSERT INTO objects VALUES (?, ?, 'Case', 1, 0, 0, ?)",
        ("http://a.example/objects/x", "http://a.example", body),
    )
    connection.close()

    async def run() -> None:
        store = SQLiteStore(path)
        await store.open()
        try:
            page = await store.query_objects(parse_query([("q", "oude"), ("lang", "nl")]))
            (stored,) = page.items
            assert stored.received == "2025-01-02T03:04:05Z"
            assert stored.change == 1
        finally:
            await store.close()

    asyncio.run(run())


def test_the_objects_command_filters_like_the_api(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from exchange.cli import main
    from tests.nodes import EXAMPLES

    home = tmp_path / "node"
    assert (
        main(
            [
                "init",
                "--home",
                str(home),
                "--base-url",
                "http://127.0.0.1:8080",
                "--name",
                "Knoop",
                "--country",
                "NL",
            ]
        )
        == 0
    )
    files = [
        str(EXAMPLES / f"{name}.json")
        for name in ("event-reuring-cafe-115", "case-doetank-milieu-initiatieven")
    ]
    assert main(["publish", "--home", str(home), "--rebase-ids", *files]) == 0
    capsys.readouterr()
    assert main(["objects", "--home", str(home), "--q", "reuring", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["type"], row["country"]) == ("Event", "NL")
    assert main(["objects", "--home", str(home), "--country", "BE"]) == 0
    assert "0 object(s)" in capsys.readouterr().out
    assert main(["objects", "--home", str(home), "--lang", "nl", "--country", "nl"]) == 0
    assert "2 object(s)" in capsys.readouterr().out
    assert main(["objects", "--home", str(home), "--lang", "n l"]) == 2
    assert "lang" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["fts5", "like-fallback", "postgresql"])
def test_free_text_and_languages_without_fts5_give_the_same_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    """Where SQLite lacks FTS5 the text lives in a plain table searched with LIKE over the
    same folded words, as on PostgreSQL: the answers are the same, only slower on large
    stores (PostgreSQL: the planner's indexes instead of SQLite's hints)."""
    import exchange.store.sqlite as sqlite_backend
    from exchange.entries import ObjectRecord
    from exchange.partners import OriginState
    from exchange.store.base import MergeWrite

    if backend == "like-fallback":
        monkeypatch.setattr(sqlite_backend, "fts5_available", lambda connection: False)
    origin = "https://a.example"
    texts = {
        "one": {"nl": "Samen werken aan de Bibliotheek"},
        "two": {"fr-BE": "Bibliothèque numérique"},
        "three": {"en": "Working together_apart"},
    }
    records = [
        ObjectRecord(
            f"{origin}/objects/{name}",
            origin,
            "Case",
            1,
            False,
            seq,
            {"id": f"{origin}/objects/{name}", "type": "Case", "nameMap": names},
        )
        for seq, (name, names) in enumerate(texts.items())
    ]

    async def run() -> dict[str, list[str]]:
        store: Store = SQLiteStore(tmp_path / "store.db")
        if backend == "postgresql":
            store = PostgresStore(postgres_url(), fresh_schema())
        await store.open()
        try:
            write = MergeWrite(OriginState(origin, next_seq=3), (), records)
            await store.merge(lambda view: write)
            answers = {}
            for label, params in {
                "biblio": [("q", "biblio")],
                "biblio fr": [("q", "BIBLIO"), ("lang", "fr")],
                "two words": [("q", "samen bibl")],
                "inner part": [("q", "werken bibliotheek aan")],
                "not a prefix": [("q", "theek")],
                "underscore": [("q", "apart")],
                "after": [("q", "biblio"), ("after", encode_cursor(1))],
            }.items():
                page = await store.query_objects(parse_query(params))
                answers[label] = [s.id.rsplit("/", 1)[1] for s in page.items]
            return answers
        finally:
            await store.close()

    assert asyncio.run(run()) == {
        "biblio": ["one", "two"],
        "biblio fr": ["two"],
        "two words": ["one"],
        "inner part": ["one"],
        "not a prefix": [],
        "underscore": ["three"],
        "after": ["two"],
    }


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_batch_of_object_writes_equals_writing_them_one_at_a_time(
    tmp_path: Path, backend: str
) -> None:
    """put_objects writes a batch in a few statements; the result must be what writing its
    records one by one gives: an object written twice in the batch keeps only its last
    version's index rows, one deleted in the batch none, the same version again keeps its
    place, and objects stored before are replaced or deleted as usual."""
    from exchange.entries import ObjectRecord
    from exchange.partners import OriginState
    from exchange.store.base import MergeWrite

    origin = "https://a.example"

    def record(name: str, version: int, names: dict[str, str] | None) -> ObjectRecord:
        object_id = f"{origin}/objects/{name}"
        body: dict[str, Any] = {"id": object_id, "type": "Case", "version": version}
        if names is None:
            body = {"id": object_id, "type": "Tombstone", "formerType": "Case"}
        else:
            body["nameMap"] = names
        return ObjectRecord(object_id, origin, "Case", version, names is None, version, body)

    before = [record("d", 1, {"nl": "Oude doetank"}), record("e", 1, {"de": "Alte Praxis"})]
    batch = [
        record("a", 1, {"nl": "Eerste versie"}),
        record("b", 1, {"fr": "Bibliothèque numérique"}),
        record("a", 2, {"en": "Second version"}),
        record("b", 1, {"fr": "Bibliothèque numérique"}),
        record("c", 1, {"nl": "Kort bestaan"}),
        record("c", 2, None),
        record("d", 2, {"en": "New do-tank"}),
        record("e", 2, None),
    ]

    async def stored(writes: list[list[ObjectRecord]], schema: str) -> dict[str, list[Any]]:
        store: Store = SQLiteStore(tmp_path / f"{schema}.db")
        if backend == "postgresql":
            store = PostgresStore(postgres_url(), schema)
        await store.open()
        try:
            for records in [before, *writes]:
                write = MergeWrite(OriginState(origin, next_seq=0), (), tuple(records))
                await store.merge(lambda view, write=write: write)
            return {
                "objects": [
                    tuple(row)
                    for row in await store._all(
                        "SELECT id, version, deleted, change, body FROM objects ORDER BY id"
                    )
                ],
                "languages": [
                    tuple(row)
                    for row in await store._all(
                        "SELECT lang, change FROM object_languages ORDER BY change, lang"
                    )
                ],
                "text": [
                    tuple(row)
                    for row in await store._all(
                        "SELECT rowid, text FROM object_text ORDER BY rowid"
                    )
                ],
            }
        finally:
            await store.close()

    one_by_one = asyncio.run(stored([[item] for item in batch], fresh_schema()))
    batched = asyncio.run(stored([batch], fresh_schema()))
    assert batched == one_by_one
    changes = {row[0].rsplit("/", 1)[1]: row[3] for row in batched["objects"]}
    assert [row[2] for row in batched["objects"]] == [0, 0, 1, 0, 1]  # a, b, c, d, e
    assert batched["languages"] == [
        ("fr", changes["b"]),
        ("en", changes["a"]),
        ("en", changes["d"]),
    ]
    assert batched["text"] == [
        (changes["b"], "bibliotheque numerique"),
        (changes["a"], "second version"),
        (changes["d"], "new do tank"),
    ]
