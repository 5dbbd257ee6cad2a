"""Load: many partners push signed pages to one node's inbox at once (issue 8 §5).

One node runs as its own ``exchange serve`` process (so the load does not share its event
loop) in a temporary home that pins every simulated partner directly in its store. Each
partner (a :class:`tests.feed_simulator.FeedSimulator` with its own Ed25519 key) pushes its
log one entry at a time, each push a valid page signed with RFC 9421 carrying the
partner's newest checkpoint; the node fetches the consistency proofs it needs from the
partners, which a second process serves. Most senders keep to 80 % of the node's per-partner
quota (``--quota``, the node's ``inbox_requests_per_minute``); every ``--greedy-every``-th
sends as fast as it is answered, so the node answers it 429, and it then waits the
``Retry-After`` it was given before sending the same push again. Under full load a sender
that waits for each answer is answered too slowly to go past its quota, so the senders
within their quota stop for the last sixth of the run (the node answers fast then) while
the greedy ones go on.

Prints requests/s, p50, p99 and p999 latency (over every answered request), the 5xx
answers, the lost messages (a push answered 2xx whose entry is not merged in the end, read
from the node's store after it stopped), and the 429s: how many, how many lacked a
``Retry-After``, and how many were refused again after the sender honoured it. Exits 1
unless 5xx = lost = 0, every 429 had a Retry-After that was enough, and the greedy senders
were limited.

    python bench/load.py                    # 200 senders for 60 s
    python bench/load.py --quick            # 20 senders for 5 s: a smoke run, as CI runs it
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exchange.config import load_settings
from exchange.federation import partner_from_document
from exchange.httpsig import sign_request_by_keys
from exchange.node import open_node
from exchange.operator import init_node
from exchange.resources import CONTEXT_IRIS
from tests.feed_simulator import FeedSimulator
from tests.nodes import PROJECT, free_port

ACTIVITY_JSON = "application/activity+json"
#: A sender within its quota uses this share of it.
PACE = 0.8


@dataclass
class Sender:
    """One simulated partner and what happened to its pushes."""

    simulator: FeedSimulator
    greedy: bool
    bodies: list[bytes] = field(default_factory=list)  # the push of entry n, unsigned
    acknowledged: set[int] = field(default_factory=set)
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    limited: int = 0  # 429 answers
    without_retry_after: int = 0
    refused_after_waiting: int = 0  # 429 again for a push sent after waiting Retry-After
    errors: int = 0  # no answer at all (connection refused or reset, timeout)
    exhausted: bool = False


def build_senders(count: int, port: int, entries: list[int], every: int) -> list[Sender]:
    """``count`` partners on one loopback port, partner ``n`` under ``/partner-n``, each
    with ``entries[n]`` signed entries ready to push."""
    senders = []
    for number in range(count):
        simulator = FeedSimulator(port=port, prefix=f"/partner-{number:03d}", page_size=100)
        sender = Sender(simulator, greedy=every > 0 and number % every == every - 1)
        for item in range(entries[number]):
            simulator.create(f"item-{item}")
            page = {
                "@context": list(CONTEXT_IRIS),
                "type": "OrderedCollectionPage",
                "partOf": f"{simulator.base_url}/feed",
                "startIndex": item,
                "orderedItems": [simulator.entry(item)],
                "checkpoint": simulator.signed_checkpoint(item + 1),
            }
            sender.bodies.append(json.dumps(page, separators=(",", ":")).encode())
        senders.append(sender)
    return senders


# --- the partners' own endpoints, in a process of their own -----------------------------


def serve_partners(simulators: list[FeedSimulator], port: int, report: Path) -> None:
    """Serve every partner's node document, feed, checkpoint and proofs on ``port`` until
    SIGTERM; then write how often each kind of path was asked for to ``report``."""

    async def serve() -> None:
        app = web.Application()
        for simulator in simulators:
            for route in simulator.app().router.routes():
                app.router.add_route(route.method, route.resource.canonical, route.handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(serve())
    kinds: dict[str, int] = {}
    for simulator in simulators:
        for path in simulator.requests:
            rest = path.removeprefix(simulator.prefix).split("?")[0]
            kind = rest.split("/")[1] if rest.count("/") else "node document"
            kinds[kind] = kinds.get(kind, 0) + 1
    report.write_text(json.dumps(kinds))


# --- the node -----------------------------------------------------------------------------


async def pin_all(home: Path, senders: list[Sender]) -> None:
    """Pin every partner's node document in the node's store, as 'partner add' would."""
    async with open_node(load_settings(home, os.environ)) as node:
        now = datetime.now(UTC)
        for sender in senders:
            document = sender.simulator.node_document()
            await node.store.put_partner(partner_from_document(document, now))


def start_node(home: Path, port: int, quota: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "EXCHANGE_INBOX_REQUESTS_PER_MINUTE": str(quota),
        "EXCHANGE_VERIFY_WORKERS": "0",
        "EXCHANGE_SYNC_INTERVAL_S": "3600",
    }
    command = [sys.executable, "-m", "exchange.cli", "serve", "--home", str(home)]
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        cwd=PROJECT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                return process
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise SystemExit(f"the node did not come up; see {log}") from None
            time.sleep(0.1)


async def merged_counts(home: Path) -> tuple[dict[str, int], int]:
    """Each origin's merged prefix (next_seq) and the number of rejected entries."""
    async with open_node(load_settings(home, os.environ)) as node:
        states = {state.base_url: state.next_seq for state in await node.store.list_origin_states()}
        rejections = len(await node.store.list_rejections(limit=1_000_000))
    return states, rejections


