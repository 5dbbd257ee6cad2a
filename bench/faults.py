"""Fault campaign: three nodes federate on loopback under continuous publishing while they
are killed, partitioned, fed duplicated, reordered and dropped pushes, and run on wrong
clocks; afterwards every store must equal a fault-free replay of the three logs.

Three ``exchange serve`` processes (Dutch, Flemish, European) pin and follow each other.
Each node's base URL is a reverse proxy in this process, so that every request between
nodes passes one. The campaign, seeded:

- publishes on every node all the time (creates, updates, a few deletes, each with an
  explicit id so that a publish whose answer was lost is retried without a duplicate);
- SIGKILLs nodes at the product's fault points (exchange/faults.py: after a page is
  fetched, after entries are verified, inside the merge transaction, after its commit,
  after an inbox merge before its 202, inside a publish's transaction), armed at random
  for each life of a node, and from outside at random moments; a killed node is started
  again at once;
- partitions one node from the two others for minutes (the proxies hold and then drop
  every request between them), and drops, duplicates and delays (reorders) inbox POSTs;
- runs a node with its clock 10 minutes ahead and another 10 minutes behind
  (``EXCHANGE_CLOCK_SKEW_S``: where the node signs and checks ``created``).

Then it stops the faults, restarts every node clean, waits until every node holds every
other node's whole log, lets a fourth, new node pull the three logs once without any
fault (the replay), and compares: every node's merged view of each origin (entries,
objects and their versions) must equal the replay's, and every acknowledged publish must
be in its origin's log. It prints::

    published=N acknowledged=N merged=N lost=0 duplicated=0 unexpected=0 recovered=N
    convergence: p50=... s p99=... s

``published``: entries the campaign asked the origins to publish; ``acknowledged``: those
an origin confirmed (some after a retry); ``merged``: entry copies the partners hold at the
end; ``lost``: acknowledged entries missing from their origin or from a partner;
``duplicated``: an entry (or an intended version) held twice; ``unexpected``: anything a
partner holds that differs from the replay (an entry not in the log, an object or version
the replay does not have, a rejected entry, a halted origin); ``recovered``: entry copies
whose push was dropped, refused, cut by a partition or a kill, that the partner merged
anyway (by a later push or a pull). Convergence: from the origin's acknowledgement until
both partners merged the entry. Exit status 1 when lost, duplicated or unexpected is not
0, when the nodes did not converge, or when fewer SIGKILLs than ``--min-kills`` happened.

    python bench/faults.py                    # about 10 minutes, seed 1
    python bench/faults.py --minutes 3 --seed 7
    python bench/faults.py --quick            # about a minute, at least 30 SIGKILLs (CI)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exchange.config import Settings
from exchange.faults import POINTS
from exchange.operator import init_node, open_federation
from tests.nodes import free_port

PROJECT = Path(__file__).resolve().parents[1]
NODES = (
    ("nl", "Samenwerkende overheid", "NL"),
    ("be", "Vlaamse overheid", "BE"),
    ("eu", "Europese Commissie", "BE"),
)
SKEW_S = 600.0
#: The fault points and how often each is armed in a node's life (merges are frequent).
POINT_WEIGHTS = {
    "fetch.after": 2,
    "verify.after": 2,
    "merge.in_transaction": 3,
    "merge.after_commit": 3,
    "inbox.after_commit": 3,
    "append.in_transaction": 2,
}
assert set(POINT_WEIGHTS) == POINTS
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass(frozen=True)
class Plan:
    """What one run does, all derived from the seed."""

    seed: int
    fault_s: float  # publishing with faults
    converge_s: float  # at most this long for the nodes to converge afterwards
    sync_interval_s: float
    external_kill_every_s: float  # mean interval of SIGKILLs from outside
    partitions: tuple[tuple[str, float, float], ...]  # (node, start, duration)
    skews: tuple[tuple[str, float, float, float], ...]  # (node, start, duration, seconds)
    min_kills: int
    #: An armed point's probability is drawn from this range for each life.
    point_probability: tuple[float, float] = (0.05, 0.3)
    publish_every_s: float = 0.35  # mean pause between publishes, per node


def make_plan(seed: int, minutes: float, quick: bool, min_kills: int | None) -> Plan:
    rng = random.Random(seed)
    names = [name for name, _, _ in NODES]
    if quick:
        fault_s = 55.0
        cut, slow = rng.sample(names, 2)
        fast = rng.choice(names)
        return Plan(
            seed,
            fault_s,
            converge_s=30.0,
            sync_interval_s=3.0,
            external_kill_every_s=0.8,
            partitions=((cut, 8.0, 15.0),),
            # Quick: 10 minutes behind, and 4 minutes ahead (within the 300 s tolerance):
            # an entry signed 10 minutes ahead becomes valid only 5 minutes later.
            skews=((slow, 25.0, 15.0, -SKEW_S), (fast, 5.0, 15.0, 240.0)),
            min_kills=30 if min_kills is None else min_kills,
            point_probability=(0.2, 0.6),  # lives are short: a point fires in most
        )
    fault_s = max(60.0, minutes * 60.0 - 60.0)
    order = rng.sample(names, 3)
    partition_s = min(180.0, fault_s / 4)
    skew_s = min(120.0, fault_s / 5)
    return Plan(
        seed,
        fault_s,
        converge_s=420.0,  # an entry signed 10 minutes ahead waits up to 5 minutes
        sync_interval_s=10.0,
        external_kill_every_s=6.0,
        partitions=(
            (order[0], fault_s * 0.10, partition_s),
            (order[1], fault_s * 0.55, partition_s),
        ),
        skews=(
            (order[2], fault_s * 0.05, skew_s, SKEW_S),
            (order[0], fault_s * 0.50, skew_s, -SKEW_S),
        ),
        min_kills=30 if min_kills is None else min_kills,
    )


# --- who is calling: a loopback connection's process -----------------------------------


def socket_inode(port: int) -> str | None:
    """The inode of the local TCP socket bound to 127.0.0.1:``port`` (/proc/net/tcp)."""
    local = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as table:
        for line in table:
            fields = line.split()
            if len(fields) > 9 and fields[1] == local:
                return fields[9]
    return None


def owns_socket(pid: int, inode: str) -> bool:
    target = f"socket:[{inode}]"
    folder = f"/proc/{pid}/fd"
    with contextlib.suppress(OSError):
        for fd in os.listdir(folder):
            with contextlib.suppress(OSError):
                if os.readlink(f"{folder}/{fd}") == target:
                    return True
    return False


# --- one node ----------------------------------------------------------------------------


@dataclass
class Member:
    name: str
    settings: Settings
    token: str
    public_port: int
    port: int  # where exchange serve listens; partners reach it through the proxy
    process: asyncio.subprocess.Process | None = None
    lives: int = 0
    skew_s: float = 0.0
    armed: bool = True
    up_since: float = 0.0
    ready_at: float | None = None  # when this life answered /readyz
    kills: Counter[str] = field(default_factory=Counter)
    log: Path | None = None

    @property
    def base_url(self) -> str:
        return self.settings.base_url

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None


def signal_member(member: Member, number: int) -> None:
    """Send ``number`` to the member's process unless it has been reaped. Not
    Process.send_signal: that polls the child first and may reap it, and asyncio's child
    watcher then reports exit status 255 instead of the SIGKILL."""
    process = member.process
    if process is not None and process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, number)


# --- the proxies ---------------------------------------------------------------------------


@dataclass
class Deliveries:
    """What the proxies did to inbox POSTs, and which entry copies were disturbed."""

    forwarded: int = 0
    dropped: int = 0
    duplicated: int = 0
    delayed: int = 0
    cut: int = 0
    failed: int = 0  # forwarded, but the node died or refused it
    #: (receiver, origin, seq) of every entry in a push that did not reach its receiver
    disturbed: set[tuple[str, str, int]] = field(default_factory=set)


class Proxies:
    """A reverse proxy in front of every node: partitions, and faults on inbox POSTs."""

    def __init__(self, campaign: Campaign) -> None:
        self.campaign = campaign
        self.rng = random.Random(campaign.plan.seed * 7 + 1)
        self.deliveries = Deliveries()
        self.cut: set[str] = set()  # nodes partitioned from the others
        self.faulty = True
        self._owners: dict[tuple[int, str], str] = {}
        self._runners: list[web.AppRunner] = []
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def caller(self, request: web.Request) -> str | None:
        """The node whose process opened the connection of ``request``."""
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if not peer:
            return None
        inode = socket_inode(int(peer[1]))
        if inode is None:
            return None
        key = (int(peer[1]), inode)
        if key not in self._owners:
            for member in self.campaign.members:
                if member.process is not None and owns_socket(member.process.pid, inode):
                    self._owners[key] = member.name
                    break
            else:
                return None
        return self._owners[key]

    def severed(self, source: str | None, target: str) -> bool:
        return target in self.cut or (source is not None and source in self.cut)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            auto_decompress=False, timeout=aiohttp.ClientTimeout(total=60)
        )
        for member in self.campaign.members:
            app = web.Application(client_max_size=16 * 1024 * 1024)
            app.router.add_route("*", "/{tail:.*}", self._handler(member))
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", member.public_port).start()
            self._runners.append(runner)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for runner in self._runners:
            await runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def _handler(self, member: Member) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            source = self.caller(request)
            body = await request.read()
            inbox = request.method == "POST" and request.path.endswith("/inbox")
            push = _push_range(body) if inbox else None
            if self.severed(source, member.name):
                if push is not None:
                    self.deliveries.cut += 1
                    self._disturbed(member.name, push)
                await asyncio.sleep(self.rng.uniform(0.5, 5.0))  # a partition: no answer
                raise web.HTTPGatewayTimeout(text="partitioned")
            if inbox and self.faulty and push is not None:
                draw = self.rng.random()
                if draw < 0.06:  # dropped: the sender believes it was delivered
                    self.deliveries.dropped += 1
                    self._disturbed(member.name, push)
                    return web.Response(status=202)
                if draw < 0.14:  # duplicated: delivered now and again later
                    self.deliveries.duplicated += 1
                    self._later(member, request, body, self.rng.uniform(0.2, 6.0))
                elif draw < 0.26:  # delayed: pushes sent after it overtake it
                    self.deliveries.delayed += 1
                    await asyncio.sleep(self.rng.uniform(0.2, 3.0))
            status, headers, content = await self._forward(member, request, body)
            if push is not None:
                self.deliveries.forwarded += 1
                if status >= 300:
                    self.deliveries.failed += 1
                    self._disturbed(member.name, push)
            return web.Response(status=status, headers=headers, body=content)

        return handle

    def _disturbed(self, receiver: str, push: tuple[str, int, int]) -> None:
        origin, start, count = push
        self.deliveries.disturbed.update((receiver, origin, s) for s in range(start, start + count))

    def _later(self, member: Member, request: web.Request, body: bytes, delay_s: float) -> None:
        async def again() -> None:
            await asyncio.sleep(delay_s)
            with contextlib.suppress(Exception):
                await self._forward(member, request, body)

        task = asyncio.create_task(again())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _forward(
        self, member: Member, request: web.Request, body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        try:
            async with self._session.request(
                request.method,
                f"{member.admin}{request.path_qs}",
                headers=headers,
                data=body if body else None,
                allow_redirects=False,
            ) as response:
                content = await response.read()
                out = {k: v for k, v in response.headers.items() if k.lower() not in HOP_HEADERS}
                return response.status, out, content
        except (aiohttp.ClientError, TimeoutError):
            return 502, {"Content-Type": "text/plain"}, b"the node did not answer"


def _push_range(body: bytes) -> tuple[str, int, int] | None:
    """(origin, startIndex, entries) of a pushed page, None for other inbox messages."""
    try:
        message = json.loads(body)
    except ValueError:
        return None
    if not isinstance(message, dict) or message.get("type") != "OrderedCollectionPage":
        return None
    origin = str(message.get("partOf", "")).removesuffix("/feed")
    items = message.get("orderedItems")
    start = message.get("startIndex")
    if not isinstance(start, int) or not isinstance(items, list):
        return None
    return origin, start, len(items)


# --- reading a node's store ------------------------------------------------------------------


class StoreReader:
    """Reads of a node's SQLite file while the node runs, dies and restarts."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._connection: sqlite3.Connection | None = None

    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            self._connection = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        return self._connection

    def merged(self) -> dict[str, int]:
        """origin -> next_seq."""
        try:
            rows = self._db().execute("SELECT base_url, next_seq FROM origins").fetchall()
        except sqlite3.OperationalError:
            return {}
        return {str(origin): int(next_seq) for origin, next_seq in rows}

    def log_size(self) -> int:
        (size,) = self._db().execute("SELECT COUNT(*) FROM log").fetchone()
        return int(size)

    def all(self, sql: str, parameters: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self._db().execute(sql, parameters).fetchall()]

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


