"""The operator dashboard over real loopback nodes: login, logout and bearer; a partner
going offline and coming back; rejections and equivocation alerts; the publish form with
the schema's issues next to the fields, CSRF, and a publish that reaches the portal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from exchange.errors import Issue
from exchange.http.publish_form import FIELDS, draft_from_form, place_issues
from exchange.http.sessions import SESSION_TTL_S, Sessions
from exchange.node import token_digest
from exchange.partners import OriginState, Rejection
from exchange.store.base import MergeWrite
from tests.html_hooks import hooks
from tests.nodes import RunningNode, eventually, get_as_operator, pinned_pair, practice


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[RunningNode, RunningNode]]:
    async with pinned_pair(tmp_path) as nodes:
        yield nodes


def browser() -> aiohttp.ClientSession:
    """A client that keeps cookies for loopback IP hosts, as a browser does."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def log_in(session: aiohttp.ClientSession, node: RunningNode) -> str:
    """Log in through the form; returns the session's CSRF token (from the logout form)."""
    async with session.post(
        f"{node.base_url}/admin/login", data={"token": node.token}, allow_redirects=False
    ) as response:
        assert response.status == 303
        assert response.headers["Location"] == "/admin/dashboard"
        cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/admin" in cookie
    assert f"Max-Age={SESSION_TTL_S}" in cookie
    async with session.get(f"{node.base_url}/admin/dashboard") as response:
        assert response.status == 200
        page = await response.text()
    return page.split('name="csrf" value="')[1].split('"')[0]


async def dashboard(node: RunningNode) -> str:
    return await get_as_operator(node, "/admin/dashboard")


async def test_login_logout_and_the_session_cookie(pair: tuple[RunningNode, RunningNode]) -> None:
    dutch, _ = pair
    async with browser() as session:
        async with session.get(
            f"{dutch.base_url}/admin/dashboard", allow_redirects=False
        ) as response:
            assert response.status == 303
            assert response.headers["Location"] == "/admin/login"
        async with session.post(
            f"{dutch.base_url}/admin/login", data={"token": "wrong"}, allow_redirects=False
        ) as response:
            assert response.status == 401
            assert "not this node&#x27;s operator token" in await response.text()
            assert "Set-Cookie" not in response.headers
        csrf = await log_in(session, dutch)
        stolen = session.cookie_jar.filter_cookies(URL(dutch.base_url + "/admin/"))[
            "exchange_session"
        ]
        async with session.post(
            f"{dutch.base_url}/admin/logout", data={}, allow_redirects=False
        ) as response:
            assert response.status == 403  # no CSRF token
        async with session.post(
            f"{dutch.base_url}/admin/logout", data={"csrf": csrf}, allow_redirects=False
        ) as response:
            assert response.status == 303
        async with session.get(
            f"{dutch.base_url}/admin/dashboard", allow_redirects=False
        ) as response:
            assert response.status == 303
    # A copy of the cookie kept from before the logout opens nothing.
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{dutch.base_url}/admin/dashboard",
            headers={"Cookie": f"exchange_session={stolen.value}"},
            allow_redirects=False,
        ) as response,
    ):
        assert response.status == 303


async def test_bearer_token_is_accepted_and_a_wrong_one_refused(
    pair: tuple[RunningNode, RunningNode],
) -> None:
    dutch, _ = pair
    assert "Federation" in await dashboard(dutch)
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{dutch.base_url}/admin/dashboard", headers={"Authorization": "Bearer nope"}
        ) as response,
    ):
        assert response.status == 401
        assert "invalid_token" in response.headers["WWW-Authenticate"]


def test_session_cookies_cannot_be_forged_outlive_their_expiry_or_a_new_token() -> None:
    sessions = Sessions(token_digest("operator-token"))
    cookie, session = sessions.issue(now=1000.0)
    assert sessions.check(cookie, now=1001.0) == session
    assert sessions.check(cookie, now=1000.0 + SESSION_TTL_S) is None  # expired
    version, expires, nonce, mac = cookie.split(".")
    later = str(int(expires) + 3600)
    assert sessions.check(".".join([version, later, nonce, mac]), now=1001.0) is None
    assert sessions.check(cookie[:-2] + "AA", now=1001.0) is None
    assert Sessions(token_digest("a new token")).check(cookie, now=1001.0) is None
    assert Sessions.csrf_ok(session, session.csrf)
    assert not Sessions.csrf_ok(session, None)
    _, other = sessions.issue(now=1000.0)
    assert not Sessions.csrf_ok(session, other.csrf)
    sessions.end(session, now=1002.0)
    assert sessions.check(cookie, now=1003.0) is None


