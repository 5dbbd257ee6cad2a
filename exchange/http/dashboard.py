"""The operator dashboard (``B/admin/...``): login, partner health, rejections, equivocation
alerts, and the publish form.

Routes: ``GET/POST B/admin/login``, ``POST B/admin/logout``, ``GET B/admin/dashboard``
(refreshes itself every :data:`REFRESH_S` seconds) and ``GET/POST B/admin/publish``.
Every page but the login form needs the operator: a session cookie (see
:mod:`exchange.http.sessions`) or ``Authorization: Bearer <operator token>``. Without
either, a browser is sent to the login form (303); a wrong bearer token is a 401.

A partner is "online" when this node's latest pull from it or push to it (in this
process) reached it; before any, the delivery row decides (no failed push: online); a
partner never contacted is "offline".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

from aiohttp import web

from exchange.delivery import DeliveryState
from exchange.errors import ExchangeError, Forbidden, Issue, SchemaError
from exchange.federation import Contact, Federation
from exchange.http.html import Child, Safe, el, page, render
from exchange.http.publish_form import draft_from_form, place_issues, render_form
from exchange.http.sessions import SESSION_COOKIE, SESSION_TTL_S, Session, Sessions
from exchange.node import Node
from exchange.operator import PartnerStatus, partner_statuses
from exchange.partners import OriginState, Rejection
from exchange.schema import OBJECT_TYPES
from exchange.timestamps import format_timestamp

__all__ = ["REFRESH_S", "Dashboard", "Health", "health"]

REFRESH_S = 3
MAX_REJECTIONS_SHOWN = 50


@dataclass(frozen=True, slots=True)
class Health:
    online: bool
    detail: str


def health(contact: Contact | None, delivery: DeliveryState | None) -> Health:
    """Online or offline: the latest pull or push outcome (see the module's docstring)."""
    if contact is not None:
        when = format_timestamp(contact.at)
        what = f"last {contact.kind} at {when}"
        if contact.reached:
            return Health(True, what + (f" (answered: {contact.detail})" if contact.detail else ""))
        return Health(False, f"{what} failed: {contact.detail}")
    if delivery is not None and delivery.attempts == 0 and not delivery.last_error:
        return Health(True, "no contact since start; the last push succeeded")
    if delivery is not None:
        return Health(False, f"no contact since start; the last push failed: {delivery.last_error}")
    return Health(False, "no pull or push since this node started")


@dataclass(frozen=True, slots=True)
class Auth:
    session: Session | None  # None: authenticated by the bearer token


class Dashboard:
    """The operator's pages over the node and federation the app holds under the keys."""

    def __init__(self, node_key: web.AppKey[Node], federation_key: web.AppKey[Federation]) -> None:
        self._node_key = node_key
        self._federation_key = federation_key
        self._sessions: Sessions | None = None

    def routes(self, prefix: str) -> list[web.RouteDef]:
        p = prefix
        return [
            web.get(f"{p}/admin/login", self.login_form),
            web.post(f"{p}/admin/login", self.login),
            web.post(f"{p}/admin/logout", self.logout),
            web.get(f"{p}/admin/dashboard", self.dashboard),
            web.get(f"{p}/admin/publish", self.publish_form),
            web.post(f"{p}/admin/publish", self.publish),
        ]

    # --- authentication --------------------------------------------------------------------

    def _node(self, request: web.Request) -> Node:
        return request.app[self._node_key]

    def _sessions_of(self, node: Node) -> Sessions:
        if self._sessions is None or self._sessions.token_sha256 != node.settings.token_sha256:
            self._sessions = Sessions(node.settings.token_sha256)
        return self._sessions

    def _auth(self, request: web.Request) -> Auth | None:
        node = self._node(request)
        header = request.headers.get("Authorization")
        if header is not None:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not node.check_token(token.strip()):
                raise web.HTTPUnauthorized(
                    text="the operator token is not valid",
                    headers={"WWW-Authenticate": 'Bearer realm="exchange", error="invalid_token"'},
                )
            return Auth(None)
        session = self._sessions_of(node).check(request.cookies.get(SESSION_COOKIE))
        return None if session is None else Auth(session)

    def _required(self, request: web.Request) -> Auth:
        auth = self._auth(request)
        if auth is None:
            raise web.HTTPSeeOther(f"{self._node(request).settings.path_prefix}/admin/login")
        return auth

    @staticmethod
    def _check_csrf(auth: Auth, form: Mapping[str, object]) -> None:
        if auth.session is None:
            return
        sent = form.get("csrf")
        if not Sessions.csrf_ok(auth.session, sent if isinstance(sent, str) else None):
            raise Forbidden("the form's CSRF token is missing or wrong; reload the form")

    # --- pages -----------------------------------------------------------------------------

    def _page(
        self,
        node: Node,
        auth: Auth | None,
        title: str,
        body: Child,
        *,
        status: int = 200,
        refresh: bool = False,
    ) -> web.Response:
        root = node.settings.path_prefix
        links: list[Child] = [el("a", {"href": f"{root}/portal"}, "Portal")]
        if auth is not None:
            links = [
                el("a", {"href": f"{root}/admin/dashboard"}, "Dashboard"),
                el("a", {"href": f"{root}/admin/publish"}, "Publish"),
                *links,
            ]
            if auth.session is not None:
                links.append(
                    el(
                        "form",
                        {"method": "post", "action": f"{root}/admin/logout", "style": "margin:0"},
                        el("input", {"type": "hidden", "name": "csrf", "value": auth.session.csrf}),
                        el("button", {"type": "submit", "style": "margin:0"}, "Log out"),
                    )
                )
        header = el(
            "header",
            None,
            el(
                "div",
                {"class": "bar"},
                el("span", {"class": "site"}, f"{node.settings.name} — operator"),
                el("nav", None, el("ul", None, [el("li", None, link) for link in links])),
            ),
        )
        extra = (
            el("meta", {"http-equiv": "refresh", "content": str(REFRESH_S)}) if refresh else None
        )
        document = page(title=title, language="en", header=header, body=body, head_extra=extra)
        return render(document, status=status, headers={"Cache-Control": "no-store"})

    async def login_form(self, request: web.Request) -> web.Response:
        return self._login_page(self._node(request), None)

    def _login_page(self, node: Node, error: str | None, status: int = 200) -> web.Response:
        root = node.settings.path_prefix
        body = [
            el("h1", None, "Operator login"),
            el("p", {"class": "error", "role": "alert"}, error) if error else None,
            el(
                "form",
                {"method": "post", "action": f"{root}/admin/login", "class": "stack"},
                el("label", {"for": "token"}, "Operator token"),
                el(
                    "input",
                    {"id": "token", "name": "token", "type": "password", "autocomplete": "off"},
                ),
                el("button", {"type": "submit"}, "Log in"),
            ),
        ]
        return self._page(node, None, "Operator login", body, status=status)

    async def login(self, request: web.Request) -> web.Response:
        node = self._node(request)
        form = await request.post()
        token = form.get("token")
        if not isinstance(token, str) or not token or not node.check_token(token.strip()):
            return self._login_page(node, "That is not this node's operator token.", 401)
        cookie, _ = self._sessions_of(node).issue()
        response = web.HTTPSeeOther(f"{node.settings.path_prefix}/admin/dashboard")
        response.set_cookie(
            SESSION_COOKIE,
            cookie,
            max_age=SESSION_TTL_S,
            path=f"{node.settings.path_prefix}/admin",
            httponly=True,
            samesite="Strict",
            secure=node.base_url.startswith("https://"),
        )
        raise response

    async def logout(self, request: web.Request) -> web.Response:
        auth = self._required(request)
        node = self._node(request)
        self._check_csrf(auth, await request.post())
        if auth.session is not None:
            self._sessions_of(node).end(auth.session)
        response = web.HTTPSeeOther(f"{node.settings.path_prefix}/admin/login")
        response.del_cookie(SESSION_COOKIE, path=f"{node.settings.path_prefix}/admin")
        raise response

    # --- the dashboard ---------------------------------------------------------------------

    async def dashboard(self, request: web.Request) -> web.Response:
        auth = self._required(request)
        node = self._node(request)
        federation = request.app[self._federation_key]
        statuses = await partner_statuses(federation)
        rejections = await node.store.list_rejections(MAX_REJECTIONS_SHOWN)
        halted = [s for s in await node.store.list_origin_states() if s.halted]
        size = await node.store.log_size()
        body = [
            el("h1", None, "Federation"),
            el(
                "p",
                {"class": "meta"},
                f"This node's log holds {size} entries. "
                f"Updated {format_timestamp(datetime.now(UTC))}; this page refreshes every "
                f"{REFRESH_S} s.",
            ),
            [self._alert(state) for state in halted],
            el("h2", None, "Partners"),
            self._partners(statuses, federation) if statuses else el("p", None, "No partners."),
            el("h2", None, f"Rejected entries (latest {MAX_REJECTIONS_SHOWN})"),
            self._rejections(rejections),
        ]
        return self._page(node, auth, "Operator dashboard", body, refresh=True)

    @staticmethod
    def _alert(state: OriginState) -> Safe:
        return el(
            "div",
            {"class": "alert", "data-testid": "equivocation-alert", "data-origin": state.base_url},
            el("strong", None, f"Halted: {state.base_url}"),
            el("p", None, state.halt_reason),
            el("p", None, "Evidence: two signed checkpoints that cannot both be true:"),
            [el("pre", None, note) for note in state.evidence],
        )

    @staticmethod
    def _partners(statuses: list[PartnerStatus], federation: Federation) -> Safe:
        headings = (
            "Partner",
            "State",
            "Last merged seq",
            "Lag",
            "Last checkpoint",
            "Delivery backlog",
            "Circuit",
            "Online",
            "Last contact",
        )
        rows = []
        for status in statuses:
            partner, origin, delivery = status.partner, status.origin, status.delivery
            merged = origin.next_seq if origin else 0
            checkpoint_size = origin.checkpoint_size if origin else 0
            state = f"following: {partner.following}; " + (
                "subscriber" if partner.subscriber else "not a subscriber"
            )
            if not partner.approved:
                state += "; asks to follow, awaiting approval"
            if origin is not None and origin.halted:
                state += "; HALTED"
            verified = federation.checkpoint_verified_at.get(partner.base_url)
            checkpoint = (
                f"size {checkpoint_size}, root {origin.checkpoint_root.hex()[:16]}…"
                + (f"; verified {format_timestamp(verified)}" if verified else "")
                if origin is not None and checkpoint_size
                else "none yet"
            )
            backlog = (
                str(max(0, status.log_size - delivery.delivered))
                if partner.subscriber and delivery is not None
                else "—"
            )
            circuit = delivery.breaker if delivery is not None else "—"
            if delivery is not None and delivery.last_error:
                circuit += f" (last error: {delivery.last_error})"
            now = health(federation.contacts.get(partner.base_url), delivery)

            def cell(testid: str, text: str, value: int | None = None, **attrs: str) -> Safe:
                return el("td", {"data-testid": testid, "data-value": value, **attrs}, text)

            rows.append(
                el(
                    "tr",
                    {"data-testid": "partner-row", "data-partner": partner.base_url},
                    el(
                        "td",
                        None,
                        el("strong", None, partner.name),
                        f" ({partner.country})",
                        el("br"),
                        el("code", None, partner.base_url),
                    ),
                    cell("partner-state", state),
                    cell("partner-last-seq", str(merged - 1) if merged else "—", merged - 1),
                    cell(
                        "partner-lag",
                        str(max(0, checkpoint_size - merged)),
                        max(0, checkpoint_size - merged),
                    ),
                    cell("partner-checkpoint", checkpoint, checkpoint_size),
                    cell("partner-backlog", backlog),
                    cell("partner-circuit", circuit),
                    el(
                        "td",
                        {
                            "data-testid": "partner-online",
                            "class": "online" if now.online else "offline",
                            "title": now.detail,
                        },
                        "online" if now.online else "offline",
                    ),
                    el("td", {"data-testid": "partner-contact"}, el("small", None, now.detail)),
                )
            )
        return el(
            "div",
            {"class": "scroll"},
            el(
                "table",
                None,
                el("thead", None, el("tr", None, [el("th", None, h) for h in headings])),
                el("tbody", None, rows),
            ),
        )

    @staticmethod
    def _rejections(rejections: list[Rejection]) -> Safe:
        if not rejections:
            return el("p", None, "None.")
        rows = [
            el(
                "tr",
                {"data-testid": "rejection", "data-origin": r.origin},
                el("td", None, r.at),
                el("td", None, el("code", None, r.origin)),
                el("td", None, "—" if r.seq is None else str(r.seq)),
                el("td", None, r.problem),
                el("td", None, r.reason),
            )
            for r in rejections
        ]
        headings = ("When", "Origin", "Seq", "Problem", "Reason")
        return el(
            "div",
            {"class": "scroll"},
            el(
                "table",
                None,
                el("thead", None, el("tr", None, [el("th", None, h) for h in headings])),
                el("tbody", None, rows),
            ),
        )

    # --- publishing ------------------------------------------------------------------------

    async def publish_form(self, request: web.Request) -> web.Response:
        auth = self._required(request)
        node = self._node(request)
        return self._publish_page(node, auth, {}, [], None)

    def _publish_page(
        self,
        node: Node,
        auth: Auth,
        values: Mapping[str, str],
        issues: list[Issue],
        result: Safe | None,
        status: int = 200,
    ) -> web.Response:
        by_field, general = place_issues(issues, values.get("type", ""))
        form = render_form(
            action=f"{node.settings.path_prefix}/admin/publish",
            values=values,
            by_field=by_field,
            general=general,
            csrf=auth.session.csrf if auth.session is not None else None,
        )
        body = [el("h1", None, "Publish"), result, form]
        return self._page(node, auth, "Publish", body, status=status)

    async def publish(self, request: web.Request) -> web.Response:
        auth = self._required(request)
        node = self._node(request)
        posted = await request.post()
        self._check_csrf(auth, posted)
        values = {k: v for k, v in posted.items() if isinstance(v, str) and k != "csrf"}
        if values.get("type") not in OBJECT_TYPES:
            issue = Issue("/type", "choose Case, Event or BestPractice")
            return self._publish_page(node, auth, values, [issue], None, 422)
        try:
            (outcome,) = await node.publish([draft_from_form(values)])
        except SchemaError as error:
            issues = list(error.issues) or [Issue("", error.detail)]
            return self._publish_page(node, auth, values, issues, None, 422)
        except ExchangeError as error:
            return self._publish_page(
                node, auth, values, [Issue("", error.detail)], None, error.status
            )
        root = node.settings.path_prefix
        link = f"{root}/portal/object?{urlencode({'id': outcome.id})}"
        result = el(
            "div",
            {"class": "notice", "data-testid": "publish-result", "data-id": outcome.id},
            el("p", None, f"Published ({outcome.action}, version {outcome.version}): "),
            el("p", None, el("a", {"href": link}, outcome.id)),
        )
        return self._publish_page(node, auth, {}, [], result)