# --- the campaign ------------------------------------------------------------------------------


@dataclass
class Draft:
    """One intended entry: a create, an update or a delete of one object."""

    origin: str
    object_id: str
    kind: str  # create | update | delete
    version: int  # the version the entry carries (a delete: the last version)
    acknowledged_at: float | None = None


class Campaign:
    def __init__(self, plan: Plan, root: Path) -> None:
        self.plan = plan
        self.root = root
        self.rng = random.Random(plan.seed)
        self.members: list[Member] = []
        self.stopping = False
        self.drafts: list[Draft] = []
        self.attempts = 0
        self.retries = 0
        self.partition_s = 0.0
        #: (node, origin) -> [(time, next_seq)] each time the node's next_seq of origin grew
        self.progress: dict[tuple[str, str], list[tuple[float, int]]] = {}
        self.readers: dict[str, StoreReader] = {}
        self.start = time.monotonic()
        self.proxies = Proxies(self)
        self._supervisors: list[asyncio.Task[None]] = []
        self._watchers: set[asyncio.Task[None]] = set()

    def now(self) -> float:
        return time.monotonic() - self.start

    def member(self, name: str) -> Member:
        return next(m for m in self.members if m.name == name)

    # --- set-up ----------------------------------------------------------------------------

    def create(self) -> None:
        for name, label, country in NODES:
            public_port, port = free_port(), free_port()
            result = init_node(
                self.root / name,
                base_url=f"http://127.0.0.1:{public_port}",
                name=label,
                country=country,
                # A node's key is older than any error of its clock.
                now=datetime.now(UTC) - timedelta(days=1),
                environ={},
            )
            settings = replace(result.settings, verify_workers=0)
            self.members.append(Member(name, settings, result.token, public_port, port))
            self.readers[name] = StoreReader(settings.database)

    def environment(self, member: Member) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("EXCHANGE_") and k not in ("PYTHONWARNINGS",)
        }
        env.update(
            EXCHANGE_VERIFY_WORKERS="0",
            EXCHANGE_SYNC_INTERVAL_S=str(self.plan.sync_interval_s),
            EXCHANGE_CLOCK_SKEW_S=str(member.skew_s),
            PYTHONPATH=str(PROJECT),
        )
        if member.armed and not self.stopping:
            chosen = self.rng.sample(sorted(POINT_WEIGHTS), self.rng.choice((1, 1, 2, 3)))
            env["EXCHANGE_FAULTS"] = ",".join(
                f"{point}:{self.rng.uniform(*self.plan.point_probability):.3f}" for point in chosen
            )
            env["EXCHANGE_FAULTS_SEED"] = str(self.rng.randrange(2**32))
        return env

    async def launch(self, member: Member) -> None:
        member.lives += 1
        member.log = self.root / "logs" / f"{member.name}-{member.lives}.log"
        member.log.parent.mkdir(exist_ok=True)
        # The first start of every node is disarmed: the federation is set up first.
        armed = member.lives > 1 and self.rng.random() < 0.8
        member.armed = armed
        with member.log.open("wb") as log:
            member.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "exchange.cli",
                "serve",
                "--home",
                str(member.settings.home),
                "--port",
                str(member.port),
                cwd=PROJECT,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env=self.environment(member),
            )
        member.up_since, member.ready_at = self.now(), None
        self._watch(member, member.process)

    def _watch(self, member: Member, process: asyncio.subprocess.Process) -> None:
        async def watch() -> None:
            if await self.ready(member) and member.process is process:
                member.ready_at = self.now()

        task = asyncio.create_task(watch())
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def ready(self, member: Member, timeout_s: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if not member.alive():
                    return False
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(
                        f"{member.admin}/readyz", timeout=aiohttp.ClientTimeout(total=2)
                    ) as response:
                        if response.status == 200:
                            return True
                await asyncio.sleep(0.1)
        return False

    async def federate(self) -> None:
        for member in self.members:
            await self.launch(member)
        for member in self.members:
            if not await self.ready(member):
                raise SystemExit(f"{member.name} did not start; see {member.log}")
        for step in ("pin", "follow"):  # a Follow is accepted from a pinned partner only
            for member in self.members:
                async with open_federation(member.settings) as federation:
                    for other in self.members:
                        if other is member:
                            continue
                        if step == "pin":
                            await federation.add_partner(other.base_url)
                        else:
                            await federation.follow(other.base_url)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states = [
                row
                for name, reader in self.readers.items()
                for row in reader.all("SELECT following FROM partners")
            ]
            if len(states) == 6 and all(state == ("accepted",) for state in states):
                return
            await asyncio.sleep(0.2)
        raise SystemExit("the nodes did not accept each other's Follow in 30 s")

    # --- supervision: kills and restarts ---------------------------------------------------

    async def supervise(self, member: Member) -> None:
        while True:
            assert member.process is not None
            code = await member.process.wait()
            if self.stopping and code != -signal.SIGKILL:
                return
            if code == -signal.SIGKILL:
                member.kills[self._kill_point(member)] += 1
            elif not self.stopping:
                raise SystemExit(f"{member.name} exited with {code}; see {member.log}")
            await asyncio.sleep(self.rng.uniform(0.05, 0.5))
            await self.launch(member)

    def _kill_point(self, member: Member) -> str:
        assert member.log is not None
        text = member.log.read_text(errors="replace")
        found = re.findall(r"fault point (\S+): SIGKILL", text)
        return found[-1] if found else "external"

    def kills(self) -> int:
        return sum(sum(member.kills.values()) for member in self.members)

    async def kill_at_random(self) -> None:
        """SIGKILL a node at random moments; more eagerly when the kills fall behind the
        pace that reaches the plan's minimum with a margin (a slow machine starts nodes
        slowly, and lives are fewer)."""
        pace = 1.2 * self.plan.min_kills / self.plan.fault_s
        while not self.stopping:
            behind = self.kills() < pace * self.now()
            mean = self.plan.external_kill_every_s / (2 if behind else 1)
            await asyncio.sleep(self.rng.expovariate(1 / mean))
            wait = self.rng.uniform(0.2, 1.5)
            candidates = [m for m in self.members if self._killable(m, wait, not behind)]
            if candidates and not self.stopping:
                signal_member(self.rng.choice(candidates), signal.SIGKILL)

    def _killable(self, member: Member, wait_s: float, patient: bool) -> bool:
        """Alive, and serving for ``wait_s`` (or still starting 2 s after its launch); a
        life with armed fault points is left 2 s more for one of them to fire, unless the
        kills are behind."""
        since = member.up_since + 2.0 if member.ready_at is None else member.ready_at
        grace = 2.0 if member.armed and patient else 0.0
        return member.alive() and self.now() - since > wait_s + grace

    async def restart(self, member: Member) -> None:
        """Kill ``member`` so that its supervisor starts it again with its new settings."""
        signal_member(member, signal.SIGKILL)

    # --- scheduled faults --------------------------------------------------------------------

    async def partition(self, name: str, start: float, duration: float) -> None:
        await asyncio.sleep(max(0.0, start - self.now()))
        if self.stopping:
            return
        self.proxies.cut.add(name)
        began = self.now()
        print(f"  {began:6.1f} s  partition: {name} cut off for {duration:.0f} s", flush=True)
        await asyncio.sleep(duration)
        self.proxies.cut.discard(name)
        self.partition_s += self.now() - began

    async def skew(self, name: str, start: float, duration: float, seconds: float) -> None:
        await asyncio.sleep(max(0.0, start - self.now()))
        if self.stopping:
            return
        member = self.member(name)
        print(
            f"  {self.now():6.1f} s  clock: {name} {seconds:+.0f} s for {duration:.0f} s",
            flush=True,
        )
        member.skew_s = seconds
        await self.restart(member)
        await asyncio.sleep(duration)
        member.skew_s = 0.0
        await self.restart(member)

    # --- publishing --------------------------------------------------------------------------

    async def publish(self, member: Member) -> None:
        rng = random.Random(self.rng.randrange(2**32))
        live: dict[str, int] = {}  # object id -> its version
        number = 0
        headers = {"Authorization": f"Bearer {member.token}"}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
            while not self.stopping:
                await asyncio.sleep(rng.expovariate(1 / self.plan.publish_every_s))
                draw = rng.random()
                if draw < 0.05 and live:
                    object_id = rng.choice(sorted(live))
                    drafts = [Draft(member.name, object_id, "delete", live.pop(object_id))]
                elif draw < 0.35 and live:
                    object_id = rng.choice(sorted(live))
                    live[object_id] += 1
                    drafts = [Draft(member.name, object_id, "update", live[object_id])]
                else:
                    drafts = []
                    for _ in range(rng.randint(1, 3)):
                        number += 1
                        object_id = f"{member.base_url}/objects/fault-{member.name}-{number}"
                        live[object_id] = 1
                        drafts.append(Draft(member.name, object_id, "create", 1))
                self.drafts.extend(drafts)
                await self._until_acknowledged(session, member, drafts, headers)

    async def _until_acknowledged(
        self,
        session: aiohttp.ClientSession,
        member: Member,
        drafts: list[Draft],
        headers: dict[str, str],
    ) -> None:
        """Send one publish request again and again until the origin answers it."""
        while True:
            self.attempts += 1
            try:
                if drafts[0].kind == "delete":
                    slug = drafts[0].object_id.rsplit("/", 1)[1]
                    url = f"{member.admin}/admin/objects/{slug}"
                    async with session.delete(url, headers=headers) as response:
                        body = await response.json(content_type=None)
                        status = response.status
                    # 409 object-deleted: an earlier attempt committed it.
                    done = status == 200 or (status == 409 and "object-deleted" in str(body))
                else:
                    payload = [
                        {
                            "id": draft.object_id,
                            "type": "BestPractice",
                            "nameMap": {"en": f"{draft.object_id} version {draft.version}"},
                            "practiceKind": "experience",
                        }
                        for draft in drafts
                    ]
                    async with session.post(
                        f"{member.admin}/admin/objects", json=payload, headers=headers
                    ) as response:
                        body = await response.json(content_type=None)
                        status = response.status
                    done = status in (200, 201)
                if done:
                    for draft in drafts:
                        draft.acknowledged_at = self.now()
                    return
                if status < 500:
                    raise SystemExit(f"{member.name} refused a publish: {status} {body}")
            except (aiohttp.ClientError, TimeoutError, ValueError):
                pass
            self.retries += 1
            await asyncio.sleep(0.2)

    # --- observing convergence -------------------------------------------------------------

    async def observe(self) -> None:
        while True:
            moment = self.now()
            for member in self.members:
                for origin, next_seq in self.readers[member.name].merged().items():
                    series = self.progress.setdefault((member.name, origin), [])
                    if not series or next_seq > series[-1][1]:
                        series.append((moment, next_seq))
            await asyncio.sleep(0.2)

    def converged(self) -> bool:
        sizes = {m.base_url: self.readers[m.name].log_size() for m in self.members}
        for member in self.members:
            merged = self.readers[member.name].merged()
            for origin, size in sizes.items():
                if origin != member.base_url and merged.get(origin, 0) < size:
                    return False
        return True

    # --- the run -------------------------------------------------------------------------------

    async def run(self) -> int:
        plan = self.plan
        began = time.monotonic()
        self.create()
        await self.proxies.start()
        observer: asyncio.Task[None] | None = None
        try:
            await self.federate()
            self.start = time.monotonic()  # times are counted from here
            print(f"federated in {time.monotonic() - began:.1f} s; faults on", flush=True)
            observer = asyncio.create_task(self.observe())
            self._supervisors = [asyncio.create_task(self.supervise(m)) for m in self.members]
            publishers = [asyncio.create_task(self.publish(m)) for m in self.members]
            scheduled = [asyncio.create_task(self.kill_at_random())]
            scheduled += [asyncio.create_task(self.partition(*p)) for p in plan.partitions]
            scheduled += [asyncio.create_task(self.skew(*s)) for s in plan.skews]
            await asyncio.sleep(plan.fault_s)
            # Faults off: no more arming, proxies pass everything, clocks right, every node
            # started again clean; publishes under way are retried until acknowledged.
            print(f"  {self.now():6.1f} s  faults off; converging", flush=True)
            self.stopping = True
            self.proxies.faulty = False
            self.proxies.cut.clear()
            for task in scheduled:
                task.cancel()
            await asyncio.gather(*scheduled, return_exceptions=True)
            for member in self.members:
                member.skew_s = 0.0
            await self._restart_clean()
            await asyncio.wait_for(asyncio.gather(*publishers), timeout=60)
            began = self.now()
            converged = False
            while self.now() - began < plan.converge_s:
                if self.converged():
                    converged = True
                    break
                await asyncio.sleep(0.5)
            print(f"  {self.now():6.1f} s  converged: {converged}", flush=True)
            await asyncio.sleep(0.5)  # the observer's last look
            replay = await self.replay()
        finally:
            self.stopping = True
            if observer is not None:
                observer.cancel()
            await self._stop()
            await self.proxies.close()
        return self.report(converged, replay)

    async def _restart_clean(self) -> None:
        for task in self._supervisors:
            task.cancel()
        await asyncio.gather(*self._supervisors, return_exceptions=True)
        for member in self.members:
            if member.alive():
                assert member.process is not None
                signal_member(member, signal.SIGTERM)
                try:
                    await asyncio.wait_for(member.process.wait(), timeout=30)
                except TimeoutError:
                    raise SystemExit(f"{member.name} did not stop on SIGTERM") from None
            await self.launch(member)
        for member in self.members:
            if not await self.ready(member):
                raise SystemExit(f"{member.name} did not start clean; see {member.log}")

    async def _stop(self) -> None:
        for task in self._supervisors:
            task.cancel()
        for member in self.members:
            if member.alive():
                assert member.process is not None
                signal_member(member, signal.SIGTERM)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(member.process.wait(), timeout=30)
                signal_member(member, signal.SIGKILL)

    async def replay(self) -> StoreReader:
        """A fourth node pulls each log once, with no fault: the fault-free replay."""
        result = init_node(
            self.root / "replay",
            base_url=f"http://127.0.0.1:{free_port()}",
            name="Replay",
            country="NL",
            environ={},
        )
        settings = replace(result.settings, verify_workers=0)
        async with open_federation(settings) as federation:
            for member in self.members:
                await federation.add_partner(member.base_url)
                report = await federation.sync(member.base_url)
                if report.error:
                    raise SystemExit(f"the replay could not pull {member.name}: {report.error}")
        return StoreReader(settings.database)

    # --- the comparison --------------------------------------------------------------------

    def report(self, converged: bool, replay: StoreReader) -> int:
        objects_sql = (
            "SELECT id, type, version, deleted, seq, body FROM objects"
            " WHERE origin = ? AND type <> 'Service'"
        )
        lost = duplicated = unexpected = merged = recovered = 0
        problems: list[str] = []
        disturbed = self.proxies.deliveries.disturbed
        for origin in self.members:
            log = {
                int(seq): leaf_hash
                for seq, leaf_hash in self.readers[origin.name].all(
                    "SELECT seq, leaf_hash FROM log"
                )
            }
            by_object = Counter(key for key in self._keys(origin) if key is not None)
            for key, count in by_object.items():
                if count > 1:
                    duplicated += count - 1
                    problems.append(f"{origin.name} logged {key} {count} times")
            logged = {(o, k, v) for o, k, v in by_object}
            for draft in self.drafts:
                if draft.origin == origin.name and draft.acknowledged_at is not None:
                    key = (draft.object_id, draft.kind, draft.version)
                    if key not in logged:
                        lost += 1
                        problems.append(f"{origin.name} acknowledged {key}, not in its log")
            want_received = replay.all(
                "SELECT seq, leaf_hash FROM received WHERE origin = ? ORDER BY seq",
                (origin.base_url,),
            )
            want_objects = sorted(replay.all(objects_sql, (origin.base_url,)))
            if [seq for seq, _ in want_received] != sorted(log):
                unexpected += 1
                problems.append(f"the replay of {origin.name} does not hold its whole log")
            own = sorted(
                (i, t, v, d, s, json.loads(b))
                for i, t, v, d, s, b in self.readers[origin.name].all(
                    objects_sql, (origin.base_url,)
                )
            )
            if [(i, t, v, d, s) for i, t, v, d, s, _ in own] != [row[:5] for row in want_objects]:
                unexpected += 1
                problems.append(f"the replay of {origin.name} differs from its own objects")
            for member in self.members:
                if member is origin:
                    continue
                reader = self.readers[member.name]
                rows = reader.all(
                    "SELECT seq, leaf_hash FROM received WHERE origin = ?", (origin.base_url,)
                )
                merged += len(rows)
                seqs = Counter(int(seq) for seq, _ in rows)
                duplicated += sum(count - 1 for count in seqs.values() if count > 1)
                held = dict(rows)
                for seq, _ in want_received:
                    if seq not in held:
                        lost += 1
                    elif (member.name, origin.base_url, seq) in disturbed:
                        recovered += 1
                extra = [seq for seq, leaf_hash in rows if log.get(int(seq)) != leaf_hash]
                unexpected += len(extra)
                if extra:
                    problems.append(f"{member.name} holds entries of {origin.name} not in its log")
                got_objects = sorted(reader.all(objects_sql, (origin.base_url,)))
                if got_objects != want_objects:
                    differing = set(got_objects) ^ set(want_objects)
                    unexpected += len(differing)
                    problems.append(
                        f"{member.name}'s objects of {origin.name} differ from the replay "
                        f"({len(differing)} rows)"
                    )
                rejected = reader.all(
                    "SELECT seq, problem, reason FROM rejections"
                    " WHERE origin = ? AND seq IS NOT NULL",
                    (origin.base_url,),
                )
                unexpected += len(rejected)
                for seq, problem, reason in rejected[:3]:
                    problems.append(
                        f"{member.name} rejected {origin.name}'s entry {seq}: {problem}: {reason}"
                    )
                halted = reader.all(
                    "SELECT halt_reason FROM origins WHERE base_url = ? AND halted <> 0",
                    (origin.base_url,),
                )
                unexpected += len(halted)
                problems += [f"{member.name} halted {origin.name}: {r}" for (r,) in halted]
        for reader in [*self.readers.values(), replay]:
            reader.close()
        published = len(self.drafts)
        acknowledged = sum(1 for d in self.drafts if d.acknowledged_at is not None)
        latencies = self._convergence()
        kills = Counter[str]()
        for member in self.members:
            kills.update(member.kills)
        total_kills = self.kills()
        d = self.proxies.deliveries
        plan = self.plan
        print(
            f"faults: seed={plan.seed} fault phase {plan.fault_s:.0f} s, SIGKILLs={total_kills} ("
            + ", ".join(f"{point}={kills[point]}" for point in [*sorted(POINTS), "external"])
            + ")"
        )
        print(
            f"  partitions={len(plan.partitions)} ({self.partition_s:.0f} s cut off), clock skews="
            + ", ".join(f"{name} {seconds:+.0f} s" for name, _, _, seconds in plan.skews)
            + f"; pushes: forwarded={d.forwarded} dropped={d.dropped} duplicated={d.duplicated}"
            f" delayed={d.delayed} cut={d.cut} failed={d.failed}; publish retries={self.retries}"
        )
        print(
            f"published={published} acknowledged={acknowledged} merged={merged} lost={lost} "
            f"duplicated={duplicated} unexpected={unexpected} recovered={recovered}"
        )
        if latencies:
            p50 = statistics.median(latencies)
            p99 = statistics.quantiles(latencies, n=100)[98] if len(latencies) > 1 else p50
            print(f"convergence: p50={p50:.2f} s p99={p99:.2f} s ({len(latencies)} entries)")
        for problem in problems[:20]:
            print(f"  problem: {problem}")
        equal = lost == duplicated == unexpected == 0
        print(
            "fault-free replay: every store equals it"
            if equal
            else "FAILED: the stores do not equal the fault-free replay"
        )
        if not converged:
            print("FAILED: the nodes did not converge")
        if total_kills < plan.min_kills:
            print(f"FAILED: {total_kills} SIGKILLs, fewer than {plan.min_kills}")
        return 0 if equal and converged and total_kills >= plan.min_kills else 1

    def _deleted_version(self, origin: Member, object_id: str) -> int:
        return max(
            (d.version for d in self.drafts if d.object_id == object_id and d.kind == "delete"),
            default=0,
        )

    def _convergence(self) -> list[float]:
        """Seconds from each acknowledged entry's acknowledgement until both partners
        merged it (its seq taken from the origin's log when the answer did not give it)."""
        seqs: dict[tuple[str, str, int], int] = {}
        for origin in self.members:
            for seq, key in enumerate(self._keys(origin)):
                if key is not None:
                    seqs[key] = seq
        latencies = []
        for draft in self.drafts:
            if draft.acknowledged_at is None:
                continue
            origin = self.member(draft.origin)
            seq = seqs.get((draft.object_id, draft.kind, draft.version))
            if seq is None:
                continue
            arrivals = []
            for member in self.members:
                if member is origin:
                    continue
                series = self.progress.get((member.name, origin.base_url), [])
                arrival = next((t for t, next_seq in series if next_seq > seq), None)
                if arrival is None:
                    break
                arrivals.append(arrival)
            else:
                latencies.append(max(0.0, max(arrivals) - draft.acknowledged_at))
        return latencies

    def _keys(self, origin: Member) -> Iterator[tuple[str, str, int] | None]:
        reader = StoreReader(origin.settings.database)
        try:
            for (leaf,) in reader.all("SELECT leaf FROM log ORDER BY seq"):
                entry = json.loads(leaf)
                obj = entry.get("object", {})
                if obj.get("type") == "Service" or entry.get("type") == "Redacted":
                    yield None
                    continue
                kind = str(entry["type"]).lower()
                version = obj.get("version", 0)
                if kind == "delete":
                    version = self._deleted_version(origin, str(obj["id"]))
                yield str(obj["id"]), kind, int(version)
        finally:
            reader.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the run")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="about a minute (CI)")
    parser.add_argument("--min-kills", type=int, help="fail with fewer SIGKILLs (default 30)")
    parser.add_argument("--keep", type=Path, help="keep the nodes' homes and logs here")
    args = parser.parse_args()
    plan = make_plan(args.seed, args.minutes, args.quick, args.min_kills)
    print(
        f"fault campaign: seed {plan.seed}, {plan.fault_s:.0f} s of faults, three nodes",
        flush=True,
    )
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        return asyncio.run(Campaign(plan, args.keep).run())
    with tempfile.TemporaryDirectory(prefix="exchange-faults-") as folder:
        return asyncio.run(Campaign(plan, Path(folder)).run())


if __name__ == "__main__":
    sys.exit(main())