async def test_dashboard_shows_a_partner_going_offline_and_coming_back(
    pair: tuple[RunningNode, RunningNode],
) -> None:
    dutch, flemish = pair
    await flemish.node.publish([practice(1), practice(2)])
    await dutch.federation.follow(flemish.base_url)
    await flemish.federation.follow(dutch.base_url)
    await eventually(lambda: _merged(dutch, flemish.base_url, 2))
    page = await dashboard(dutch)
    assert '<meta http-equiv="refresh"' in page
    (row,) = hooks(page, "partner-row")
    assert row.attrs["data-partner"] == flemish.base_url
    assert "following: accepted" in row.one("partner-state").text
    assert "subscriber" in row.one("partner-state").text
    assert row.one("partner-last-seq").text == "1"
    assert row.one("partner-lag").text == "0"
    assert row.one("partner-checkpoint").text.startswith("size 2, root ")
    assert "verified" in row.one("partner-checkpoint").text
    assert row.one("partner-backlog").text == "0"
    assert row.one("partner-circuit").text == "closed"
    assert row.one("partner-online").text == "online"
    assert "last pull at" in row.one("partner-contact").text
    assert not hooks(page, "rejection")

    await flemish.stop()
    await dutch.federation.sync(flemish.base_url)  # the periodic pull, run now
    page = await dashboard(dutch)
    (row,) = hooks(page, "partner-row")
    assert row.one("partner-online").text == "offline"
    assert "last pull" in row.one("partner-online").attrs["title"]
    rejections = hooks(page, "rejection")
    assert rejections
    assert rejections[0].attrs["data-origin"] == flemish.base_url
    assert "fetch" in rejections[0].text

    await dutch.node.publish([practice(3)])  # a push that cannot be delivered
    await eventually(lambda: _push_failed(dutch, flemish.base_url))
    (row,) = hooks(await dashboard(dutch), "partner-row")
    assert row.one("partner-backlog").text == "1"
    assert "last error" in row.one("partner-circuit").text

    await flemish.start()
    await dutch.federation.sync(flemish.base_url)
    (row,) = hooks(await dashboard(dutch), "partner-row")
    assert row.one("partner-online").text == "online"


async def _merged(node: RunningNode, origin: str, count: int) -> bool:
    state = await node.node.store.origin_state(origin)
    return state is not None and state.next_seq == count


async def _push_failed(node: RunningNode, partner: str) -> bool:
    state = await node.node.store.get_delivery(partner)
    return state is not None and state.attempts > 0


async def test_rejections_and_equivocation_alerts_are_shown_escaped(
    pair: tuple[RunningNode, RunningNode],
) -> None:
    dutch, flemish = pair
    store = dutch.node.store
    await store.add_rejections(
        [
            Rejection(
                flemish.base_url, 7, "bad <script>x</script> proof", "proof", "2026-01-01T00:00:00Z"
            )
        ]
    )
    evidence = ("127.0.0.1 <b>\n3\nroot A\n", "127.0.0.1\n3\nroot B\n")
    halted = OriginState(
        flemish.base_url, halted=True, halt_reason="two checkpoints", evidence=evidence
    )
    await store.merge(lambda _: MergeWrite(halted))
    page = await dashboard(dutch)
    (rejection,) = hooks(page, "rejection")
    assert "bad <script>x</script> proof" in rejection.text
    assert "<script>" not in page
    (alert,) = hooks(page, "equivocation-alert")
    assert alert.attrs["data-origin"] == flemish.base_url
    assert "two checkpoints" in alert.text
    assert "root A" in alert.text
    assert "root B" in alert.text
    assert "HALTED" in hooks(page, "partner-state")[0].text


