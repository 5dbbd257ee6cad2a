"""Linked data over HTTP: RDF representations of objects and the SPARQL endpoint.

- ``rdf_wanted`` tells whether a request to ``/objects``, ``/objects/{slug}`` or
  ``/objects/by-id`` prefers RDF (Turtle, N-Triples, JSON-LD) over JSON;
  ``rdf_response`` writes records as that RDF. JSON-LD is the objects as signed, in
  compact form with the shipped context IRIs; Turtle and N-Triples are the triples the
  view holds of them (read with the shipped contexts, never fetched).
- ``GET/POST B/sparql`` is a read-only SPARQL 1.1 Protocol endpoint over the RDF view
  (:mod:`exchange.rdf_view`), with a time limit (503 ``sparql-timeout`` when passed) and a
  result limit (400 ``sparql-refused`` when passed: an answer is never cut short silently).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qs

import pyoxigraph as ox
from aiohttp import web

from exchange.entries import ObjectRecord
from exchange.errors import BadRequest, QueryRefused, QueryTimeout, ViewBuilding
from exchange.federation import run_periodically
from exchange.http.negotiation import preferred
from exchange.node import Node
from exchange.rdf import PREFIXES, view_document
from exchange.rdf_view import RdfView, catch_up, node_facts, quads_of
from exchange.resources import CONTEXT_IRIS
from exchange.sparql import GRAPH_TYPES, RESULT_TYPES, Answer, write_results

__all__ = [
    "LINKED_DATA",
    "RDF_TYPES",
    "LinkedData",
    "linked_data_context",
    "rdf_bytes",
    "rdf_response",
    "rdf_wanted",
    "sparql_routes",
]

TURTLE = "text/turtle"
N_TRIPLES = "application/n-triples"
LD_JSON = "application/ld+json"
#: The RDF media types of objects, with the Oxigraph format of each.
RDF_TYPES = {TURTLE: ox.RdfFormat.TURTLE, N_TRIPLES: ox.RdfFormat.N_TRIPLES, LD_JSON: None}
T = TypeVar("T")
_JSON_TYPES = ("application/json", "application/activity+json")
MAX_QUERY_BYTES = 64 * 1024
#: How often the view looks for changes written by another process on the same home
#: (this process's own writes wake it at once).
POLL_INTERVAL_S = 1.0


class LinkedData:
    """The node's RDF view and the background task that keeps it up to date."""

    def __init__(self, node: Node, view: RdfView) -> None:
        self.node = node
        self.view = view
        self.wake = asyncio.Event()
        self.slots = asyncio.Semaphore(view.query_workers)
        self._catching_up = asyncio.Lock()
        #: False until the view was first built from the objects table.
        self.built = False

    async def catch_up(self) -> int:
        """Apply what changed since the view's counter (also callable from tests)."""
        settings = self.node.settings
        async with self._catching_up:  # the background task and a caller never overlap
            nodes = node_facts(
                settings.base_url,
                settings.country,
                settings.language,
                settings.name,
                await self.node.store.list_partners(),
            )
            applied = await catch_up(self.node.store, self.view, nodes)
            self.built = True
            return applied

    async def query(self, text: str, **graphs: Sequence[str]) -> Answer:
        """Run a query on a reader thread, within the node's time and result limits."""
        if not self.built:
            raise ViewBuilding(
                f"the RDF view is being built from the objects table ({self.view.applied} "
                "object rows so far); retry in a few seconds"
            )
        settings = self.node.settings
        timeout = settings.sparql_timeout_s
        deadline = time.monotonic() + timeout
        try:  # asyncio.timeout: wait_for on 3.11 may lose a cancellation or a slot
            async with asyncio.timeout(timeout):
                await self.slots.acquire()
        except TimeoutError:
            raise QueryTimeout(
                f"every query slot stayed busy for {timeout:g} s; retry later"
            ) from None
        future = in_daemon_thread(
            lambda: self.view.query(
                text, deadline=deadline, max_results=settings.sparql_max_results, **graphs
            )
        )
        # The slot is free when the thread is, not when the client stops waiting: a query
        # that Oxigraph cannot interrupt (one long sort or aggregate) keeps its slot.
        future.add_done_callback(lambda _: self.slots.release())
        try:
            async with asyncio.timeout_at(
                asyncio.get_running_loop().time() + max(0.0, deadline - time.monotonic())
            ):
                return await asyncio.shield(future)
        except TimeoutError:
            future.add_done_callback(_swallow)
            raise QueryTimeout(
                f"the query ran past this node's time limit of {timeout:g} s"
            ) from None


