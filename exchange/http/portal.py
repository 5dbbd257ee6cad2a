"""The public portal (``B/portal``): server-rendered lists and details of the cases, events
and best practices of this node and of every partner, in Dutch, English or French.

Routes: ``B/portal`` (home), ``B/portal/cases``, ``B/portal/events``,
``B/portal/practices``, ``B/portal/object?id=<IRI>`` (any object, own or merged) and
``B/portal/about`` (the node's keys and log, what ``GET B`` showed browsers before it
redirected them here). Objects are read from the store's objects table: the current,
undeleted version of each, never the node's own node document.

Each item names its origin's country and platform (this node's name, or the partner's
name from its pinned node document) and carries a verification mark: "published here"
for this node's own objects, "verified" for merged ones (the federation merges only what
it verified against the origin's key and checkpoint). Stable ``data-testid`` hooks are
listed in docs/decisions.md ("Portal and dashboard").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from exchange.entries import ObjectRecord
from exchange.errors import BadRequest
from exchange.http.html import Child, Safe, el, join, page, render, safe_url
from exchange.http.i18n import (
    DEFAULT_LANGUAGE,
    LANGUAGE_NAMES,
    LANGUAGES,
    Text,
    country_name,
    format_moment,
    from_accept_language,
    list_text,
    pick,
    strings,
)
from exchange.key_lifecycle import active_method
from exchange.node import Node

__all__ = ["PAGE_SIZE", "Portal", "choose_language", "order_events"]

PAGE_SIZE = 20
SUMMARY_CHARS = 280
LANG_COOKIE_MAX_AGE_S = 365 * 24 * 3600
MAX_CURSOR_CHARS = 2048
_SECTIONS = {"Case": "cases", "Event": "events", "BestPractice": "practices"}


def choose_language(request: web.Request) -> tuple[str, bool]:
    """The visitor's language, and whether it came from ``?lang=`` (to keep in the cookie)."""
    asked = request.query.get("lang")
    if asked in LANGUAGES:
        return str(asked), True
    kept = request.cookies.get("lang")
    if kept in LANGUAGES:
        return str(kept), False
    return from_accept_language(request.headers.get("Accept-Language")) or DEFAULT_LANGUAGE, False


