"""A fake publisher: the publisher side of protocol.md §1 and §3-5, in memory, for tests.

Like python-tuf's RepositorySimulator, :class:`FeedSimulator` is an honest publisher by
default and misbehaves only when a test turns a knob. It builds and signs entries with
the project's own pure functions (:func:`~exchange.entries.build_entry` and
:func:`~exchange.entries.sign_entry` for valid ones, :func:`~exchange.proof.sign_document`
for crafted ones that break a rule), keeps the RFC 6962 tree of its leaves in a
:class:`~exchange.merkle.MemorySubtrees`, signs C2SP checkpoints with
:func:`~exchange.checkpoint.sign_checkpoint`, and serves ``GET B`` (node document),
``B/feed``, ``B/feed/{k}``, ``B/checkpoint``, ``B/proof/consistency`` and
``B/proof/inclusion`` on a real loopback port, so that its base URL is the one it signs.

Knobs (each one is an attack a test names):

- :meth:`append_document` / :meth:`append_leaf`: any document (even an invalid one) as
  the next leaf; :meth:`craft` signs a hand-made entry with any key and time.
- :attr:`checkpoint_size`: serve the checkpoint of an older size (a rollback).
- :attr:`checkpoint_override`: serve any note text (a forged or forked checkpoint).
- :meth:`fork`: rewrite a leaf of the tree itself: every checkpoint signed from then on
  is of the forked tree (same size, other root, validly signed).
- :meth:`substitute`: serve another leaf in the feed than the tree holds (entries that
  do not hash to the signed root).
- :attr:`next_links` / :attr:`page_alias`: a page's ``next`` link, or which page's
  entries a page number serves (a ``next`` that loops, a page served twice).
- :attr:`consistency_override`: the hashes any consistency proof answers with.
- :attr:`page_override` / :attr:`dropped`: the exact bytes a page number answers with (a
  page cached from an older checkpoint, a page that is not JSON), or seqs left out of the
  pages (a gap).
- :attr:`redirects`: a path answered with a redirect to any URL (a pull led elsewhere).
- :attr:`drip_s`: every answer is sent one byte at a time, this many seconds apart.

:attr:`requests` records every path asked for, so a test can bound what a client did.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from exchange.canonical import canonicalize
from exchange.checkpoint import Checkpoint, sign_checkpoint, verifier_key
from exchange.entries import build_entry, sign_entry
from exchange.keys import KeyPair
from exchange.merkle import MemorySubtrees, consistency_proof, inclusion_proof, root
from exchange.proof import sign_document
from exchange.resources import CONTEXT_IRIS
from exchange.timestamps import format_timestamp
from tests.nodes import free_port

__all__ = ["FeedSimulator", "SimulatedKey", "free_port", "key_pair", "running_simulator"]

ACTIVITY_JSON = "application/activity+json"
MAX_ENTRY_BYTES = 256 * 1024
Mutation = Callable[[dict[str, Any]], None]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def key_pair(key_id: str, label: str) -> KeyPair:
    """A deterministic Ed25519 key named ``key_id`` (its seed is derived from ``label``)."""
    return KeyPair(key_id, hashlib.sha256(f"feed-simulator {label}".encode()).digest())


@dataclass(frozen=True, slots=True)
class SimulatedKey:
    """A key of the simulated node, as its node document lists it (or not)."""

    pair: KeyPair
    created: datetime
    revoked: datetime | None = None
    listed: bool = True

    def document(self, controller: str) -> dict[str, Any]:
        return {
            "id": self.pair.id,
            "type": "Multikey",
            "controller": controller,
            "publicKeyMultibase": self.pair.public_multibase,
            "created": format_timestamp(self.created),
            "revoked": None if self.revoked is None else format_timestamp(self.revoked),
        }


class FeedSimulator:
    """An in-memory publisher whose log, tree and checkpoints a test controls."""

    def __init__(
        self,
        *,
        port: int | None = None,
        prefix: str = "/example.org",
        page_size: int = 4,
        now: datetime | None = None,
        name: str = "Simulated partner",
        country: str = "BE",
    ) -> None:
        self.port = port or free_port()
        self.prefix = prefix
        self.base_url = f"http://127.0.0.1:{self.port}{prefix}"
        self.origin = self.base_url.split("://", 1)[1]
        self.page_size = page_size
        self.name = name
        self.country = country
        #: The simulator's "now"; entries are signed a day before it, a second apart.
        self.now = (now or datetime.now(UTC)).replace(microsecond=0)
        self._clock = self.now - timedelta(days=1)
        self.keys: list[SimulatedKey] = []
        self.key = self.add_key("2026-1", created=self.now - timedelta(days=30)).pair
        self.leaves: list[bytes] = []
        self.tree = MemorySubtrees()
        #: The object of every id as last published through create/update/delete.
        self.objects: dict[str, dict[str, Any]] = {}
        # --- knobs -----------------------------------------------------------------------
        self.checkpoint_size: int | None = None
        self.checkpoint_override: str | None = None
        self.substituted: dict[int, bytes] = {}
        self.next_links: dict[int, str | None] = {}
        self.page_alias: dict[int, int] = {}
        self.consistency_override: Callable[[int, int], Sequence[bytes]] | None = None
        self.page_override: dict[int, bytes] = {}
        self.dropped: set[int] = set()
        self.redirects: dict[str, str] = {}
        self.drip_s: float | None = None
        self.requests: list[str] = []
        self._server: TestServer | None = None

    # --- keys and the node document ----------------------------------------------------

    def add_key(
        self,
        name: str,
        *,
        created: datetime,
        revoked: datetime | None = None,
        listed: bool = True,
    ) -> SimulatedKey:
        key = SimulatedKey(
            key_pair(f"{self.base_url}/keys/{name}", f"{self.base_url} {name}"),
            created,
            revoked,
            listed,
        )
        self.keys.append(key)
        return key

    def node_document(self) -> dict[str, Any]:
        """protocol.md §1, with every listed key and the checkpoint key of :attr:`key`."""
        b = self.base_url
        return {
            "@context": list(CONTEXT_IRIS),
            "id": b,
            "type": "Service",
            "nameMap": {"en": self.name},
            "country": self.country,
            "inbox": f"{b}/inbox",
            "outbox": f"{b}/feed",
            "checkpoint": f"{b}/checkpoint",
            "logOrigin": self.origin,
            "checkpointKey": verifier_key(self.origin, self.key.public_raw),
            "pageSize": self.page_size,
            "assertionMethod": [k.document(b) for k in self.keys if k.listed],
        }

    # --- building the log ----------------------------------------------------------------

    @property
    def size(self) -> int:
        return len(self.leaves)

    def tick(self) -> datetime:
        """The signing time of the next entry (one second after the previous one)."""
        self._clock += timedelta(seconds=1)
        return self._clock

    def object_id(self, name: str) -> str:
        return f"{self.base_url}/objects/{name}"

    def best_practice(self, name: str, *, version: int = 1, **members: Any) -> dict[str, Any]:
        """A valid BestPractice of this node (members override the defaults)."""
        stamp = format_timestamp(self._clock)
        obj: dict[str, Any] = {
            "id": self.object_id(name),
            "type": "BestPractice",
            "nameMap": {"en": f"Practice {name}", "nl": f"Praktijk {name}"},
            "practiceKind": "experience",
            "attributedTo": self.base_url,
            "version": version,
            "published": stamp,
            "updated": stamp,
        }
        obj.update(members)
        return obj

    def sign(self, seq: int, activity: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        """A valid entry for position ``seq``, signed the way a node signs (schema checked)."""
        at = self.tick()
        entry = build_entry(seq, activity, obj, self.base_url, at)
        return dict(sign_entry(entry, self.key, at, MAX_ENTRY_BYTES).document)

    def publish(self, activity: str, obj: Mapping[str, Any]) -> int:
        """Append a valid entry (see :meth:`sign`); its seq."""
        seq = self.append_document(self.sign(self.size, activity, obj))
        if obj.get("type") != "Service":
            self.objects[str(obj["id"])] = dict(obj)
        return seq

    def create(self, name: str, **members: Any) -> str:
        """Publish version 1 of BestPractice ``name``; its id."""
        obj = self.best_practice(name, **members)
        self.publish("Create", obj)
        return str(obj["id"])

    def update(self, name: str, **members: Any) -> int:
        """Publish the next version of ``name`` with ``members`` changed; the new version."""
        current = self.objects[self.object_id(name)]
        version = int(current["version"]) + 1
        obj = {**current, **members, "version": version, "updated": format_timestamp(self._clock)}
        self.publish("Update", obj)
        return version

    def delete(self, name: str) -> int:
        """Publish a Delete (a Tombstone) of ``name``; its seq."""
        current = self.objects[self.object_id(name)]
        tombstone = {
            "id": current["id"],
            "type": "Tombstone",
            "formerType": current["formerType" if current["type"] == "Tombstone" else "type"],
            "deleted": format_timestamp(self._clock),
        }
        return self.publish("Delete", tombstone)

    def craft(
        self,
        activity: str,
        obj: Mapping[str, Any],
        *,
        key: KeyPair | None = None,
        at: datetime | None = None,
        before_signing: Mutation | None = None,
        after_signing: Mutation | None = None,
        seq: int | None = None,
    ) -> int:
        """Append a hand-made entry: built for ``seq`` (default: its own position), changed by
        ``before_signing``, signed by ``key`` at ``at`` with no schema check, then changed by
        ``after_signing``. Returns the position it was appended at."""
        moment = at or self.tick()
        entry = build_entry(self.size if seq is None else seq, activity, obj, self.base_url, moment)
        if before_signing is not None:
            before_signing(entry)
        document = sign_document(entry, key or self.key, moment)
        if after_signing is not None:
            after_signing(document)
        return self.append_document(document)

    def append_document(self, document: Mapping[str, Any]) -> int:
        """Append any JSON document as the next leaf (its JCS bytes); its position."""
        return self.append_leaf(canonicalize(document))

    def append_leaf(self, leaf: bytes) -> int:
        """Append raw leaf bytes, spliced into feed pages exactly as given; its position."""
        self.leaves.append(leaf)
        self.tree.append(leaf)
        return self.size - 1

    def entry(self, seq: int) -> dict[str, Any]:
        """The entry at ``seq`` as a document (a copy)."""
        document: dict[str, Any] = json.loads(self.leaves[seq])
        return document

    # --- misbehaving ---------------------------------------------------------------------

    def fork(self, seq: int, document: Mapping[str, Any]) -> None:
        """Rewrite history: leaf ``seq`` becomes ``document`` and the tree is rebuilt, so
        every checkpoint signed from now on is over the forked tree."""
        self.leaves[seq] = canonicalize(document)
        self.tree = MemorySubtrees()
        for leaf in self.leaves:
            self.tree.append(leaf)

    def substitute(self, seq: int, document: Mapping[str, Any] | bytes) -> None:
        """Serve ``document`` at ``seq`` in the feed while the tree keeps the real leaf."""
        self.substituted[seq] = document if isinstance(document, bytes) else canonicalize(document)

    def signed_checkpoint(
        self, size: int | None = None, *, root_hash: bytes | None = None, key: KeyPair | None = None
    ) -> str:
        """A checkpoint note of this origin, over the tree's root at ``size`` (default: all)
        or over ``root_hash``, signed by ``key`` (default: the checkpoint key)."""
        tree_size = self.size if size is None else size
        hashed = root(self.tree, tree_size) if root_hash is None else root_hash
        return sign_checkpoint(
            Checkpoint(self.origin, tree_size, hashed), self.origin, key or self.key
        )

    # --- serving -------------------------------------------------------------------------

    def _served_leaf(self, seq: int) -> bytes:
        return self.substituted.get(seq, self.leaves[seq])

    def _page(self, number: int) -> bytes | None:
        if number in self.page_override:
            return self.page_override[number]
        last = self.size // self.page_size
        if not 0 <= number <= last:
            return None
        source = self.page_alias.get(number, number)
        start = source * self.page_size
        end = min(start + self.page_size, self.size)
        b = self.base_url
        header: dict[str, Any] = {
            "@context": list(CONTEXT_IRIS),
            "id": f"{b}/feed/{number}",
            "type": "OrderedCollectionPage",
            "partOf": f"{b}/feed",
            "startIndex": number * self.page_size,
        }
        if number > 0:
            header["prev"] = f"{b}/feed/{number - 1}"
        if end - start == self.page_size:
            header["next"] = f"{b}/feed/{number + 1}"
        if number in self.next_links:
            link = self.next_links[number]
            if link is None:
                header.pop("next", None)
            else:
                header["next"] = link
        items = b",".join(
            self._served_leaf(seq) for seq in range(start, end) if seq not in self.dropped
        )
        head = json.dumps(header, separators=(",", ":")).encode()[:-1]
        return head + b',"orderedItems":[' + items + b"]}"

    def app(self) -> web.Application:
        async def record(request: web.Request) -> None:
            self.requests.append(request.path_qs)

        @web.middleware
        async def misbehave(request: web.Request, handler: Handler) -> web.StreamResponse:
            location = self.redirects.get(request.path)
            if location is not None:
                await record(request)
                raise web.HTTPFound(location)
            response = await handler(request)
            if self.drip_s is None or not isinstance(response, web.Response):
                return response
            body = response.body if isinstance(response.body, bytes) else b""
            dripping = web.StreamResponse(status=response.status)
            dripping.content_type = response.content_type
            await dripping.prepare(request)
            for byte in body:
                await dripping.write(bytes([byte]))
                await asyncio.sleep(self.drip_s)
            await dripping.write_eof()
            return dripping

        async def node_document(request: web.Request) -> web.Response:
            await record(request)
            return web.json_response(self.node_document(), content_type=ACTIVITY_JSON)

        async def collection(request: web.Request) -> web.Response:
            await record(request)
            b = self.base_url
            return web.json_response(
                {
                    "@context": list(CONTEXT_IRIS),
                    "id": f"{b}/feed",
                    "type": "OrderedCollection",
                    "totalItems": self.size,
                    "pageSize": self.page_size,
                    "first": f"{b}/feed/0",
                    "last": f"{b}/feed/{self.size // self.page_size}",
                },
                content_type=ACTIVITY_JSON,
            )

        async def page(request: web.Request) -> web.Response:
            await record(request)
            text = request.match_info["number"]
            body = self._page(int(text)) if text.isdigit() else None
            if body is None:
                raise web.HTTPNotFound(text=f"no page {text}")
            return web.Response(body=body, content_type=ACTIVITY_JSON)

        async def checkpoint(request: web.Request) -> web.Response:
            await record(request)
            note = self.checkpoint_override or self.signed_checkpoint(self.checkpoint_size)
            return web.Response(text=note, content_type="text/plain")

        def numbers(request: web.Request, *names: str) -> list[int]:
            values = [request.query.get(name, "") for name in names]
            if not all(value.isdigit() for value in values):
                raise web.HTTPBadRequest(text="non-negative integers required")
            return [int(value) for value in values]

        def hashes(values: Sequence[bytes]) -> web.Response:
            return web.json_response({"hashes": [base64.b64encode(v).decode() for v in values]})

        async def consistency(request: web.Request) -> web.Response:
            await record(request)
            first, second = numbers(request, "first", "second")
            if not 0 < first <= second <= self.size:
                raise web.HTTPBadRequest(text=f"need 0 < first <= second <= {self.size}")
            if self.consistency_override is not None:
                return hashes(self.consistency_override(first, second))
            return hashes(consistency_proof(self.tree, first, second))

        async def inclusion(request: web.Request) -> web.Response:
            await record(request)
            index, size = numbers(request, "index", "size")
            if not 0 <= index < size <= self.size:
                raise web.HTTPBadRequest(text=f"need 0 <= index < size <= {self.size}")
            return hashes(inclusion_proof(self.tree, index, size))

        p = self.prefix
        app = web.Application(middlewares=[misbehave])
        app.add_routes(
            [
                web.get(p or "/", node_document),
                web.get(f"{p}/feed", collection),
                web.get(f"{p}/feed/{{number}}", page),
                web.get(f"{p}/checkpoint", checkpoint),
                web.get(f"{p}/proof/consistency", consistency),
                web.get(f"{p}/proof/inclusion", inclusion),
            ]
        )
        return app

    async def start(self) -> None:
        self._server = TestServer(self.app(), host="127.0.0.1", port=self.port)
        await self._server.start_server()

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()
            self._server = None


@asynccontextmanager
async def running_simulator(**options: Any) -> AsyncIterator[FeedSimulator]:
    """A :class:`FeedSimulator` served on a loopback port for the duration of the block."""
    simulator = FeedSimulator(**options)
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.close()
