"""Operations endpoints and the request middleware: ``GET B/healthz`` (liveness),
``GET B/readyz`` (readiness), ``GET B/metrics`` (Prometheus text), and for every request
an id (``X-Request-Id``), a duration in the latency histogram and one access log line.

- ``B/healthz``: 200 while the process serves HTTP; it reads nothing.
- ``B/readyz``: 200 when the store answers a trivial query and the node's signing keys
  (the active one, and the retired ones that co-sign) are loaded; else 503 problem+json
  (:class:`~exchange.errors.NotReady`). Its detail never names files: the probe is open
  to anyone; the log has the cause.
- ``B/metrics``: read from the store and the federation's in-process counters on every
  scrape (:mod:`exchange.metrics`); needs the operator token unless
  ``[operations] metrics_token_required = false``.

None of them is cached (``Cache-Control: no-store``). The histogram's labels are the
matched route's canonical path (``/objects/{slug}``, never the URL asked for; ``unmatched``
when no route matched), the method (``other`` for any but the standard ones) and the
status class, so a client cannot grow the number of series. Probe and scrape requests
are logged at DEBUG, every other request at INFO on the logger ``exchange.access``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from exchange.errors import NotReady
from exchange.federation import Federation
from exchange.http.dashboard import health
from exchange.http.problems import Handler
from exchange.logs import REQUEST_ID
from exchange.metrics import (
    CONTENT_TYPE,
    LatencyHistogram,
    Snapshot,
    render,
    snapshot_families,
    status_class,
)
from exchange.node import Node

__all__ = [
    "REQUEST_ID_HEADER",
    "Operations",
    "request_id_from",
    "route_label",
]

REQUEST_ID_HEADER = "X-Request-Id"
#: An incoming request id is kept when it is 1-128 of these characters (a UUID, a ULID,
#: a proxy's hex id); anything else is replaced by a new one.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
UNMATCHED = "unmatched"
NO_STORE = {"Cache-Control": "no-store"}

_log = logging.getLogger(__name__)
_access = logging.getLogger("exchange.access")

Authorize = Callable[[web.Request], None]


def request_id_from(header: str | None) -> str:
    """The request's id: the one the client (or a proxy) sent if it is sane, else new."""
    if header is not None and _REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


def route_label(request: web.Request) -> str:
    """The canonical path of the route that matched (``unmatched``: none did)."""
    resource = request.match_info.route.resource
    return UNMATCHED if resource is None else resource.canonical


def _json(value: dict[str, Any]) -> web.Response:
    return web.json_response(value, headers=NO_STORE)


class Operations:
    """The operations routes of a node served under ``prefix``, and the middleware that
    ids, times and logs each request. ``authorize`` raises unless the request carries
    the operator token (the admin API's check)."""

    def __init__(
        self,
        node_key: web.AppKey[Node],
        federation_key: web.AppKey[Federation],
        authorize: Authorize,
        prefix: str,
    ) -> None:
        self._node_key = node_key
        self._federation_key = federation_key
        self._authorize = authorize
        self._prefix = prefix
        self._quiet = {f"{prefix}/healthz", f"{prefix}/readyz", f"{prefix}/metrics"}
        self.histogram = LatencyHistogram()
        self.middleware = self._middleware()

    def routes(self) -> list[web.RouteDef]:
        p = self._prefix
        return [
            web.get(f"{p}/healthz", self.healthz),
            web.get(f"{p}/readyz", self.readyz),
            web.get(f"{p}/metrics", self.metrics),
        ]

    # --- the middleware --------------------------------------------------------------------

    def _middleware(self) -> Middleware:
        @web.middleware
        async def operations(request: web.Request, handler: Handler) -> web.StreamResponse:
            request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
            context = REQUEST_ID.set(request_id)
            started = time.perf_counter()
            status = 500
            try:
                response = await handler(request)
                status = response.status
                if not response.prepared:  # no handler streams; a streamed one keeps its own
                    response.headers[REQUEST_ID_HEADER] = request_id
                return response
            except web.HTTPException as error:  # a redirect, raised past the problem middleware
                status = error.status
                error.headers[REQUEST_ID_HEADER] = request_id
                raise
            except asyncio.CancelledError:
                status = 499  # the client went away first (nginx's convention)
                raise
            finally:
                self._record(request, status, time.perf_counter() - started)
                REQUEST_ID.reset(context)

        return operations

    def _record(self, request: web.Request, status: int, seconds: float) -> None:
        route = route_label(request)
        method = request.method if request.method in _METHODS else "other"
        labels = (("route", route), ("method", method), ("status", status_class(status)))
        self.histogram.observe(labels, seconds)
        duration_ms = round(seconds * 1000, 3)
        path = request.rel_url.raw_path  # as sent, percent-encoded: no control characters
        _access.log(
            logging.DEBUG if route in self._quiet else logging.INFO,
            "%s %s %d %.1fms",
            request.method,
            path,
            status,
            duration_ms,
            extra={
                "method": request.method,
                "path": path,
                "status": status,
                "duration_ms": duration_ms,
            },
        )

    # --- the routes ------------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        return _json({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        node = request.app[self._node_key]
        try:
            await node.store.log_size()
        except Exception as error:
            _log.warning("not ready: the store does not answer: %s", error)
            raise NotReady("the store does not answer") from error
        try:
            node.signing_keys()  # the active key and the retired ones that co-sign
        except Exception as error:
            _log.warning("not ready: the signing keys are not loaded: %s", error)
            raise NotReady("the node's signing keys are not loaded") from error
        return _json({"status": "ready"})

    async def metrics(self, request: web.Request) -> web.Response:
        node = request.app[self._node_key]
        if node.settings.metrics_token_required:
            self._authorize(request)
        snapshot = await self.snapshot(node, request.app[self._federation_key])
        families = [
            *snapshot_families(snapshot),
            self.histogram.family(
                "exchange_http_request_duration_seconds",
                "Time to answer HTTP requests, by route, method and status class.",
            ),
        ]
        return web.Response(
            body=render(families).encode(), headers={"Content-Type": CONTENT_TYPE, **NO_STORE}
        )

    @staticmethod
    async def snapshot(node: Node, federation: Federation) -> Snapshot:
        """Five cheap reads of the store, and the federation's in-process state."""
        store = node.store
        partners = await store.list_partners()
        deliveries = await store.list_deliveries()
        rows = {d.partner: d for d in deliveries}
        up = {
            p.base_url: health(federation.contacts.get(p.base_url), rows.get(p.base_url)).online
            for p in partners
        }
        return Snapshot(
            log_size=await store.log_size(),
            counts=await store.counts(),
            partners=partners,
            origins=await store.list_origin_states(),
            deliveries=deliveries,
            up=up,
            pushes=dict(federation.pushes),
        )