def _moment(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _start(record: ObjectRecord) -> datetime:
    return _moment(record.body.get("startTime")) or datetime.min.replace(tzinfo=UTC)


def is_past(record: ObjectRecord, now: datetime) -> bool:
    """An event is past once it ended (or, without an end, once it started)."""
    end = _moment(record.body.get("endTime")) or _start(record)
    return end < now


def order_events(
    records: Sequence[ObjectRecord], now: datetime
) -> tuple[list[ObjectRecord], list[ObjectRecord]]:
    """Upcoming events, soonest first, and past events, latest first."""
    upcoming = sorted((r for r in records if not is_past(r, now)), key=lambda r: (_start(r), r.id))
    past = sorted(
        (r for r in records if is_past(r, now)), key=lambda r: (_start(r), r.id), reverse=True
    )
    return upcoming, past


@dataclass(frozen=True, slots=True)
class Origin:
    name: str
    country: str
    own: bool


@dataclass(frozen=True, slots=True)
class View:
    """What every page of one request needs."""

    node: Node
    language: str
    text: Mapping[str, str]
    root: str  # the path of B (the prefix), for links
    path: str
    query: Mapping[str, str]
    origins: Mapping[str, Origin]

    def link(self, path: str, **query: str) -> str:
        return f"{self.root}{path}" + (f"?{urlencode(query)}" if query else "")

    def origin(self, base_url: str) -> Origin:
        found = self.origins.get(base_url)
        if found is not None:
            return found
        return Origin(urlsplit(base_url).netloc or base_url, "", False)

    def switch_link(self, language: str) -> str:
        query = {k: v for k, v in self.query.items() if k != "lang"}
        return f"{self.path}?{urlencode({**query, 'lang': language})}"


def _text(value: Text | None, view: View, tag: str = "span", **attrs: str) -> Safe | None:
    """A language map's text, with ``lang`` when it is not in the page's language."""
    if value is None:
        return None
    language = None if value.language == view.language else value.language
    return el(tag, {**attrs, "lang": language}, value.value)


def _shorten(text: Text | None) -> Text | None:
    if text is None or len(text.value) <= SUMMARY_CHARS:
        return text
    cut = text.value[:SUMMARY_CHARS].rsplit(" ", 1)[0]
    return Text(cut + "…", text.language)


class Portal:
    """The portal's handlers over the node the app holds under ``node_key``."""

    def __init__(self, node_key: web.AppKey[Node]) -> None:
        self._node_key = node_key

    def routes(self, prefix: str) -> list[web.RouteDef]:
        p = prefix
        return [
            web.get(f"{p}/portal", self.home),
            web.get(f"{p}/portal/cases", self.cases),
            web.get(f"{p}/portal/events", self.events),
            web.get(f"{p}/portal/practices", self.practices),
            web.get(f"{p}/portal/object", self.detail),
            web.get(f"{p}/portal/about", self.about),
        ]

    # --- request context -------------------------------------------------------------------

    async def _view(self, request: web.Request) -> tuple[View, bool]:
        node = request.app[self._node_key]
        language, remember = choose_language(request)
        origins = {
            node.base_url: Origin(node.settings.name, node.settings.country, True),
        }
        for partner in await node.store.list_partners():
            if partner.base_url != node.base_url:
                origins[partner.base_url] = Origin(partner.name, partner.country, False)
        view = View(
            node=node,
            language=language,
            text=strings(language),
            root=node.settings.path_prefix,
            path=request.path,
            query=dict(request.query),
            origins=origins,
        )
        return view, remember

    def _respond(
        self, view: View, remember: bool, title: str, body: Child, status: int = 200
    ) -> web.Response:
        document = page(
            title=f"{title} — {view.node.settings.name}",
            language=view.language,
            header=self._header(view),
            body=body,
        )
        response = render(
            document,
            status=status,
            headers={"Vary": "Accept-Language, Cookie", "Cache-Control": "no-cache"},
        )
        if remember:
            response.set_cookie(
                "lang",
                view.language,
                max_age=LANG_COOKIE_MAX_AGE_S,
                path=view.root or "/",
                samesite="Lax",
                httponly=True,
            )
        return response

    def _header(self, view: View) -> Safe:
        t = view.text
        sections = [
            ("/portal/cases", t["cases"]),
            ("/portal/events", t["events"]),
            ("/portal/practices", t["practices"]),
            ("/portal/about", t["about"]),
        ]
        nav = el(
            "nav",
            {"aria-label": t["portal"]},
            el(
                "ul",
                None,
                [
                    el(
                        "li",
                        None,
                        el(
                            "a",
                            {
                                "href": view.link(path),
                                "aria-current": "page" if view.path.endswith(path) else None,
                            },
                            label,
                        ),
                    )
                    for path, label in sections
                ],
            ),
        )
        switch = el(
            "nav",
            {"class": "langs", "data-testid": "lang-switch", "aria-label": t["language"]},
            [
                el(
                    "a",
                    {
                        "href": view.switch_link(language),
                        "hreflang": language,
                        "lang": language,
                        "aria-current": "true" if language == view.language else None,
                    },
                    language.upper(),
                    el("span", {"hidden": True}, f" {LANGUAGE_NAMES[language]}"),
                )
                for language in LANGUAGES
            ],
        )
        site = el("a", {"class": "site", "href": view.link("/portal")}, view.node.settings.name)
        return el("header", None, el("div", {"class": "bar"}, site, nav, switch))

    # --- pieces ----------------------------------------------------------------------------

    def _provenance(self, view: View, record: ObjectRecord) -> Safe:
        t = view.text
        origin = view.origin(record.origin)
        country = (
            el(
                "span",
                {"data-testid": "origin-country", "data-country": origin.country},
                country_name(origin.country, view.language),
            )
            if origin.country
            else el("span", {"data-testid": "origin-country", "data-country": ""}, "—")
        )
        mark = (
            el(
                "span",
                {"class": "badge own", "data-testid": "verified", "data-verification": "own"},
                t["own"],
            )
            if origin.own
            else el(
                "span",
                {
                    "class": "badge",
                    "data-testid": "verified",
                    "data-verification": "verified",
                    "title": t["verified_title"],
                },
                el("span", {"aria-hidden": "true"}, "✓ "),
                t["verified"],
            )
        )
        return el(
            "p",
            {"class": "meta"},
            el("span", None, f"{t['from']}: ", country),
            el(
                "span",
                None,
                f"{t['platform']}: ",
                el(
                    "span",
                    {"data-testid": "origin-platform", "data-origin": record.origin},
                    origin.name,
                ),
            ),
            mark,
        )

    def _event_facts(self, view: View, record: ObjectRecord, *, full: bool) -> Safe:
        t = view.text
        body = record.body
        start = _moment(body.get("startTime"))
        parts: list[Child] = []
        if start is not None:
            parts.append(
                el(
                    "span",
                    None,
                    f"{t['date']}: ",
                    el(
                        "time",
                        {"data-testid": "event-date", "datetime": str(body["startTime"])},
                        format_moment(start, view.language),
                    ),
                )
            )
        end = _moment(body.get("endTime"))
        if full and end is not None:
            parts.append(
                el(
                    "span",
                    None,
                    f"{t['ends']}: ",
                    el(
                        "time",
                        {"datetime": str(body["endTime"])},
                        format_moment(end, view.language),
                    ),
                )
            )
        venue = self._venue(view, body.get("location"))
        if venue is not None:
            parts.append(el("span", None, f"{t['venue']}: ", venue))
        registration = safe_url(body.get("registrationPage"))
        if registration is not None:
            parts.append(
                el(
                    "a",
                    {"data-testid": "event-registration", "href": registration, "rel": "noopener"},
                    t["register"],
                )
            )
        if is_past(record, datetime.now(UTC)):
            parts.append(
                el("span", {"class": "badge past", "data-testid": "event-past"}, t["past_mark"])
            )
        return el("p", {"class": "meta"}, parts)

    def _venue(self, view: View, location: object) -> Safe | None:
        if not isinstance(location, Mapping):
            return None
        name = pick(location.get("nameMap"), view.language)
        address = location.get("address")
        place = None
        if isinstance(address, Mapping):
            place = address.get("fullAddress") or address.get("postName")
        pieces: list[Child] = []
        if name is not None and not (isinstance(place, str) and name.value in place):
            pieces.append(_text(name, view))  # unless the address already names the venue
        if isinstance(place, str):
            pieces.append(f", {place}" if pieces else place)
        if not pieces:
            return None
        return el("span", {"data-testid": "event-venue"}, pieces)

    def _item(self, view: View, record: ObjectRecord, *, past: bool = False) -> Safe:
        title = pick(record.body.get("nameMap"), view.language) or Text(record.id, "")
        summary = _shorten(pick(record.body.get("summaryMap"), view.language))
        link = view.link("/portal/object", id=record.id)
        return el(
            "li",
            {
                "class": "item past" if past else "item",
                "data-testid": "item",
                "data-id": record.id,
                "data-type": record.type,
            },
            el(
                "h3",
                {"lang": None if title.language in ("", view.language) else title.language},
                el("a", {"href": link, "data-testid": "item-title"}, title.value),
            ),
            self._event_facts(view, record, full=False) if record.type == "Event" else None,
            _text(summary, view, "p"),
            self._provenance(view, record),
        )

    def _items(self, view: View, records: Sequence[ObjectRecord], *, past: bool = False) -> Safe:
        if not records:
            return el("p", None, view.text["nothing"])
        return el("ul", {"class": "items"}, [self._item(view, r, past=past) for r in records])

    # --- reading ---------------------------------------------------------------------------

    @staticmethod
    async def _page_of(
        node: Node, type_name: str, after: str | None, limit: int
    ) -> tuple[list[ObjectRecord], str | None]:
        found = await node.store.list_objects(
            origin=None, type_name=type_name, after=after, limit=limit
        )
        return list(found.items), found.next_after

    @staticmethod
    async def _all_events(node: Node) -> list[ObjectRecord]:
        records: list[ObjectRecord] = []
        after = None
        while True:
            found = await node.store.list_objects(
                origin=None, type_name="Event", after=after, limit=500
            )
            records += found.items
            if found.next_after is None:
                return records
            after = found.next_after

    # --- handlers --------------------------------------------------------------------------

    async def home(self, request: web.Request) -> web.Response:
        view, remember = await self._view(request)
        t = view.text
        upcoming, _ = order_events(await self._all_events(view.node), datetime.now(UTC))
        cases, _ = await self._page_of(view.node, "Case", None, 5)
        practices, _ = await self._page_of(view.node, "BestPractice", None, 5)
        network = el(
            "ul",
            None,
            [
                el(
                    "li",
                    {"data-testid": "network-node", "data-origin": base_url},
                    origin.name,
                    f" ({country_name(origin.country, view.language)})",
                    f" — {t['this_node']}" if origin.own else None,
                )
                for base_url, origin in view.origins.items()
            ],
        )
        body = [
            el("h1", None, view.node.settings.name),
            el("p", None, t["intro"]),
            el("h2", None, t["upcoming"]),
            self._items(view, upcoming[:3]),
            el("p", None, el("a", {"href": view.link("/portal/events")}, t["all_events"])),
            el("h2", None, t["cases"]),
            self._items(view, cases),
            el("p", None, el("a", {"href": view.link("/portal/cases")}, t["all_cases"])),
            el("h2", None, t["practices"]),
            self._items(view, practices),
            el("p", None, el("a", {"href": view.link("/portal/practices")}, t["all_practices"])),
            el("h2", None, t["network"]),
            network,
        ]
        return self._respond(view, remember, t["portal"], body)

    async def cases(self, request: web.Request) -> web.Response:
        return await self._cursor_list(request, "Case")

    async def practices(self, request: web.Request) -> web.Response:
        return await self._cursor_list(request, "BestPractice")

    async def _cursor_list(self, request: web.Request, type_name: str) -> web.Response:
        """Cases and practices in id order, a page of :data:`PAGE_SIZE` after a cursor."""
        view, remember = await self._view(request)
        after = request.query.get("after")
        if after is not None and len(after) > MAX_CURSOR_CHARS:
            raise BadRequest(f"the cursor is at most {MAX_CURSOR_CHARS} characters")
        records, next_after = await self._page_of(view.node, type_name, after, PAGE_SIZE)
        title = view.text[_SECTIONS[type_name]]
        path = f"/portal/{_SECTIONS[type_name]}"
        pager: list[Child] = []
        if after is not None:
            pager.append(
                el("a", {"href": view.link(path), "rel": "first"}, view.text["first_page"])
            )
        if next_after is not None:
            pager.append(
                el(
                    "a",
                    {"href": view.link(path, after=next_after), "rel": "next"},
                    view.text["next_page"],
                )
            )
        body = [
            el("h1", None, title),
            self._items(view, records),
            el("nav", {"class": "pager"}, pager) if pager else None,
        ]
        return self._respond(view, remember, title, body)

    async def events(self, request: web.Request) -> web.Response:
        """Upcoming events first (soonest first), then past ones (latest first), marked."""
        view, remember = await self._view(request)
        number_text = request.query.get("page", "1")
        if not number_text.isdigit() or len(number_text) > 6 or int(number_text) < 1:
            raise BadRequest("page must be a positive integer")
        number = int(number_text)
        upcoming, past = order_events(await self._all_events(view.node), datetime.now(UTC))
        start, end = (number - 1) * PAGE_SIZE, number * PAGE_SIZE
        shown_upcoming = upcoming[start:end]
        shown_past = past[max(0, start - len(upcoming)) : max(0, end - len(upcoming))]
        t = view.text
        body: list[Child] = [el("h1", None, t["events"])]
        if shown_upcoming or not shown_past:
            body += [el("h2", None, t["upcoming"]), self._items(view, shown_upcoming)]
        if shown_past:
            body += [el("h2", None, t["past"]), self._items(view, shown_past, past=True)]
        pager: list[Child] = []
        if number > 1:
            pager.append(
                el(
                    "a",
                    {"href": view.link("/portal/events", page=str(number - 1)), "rel": "prev"},
                    t["previous_page"],
                )
            )
        if end < len(upcoming) + len(past):
            pager.append(
                el(
                    "a",
                    {"href": view.link("/portal/events", page=str(number + 1)), "rel": "next"},
                    t["next_page"],
                )
            )
        if pager:
            body.append(el("nav", {"class": "pager"}, pager))
        return self._respond(view, remember, t["events"], body)

    async def detail(self, request: web.Request) -> web.Response:
        view, remember = await self._view(request)
        object_id = request.query.get("id", "")
        record = await view.node.store.get_object(object_id) if object_id else None
        if record is None or record.deleted or record.type not in _SECTIONS:
            t = view.text
            body = [el("h1", None, t["not_found"]), el("p", None, t["not_found_text"])]
            return self._respond(view, remember, t["not_found"], body, status=404)
        title = pick(record.body.get("nameMap"), view.language) or Text(record.id, "")
        body = [
            el(
                "article",
                {"data-testid": "item", "data-id": record.id, "data-type": record.type},
                el("p", {"class": "meta"}, view.text[record.type]),
                el(
                    "h1",
                    {"lang": None if title.language == view.language else title.language},
                    el("span", {"data-testid": "item-title"}, title.value),
                ),
                self._provenance(view, record),
                self._event_facts(view, record, full=True) if record.type == "Event" else None,
                _text(pick(record.body.get("summaryMap"), view.language), view, "p"),
                _text(
                    pick(record.body.get("contentMap"), view.language),
                    view,
                    "div",
                    style="white-space:pre-line",
                ),
                self._facts(view, record),
            )
        ]
        return self._respond(view, remember, title.value, body)

    def _facts(self, view: View, record: ObjectRecord) -> Safe:
        t = view.text
        body = record.body
        rows: list[tuple[str, Child]] = []

        def text_row(label: str, member: str) -> None:
            value = _text(pick(body.get(member), view.language), view)
            if value is not None:
                rows.append((t[label], value))

        def enum_row(label: str, member: str) -> None:
            value = body.get(member)
            if isinstance(value, str):
                rows.append((t[label], t.get(value, value)))

        def names(values: object) -> Child:
            if not isinstance(values, list):
                return None
            found = [
                _text(pick(v.get("nameMap"), view.language), view)
                for v in values
                if isinstance(v, Mapping)
            ]
            return (
                el("ul", None, [el("li", None, n) for n in found if n is not None])
                if found
                else None
            )

        def list_row(label: str, member: str) -> None:
            found = list_text(body.get(member), view.language)
            if found is not None:
                items, language = found
                rows.append(
                    (
                        t[label],
                        el(
                            "ul",
                            {"lang": None if language == view.language else language},
                            [el("li", None, item) for item in items],
                        ),
                    )
                )

        if record.type == "Case":
            text_row("central_question", "centralQuestionMap")
            enum_row("status", "status")
            countries = body.get("participatingCountry")
            if isinstance(countries, list):
                rows.append(
                    (
                        t["countries"],
                        ", ".join(country_name(str(c), view.language) for c in countries),
                    )
                )
            participants = names(body.get("participant"))
            if participants is not None:
                rows.append((t["participants"], participants))
            text_row("approach", "approachMap")
            text_row("next_step", "nextStepMap")
        elif record.type == "Event":
            organizers = names(body.get("organizer"))
            if organizers is not None:
                rows.append((t["organizers"], organizers))
            languages = body.get("inLanguage")
            if isinstance(languages, list):
                rows.append((t["in_language"], ", ".join(str(x) for x in languages)))
        else:
            enum_row("kind", "practiceKind")
            enum_row("outcome", "outcome")
            list_row("actions", "actionsMap")
            list_row("lessons", "lessonsMap")
            publisher = body.get("publisher")
            if isinstance(publisher, Mapping):
                name = _text(pick(publisher.get("nameMap"), view.language), view)
                if name is not None:
                    rows.append((t["publisher"], name))
        tags = names(body.get("tag"))
        if tags is not None:
            rows.append((t["themes"], tags))
        for label, member in (("more_info", "url"), ("license", "license")):
            url = safe_url(body.get(member))
            if url is not None:
                rows.append((t[label], el("a", {"href": url, "rel": "noopener"}, url)))
        rows.append((t["version"], str(record.version)))
        if isinstance(body.get("updated"), str):
            rows.append((t["updated"], str(body["updated"])))
        source = safe_url(record.id)
        if source is not None:
            rows.append((t["signed_source"], el("a", {"href": source}, source)))
        return el(
            "dl",
            {"class": "facts"},
            [join([el("dt", None, label), el("dd", None, value)]) for label, value in rows],
        )

    async def about(self, request: web.Request) -> web.Response:
        """The node's identity: name, country, feed, checkpoint and signing keys."""
        view, remember = await self._view(request)
        node = view.node
        await node.refresh()  # a CLI on the same home may have rotated or revoked a key
        document = node.node_document()
        active = active_method(document)
        keys: list[Child] = []
        for key in document["assertionMethod"]:
            notes = f"since {key['created']}"
            if key.get("revoked"):
                notes += f", revoked at {key['revoked']}"
            if key["id"] == active["id"]:
                notes += "; signs new entries"
            keys.append(
                el(
                    "li",
                    None,
                    el("code", None, str(key["id"])),
                    ": ",
                    el("code", None, str(key["publicKeyMultibase"])),
                    f" ({notes})",
                )
            )
        base = node.base_url
        body = [
            el("h1", None, node.settings.name),
            el(
                "section",
                {"lang": "en"},
                el(
                    "p",
                    None,
                    f"An exchange node in {node.settings.country}. Its signed feed is at ",
                    el("a", {"href": f"{base}/feed"}, f"{base}/feed"),
                    ", its latest checkpoint at ",
                    el("a", {"href": f"{base}/checkpoint"}, f"{base}/checkpoint"),
                    ", its vocabulary at ",
                    el("a", {"href": f"{base}/ns"}, f"{base}/ns"),
                    ".",
                ),
                el("h2", None, "Signing keys"),
                el("ul", None, keys),
                el(
                    "p",
                    None,
                    "Log origin ",
                    el("code", None, node.settings.origin),
                    ", checkpoint key ",
                    el("code", None, node.checkpoint_key),
                    ".",
                ),
            ),
        ]
        return self._respond(view, remember, view.text["about"], body)
