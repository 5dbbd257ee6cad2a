"""The live node the corpus runs against, and the instruments around it.

:class:`World` serves one real node on a loopback port (:class:`tests.nodes.RunningNode`,
its store in SQLite or, with ``EXCHANGE_DATABASE_URL``, in PostgreSQL) and measures what the
gates of issue 8 ask about:

- every answer's status, problem type and time (:class:`Answer`), and from a thread of its
  own how long ``GET B/healthz`` takes all along (:class:`Prober`);
- the store's digest (:meth:`World.digest`): the log, the change counter and counts of the
  objects, the entries received from the case's partner, the pinned partners and the
  delivery rows. A case that merges nothing leaves it unchanged;
- the bytes the node read from its sockets (:class:`ReadMeter`, counted where aiohttp's
  server protocol receives them), so that a body refused early is known to be unread;
- every URL the node's HTTP client was asked for (:class:`FetchLog`), and a loopback
  listener that counts the connections made to it, the address hostile keyids and redirects
  name: the node must contact nothing but the test's own simulated partners.

Each case gets a partner of its own, a :class:`~tests.feed_simulator.FeedSimulator`
pinned by the node for the duration of the case (:meth:`World.partner`), so that no case
sees another's state and no partner's inbox rate limit is reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import socket
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.web_protocol

from exchange.errors import PROBLEM_BASE
from exchange.federation import fetch_node_document, partner_from_document
from exchange.http.client import Fetcher
from exchange.httpsig import sign_request
from exchange.keys import KeyPair
from exchange.partners import Rejection
from exchange.resources import CONTEXT_IRIS
from tests.feed_simulator import FeedSimulator
from tests.nodes import RunningNode, eventually, practice
from tests.test_federation import Listener

__all__ = [
    "ACTIVITY_JSON",
    "Answer",
    "FetchLog",
    "Prober",
    "ReadMeter",
    "World",
    "push_page",
    "rss_bytes",
    "signed_headers",
]

ACTIVITY_JSON = "application/activity+json"
#: The node's own limit on how long one fetch from a partner may take, kept short here so
#: that the slow-partner case ends within the corpus' time budget.
FETCH_TIMEOUT_S = 2.0


def rss_bytes() -> int:
    """The resident set size of this process (the node runs in it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


@dataclass(frozen=True, slots=True)
class Answer:
    """What the node answered to one request: status, problem type (the part after
    https://w3id.org/exchange/problems/, None when the body is not problem+json), detail,
    wall time, and the bytes the client managed to send."""

    status: int
    problem: str | None
    detail: str
    elapsed_s: float
    sent_bytes: int = 0


def _content_length(header: bytes) -> int:
    for line in header.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


def _answer(status: int, content_type: str, body: bytes, elapsed_s: float, sent: int) -> Answer:
    problem, detail = None, ""
    if content_type == "application/problem+json":
        document = json.loads(body)
        kind = str(document.get("type", ""))
        problem = kind.removeprefix(PROBLEM_BASE) if kind.startswith(PROBLEM_BASE) else kind
        detail = str(document.get("detail", ""))
    return Answer(status, problem, detail, elapsed_s, sent)


class Prober:
    """Asks ``GET B/healthz`` from a thread of its own every ``interval_s`` while it runs.

    The node serves from the test's event loop, so the test's own requests cannot see a
    stall of that loop (they wait in it); this thread's can: every probe's start and
    duration is kept in ``samples`` (monotonic seconds)."""

    def __init__(self, url: str, interval_s: float = 0.05) -> None:
        self.url = url
        self.interval_s = interval_s
        self.samples: list[tuple[float, float]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="healthz-prober", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                with urllib.request.urlopen(self.url, timeout=10) as answer:
                    if answer.status != 200:
                        self.failures.append(f"/healthz answered {answer.status}")
            except OSError as error:
                self.failures.append(f"/healthz failed: {error}")
            self.samples.append((started, time.monotonic() - started))
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def slowest(self, start: float, end: float) -> float:
        """The longest probe that began between ``start`` and ``end`` (0.0: none did)."""
        return max((took for began, took in self.samples if start <= began <= end), default=0.0)


class ReadMeter:
    """Counts the bytes aiohttp's server protocol receives in this process (the node's
    sockets; the simulators serve few bytes and are read by nobody while a body streams)."""

    def __init__(self) -> None:
        self.bytes = 0
        self._original = aiohttp.web_protocol.RequestHandler.data_received

    def install(self) -> None:
        original, meter = self._original, self

        def counting(handler: aiohttp.web_protocol.RequestHandler, data: bytes) -> None:
            meter.bytes += len(data)
            original(handler, data)

        aiohttp.web_protocol.RequestHandler.data_received = counting  # type: ignore[method-assign]

    def remove(self) -> None:
        aiohttp.web_protocol.RequestHandler.data_received = self._original  # type: ignore[method-assign]


@dataclass
class FetchLog:
    """Every URL the node's HTTP client was asked to GET or POST, in order."""

    urls: list[str] = field(default_factory=list)

    def install(self, fetcher: Fetcher) -> None:
        get_bytes, post_signed = fetcher.get_bytes, fetcher.post_signed
        log = self.urls

        async def logged_get(url: str, **options: Any) -> tuple[int, bytes, str | None]:
            log.append(url)
            return await get_bytes(url, **options)

        async def logged_post(url: str, document: Mapping[str, Any], **options: Any) -> int:
            log.append(url)
            return await post_signed(url, document, **options)

        fetcher.get_bytes = logged_get  # type: ignore[method-assign]
        fetcher.post_signed = logged_post  # type: ignore[method-assign]

    def outside(self, allowed: Iterable[str]) -> list[str]:
        """The URLs asked for that lie under none of the ``allowed`` base URLs."""
        bases = tuple(f"{base}/" for base in allowed)
        return [url for url in self.urls if not url.startswith(bases) and url not in allowed]


def signed_headers(
    target: str,
    body: bytes,
    key: KeyPair,
    *,
    content_type: str = ACTIVITY_JSON,
    now: datetime | None = None,
    components: Sequence[str] | None = None,
    method: str = "POST",
) -> dict[str, str]:
    """The headers of a request to ``target`` signed by ``key`` as protocol.md §6 says
    (or over other ``components``, at another time, for another method)."""
    headers = {"Content-Type": content_type}
    options: dict[str, Any] = {} if components is None else {"components": components}
    headers.update(
        sign_request(
            method=method,
            target_uri=target,
            headers=headers,
            body=body,
            key=key,
            now=now or datetime.now(UTC),
            **options,
        )
    )
    return headers


def push_page(sim: FeedSimulator, start: int, end: int | None = None) -> dict[str, Any]:
    """A push of the simulator's entries ``start..end`` with its newest checkpoint."""
    stop = sim.size if end is None else end
    return {
        "@context": list(CONTEXT_IRIS),
        "type": "OrderedCollectionPage",
        "partOf": f"{sim.base_url}/feed",
        "startIndex": start,
        "orderedItems": [sim.entry(seq) for seq in range(start, stop)],
        "checkpoint": sim.signed_checkpoint(),
    }


class World:
    """One live node, its instruments, and the partners the cases pin one at a time."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.node = RunningNode(
            root / "node",
            "Samenwerkende overheid",
            "NL",
            keep_bodies=False,
            fetch_timeout_s=FETCH_TIMEOUT_S,
        )
        self.listener = Listener()
        self.meter = ReadMeter()
        self.fetches = FetchLog()
        #: Base URLs of every simulator a case started: the only places the node may contact.
        self.simulators: list[str] = []
        self.session: aiohttp.ClientSession | None = None
        #: A partner pinned for the whole corpus, whose keys the cases misuse.
        self.bystander = FeedSimulator(prefix="/bystander")
        self.simulators.append(self.bystander.base_url)
        #: An object of the node's own, which partners try to change.
        self.victim_id = ""
        #: (partner, when) of every pull the node asked itself for (after a push it refused).
        self.pull_requests: list[tuple[str, datetime]] = []
        self._ports = 0

    @property
    def base_url(self) -> str:
        return self.node.base_url

    @property
    def inbox(self) -> str:
        return f"{self.node.base_url}/inbox"

    async def start(self) -> None:
        await self.listener.start()
        await self.node.start()
        self.fetches.install(self.node.federation.fetcher)
        self.meter.install()
        federation = self.node.federation
        request_pull = federation.on_pull_request

        def requested(base_url: str) -> None:
            self.pull_requests.append((base_url, datetime.now(UTC)))
            if request_pull is not None:
                request_pull(base_url)

        federation.on_pull_request = requested
        self.session = aiohttp.ClientSession()
        (own,) = await self.node.node.publish([practice(1)])
        self.victim_id = own.id
        await self.bystander.start()
        await self._pin(self.bystander)

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()
        self.meter.remove()
        await self.node.stop()
        await self.bystander.close()
        await self.listener.stop()

    async def _pin(self, sim: FeedSimulator) -> None:
        document = await fetch_node_document(self.node.federation.fetcher, sim.base_url)
        pinned = partner_from_document(document, datetime.now(UTC))
        await self.node.node.store.put_partner(replace(pinned, following="accepted"))

    # --- partners ------------------------------------------------------------------------

    @asynccontextmanager
    async def partner(self, **options: Any) -> AsyncIterator[FeedSimulator]:
        """A simulated partner of its own, pinned (and followed) by the node for the block."""
        self._ports += 1
        sim = FeedSimulator(prefix=f"/partner-{self._ports}", **options)
        self.simulators.append(sim.base_url)
        await sim.start()
        try:
            await self._pin(sim)
            yield sim
        finally:
            await self.node.node.store.remove_partner(sim.base_url)
            await sim.close()

    async def settle(self, base_url: str) -> None:
        """Wait until the pulls the node asked for from ``base_url`` have run, so that the
        partner can be unpinned and closed without a pull still under way."""
        asked = [moment for origin, moment in self.pull_requests if origin == base_url]
        if not asked:
            return
        contacts = self.node.federation.contacts

        async def pulled() -> bool:
            contact = contacts.get(base_url)
            return contact is not None and contact.kind == "pull" and contact.at >= asked[-1]

        await eventually(pulled, timeout_s=FETCH_TIMEOUT_S * 5)

    # --- what the node holds -------------------------------------------------------------

    async def digest(self, origin: str | None = None) -> str:
        """A digest of everything a merge could change: the node's log and checkpoint, the
        object rows (change counter and counts), the entries received from ``origin``, the
        pinned partners and the delivery rows."""
        store = self.node.node.store
        counts = await store.counts()
        partners = sorted(
            (
                p.base_url,
                p.approved,
                p.following,
                p.subscriber,
                json.dumps(p.document, sort_keys=True),
            )
            for p in await store.list_partners()
        )
        deliveries = sorted(repr(d) for d in await store.list_deliveries())
        state = {
            "log": await store.log_size(),
            "checkpoint": await store.latest_checkpoint(),
            "change": await store.last_change(),
            "objects": sorted(repr(item) for item in counts.objects.items()),
            "received": await store.received_entries(origin, 0, 1 << 40) if origin else [],
            "partners": partners,
            "deliveries": deliveries,
        }
        return hashlib.sha256(json.dumps(state, default=str).encode()).hexdigest()

    async def rejections(self, origin: str) -> list[Rejection]:
        """The rejections recorded for ``origin``, oldest first."""
        found = await self.node.node.store.list_rejections(limit=10_000)
        return [r for r in reversed(found) if r.origin == origin]

    # --- talking to the node ---------------------------------------------------------------

    async def post(self, body: bytes, headers: Mapping[str, str]) -> Answer:
        """POST ``body`` to the inbox as it is, with exactly ``headers`` and its length."""
        return await self._exchange(headers, [body], len(body), chunked=False)

    async def get(self, path: str) -> tuple[int, str, float]:
        assert self.session is not None
        started = time.perf_counter()
        async with self.session.get(f"{self.base_url}{path}") as response:
            text = await response.text()
            return response.status, text, time.perf_counter() - started

    async def stream(
        self, head: Mapping[str, str], chunk: bytes, total: int, *, chunked: bool
    ) -> Answer:
        """POST a body of ``total`` bytes (``chunk`` repeated) to the inbox, with a
        Content-Length or chunked, reading the answer while sending; sending stops once the
        answer is in. ``sent_bytes`` is what the client's socket took by then."""
        return await self._exchange(head, itertools.repeat(chunk), total, chunked=chunked)

    async def _exchange(
        self, head: Mapping[str, str], chunks: Iterable[bytes], total: int, *, chunked: bool
    ) -> Answer:
        """One request over a raw socket, sent and received side by side (so that a send the
        node cut short does not lose the answer already in). The answer's time runs from
        the end of sending (from its start when the node answered first) to its first byte:
        the node's time, not the time a body takes to cross the loopback."""
        loop = asyncio.get_running_loop()
        host, port = "127.0.0.1", self.node.port
        connection = socket.create_connection((host, port))
        connection.setblocking(False)
        lines = [f"POST {self.node.settings.path_prefix}/inbox HTTP/1.1", f"Host: {host}:{port}"]
        lines += [f"{name}: {value}" for name, value in head.items()]
        lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}")
        started = time.perf_counter()
        sent, sent_at = 0, 0.0

        async def send() -> None:
            nonlocal sent, sent_at
            await loop.sock_sendall(connection, ("\r\n".join(lines) + "\r\n\r\n").encode())
            with contextlib.suppress(OSError):
                for chunk in chunks:
                    if sent >= total:
                        break
                    frame = b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk
                    await loop.sock_sendall(connection, frame)
                    sent += len(chunk)
                if chunked:
                    await loop.sock_sendall(connection, b"0\r\n\r\n")
                sent_at = time.perf_counter()

        async def receive() -> tuple[bytes, float]:
            received, first = b"", 0.0
            while True:
                data = await loop.sock_recv(connection, 65536)
                if not data:
                    return received, first
                first = first or time.perf_counter()
                received += data
                head_end = received.find(b"\r\n\r\n")
                if head_end != -1:
                    length = _content_length(received[:head_end])
                    if len(received) >= head_end + 4 + length:
                        return received, first

        sender = asyncio.create_task(send())
        try:
            received, first = await asyncio.wait_for(receive(), timeout=10)
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            connection.close()
        elapsed = first - (sent_at if 0 < sent_at < first else started)
        header, _, body = received.partition(b"\r\n\r\n")
        status_line, *fields = header.decode("latin-1").split("\r\n")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (field.partition(":") for field in fields)
        }
        content_type = headers.get("content-type", "").split(";")[0]
        return _answer(int(status_line.split()[1]), content_type, body, elapsed, sent)

    async def healthy(self) -> float:
        """The time ``GET B/healthz`` took; fails unless the node answers 200."""
        status, _, elapsed = await self.get("/healthz")
        assert status == 200, f"/healthz answered {status}"
        return elapsed
