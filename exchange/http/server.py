"""The node's HTTP server: the app factory and its routes (protocol.md §1, §4, §5, §8).

Handlers stay thin: they parse the request, call the node or the store, and render. Errors
are raised as ExchangeError or aiohttp HTTP exceptions and turned into problem+json by the
one middleware in :mod:`exchange.http.problems`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import html
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from exchange import feed, gossip, merkle
from exchange.canonical import MAX_SEPARATORS, parse
from exchange.config import Settings
from exchange.entries import ObjectRecord, check_reason, object_iri
from exchange.errors import (
    BadRequest,
    Forbidden,
    InvalidKey,
    InvalidParameter,
    SignatureError,
)
from exchange.faults import fault_point
from exchange.federation import Federation, run_periodically, verifier_pool
from exchange.http.client import fetcher
from exchange.http.dashboard import Dashboard
from exchange.http.linked_data import linked_data_context, rdf_response, rdf_wanted, sparql_routes
from exchange.http.negotiation import preferred
from exchange.http.openapi import openapi_document
from exchange.http.operations import Operations
from exchange.http.pages import PageCache
from exchange.http.portal import Portal
from exchange.http.problems import Handler, problem_middleware
from exchange.httpsig import signature_key_id, verify_request
from exchange.merge import keyring_from_node_document
from exchange.node import Node, NotFound, open_node
from exchange.origins import OriginError, is_under
from exchange.partners import Partner
from exchange.query import StoredObject, encode_cursor, item_bytes, listing_bytes, parse_query
from exchange.resources import CONTEXT_IRIS, data_dir, read_json
from exchange.schema import schema_document
from exchange.store.base import merkle_proof

__all__ = ["NODE", "PageCache", "create_app", "node_routes", "sync_page_cache"]

_log = logging.getLogger(__name__)
NODE = web.AppKey("node", Node)
FEDERATION = web.AppKey("federation", Federation)
ACTIVITY_JSON = feed.ACTIVITY_JSON
LD_JSON = "application/ld+json"
IMMUTABLE = "public, max-age=31536000, immutable"


PAGE_CACHE = web.AppKey("page_cache", PageCache)


# --- helpers -----------------------------------------------------------------------------


def _node(request: web.Request) -> Node:
    return request.app[NODE]


def _json_response(
    value: Any, content_type: str = "application/json", status: int = 200
) -> web.Response:
    body = json.dumps(value, ensure_ascii=False).encode()
    return web.Response(status=status, body=body, content_type=content_type)


def _non_negative(request: web.Request, name: str) -> int:
    text = request.query.get(name)
    if text is None:
        raise BadRequest(f"query parameter {name} is required")
    if not text.isdigit() or len(text) > 18:
        raise BadRequest(f"query parameter {name} must be a non-negative integer, not {text!r}")
    return int(text)


def _path_int(request: web.Request, name: str) -> int:
    text = request.match_info[name]
    if not text.isdigit() or len(text) > 18 or (len(text) > 1 and text.startswith("0")):
        raise BadRequest(f"{name} must be a non-negative integer without leading zeros")
    return int(text)


def _cached_or_revalidate(
    request: web.Request, body: bytes, tag: str, cache_control: str, content_type: str
) -> web.Response:
    headers = {"ETag": tag, "Cache-Control": cache_control}
    if tag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type=content_type, headers=headers)


# --- node document and discovery ---------------------------------------------------------


async def node_document(request: web.Request) -> web.Response:
    node = _node(request)
    choice = preferred(request.headers.get("Accept"), [ACTIVITY_JSON, LD_JSON, "text/html"])
    if choice is None:
        raise web.HTTPNotAcceptable(
            text="offered: application/activity+json, application/ld+json, text/html"
        )
    if choice == "text/html":  # people go to the portal; its about page shows the node
        raise web.HTTPSeeOther(f"{node.settings.path_prefix}/portal")
    await node.refresh()  # a CLI on the same home may have rotated or revoked a key
    return _json_response(node.node_document(), choice)


async def well_known(request: web.Request) -> web.Response:
    return _json_response({"nodes": [_node(request).base_url]})


async def key_document(request: web.Request) -> web.Response:
    """``GET B/keys/{name}``: any key the node ever had, with its created and revoked times."""
    node = _node(request)
    await node.refresh()
    method = node.key_document(node.settings.key_id(request.match_info["name"]))
    if method is None:
        raise NotFound(f"no key named {request.match_info['name']!r}")
    return _json_response({"@context": list(CONTEXT_IRIS), **method}, ACTIVITY_JSON)


# --- feed and log ------------------------------------------------------------------------


async def feed_collection(request: web.Request) -> web.Response:
    node = _node(request)
    total = await node.store.log_size()
    body = feed.collection_document(node.base_url, total, node.settings.page_size)
    return _cached_or_revalidate(request, body, feed.etag(body), "no-cache", ACTIVITY_JSON)


async def sync_page_cache(node: Node, cache: PageCache) -> int:
    """Let the page cache agree with the store's erasure generation (an erasure may have run
    in this process or in another on the same home); returns that generation."""
    known = cache.generation
    generation, redacted = await node.store.redactions_since(known)
    if generation != known:
        cache.sync(known, generation, redacted, node.settings.page_size)
    return generation


async def feed_page(request: web.Request) -> web.Response:
    node = _node(request)
    number = _path_int(request, "number")
    cache = request.app[PAGE_CACHE]
    generation = await sync_page_cache(node, cache)  # read before any entry of the page
    cached = cache.get(number)
    if cached is not None:
        return _cached_or_revalidate(request, cached[0], cached[1], IMMUTABLE, ACTIVITY_JSON)
    total = await node.store.log_size()
    info = feed.page(number, total, node.settings.page_size)
    if info is None:
        last = feed.last_page(total, node.settings.page_size)
        raise NotFound(f"page {number} is beyond the last page {last}")
    entries, hashes, redacted = await node.store.page(info.start, info.end)
    body = feed.page_document(node.base_url, info, entries)
    tag = feed.page_etag(node.base_url, info, hashes, redacted)
    if info.full:
        cache.put(number, body, tag, generation=generation)
        return _cached_or_revalidate(request, body, tag, IMMUTABLE, ACTIVITY_JSON)
    return _cached_or_revalidate(request, body, tag, "no-cache", ACTIVITY_JSON)


async def log_entry(request: web.Request) -> web.Response:
    node = _node(request)
    seq = _path_int(request, "seq")
    entries = await node.store.entries(seq, seq + 1)
    if not entries:
        raise NotFound(f"the log has no entry {seq}")
    return _cached_or_revalidate(
        request, entries[0], feed.etag(entries[0]), "no-cache", ACTIVITY_JSON
    )


# --- checkpoints and proofs --------------------------------------------------------------


async def checkpoint(request: web.Request) -> web.Response:
    latest = await _node(request).store.latest_checkpoint()
    if latest is None:
        raise NotFound("the node has not signed a checkpoint yet")
    body = latest[1].encode()
    return _cached_or_revalidate(request, body, feed.etag(body), "no-cache", "text/plain")


async def checkpoints(request: web.Request) -> web.Response:
    """The newest checkpoint this node verified of each origin it follows (gossip, §5)."""
    node = _node(request)
    document = gossip.checkpoints_document(node.base_url, await node.store.list_origin_states())
    body = json.dumps(document, ensure_ascii=False).encode()
    return _cached_or_revalidate(request, body, feed.etag(body), "no-cache", "application/json")


def _hashes(values: list[bytes]) -> web.Response:
    return _json_response({"hashes": [base64.b64encode(v).decode() for v in values]})


async def inclusion_proof(request: web.Request) -> web.Response:
    node = _node(request)
    index, size = _non_negative(request, "index"), _non_negative(request, "size")
    log_size = await node.store.log_size()
    if not index < size <= log_size:
        raise BadRequest(f"need 0 <= index < size <= {log_size}, got index={index} size={size}")
    return _hashes(await merkle_proof(node.store, lambda s: merkle.inclusion_proof(s, index, size)))


async def consistency_proof(request: web.Request) -> web.Response:
    node = _node(request)
    first, second = _non_negative(request, "first"), _non_negative(request, "second")
    log_size = await node.store.log_size()
    if not 0 < first <= second <= log_size:
        raise BadRequest(f"need 0 < first <= second <= {log_size}, got {first} and {second}")
    return _hashes(
        await merkle_proof(node.store, lambda s: merkle.consistency_proof(s, first, second))
    )


# --- objects -----------------------------------------------------------------------------


def _records(items: Sequence[StoredObject]) -> list[ObjectRecord]:
    return [
        ObjectRecord(i.id, i.origin, i.type, i.version, i.deleted, i.seq, i.body) for i in items
    ]


async def list_objects(request: web.Request) -> web.Response:
    """``GET B/objects``: own and merged objects, filtered, in change order (query.py)."""
    node = _node(request)
    params = list(request.query.items())
    page, countries = await node.query_objects(parse_query(params))
    following = None
    if page.next_after is not None:
        kept = [(k, v) for k, v in params if k != "after"]
        following = f"{node.base_url}/objects?" + urlencode(
            [*kept, ("after", encode_cursor(page.next_after))]
        )
    media_type = rdf_wanted(request)
    if media_type is not None:  # the page as RDF; the next page in a Link header
        response = await rdf_response(request, _records(page.items), media_type)
        if following is not None:
            response.headers["Link"] = f'<{following}>; rel="next"'
        return response
    body = listing_bytes(page.items, following, base_url=node.base_url, countries=countries)
    return web.Response(body=body, content_type="application/json")


async def object_by_id(request: web.Request) -> web.Response:
    """``GET B/objects/by-id?id=<IRI>``: any object this node holds, own or merged."""
    node = _node(request)
    for name in request.query:
        if name != "id":
            raise InvalidParameter(name, f"unknown parameter {name!r}")
    ids = request.query.getall("id", [])
    if len(ids) != 1 or not ids[0]:
        raise InvalidParameter("id", "give the object's IRI once as id")
    stored = await node.store.get_stored(ids[0])
    if stored is None:
        raise NotFound(f"this node holds no object {ids[0]}")
    media_type = rdf_wanted(request)
    if media_type is not None:
        return await rdf_response(request, _records([stored]), media_type, single=True)
    body = item_bytes(stored, base_url=node.base_url, countries=await node.countries())
    return web.Response(body=body, content_type="application/json")


async def get_object(request: web.Request) -> web.Response:
    node = _node(request)
    object_id = f"{node.base_url}/objects/{request.match_info['slug']}"
    record = await node.store.get_object(object_id)
    if record is None:
        raise NotFound(f"no object {object_id}")
    media_type = rdf_wanted(request)
    if media_type is not None:
        return await rdf_response(request, [record], media_type, single=True)
    entries = await node.store.entries(record.seq, record.seq + 1)
    return _cached_or_revalidate(
        request, entries[0], feed.etag(entries[0]), "no-cache", ACTIVITY_JSON
    )


# --- vocabulary, context and schemas -----------------------------------------------------


async def vocabulary(request: web.Request) -> web.Response:
    choice = preferred(request.headers.get("Accept"), ["text/turtle", "text/html"])
    turtle = data_dir("vocab").joinpath("exchange.ttl").read_text(encoding="utf-8")
    if choice == "text/html":
        return web.Response(text=_vocabulary_page(turtle), content_type="text/html")
    if choice is None:
        raise web.HTTPNotAcceptable(text="offered: text/turtle, text/html")
    return web.Response(text=turtle, content_type="text/turtle")


def _vocabulary_page(turtle: str) -> str:
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<title>exchange vocabulary</title></head><body><h1>The exchange vocabulary</h1>"
        "<p>Namespace <code>https://w3id.org/exchange/ns#</code>. It reuses ActivityStreams 2, "
        "schema.org, Dublin Core and the SEMIC Core Vocabularies, and defines only what they "
        f"lack.</p><pre>{html.escape(turtle)}</pre></body></html>"
    )


async def context(request: web.Request) -> web.Response:
    return _json_response(read_json("vocab", "contexts/exchange-v1.jsonld"), LD_JSON)


async def schema(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in ("common", "case", "event", "best-practice", "object", "entry", "node"):
        raise NotFound(f"no schema named {name!r}")
    return _json_response(schema_document(name), "application/schema+json")


async def openapi(request: web.Request) -> web.Response:
    settings = _node(request).settings
    return _json_response(openapi_document(settings.base_url, settings.path_prefix))


# --- the operator's API ------------------------------------------------------------------


def _require_operator(request: web.Request) -> None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise web.HTTPUnauthorized(
            text="send the operator token as 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": 'Bearer realm="exchange"'},
        )
    if not _node(request).check_token(token.strip()):
        raise web.HTTPUnauthorized(
            text="the operator token is not valid",
            headers={"WWW-Authenticate": 'Bearer realm="exchange", error="invalid_token"'},
        )


async def _json_body(request: web.Request) -> Any:
    if request.content_type not in ("application/json", LD_JSON, ACTIVITY_JSON):
        raise web.HTTPUnsupportedMediaType(text="send application/json")
    return parse(await request.read())


async def admin_publish(request: web.Request) -> web.Response:
    _require_operator(request)
    body = await _json_body(request)
    drafts = body if isinstance(body, list) else [body]
    if not drafts or not all(isinstance(d, dict) for d in drafts):
        raise BadRequest("send one object or a non-empty array of objects")
    outcomes = await _node(request).publish(drafts)
    results = [
        {"id": o.id, "action": o.action, "version": o.version, "seq": o.seq} for o in outcomes
    ]
    return _json_response(
        {"results": results}, status=201 if any(o.seq is not None for o in outcomes) else 200
    )


async def admin_delete(request: web.Request) -> web.Response:
    _require_operator(request)
    node = _node(request)
    outcome = await node.delete(f"{node.base_url}/objects/{request.match_info['slug']}")
    return _json_response({"id": outcome.id, "action": outcome.action, "seq": outcome.seq})


MAX_ERASURE_BODY_BYTES = 16 * 1024


async def admin_erase(request: web.Request) -> web.Response:
    """``POST B/admin/erasures`` ``{"id": <IRI or slug>, "reason": <plain text>}``."""
    _require_operator(request)
    if request.content_length is not None and request.content_length > MAX_ERASURE_BODY_BYTES:
        raise BadRequest(f"an erasure request is at most {MAX_ERASURE_BODY_BYTES} bytes")
    body = await _json_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("id"), str) or not body["id"]:
        raise BadRequest('send {"id": "<object IRI or slug>", "reason": "<why>"}')
    node = _node(request)
    reason = check_reason(body.get("reason"))
    outcome = await node.erase(object_iri(body["id"], node.base_url), reason)
    await sync_page_cache(node, request.app[PAGE_CACHE])  # drop the pages on disk at once
    return _json_response(
        {
            "id": outcome.id,
            "action": "erased",
            "seq": outcome.seq,
            "redacted": list(outcome.redacted),
        },
        status=201,
    )


# --- the inbox (protocol.md §6) ----------------------------------------------------------


INBOX_MEDIA_TYPES = (ACTIVITY_JSON, LD_JSON)


class RateLimiter:
    """A token bucket per partner: ``per_minute`` requests, bursts up to a tenth of it."""

    def __init__(self, per_minute: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = max(1.0, per_minute / 10.0)
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str, now: float) -> int:
        """Take a token of ``key``'s bucket at ``now`` (seconds): 0 when there was one, else
        the whole seconds until there is one again (what ``Retry-After`` says; a request
        sent after that long is taken)."""
        tokens, last = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return max(1, math.ceil((1.0 - tokens) / self.rate))
        self._buckets[key] = (tokens - 1.0, now)
        return 0


RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)


async def inbox(request: web.Request) -> web.Response:
    """protocol.md §6, each check in its order; nothing of the body is read before the
    request's headers have passed every check they can decide (media type, coding, size,
    keyid, rate), so a body refused early is never read (see ``create_app``)."""
    node = _node(request)
    federation = request.app[FEDERATION]
    settings = node.settings
    # 1. media type -> 415; a content coding (a gzip bomb) is not taken either (RFC 9110
    #    §15.5.16): the signature and digest cover the bytes as sent.
    if request.content_type not in INBOX_MEDIA_TYPES:
        raise web.HTTPUnsupportedMediaType(text="the inbox takes application/activity+json")
    if request.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
        raise web.HTTPUnsupportedMediaType(
            text="the inbox takes no content coding", headers={"Accept-Encoding": "identity"}
        )
    # 2. size -> 413 on the declared length (411 without one), before reading anything
    if request.content_length is None:
        raise web.HTTPLengthRequired(text="send the body with a Content-Length")
    if request.content_length > settings.max_body_bytes:
        raise web.HTTPRequestEntityTooLarge(
            max_size=settings.max_body_bytes, actual_size=request.content_length
        )
    # 3. keyid not under a known partner -> 403, before anything is fetched
    headers = request.headers
    key_id = signature_key_id(headers)
    partner = await _partner_for_key(node, key_id)
    if partner is None and settings.open_follow_requests:
        partner = await federation.stranger(key_id)  # fetches that one node document
    if partner is None:
        raise Forbidden(f"keyid {key_id} is not a key of a partner of this node")
    # 7. rate limit per partner -> 429
    wait_s = request.app[RATE_LIMITER].take(partner.base_url, time.monotonic())
    if wait_s:
        raise web.HTTPTooManyRequests(text="slow down", headers={"Retry-After": str(wait_s)})
    # 4. signature, created, digest, key -> 401 (SignatureError: problem http-signature)
    body = await request.read()
    target = f"{node.base_url}/inbox" + (f"?{request.query_string}" if request.query_string else "")
    keys = keyring_from_node_document(partner.document)
    try:
        verify_request(
            method=request.method,
            target_uri=target,
            headers=headers,
            body=body,
            resolve_key=keys.resolve,
            now=settings.now(),
            max_clock_skew_s=settings.max_clock_skew_s,
        )
    except InvalidKey as error:
        raise SignatureError(error.detail) from None
    # 5. not I-JSON or not an activity -> 400
    activity = parse(body, integers_only=True, max_separators=MAX_SEPARATORS)
    if not isinstance(activity, dict) or not isinstance(activity.get("type"), str):
        raise BadRequest("the body is not an activity")
    # 6. a rule broken -> 422 (raised as IntegrityError by the federation)
    if not partner.approved:
        if activity.get("type") != "Follow":
            raise Forbidden(f"{partner.base_url} is not a partner; it may only ask to follow")
        await federation.queue_follow_request(partner, activity)
        return web.Response(status=202)
    await federation.handle_activity(partner, activity)
    fault_point("inbox.after_commit")
    return web.Response(status=202)


async def _partner_for_key(node: Node, key_id: str) -> Partner | None:
    """The partner (or the stranger waiting for approval) whose base URL holds the key; a
    keyid that is no comparable http(s) URL (user information, a bad port, a ``did:``)
    lies under none.

    Only the base URLs are read to find it, and only its document is decoded: with 200
    partners, decoding every pinned document took half of each push's time (bench/load.py).
    """
    for base_url in await node.store.partner_urls():
        try:
            if is_under(key_id, base_url):
                return await node.store.get_partner(base_url)
        except OriginError:
            return None
    return None


# --- the application ---------------------------------------------------------------------


def node_routes(prefix: str) -> list[web.RouteDef]:
    p = prefix
    return [
        web.get(p or "/", node_document),
        web.get(f"{p}/feed", feed_collection),
        web.get(f"{p}/feed/{{number}}", feed_page),
        web.get(f"{p}/log/{{seq}}", log_entry),
        web.get(f"{p}/checkpoint", checkpoint),
        web.get(f"{p}/checkpoints", checkpoints),
        web.get(f"{p}/proof/inclusion", inclusion_proof),
        web.get(f"{p}/proof/consistency", consistency_proof),
        web.get(f"{p}/keys/{{name}}", key_document),
        web.get(f"{p}/objects", list_objects),
        web.get(f"{p}/objects/by-id", object_by_id),  # before {slug}: "by-id" is reserved
        web.get(f"{p}/objects/{{slug}}", get_object),
        web.get(f"{p}/ns", vocabulary),
        web.get(f"{p}/ns/v1", context),
        web.get(f"{p}/schemas/{{name}}.schema.json", schema),
        web.get(f"{p}/openapi.json", openapi),
        web.post(f"{p}/admin/objects", admin_publish),
        web.delete(f"{p}/admin/objects/{{slug}}", admin_delete),
        web.post(f"{p}/admin/erasures", admin_erase),
        web.post(f"{p}/inbox", inbox),
        *Portal(NODE).routes(p),
        *Dashboard(NODE, FEDERATION).routes(p),
        *sparql_routes(p),
    ]


def _background(federation: Federation) -> list[asyncio.Task[None]]:
    """Delivery (woken by every append) and pulls (periodic, and when a message asks)."""
    settings = federation.node.settings
    pulls: asyncio.Queue[str] = asyncio.Queue()
    queued: set[str] = set()

    def request_pull(base_url: str) -> None:
        if base_url not in queued:
            queued.add(base_url)
            pulls.put_nowait(base_url)

    async def pull_requested() -> None:
        while True:
            base_url = await pulls.get()
            queued.discard(base_url)
            try:
                await federation.sync(base_url)
            except Exception:
                _log.exception("pull from %s failed", base_url)

    async def pull_all() -> None:
        for partner in await federation.store.list_partners():
            if partner.following == "accepted":
                request_pull(partner.base_url)

    federation.on_pull_request = request_pull
    return [
        asyncio.create_task(
            run_periodically(
                federation.deliver_due, settings.delivery_interval_s, federation.wake_delivery
            )
        ),
        asyncio.create_task(run_periodically(pull_all, settings.sync_interval_s)),
        asyncio.create_task(pull_requested()),
    ]


#: What the node still reads of a body it answered without reading (see close_unread).
UNREAD_DRAIN_BYTES = 256 * 1024
UNREAD_DRAIN_S = 0.5


@web.middleware
async def close_unread(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A staged close (RFC 9112 §9.6) of a request whose body the node answered without
    receiving it all (refused for its size, coding or sender): the answer is sent, the
    connection half-closed, and at most UNREAD_DRAIN_BYTES more are read (and dropped)
    for at most UNREAD_DRAIN_S, so that the client reads the answer before the connection
    closes, and a 100 MB body costs the node a few hundred KiB of reading, not 100 MB."""
    response = await handler(request)
    if request.content.is_eof() or response.prepared or not isinstance(response, web.Response):
        return response
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    transport = request.transport
    if transport is not None and transport.can_write_eof():
        transport.write_eof()
    drained = 0
    with contextlib.suppress(TimeoutError, ConnectionError, web.HTTPException):
        async with asyncio.timeout(UNREAD_DRAIN_S):
            while drained < UNREAD_DRAIN_BYTES and not request.content.is_eof():
                chunk = await request.content.readany()
                if not chunk:
                    break
                drained += len(chunk)
    return response