# --- the senders ---------------------------------------------------------------------------


async def send(
    session: aiohttp.ClientSession,
    sender: Sender,
    inbox: str,
    interval: float,
    end: float,
    quiet_s: float,
) -> None:
    """Push entry after entry until ``end``: within the quota (one push per ``interval``,
    stopping ``quiet_s`` before the end) or, greedy, as fast as answered; after a 429 wait
    its Retry-After and push it again."""
    loop = asyncio.get_running_loop()
    if not sender.greedy:
        end -= quiet_s
    seq = 0
    waited = False
    next_at = loop.time() + random.uniform(0, interval)
    while loop.time() < end:
        if seq == len(sender.bodies):
            sender.exhausted = True
            return
        if not sender.greedy:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            next_at += interval
        body = sender.bodies[seq]
        headers = {"Content-Type": ACTIVITY_JSON}
        headers.update(
            sign_request_by_keys(
                method="POST",
                target_uri=inbox,
                headers=headers,
                body=body,
                keys=[sender.simulator.key],
                now=datetime.now(UTC),
            )
        )
        started = loop.time()
        try:
            async with session.post(inbox, data=body, headers=headers) as response:
                await response.read()
                status = response.status
                retry_after = response.headers.get("Retry-After", "")
        except (aiohttp.ClientError, TimeoutError):
            sender.errors += 1
            await asyncio.sleep(0.5)
            continue
        sender.latencies.append(loop.time() - started)
        sender.statuses[status] = sender.statuses.get(status, 0) + 1
        if status == 429:
            sender.limited += 1
            sender.refused_after_waiting += waited
            if not retry_after.isdigit():
                sender.without_retry_after += 1
                retry_after = "1"
            waited = True
            await asyncio.sleep(int(retry_after))
            continue
        waited = False
        if 200 <= status < 300:
            sender.acknowledged.add(seq)
            seq += 1
        else:  # 5xx or a refusal: counted, and the same push is sent again a little later
            await asyncio.sleep(0.5)


def percentile(ordered: list[float], share: float) -> float:
    return ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)]


@dataclass(frozen=True, slots=True)
class Summary:
    requests: int
    seconds: float
    latencies: list[float]
    server_errors: int
    lost: int
    limited: int
    without_retry_after: int
    refused_after_waiting: int
    greedy_limited: bool
    statuses: dict[int, int]
    merged: int
    rejections: int
    errors: int
    exhausted: int
    partner_requests: dict[str, Any]

    def line(self, senders: int) -> str:
        ordered = sorted(self.latencies)
        ms = {share: 1000 * percentile(ordered, share) for share in (0.5, 0.99, 0.999)}
        return (
            f"load: senders={senders} seconds={self.seconds:.0f} requests={self.requests} "
            f"requests/s={self.requests / self.seconds:.0f} p50={ms[0.5]:.1f}ms "
            f"p99={ms[0.99]:.1f}ms p999={ms[0.999]:.1f}ms 5xx={self.server_errors} "
            f"lost={self.lost} rate_limited={self.limited} "
            f"(without_retry_after={self.without_retry_after}, "
            f"refused_after_waiting={self.refused_after_waiting})"
        )

    @property
    def ok(self) -> bool:
        return (
            self.server_errors == 0
            and self.lost == 0
            and self.without_retry_after == 0
            and self.refused_after_waiting == 0
            and self.greedy_limited
            and self.errors == 0
            and self.exhausted == 0
        )


async def drive(senders: list[Sender], inbox: str, quota: int, seconds: float) -> float:
    interval = 60.0 / (quota * PACE)
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = asyncio.get_running_loop().time()
        end, quiet_s = started + seconds, seconds / 6
        await asyncio.gather(
            *(send(session, sender, inbox, interval, end, quiet_s) for sender in senders)
        )
        return asyncio.get_running_loop().time() - started