async def test_publish_form_shows_schema_issues_next_to_fields_and_keeps_input(
    pair: tuple[RunningNode, RunningNode],
) -> None:
    dutch, _ = pair
    async with browser() as session:
        csrf = await log_in(session, dutch)
        async with session.get(f"{dutch.base_url}/admin/publish") as response:
            form_page = await response.text()
        (_form,) = hooks(form_page, "publish-form")
        for name in ("type", "name-nl", "name-en", "name-fr", "summary-nl", "startTime"):
            assert f'name="{name}"' in form_page
        submission = {
            "csrf": csrf,
            "type": "Event",
            "language": "en",
            "summary-en": "An evening on <b>shared</b> services",
            "registrationPage": "not a url",
            "startTime": "2027-05-04T19:30",
            "utcOffset": "+02:00",
            "organizer": "Vlaamse overheid",
        }
        async with session.post(f"{dutch.base_url}/admin/publish", data=submission) as response:
            assert response.status == 422
            page = await response.text()
        errors = {error.attrs["data-field"]: error.text for error in hooks(page, "field-error")}
        assert "/nameMap" in errors
        assert "required" in errors["/nameMap"]
        assert "/location" in errors
        assert "/registrationPage" in errors
        assert "/summaryMap/en" in errors  # a tag in plain text
        # each message stands right after its own field
        assert page.index('name="name-nl"') < page.index('data-field="/nameMap"')
        assert page.index('data-field="/nameMap"') < page.index('name="name-en"')
        assert page.index('name="registrationPage"') < page.index('data-field="/registrationPage"')
        assert 'value="not a url"' in page  # the input is kept
        assert "An evening on &lt;b&gt;shared&lt;/b&gt; services</textarea>" in page
        assert not hooks(page, "publish-result")
        async with session.post(
            f"{dutch.base_url}/admin/publish", data={**submission, "csrf": "forged"}
        ) as response:
            assert response.status == 403


async def test_publish_through_the_form_appears_on_the_portal_and_a_partners(
    pair: tuple[RunningNode, RunningNode],
) -> None:
    dutch, flemish = pair
    await flemish.federation.follow(dutch.base_url)
    submission = {
        "type": "Event",
        "language": "nl",
        "name-nl": "Grensoverleg",
        "name-en": "Border meeting",
        "summary-nl": "Overleg over grensarbeid",
        "startTime": "2099-05-04T19:30",
        "utcOffset": "+02:00",
        "venue": "Stadhuis",
        "venueAddress": "Grote Markt 1, Brugge",
        "organizer": "Vlaamse overheid\nGemeente Sluis",
        "registrationPage": "https://example.org/register",
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{dutch.base_url}/admin/publish",
            data=submission,
            headers={"Authorization": f"Bearer {dutch.token}"},
        ) as response,
    ):
        assert response.status == 200
        page = await response.text()
    (result,) = hooks(page, "publish-result")
    object_id = result.attrs["data-id"]
    assert object_id.startswith(f"{dutch.base_url}/objects/")
    record = await dutch.node.store.get_object(object_id)
    assert record.body["startTime"] == "2099-05-04T19:30:00+02:00"
    assert record.body["location"]["nameMap"] == {"nl": "Stadhuis"}
    assert [o["nameMap"]["nl"] for o in record.body["organizer"]] == [
        "Vlaamse overheid",
        "Gemeente Sluis",
    ]
    link = page.split('data-testid="publish-result"')[1].split('href="')[1].split('"')[0]
    async with (
        aiohttp.ClientSession() as session,
        session.get(dutch.base_url + link.replace("&amp;", "&") + "&lang=en") as response,
    ):
        assert response.status == 200
        assert "Border meeting" in await response.text()
    await eventually(lambda: _has_object(flemish, object_id))
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{flemish.base_url}/portal/events?lang=nl") as response,
    ):
        titles = [item.one("item-title").text for item in hooks(await response.text(), "item")]
    assert titles == ["Grensoverleg"]


async def _has_object(node: RunningNode, object_id: str) -> bool:
    return await node.node.store.get_object(object_id) is not None


def test_form_fields_map_to_members_and_issues_to_fields() -> None:
    draft = draft_from_form(
        {
            "type": "Case",
            "language": "fr",
            "name-fr": " Cas ",
            "participatingCountry": "be, nl",
            "participant": "Ville de Lille\n\nProvince de Hainaut",
            "status": "active",
        }
    )
    assert draft == {
        "type": "Case",
        "nameMap": {"fr": "Cas"},
        "participatingCountry": ["BE", "NL"],
        "participant": [
            {"type": "Organization", "nameMap": {"fr": "Ville de Lille"}},
            {"type": "Organization", "nameMap": {"fr": "Province de Hainaut"}},
        ],
        "status": "active",
    }
    issues = [
        Issue("/nameMap/fr", "too long"),
        Issue("/participant/1/nameMap/fr", "looks like HTML"),
        Issue("/centralQuestionMap", "centralQuestionMap is required"),
        Issue("/proof", "not allowed"),
    ]
    by_field, general = place_issues(issues, "Case")
    assert [i.pointer for i in by_field["name-fr"]] == ["/nameMap/fr"]
    assert [i.pointer for i in by_field["participant"]] == ["/participant/1/nameMap/fr"]
    assert [i.pointer for i in by_field["centralQuestion-nl"]] == ["/centralQuestionMap"]
    assert [i.pointer for i in general] == ["/proof"]
    names = [field.name for field in FIELDS]
    assert len(names) == len(set(names))