def in_daemon_thread(work: Callable[[], T]) -> asyncio.Future[T]:
    """Run ``work`` on a daemon thread of its own: a query that outlives its time limit
    never holds up the node's shutdown (Oxigraph cannot interrupt one evaluation step)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():
            outcome()

    def target() -> None:
        try:
            result = work()
        except BaseException as error:
            failure = error
            deliver: Callable[[], None] = lambda: future.set_exception(failure)  # noqa: E731
        else:
            deliver = lambda: future.set_result(result)  # noqa: E731
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(settle, deliver)

    threading.Thread(target=target, name="sparql", daemon=True).start()
    return future


def _swallow(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved: a timed-out query's late error is not logged


LINKED_DATA = web.AppKey("linked_data", LinkedData)


@contextlib.asynccontextmanager
async def linked_data_context(
    app: web.Application, node: Node, *, run_background: bool
) -> AsyncIterator[LinkedData]:
    """Build the RDF view and, with ``run_background``, follow the store from a background
    task (woken by every append or merge of this process, and every second for writes of
    another process on the same home)."""
    loop = asyncio.get_running_loop()
    view = RdfView()
    linked = LinkedData(node, view)
    app[LINKED_DATA] = linked
    task = None
    if run_background:
        node.store.on_change = linked.wake.set
        task = asyncio.create_task(run_periodically(linked.catch_up, POLL_INTERVAL_S, linked.wake))
    try:
        yield linked
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        node.store.on_change = None
        await loop.run_in_executor(None, view.close)


# --- RDF representations of objects -------------------------------------------------------


def rdf_wanted(request: web.Request) -> str | None:
    """The RDF media type the request prefers over JSON, or None (JSON)."""
    accept = request.headers.get("Accept")
    if not accept:
        return None
    choice = preferred(accept, [*_JSON_TYPES, *RDF_TYPES])
    return choice if choice in RDF_TYPES else None


def rdf_bytes(records: Sequence[ObjectRecord], media_type: str, *, single: bool = False) -> bytes:
    """Records as RDF in ``media_type`` (one of RDF_TYPES)."""
    if media_type == LD_JSON:
        bodies = [r.body for r in records]
        if single and len(bodies) == 1:
            document: dict[str, Any] = {"@context": list(CONTEXT_IRIS), **bodies[0]}
        else:
            document = view_document(bodies, inline=False)
        return json.dumps(document, ensure_ascii=False).encode()
    triples = [ox.Triple(q.subject, q.predicate, q.object) for q in quads_of(records)]
    return _graph_bytes(triples, media_type)


async def rdf_response(
    request: web.Request,
    records: Sequence[ObjectRecord],
    media_type: str,
    *,
    single: bool = False,
) -> web.Response:
    """The records as RDF: one object (``single``) or a page of them. Converting runs on
    a worker thread: a 500-object page costs tens of milliseconds."""
    loop = asyncio.get_running_loop()
    body = await loop.run_in_executor(None, lambda: rdf_bytes(records, media_type, single=single))
    return web.Response(
        body=body, content_type=media_type, charset="utf-8", headers={"Vary": "Accept"}
    )


# --- the SPARQL endpoint ------------------------------------------------------------------


async def _query_text(request: web.Request) -> tuple[str, dict[str, list[str]]]:
    """The query and the protocol's other parameters of a GET or POST (SPARQL 1.1
    Protocol §2.1: query via GET, via URL-encoded POST, or directly in the POST body)."""
    parameters: dict[str, list[str]] = {
        key: request.query.getall(key) for key in set(request.query.keys())
    }
    if request.method == "POST":
        if request.content_length is not None and request.content_length > MAX_QUERY_BYTES:
            raise BadRequest(f"a query is at most {MAX_QUERY_BYTES} bytes")
        raw = await request.content.read(MAX_QUERY_BYTES + 1)
        if len(raw) > MAX_QUERY_BYTES:
            raise BadRequest(f"a query is at most {MAX_QUERY_BYTES} bytes")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("the request body is not UTF-8") from None
        if request.content_type == "application/sparql-query":
            parameters["query"] = [text]
        elif request.content_type == "application/x-www-form-urlencoded":
            for key, values in parse_qs(text, keep_blank_values=True).items():
                parameters.setdefault(key, []).extend(values)
        elif request.content_type == "application/sparql-update":
            raise QueryRefused("this endpoint is read-only; it runs queries, not updates")
        else:
            raise web.HTTPUnsupportedMediaType(
                text="send application/sparql-query or application/x-www-form-urlencoded"
            )
    if "update" in parameters:
        raise QueryRefused("this endpoint is read-only; it runs queries, not updates")
    queries = parameters.get("query", [])
    if len(queries) != 1 or not queries[0].strip():
        raise BadRequest("give exactly one query (the 'query' parameter)")
    if len(queries[0].encode()) > MAX_QUERY_BYTES:
        raise BadRequest(f"a query is at most {MAX_QUERY_BYTES} bytes")
    return queries[0], parameters


async def sparql(request: web.Request) -> web.Response:
    text, parameters = await _query_text(request)
    linked = request.app[LINKED_DATA]
    answer = await linked.query(
        text,
        default_graphs=parameters.get("default-graph-uri", []),
        named_graphs=parameters.get("named-graph-uri", []),
    )
    accept = request.headers.get("Accept")
    headers = {"Vary": "Accept", "Cache-Control": "no-cache"}
    if answer.form == "graph":
        choice = preferred(accept, GRAPH_TYPES)
        if choice is None:
            raise web.HTTPNotAcceptable(text=f"offered: {', '.join(GRAPH_TYPES)}")
        body = await asyncio.get_running_loop().run_in_executor(
            None, _graph_bytes, answer.triples, choice
        )
        return web.Response(body=body, content_type=choice, charset="utf-8", headers=headers)
    choice = preferred(accept, RESULT_TYPES)
    if choice is None:
        raise web.HTTPNotAcceptable(text=f"offered: {', '.join(RESULT_TYPES)}")
    body = write_results(answer, choice)
    return web.Response(body=body, content_type=choice, charset="utf-8", headers=headers)


def _graph_bytes(triples: Sequence[ox.Triple], media_type: str) -> bytes:
    """Triples in one of RDF_TYPES (JSON-LD: Oxigraph's expanded form)."""
    written = ox.serialize(
        triples, format=RDF_TYPES[media_type] or ox.RdfFormat.JSON_LD, prefixes=PREFIXES
    )
    assert written is not None  # no output file given: the bytes are returned
    return written


def sparql_routes(prefix: str) -> list[web.RouteDef]:
    return [web.get(f"{prefix}/sparql", sparql), web.post(f"{prefix}/sparql", sparql)]
