"""The publishing node over HTTP: node document, feed paging and caching, log, checkpoint,
proofs, objects, the operator API, and problem+json for every failure."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from exchange.canonical import canonicalize, parse
from exchange.checkpoint import NoteVerifier, open_note, parse_checkpoint
from exchange.http.server import create_app
from exchange.merkle import leaf_hash, verify_consistency, verify_inclusion
from exchange.operator import InitResult
from exchange.proof import verify_document
from tests.nodes import example, make_node, practice

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
PROBLEM = "application/problem+json"


def bearer(node: InitResult) -> dict[str, str]:
    return {"Authorization": f"Bearer {node.token}"}


async def publish(
    client: TestClient[Any, Any], node: InitResult, drafts: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    response = await client.post("/admin/objects", json=drafts, headers=bearer(node))
    assert response.status == 201, await response.text()
    results: list[dict[str, Any]] = (await response.json())["results"]
    return results


async def publish_count(client: TestClient[Any, Any], node: InitResult, count: int) -> None:
    for start in range(0, count, 250):
        await publish(client, node, [practice(i) for i in range(start, min(count, start + 250))])


async def assert_problem(response: Any, status: int, kind: str) -> dict[str, Any]:
    assert response.status == status
    assert response.content_type == PROBLEM
    body: dict[str, Any] = await response.json()
    assert body["type"] == f"https://w3id.org/exchange/problems/{kind}"
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    return body


# --- node document ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        ("application/activity+json", "application/activity+json"),
        ("application/ld+json", "application/ld+json"),
        ("text/html,application/xhtml+xml;q=0.9", "text/html"),
        (None, "application/activity+json"),
    ],
)
async def test_node_document_by_content_negotiation(
    client: TestClient[Any, Any], node: InitResult, accept: str | None, content_type: str
) -> None:
    response = await client.get("/", headers={"Accept": accept} if accept else {})
    assert response.status == 200
    assert response.content_type == content_type
    text = await response.text()
    if content_type == "text/html":
        assert "<h1>Testknooppunt</h1>" in text
        return
    document = json.loads(text)
    assert document["id"] == node.settings.base_url
    assert document["logOrigin"] == "127.0.0.1:8080"
    assert document["assertionMethod"][0]["publicKeyMultibase"].startswith("z6Mk")
    assert document["checkpointKey"].startswith("127.0.0.1:8080+")


async def test_node_document_406_when_nothing_acceptable(client: TestClient[Any, Any]) -> None:
    await assert_problem(
        await client.get("/", headers={"Accept": "image/png"}), 406, "not-acceptable"
    )


async def test_well_known_and_key(client: TestClient[Any, Any], node: InitResult) -> None:
    assert await (await client.get("/.well-known/exchange")).json() == {
        "nodes": [node.settings.base_url]
    }
    key = await (await client.get("/keys/" + node.settings.active_key)).json()
    assert key["id"] == node.settings.key_id(node.settings.active_key)
    await assert_problem(await client.get("/keys/1999-1"), 404, "not-found")


# --- feed pages ------------------------------------------------------------------------


@pytest.mark.parametrize(("total", "last"), [(0, 0), (99, 0), (100, 1), (101, 1)])
async def test_page_boundaries(
    client: TestClient[Any, Any], node: InitResult, total: int, last: int
) -> None:
    await publish_count(client, node, total)
    collection = await (await client.get("/feed")).json()
    base = node.settings.base_url
    assert collection["totalItems"] == total
    assert collection["first"] == f"{base}/feed/0"
    assert collection["last"] == f"{base}/feed/{last}"
    seen = []
    for number in range(last + 1):
        page = await (await client.get(f"/feed/{number}")).json()
        assert page["startIndex"] == number * 100
        assert page["partOf"] == f"{base}/feed"
        assert ("prev" in page) == (number > 0)
        full = len(page["orderedItems"]) == 100
        assert ("next" in page) == full
        if full:
            assert page["next"] == f"{base}/feed/{number + 1}"
        seen += [item["seq"] for item in page["orderedItems"]]
    assert seen == list(range(total))
    await assert_problem(await client.get(f"/feed/{last + 1}"), 404, "not-found")


async def test_full_pages_are_immutable_and_the_last_page_revalidates(
    client: TestClient[Any, Any], node: InitResult
) -> None:
    await publish_count(client, node, 101)
    full = await client.get("/feed/0")
    assert full.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    tag = full.headers["ETag"]
    assert tag.startswith('"')
    assert tag.endswith('"')
    again = await client.get("/feed/0", headers={"If-None-Match": tag})
    assert again.status == 304
    assert again.headers["ETag"] == tag

    last = await client.get("/feed/1")
    assert last.headers["Cache-Control"] == "no-cache"
    last_tag = last.headers["ETag"]
    assert (await client.get("/feed/1", headers={"If-None-Match": last_tag})).status == 304
    await publish(client, node, [practice(999)])
    changed = await client.get("/feed/1", headers={"If-None-Match": last_tag})
    assert changed.status == 200
    assert changed.headers["ETag"] != last_tag
    assert (await client.get("/feed/0")).headers["ETag"] == tag  # full pages never change


async def test_entries_verify_and_the_checkpoint_covers_them(
    client: TestClient[Any, Any], node: InitResult
) -> None:
    await publish(
        client,
        node,
        [example("event-reuring-cafe-115"), example("case-doetank-milieu-initiatieven")],
    )
    older = await (await client.get("/checkpoint")).text()
    await publish(client, node, [practice(i) for i in range(5)])
    document = await (await client.get("/", headers={"Accept": "application/activity+json"})).json()
    verifier = NoteVerifier.parse(document["checkpointKey"])
    text, _ = open_note(await (await client.get("/checkpoint")).text(), [verifier])
    checkpoint = parse_checkpoint(text, document["logOrigin"])
    assert checkpoint.size == 7
    old = parse_checkpoint(open_note(older, [verifier])[0])
    assert old.size == 2

    key = node.settings.key_id(node.settings.active_key)
    page = await (await client.get("/feed/0")).read()
    items = parse(page)["orderedItems"]
    for seq, entry in enumerate(items):
        assert entry["id"] == f"{node.settings.base_url}/log/{seq}"
        proof = verify_document(entry, lambda method: _public_key(document, method), _now())
        assert proof[0].verification_method == key
        served = await (await client.get(f"/log/{seq}")).read()
        assert served == canonicalize(entry)
        query = f"/proof/inclusion?index={seq}&size=7"
        hashes = [base64.b64decode(h) for h in (await (await client.get(query)).json())["hashes"]]
        verify_inclusion(leaf_hash(served), seq, 7, hashes, checkpoint.root_hash)
    consistency = await (await client.get("/proof/consistency?first=2&second=7")).json()
    verify_consistency(
        2,
        7,
        old.root_hash,
        checkpoint.root_hash,
        [base64.b64decode(h) for h in consistency["hashes"]],
    )
    same = await (await client.get("/proof/consistency?first=7&second=7")).json()
    assert same == {"hashes": []}


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def _public_key(document: dict[str, Any], method: str) -> Any:
    from exchange.keys import public_key_from_multibase

    (key,) = [k for k in document["assertionMethod"] if k["id"] == method]
    return public_key_from_multibase(method, key["publicKeyMultibase"])


async def test_empty_log_has_a_signed_checkpoint_with_the_empty_root(
    client: TestClient[Any, Any],
) -> None:
    text = await (await client.get("/checkpoint")).text()
    assert text.startswith("127.0.0.1:8080\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n— ")


# --- problems --------------------------------------------------------------------------


PROBLEM_REQUESTS = {
    "unknown page": ("GET", "/feed/7", 404, "not-found"),
    "page not a number": ("GET", "/feed/abc", 400, "bad-request"),
    "page with leading zero": ("GET", "/feed/01", 400, "bad-request"),
    "unknown log entry": ("GET", "/log/5", 404, "not-found"),
    "unknown route": ("GET", "/no/such/thing", 404, "not-found"),
    "inclusion index not a number": ("GET", "/proof/inclusion?index=x&size=1", 400, "bad-request"),
    "inclusion without size": ("GET", "/proof/inclusion?index=0", 400, "bad-request"),
    "inclusion beyond the log": ("GET", "/proof/inclusion?index=0&size=9", 400, "bad-request"),
    "consistency from zero": ("GET", "/proof/consistency?first=0&second=1", 400, "bad-request"),
    "consistency backwards": ("GET", "/proof/consistency?first=2&second=1", 400, "bad-request"),
    "negative index": ("GET", "/proof/inclusion?index=-1&size=1", 400, "bad-request"),
    "objects limit zero": ("GET", "/objects?limit=0", 400, "invalid-parameter"),
    "objects unknown type": ("GET", "/objects?type=Note", 400, "invalid-parameter"),
    "unknown object": ("GET", "/objects/nothing-here", 404, "not-found"),
    "unknown schema": ("GET", "/schemas/secret.schema.json", 404, "not-found"),
    "wrong method": ("PUT", "/feed", 405, "method-not-allowed"),
    "publish without token": ("POST", "/admin/objects", 401, "unauthorized"),
    "delete without token": ("DELETE", "/admin/objects/x", 401, "unauthorized"),
}


@pytest.mark.parametrize(
    ("method", "path", "status", "kind"), PROBLEM_REQUESTS.values(), ids=PROBLEM_REQUESTS.keys()
)
async def test_problem_json_and_the_node_stays_up(
    client: TestClient[Any, Any], node: InitResult, method: str, path: str, status: int, kind: str
) -> None:
    await publish(client, node, [practice(1)])
    await assert_problem(await client.request(method, path, json={}), status, kind)
    assert (await client.get("/feed")).status == 200


async def test_wrong_token(client: TestClient[Any, Any]) -> None:
    response = await client.post(
        "/admin/objects", json=practice(1), headers={"Authorization": "Bearer nope"}
    )
    await assert_problem(response, 401, "unauthorized")
    assert "invalid_token" in response.headers["WWW-Authenticate"]


async def test_oversized_body(client: TestClient[Any, Any], node: InitResult) -> None:
    body = b"[" + b" " * (9 * 1024 * 1024) + b"]"
    response = await client.post(
        "/admin/objects", data=body, headers={**bearer(node), "Content-Type": "application/json"}
    )
    await assert_problem(response, 413, "too-large")
    assert (await client.get("/feed")).status == 200


async def test_invalid_object_lists_pointers_and_writes_nothing(
    client: TestClient[Any, Any], node: InitResult
) -> None:
    event = example("event-reuring-cafe-115")
    del event["startTime"]
    event["nameMap"]["en_GB!"] = "x"
    response = await client.post("/admin/objects", json=[practice(1), event], headers=bearer(node))
    body = await assert_problem(response, 422, "schema")
    pointers = {error["pointer"] for error in body["errors"]}
    assert {"/startTime", "/nameMap/en_GB!"} <= pointers
    assert (await (await client.get("/feed")).json())["totalItems"] == 0  # the batch is atomic


@pytest.mark.parametrize(
    ("body", "content_type", "status", "kind"),
    [
        (b'{"a": 1, "a": 2}', "application/json", 400, "invalid-json"),
        (b"not json", "application/json", 400, "invalid-json"),
        (b"[]", "application/json", 400, "bad-request"),
        (b'{"type": "Case"}', "text/plain", 415, "unsupported-media-type"),
        (b'{"type": "Note", "nameMap": {"en": "x"}}', "application/json", 422, "schema"),
    ],
    ids=["duplicate member", "not json", "empty batch", "wrong media type", "unknown type"],
)
async def test_bad_publish_bodies(
    client: TestClient[Any, Any],
    node: InitResult,
    body: bytes,
    content_type: str,
    status: int,
    kind: str,
) -> None:
    response = await client.post(
        "/admin/objects", data=body, headers={**bearer(node), "Content-Type": content_type}
    )
    await assert_problem(response, status, kind)


# --- publish, update, delete -----------------------------------------------------------


async def test_update_bumps_the_version_and_delete_leaves_a_tombstone_never_revived(
    client: TestClient[Any, Any], node: InitResult
) -> None:
    (created,) = await publish(client, node, [practice(1)])
    assert created["action"] == "created"
    assert created["version"] == 1
    draft = {**practice(1), "id": created["id"], "summaryMap": {"en": "Now with a summary"}}
    (updated,) = await publish(client, node, [draft])
    assert (updated["action"], updated["version"], updated["seq"]) == ("updated", 2, 1)
    response = await client.post("/admin/objects", json=draft, headers=bearer(node))
    assert response.status == 200
    assert (await response.json())["results"][0]["action"] == "unchanged"

    slug = created["id"].rsplit("/", 1)[1]
    entry = parse(await (await client.get(f"/objects/{slug}")).read())
    assert entry["type"] == "Update"
    assert entry["object"]["version"] == 2
    deleted = await client.delete(f"/admin/objects/{slug}", headers=bearer(node))
    assert deleted.status == 200
    tombstone = parse(await (await client.get(f"/objects/{slug}")).read())
    assert tombstone["type"] == "Delete"
    assert tombstone["object"] == {
        "id": created["id"],
        "type": "Tombstone",
        "formerType": "BestPractice",
        "deleted": tombstone["published"],
    }
    revived = await client.post("/admin/objects", json=draft, headers=bearer(node))
    await assert_problem(revived, 409, "object-deleted")
    await assert_problem(
        await client.delete(f"/admin/objects/{slug}", headers=bearer(node)), 409, "object-deleted"
    )
    listed = await (await client.get("/objects")).json()
    assert listed["items"] == []


async def test_objects_list_filters_and_pages(
    client: TestClient[Any, Any], node: InitResult
) -> None:
    await publish(
        client, node, [practice(i) for i in range(5)] + [example("event-reuring-cafe-115")]
    )
    events = await (await client.get("/objects?type=Event")).json()
    assert [item["type"] for item in events["items"]] == ["Event"]
    assert events["items"][0]["origin"] == node.settings.base_url
    assert events["items"][0]["version"] == 1
    first = await (await client.get("/objects?limit=4")).json()
    assert len(first["items"]) == 4
    assert first["next"]
    assert first["next"].startswith(f"{node.settings.base_url}/objects?")
    rest = await (await client.get(first["next"].removeprefix(node.settings.base_url))).json()
    assert len(rest["items"]) == 2
    assert rest["next"] is None
    ids = [item["id"] for item in first["items"] + rest["items"]]
    assert len(set(ids)) == 6
    other = await (await client.get("/objects?origin=https://elsewhere.example")).json()
    assert other["items"] == []


# --- personal data ---------------------------------------------------------------------


def _with_contact(name: str) -> dict[str, Any]:
    case = example(name)
    case["contactPoint"] = [
        {
            "type": "ContactPoint",
            "name": "Lotte Voorbeeld",
            "email": "lotte@example.org",
            "personalData": True,
        },
        {"type": "ContactPoint", "email": "info@example.org", "personalData": False},
    ]
    return case


async def test_personal_data_is_stripped_by_default(
    client: TestClient[Any, Any], node: InitResult
) -> None:
    (result,) = await publish(client, node, [_with_contact("case-doetank-preventieve-zorg")])
    page = await (await client.get("/feed/0")).read()
    assert b"lotte@example.org" not in page
    assert b"Lotte Voorbeeld" not in page
    assert b"info@example.org" in page
    assert result["action"] == "created"


async def test_personal_data_is_published_when_the_operator_opts_in(
    tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    node = make_node(tmp_path / "open", personal_data="all")
    client = await aiohttp_client(create_app(node.settings))
    await publish(client, node, [_with_contact("case-doetank-preventieve-zorg")])
    assert b"lotte@example.org" in await (await client.get("/feed/0")).read()


async def test_policy_none_removes_people_in_public_roles(
    tmp_path: Path, aiohttp_client: ClientFactory
) -> None:
    node = make_node(tmp_path / "closed", personal_data="none")
    client = await aiohttp_client(create_app(node.settings))
    await publish(client, node, [example("event-reuring-cafe-115")])
    page = parse(await (await client.get("/feed/0")).read())
    event = page["orderedItems"][0]["object"]
    people = [p for p in event.get("participation", []) if p["participant"]["type"] == "Person"]
    assert people == []
    assert event["organizer"]


# --- vocabulary, context, schemas ------------------------------------------------------


async def test_vocabulary_context_and_schemas_are_served(client: TestClient[Any, Any]) -> None:
    turtle = await client.get("/ns", headers={"Accept": "text/turtle"})
    assert turtle.content_type == "text/turtle"
    assert (
        "exv:Case" in await turtle.text()
        or "<https://w3id.org/exchange/ns#Case>" in await turtle.text()
    )
    page = await client.get("/ns", headers={"Accept": "text/html"})
    assert page.content_type == "text/html"
    context = await client.get("/ns/v1")
    assert context.content_type == "application/ld+json"
    assert "@context" in await context.json()
    schema = await client.get("/schemas/event.schema.json")
    assert (await schema.json())["$id"] == "https://w3id.org/exchange/schemas/event.schema.json"


def test_page_cache_keeps_full_pages_on_disk_and_ignores_torn_files(tmp_path: Path) -> None:
    from exchange.http.server import PageCache

    cache = PageCache(max_bytes=10, folder=tmp_path / "pages")
    cache.put(3, b"x" * 20, '"tag-3"')  # too large for memory: disk only
    assert cache.get(3) == (b"x" * 20, '"tag-3"')
    fresh = PageCache(max_bytes=1000, folder=tmp_path / "pages")
    assert fresh.get(3) == (b"x" * 20, '"tag-3"')  # survives a restart
    (tmp_path / "pages" / "4.page").write_bytes(b'"tag-4" 20\nshort')
    assert fresh.get(4) is None
    assert fresh.get(5) is None


async def test_a_full_page_comes_back_identical_from_the_disk_cache(
    node: InitResult, aiohttp_client: ClientFactory
) -> None:
    first = await aiohttp_client(create_app(node.settings))
    await publish_count(first, node, 100)
    page = await first.get("/feed/0")
    body, tag = await page.read(), page.headers["ETag"]
    assert (node.settings.home / "pages" / "0.page").is_file()
    second = await aiohttp_client(create_app(node.settings))
    again = await second.get("/feed/0")
    assert await again.read() == body
    assert again.headers["ETag"] == tag


def test_the_inbox_rate_limit_says_when_a_request_is_taken_again() -> None:
    from exchange.http.server import RateLimiter

    limiter = RateLimiter(60)  # one a second, bursts of six
    assert [limiter.take("partner", 0.0) for _ in range(6)] == [0] * 6
    wait = limiter.take("partner", 0.5)
    assert wait == 1  # half a token came back; the other half takes half a second more
    assert limiter.take("other partner", 0.5) == 0  # a bucket per partner
    assert limiter.take("partner", 0.5 + wait) == 0  # honouring Retry-After is enough
    slow = RateLimiter(6)  # one every ten seconds: a fixed Retry-After of 5 s would lie
    assert slow.take("partner", 0.0) == 0
    assert slow.take("partner", 0.0) == 10
    assert slow.take("partner", 9.0) == 1
    assert slow.take("partner", 10.0) == 0


async def test_partner_urls_are_the_pinned_partners_base_urls_in_their_order(
    node: InitResult,
) -> None:
    # The inbox finds a keyid's partner among these (issue 8 §5: bench/load.py pins 200).
    from exchange.node import open_node
    from exchange.partners import Partner

    async with open_node(node.settings) as opened:
        assert await opened.store.partner_urls() == []
        for base_url in ("https://b.example", "https://a.example/x", "https://a.example"):
            document = {"id": base_url, "country": "BE"}
            await opened.store.put_partner(Partner(base_url, "Partner", "BE", document))
        listed = [partner.base_url for partner in await opened.store.list_partners()]
        assert await opened.store.partner_urls() == listed == sorted(listed)
        assert await opened.store.remove_partner("https://a.example/x")
        assert await opened.store.partner_urls() == ["https://a.example", "https://b.example"]