def create_app(settings: Settings, *, run_background: bool = True) -> web.Application:
    """The node's aiohttp application; opening the store and key happens on startup."""
    operations = Operations(NODE, FEDERATION, _require_operator, settings.path_prefix)
    app = web.Application(
        middlewares=[close_unread, operations.middleware, problem_middleware],
        client_max_size=settings.max_body_bytes,
        # A body the node answered without reading (too large, not a partner's...) is not
        # read afterwards but by close_unread: aiohttp would otherwise keep reading and
        # discarding it for up to 10 s ("lingering close"), 100 MB of it on a fast link.
        handler_args={"lingering_time": 0},
    )
    app[PAGE_CACHE] = PageCache(settings.page_cache_bytes, settings.page_dir)

    async def node_context(app: web.Application) -> AsyncIterator[None]:
        async with (
            open_node(settings) as node,
            fetcher(
                node.key,
                signing_keys=node.signing_keys,
                timeout_s=settings.fetch_timeout_s,
                clock=settings.now,
            ) as client,
            linked_data_context(app, node, run_background=run_background),
        ):
            app[NODE] = node
            # Pages an erasure touched while no server ran (or during a crash) leave the disk.
            await sync_page_cache(node, app[PAGE_CACHE])
            pool = contextlib.ExitStack()
            executor = pool.enter_context(verifier_pool(settings.verify_workers))
            federation = Federation(node, client, executor=executor)
            app[FEDERATION] = federation
            node.on_append = federation.wake_delivery.set
            tasks = [] if not run_background else _background(federation)
            yield
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            pool.close()

    app.cleanup_ctx.append(node_context)
    app[RATE_LIMITER] = RateLimiter(settings.inbox_requests_per_minute)

    routes = [*node_routes(settings.path_prefix), *operations.routes()]
    if settings.path_prefix:
        routes.append(web.get("/.well-known/exchange", well_known))
    else:
        routes.insert(1, web.get("/.well-known/exchange", well_known))
    app.add_routes(routes)
    return app