def summarise(
    senders: list[Sender],
    elapsed: float,
    merged: dict[str, int],
    rejections: int,
    partner_requests: dict[str, Any],
) -> Summary:
    statuses: dict[int, int] = {}
    for sender in senders:
        for status, count in sender.statuses.items():
            statuses[status] = statuses.get(status, 0) + count
    lost = sum(
        sum(1 for seq in sender.acknowledged if seq >= merged.get(sender.simulator.base_url, 0))
        for sender in senders
    )
    greedy = [sender for sender in senders if sender.greedy]
    return Summary(
        requests=sum(statuses.values()),
        seconds=elapsed,
        latencies=[latency for sender in senders for latency in sender.latencies],
        server_errors=sum(count for status, count in statuses.items() if status >= 500),
        lost=lost,
        limited=sum(sender.limited for sender in senders),
        without_retry_after=sum(sender.without_retry_after for sender in senders),
        refused_after_waiting=sum(sender.refused_after_waiting for sender in senders),
        greedy_limited=all(sender.limited for sender in greedy),
        statuses=dict(sorted(statuses.items())),
        merged=sum(merged.values()),
        rejections=rejections,
        errors=sum(sender.errors for sender in senders),
        exhausted=sum(sender.exhausted for sender in senders),
        partner_requests=partner_requests,
    )


def run(count: int, seconds: float, quota: int, every: int, root: Path) -> Summary:
    node_port, partner_port = free_port(), free_port()
    home = root / "node"
    init_node(home, base_url=f"http://127.0.0.1:{node_port}", name="Loadknooppunt", country="NL")
    # Entries each sender may push: within the quota at PACE, or the quota's burst and
    # rate for a greedy one (the node's limiter bounds it), and a few over.
    burst = max(1.0, quota / 10.0)
    paced = math.ceil(seconds * quota * PACE / 60.0) + 2
    greedy = math.ceil(burst + seconds * quota / 60.0) + 2
    plan = [greedy if every > 0 and n % every == every - 1 else paced for n in range(count)]
    made = time.monotonic()
    senders = build_senders(count, partner_port, plan, every)
    print(
        f"{count} partners ({sum(s.greedy for s in senders)} past their quota), "
        f"{sum(plan)} signed entries made in {time.monotonic() - made:.1f} s; "
        f"node quota {quota} requests a minute per partner",
        flush=True,
    )
    asyncio.run(pin_all(home, senders))
    report = root / "partner-requests.json"
    partners = multiprocessing.get_context("fork").Process(
        target=serve_partners, args=([s.simulator for s in senders], partner_port, report)
    )
    partners.start()
    node = start_node(home, node_port, quota, root / "node.log")
    try:
        inbox = f"http://127.0.0.1:{node_port}/inbox"
        elapsed = asyncio.run(drive(senders, inbox, quota, seconds))
    finally:
        node.send_signal(signal.SIGTERM)
        try:
            node.wait(timeout=30)
        except subprocess.TimeoutExpired:
            node.kill()
        partners.terminate()
        partners.join(timeout=30)
    merged, rejections = asyncio.run(merged_counts(home))
    partner_requests = json.loads(report.read_text()) if report.is_file() else {}
    return summarise(senders, elapsed, merged, rejections, partner_requests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 senders for 5 s")
    parser.add_argument("--senders", type=int, help="simulated partners (default 200)")
    parser.add_argument("--seconds", type=float, help="how long they push (default 60)")
    parser.add_argument(
        "--quota", type=int, default=60, help="the node's inbox requests a minute per partner"
    )
    parser.add_argument(
        "--greedy-every", type=int, default=10, help="every n-th sender ignores its quota"
    )
    options = parser.parse_args()
    count = options.senders or (20 if options.quick else 200)
    seconds = options.seconds or (5.0 if options.quick else 60.0)
    with tempfile.TemporaryDirectory(prefix="exchange-load-") as folder:
        summary = run(count, seconds, options.quota, options.greedy_every, Path(folder))
    print(
        f"statuses {summary.statuses}; merged {summary.merged} entries, "
        f"{summary.rejections} rejected; no answer {summary.errors}; "
        f"senders out of entries {summary.exhausted}; "
        f"partner endpoints asked {summary.partner_requests}"
    )
    print(summary.line(count))
    if not summary.ok:
        raise SystemExit(
            "load: 5xx, lost messages, a 429 without a sufficient Retry-After, a greedy"
            " sender never limited or let past its quota, or requests without an answer"
        )


if __name__ == "__main__":
    main()
