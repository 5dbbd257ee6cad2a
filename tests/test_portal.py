"""The public portal over two real loopback nodes: a Dutch one that follows a Flemish one
whose name carries a script tag. Lists in several languages, fallback, escaping, event
order, pagination, deleted objects, the phone viewport, and GET B's redirect."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from exchange.http.i18n import from_accept_language, pick
from exchange.http.portal import PAGE_SIZE
from tests.html_hooks import hooks
from tests.nodes import RunningNode, eventually, example, pinned_pair, practice
from tests.test_federation import count_from

#: A partner's name as its node document gives it (the schema lets no tag through there)...
FLEMISH = 'Vlaamse "overheid" & partners < 2'
#: ...and as a store could still hold it (defence in depth: the portal escapes every text).
HOSTILE = '<script>alert("x")</script> Vlaamse overheid & co'


def event_in(days: int, name: str, **changes: Any) -> dict[str, Any]:
    draft = copy.deepcopy(example("event-reuring-cafe-115"))
    draft.pop("doorTime")
    start = datetime.now(UTC).astimezone() + timedelta(days=days)
    draft["startTime"] = start.replace(microsecond=0).isoformat()
    draft["nameMap"] = {"nl": f"{name} (nl)", "en": f"{name} (en)"}
    draft.update(changes)
    return draft


@pytest.fixture
async def nodes(tmp_path: Path) -> AsyncIterator[tuple[RunningNode, RunningNode]]:
    async with pinned_pair(tmp_path, FLEMISH) as (dutch, flemish):
        await dutch.node.publish(
            [
                example("case-doetank-preventieve-zorg"),
                example("event-reuring-cafe-115"),  # 2023: past
                event_in(20, "Later Dutch event"),
            ]
        )
        await flemish.node.publish(
            [
                event_in(5, "Soon Flemish event", registrationPage="https://example.be/register"),
                {
                    "type": "BestPractice",
                    "nameMap": {"fr": "Pratique seulement en français"},
                    "practiceKind": "knowledge",
                },
                {
                    "type": "BestPractice",
                    "nameMap": {"en": "Practice in English", "nl": "Praktijk in het Nederlands"},
                    "practiceKind": "experience",
                },
            ]
        )
        await dutch.federation.follow(flemish.base_url)
        await eventually(lambda: _holds(dutch, flemish.base_url, 3))
        partner = await dutch.node.store.get_partner(flemish.base_url)
        assert partner.name == FLEMISH
        await dutch.node.store.put_partner(replace(partner, name=HOSTILE))
        yield dutch, flemish


async def _holds(node: RunningNode, origin: str, count: int) -> bool:
    return await count_from(node, origin) == count


async def fetch(
    url: str, headers: dict[str, str] | None = None, *, redirects: bool = True
) -> tuple[int, str, aiohttp.ClientResponse]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers=headers or {}, allow_redirects=redirects) as response,
    ):
        return response.status, await response.text(), response


async def test_lists_show_partner_content_in_two_languages_with_origin_and_mark(
    nodes: tuple[RunningNode, RunningNode],
) -> None:
    dutch, flemish = nodes
    titles = {}
    for language in ("nl", "en"):
        status, page, _ = await fetch(f"{dutch.base_url}/portal/events?lang={language}")
        assert status == 200
        assert f'<html lang="{language}">' in page
        items = hooks(page, "item")
        titles[language] = [item.one("item-title").text for item in items]
        flemish_item = next(i for i in items if i.attrs["data-id"].startswith(flemish.base_url))
        assert flemish_item.one("origin-country").attrs["data-country"] == "BE"
        assert flemish_item.one("origin-platform").text == HOSTILE
        assert flemish_item.one("verified").attrs["data-verification"] == "verified"
        own = next(i for i in items if i.attrs["data-id"].startswith(dutch.base_url))
        assert own.one("origin-country").attrs["data-country"] == "NL"
        assert own.one("origin-platform").text == "Samenwerkende overheid"
        assert own.one("verified").attrs["data-verification"] == "own"
    assert "Soon Flemish event (nl)" in titles["nl"]
    assert "Soon Flemish event (en)" in titles["en"]
    _, english, _ = await fetch(f"{dutch.base_url}/portal/events?lang=en")
    assert "Published here" in english
    assert "Verified" in english
    _, dutch_page, _ = await fetch(f"{dutch.base_url}/portal/events?lang=nl")
    assert "Hier gepubliceerd" in dutch_page
    assert "Geverifieerd" in dutch_page


async def test_language_from_query_cookie_and_accept_language(
    nodes: tuple[RunningNode, RunningNode],
) -> None:
    dutch, _ = nodes
    _, page, _ = await fetch(f"{dutch.base_url}/portal", {"Accept-Language": "de, fr;q=0.8"})
    assert '<html lang="fr">' in page
    _, page, _ = await fetch(f"{dutch.base_url}/portal", {"Accept-Language": "de"})
    assert '<html lang="nl">' in page  # nothing supported: Dutch
    _, page, response = await fetch(f"{dutch.base_url}/portal/cases?lang=en")
    cookie = response.cookies["lang"]
    assert cookie.value == "en"
    assert cookie["httponly"]
    _, page, _ = await fetch(
        f"{dutch.base_url}/portal/cases", {"Cookie": "lang=en", "Accept-Language": "fr"}
    )
    assert '<html lang="en">' in page
    (_switch,) = hooks(page, "lang-switch")
    links = {a.split('"')[0] for a in page.split('hreflang="')[1:4]}
    assert links == {"nl", "en", "fr"}
    assert "lang=fr" in page


async def test_text_falls_back_to_another_language_marked_with_its_lang(
    nodes: tuple[RunningNode, RunningNode],
) -> None:
    dutch, _ = nodes
    _, page, _ = await fetch(f"{dutch.base_url}/portal/practices?lang=nl")
    titles = [item.one("item-title").text for item in hooks(page, "item")]
    assert "Pratique seulement en français" in titles  # only French exists
    assert "Praktijk in het Nederlands" in titles
    assert '<h3 lang="fr">' in page
    _, page, _ = await fetch(f"{dutch.base_url}/portal/practices?lang=fr")
    titles = [item.one("item-title").text for item in hooks(page, "item")]
    assert "Praktijk in het Nederlands" in titles  # no French: Dutch comes first


def test_language_choice_and_fallback_rules() -> None:
    assert from_accept_language("en-GB,en;q=0.9,nl;q=0.8") == "en"
    assert from_accept_language("de-DE, nl-BE;q=0.5, fr;q=0.7") == "fr"
    assert from_accept_language("fr;q=0, nl;q=0.1") == "nl"
    assert from_accept_language("") is None
    found = pick({"nl-BE": "Vlaams", "en": "English"}, "nl")
    assert found is not None
    assert (found.value, found.language) == ("Vlaams", "nl-BE")
    found = pick({"de": "Deutsch", "en": "English"}, "fr")
    assert found is not None
    assert found.value == "English"
    found = pick({"de": "Deutsch"}, "fr")
    assert found is not None
    assert found.value == "Deutsch"
    assert pick({}, "nl") is None


async def test_partner_text_is_escaped_and_no_script_can_run(
    nodes: tuple[RunningNode, RunningNode],
) -> None:
    dutch, _ = nodes
    for path in ("/portal", "/portal/events", "/portal/practices"):
        status, page, response = await fetch(f"{dutch.base_url}{path}")
        assert status == 200
        assert "<script>" not in page
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; Vlaamse overheid &amp; co" in page
        assert "script-src" not in response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]


async def test_events_upcoming_soonest_first_then_past_marked(
    nodes: tuple[RunningNode, RunningNode],
) -> None:
    dutch, flemish = nodes
    _, page, _ = await fetch(f"{dutch.base_url}/portal/events?lang=en")
    items = hooks(page, "item")
    titles = [item.one("item-title").text for item in items]
    assert titles[:2] == ["Soon Flemish event (en)", "Later Dutch event (en)"]
    assert titles[2].startswith("Reuring!Café #115")
    assert page.index("Upcoming events") < page.index("Soon Flemish") < page.index("Past events")
    assert page.index("Past events") < page.index("Reuring!Café #115")
    assert not items[0].find("event-past")
    assert items[2].find("event-past")
    assert items[2].one("event-date").attrs["datetime"] == "2023-11-21T17:00:00+01:00"
    assert items[2].one("event-date").text == "21 November 2023, 17:00"
    assert items[2].one("event-venue").text == "De Glazen Zaal, Den Haag, Nederland"
    registration = items[0].one("event-registration")
    assert registration.attrs["href"] == "https://example.be/register"
    assert items[0].one("origin-platform").attrs["data-origin"] == flemish.base_url
    _, french, _ = await fetch(f"{dutch.base_url}/portal/events?lang=fr")
    assert "21 novembre 2023 à 17:00" in french


async def test_detail_page_of_own_and_merged_objects_and_404(
    nodes: tuple[RunningNode, RunningNode],
) -> None:
    dutch, flemish = nodes
    _, page, _ = await fetch(f"{dutch.base_url}/portal/cases?lang=en")
    (case,) = hooks(page, "item")
    status, detail, _ = await fetch(
        f"{dutch.base_url}/portal/object?id={case.attrs['data-id']}&lang=en"
    )
    assert status == 200
    assert "Central question" in detail
    assert "Participating countries" in detail
    assert "Belgium, Netherlands" in detail
    (article,) = hooks(detail, "item")
    assert article.one("verified").attrs["data-verification"] == "own"
    _, events, _ = await fetch(f"{dutch.base_url}/portal/events")
    flemish_id = next(
        i.attrs["data-id"] for i in hooks(events, "item") if flemish.base_url in i.attrs["data-id"]
    )
    status, detail, _ = await fetch(f"{dutch.base_url}/portal/object", None)
    assert status == 404
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{dutch.base_url}/portal/object", params={"id": flemish_id}) as response,
    ):
        detail = await response.text()
    assert response.status == 200
    assert hooks(detail, "event-registration")
    assert hooks(detail, "verified")[0].attrs["data-verification"] == "verified"
    status, _, _ = await fetch(f"{dutch.base_url}/portal/object?id={dutch.base_url}")
    assert status == 404  # the node's own node document is never an item


async def test_deleted_objects_disappear_from_lists_and_details(
    nodes: tuple[RunningNode, RunningNode],
) -> None:
    dutch, _ = nodes
    _, page, _ = await fetch(f"{dutch.base_url}/portal/cases")
    (case,) = hooks(page, "item")
    await dutch.node.delete(case.attrs["data-id"])
    _, page, _ = await fetch(f"{dutch.base_url}/portal/cases")
    assert not hooks(page, "item")
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{dutch.base_url}/portal/object", params={"id": case.attrs["data-id"]}
        ) as response,
    ):
        assert response.status == 404


async def test_long_lists_are_paginated_without_loss_or_duplicates(tmp_path: Path) -> None:
    node = RunningNode(tmp_path / "n", "Knooppunt", "NL")
    await node.start()
    try:
        await node.node.publish([practice(i) for i in range(PAGE_SIZE + 5)])
        seen: list[str] = []
        url: str | None = f"{node.base_url}/portal/practices"
        pages = 0
        while url is not None:
            _, page, _ = await fetch(url)
            pages += 1
            seen += [item.attrs["data-id"] for item in hooks(page, "item")]
            marker = 'rel="next"'
            url = None
            if marker in page:
                href = page.split(marker)[0].rsplit('href="', 1)[1].split('"')[0]
                url = node.base_url + href.replace("&amp;", "&")
        assert pages == 2
        assert len(seen) == len(set(seen)) == PAGE_SIZE + 5
        for number in range(PAGE_SIZE + 5):
            await node.node.publish(
                [event_in(number + 1, f"Event {number}", registrationPage="https://example.org/r")]
            )
        _, first, _ = await fetch(f"{node.base_url}/portal/events")
        _, second, _ = await fetch(f"{node.base_url}/portal/events?page=2")
        assert len(hooks(first, "item")) == PAGE_SIZE
        assert len(hooks(second, "item")) == 5
        assert 'rel="prev"' in second
        status, _, _ = await fetch(f"{node.base_url}/portal/events?page=0")
        assert status == 400
    finally:
        await node.stop()


async def test_pages_fit_a_phone_screen(nodes: tuple[RunningNode, RunningNode]) -> None:
    dutch, _ = nodes
    for path in ("/portal", "/portal/events", "/portal/about", "/admin/login"):
        _, page, _ = await fetch(f"{dutch.base_url}{path}")
        assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
        assert "@media (max-width:40rem)" in page
        assert "overflow-wrap:anywhere" in page  # long partner words wrap instead of overflowing


async def test_get_base_sends_browsers_to_the_portal_and_about_shows_the_node(
    nodes: tuple[RunningNode, RunningNode],
) -> None:
    dutch, _ = nodes
    status, _, response = await fetch(
        dutch.base_url, {"Accept": "text/html,application/xhtml+xml"}, redirects=False
    )
    assert status == 303
    assert response.headers["Location"] == "/portal"
    status, body, _ = await fetch(dutch.base_url, {"Accept": "application/activity+json"})
    assert status == 200
    assert '"assertionMethod"' in body
    status, about, _ = await fetch(f"{dutch.base_url}/portal/about")
    assert status == 200
    assert "<h1>Samenwerkende overheid</h1>" in about
    assert "Signing keys" in about
    assert "signs new entries" in about
    _, home, _ = await fetch(f"{dutch.base_url}/portal")
    assert 'href="/portal/about"' in home
    network = {hook.attrs["data-origin"] for hook in hooks(home, "network-node")}
    assert network == {dutch.base_url, nodes[1].base_url}
