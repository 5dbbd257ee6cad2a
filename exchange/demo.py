"""``exchange demo``: three nodes on loopback, one per country, that follow each other.

A Dutch civil-servant collaboration platform, a Flemish government portal and a European
Commission unit each publish their share of the example content (the seed pages). Every
node pins the others as partners and follows them; within seconds each node holds every
partner's content, verified. Nothing to configure; Ctrl-C stops all three cleanly.

Each node lives in ``<home>/<key>`` (nl, be, eu); a node created by the demo keeps its
operator token in ``<home>/<key>/operator-token`` (mode 0600), for the dashboard's login and
the operator API. With ``--home`` the folders outlive the demo: ``exchange serve --home
<home>/be`` runs one of its nodes on its own (the browser tests stop and restart one
partner that way).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from aiohttp import web

from exchange.config import Settings, load_settings
from exchange.errors import UsageError
from exchange.federation import Federation
from exchange.http.server import FEDERATION, NODE, create_app
from exchange.node import Node
from exchange.operator import init_node, rebase_id
from exchange.resources import data_dir

__all__ = ["DEMO_NODES", "TOKEN_FILE", "DemoNode", "run_demo", "scheduled_events"]

#: The file in a demo node's home that holds its operator token.
TOKEN_FILE = "operator-token"


@dataclass(frozen=True, slots=True)
class DemoNode:
    key: str
    name: str
    country: str
    language: str
    examples: tuple[str, ...]


DEMO_NODES = (
    DemoNode(
        "nl",
        "Samenwerkende overheid — Dutch civil-servant collaboration platform",
        "NL",
        "en",
        (
            "case-doetank-milieu-initiatieven",
            "case-doetank-preventieve-zorg",
            "best-practice-natuurvisie-synergie",
            "event-reuring-cafe-115",
        ),
    ),
    DemoNode(
        "be",
        "Vlaamse overheid — Flemish government portal",
        "BE",
        "en",
        ("best-practice-meerwaarde-door-participatie", "best-practice-spring-uit-de-band"),
    ),
    DemoNode(
        "eu",
        "European Commission — Unit Internal Communication",
        "EU",
        "en",
        ("case-doetank-kennisdeling-governance",),
    ),
)


def scheduled_events(base_url: str, now: datetime) -> list[dict[str, Any]]:
    """The Flemish node's agenda, dated from ``now`` so that the demo always has a coming
    event: the next meeting of the Belgian-Dutch do-tanks (the seed's cases) in 12 days,
    and an open session of the learning track "Spring Uit De Band" in 50 days."""
    brussels = timezone(timedelta(hours=1))

    def at(days: int, hour: int) -> str:
        day = (now + timedelta(days=days)).astimezone(brussels).date()
        start = datetime(day.year, day.month, day.day, hour, 0, tzinfo=brussels)
        return start.isoformat()

    flemish = {
        "type": "PublicOrganisation",
        "nameMap": {"nl": "Vlaamse overheid", "en": "Flemish Government"},
        "country": "BE",
    }
    return [
        {
            "id": f"{base_url}/objects/event-doetanks-vervolgoverleg",
            "type": "Event",
            "nameMap": {
                "nl": "Doetanks België-Nederland: vervolgoverleg",
                "en": "Belgian-Dutch do-tanks: follow-up meeting",
            },
            "summaryMap": {
                "nl": "De drie doetanks bespreken de voortgang van hun cases met de "
                "Europese Commissie.",
                "en": "The three do-tanks discuss the progress of their cases with the "
                "European Commission.",
            },
            "startTime": at(12, 14),
            "location": {
                "type": "Place",
                "nameMap": {"nl": "Herman Teirlinckgebouw", "en": "Herman Teirlinck building"},
                "address": {"type": "Address", "postName": "Brussel", "adminUnitL1": "BE"},
            },
            "organizer": [flemish],
            "inLanguage": ["nl", "en"],
        },
        {
            "id": f"{base_url}/objects/event-spring-uit-de-band-open-sessie",
            "type": "Event",
            "nameMap": {
                "nl": "Spring Uit De Band: open sessie",
                "en": "Spring Uit De Band: open session",
            },
            "startTime": at(50, 10),
            "location": {
                "type": "Place",
                "nameMap": {"nl": "Boudewijngebouw", "en": "Boudewijn building"},
                "address": {"type": "Address", "postName": "Brussel", "adminUnitL1": "BE"},
            },
            "organizer": [flemish],
            "inLanguage": ["nl"],
        },
    ]


def _example(name: str, base_url: str) -> dict[str, Any]:
    document = json.loads(data_dir("examples").joinpath(f"{name}.json").read_text("utf-8"))
    return rebase_id(document, base_url)


@dataclass
class _Running:
    spec: DemoNode
    settings: Settings
    runner: web.AppRunner

    @property
    def node(self) -> Node:
        return self.runner.app[NODE]

    @property
    def federation(self) -> Federation:
        return self.runner.app[FEDERATION]


async def _start(spec: DemoNode, home: Path, port: int) -> _Running:
    base_url = f"http://127.0.0.1:{port}"
    config = home / "exchange.toml"
    if config.exists():
        settings = load_settings(home, {})
    else:
        created = init_node(
            home, base_url=base_url, name=spec.name, country=spec.country, language=spec.language
        )
        _keep_token(home / TOKEN_FILE, created.token)
        settings = created.settings
    settings = replace(settings, sync_interval_s=10.0, delivery_interval_s=0.1)
    runner = web.AppRunner(create_app(settings), handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
    except OSError as error:
        await runner.cleanup()
        raise UsageError(f"port {port} is not free ({error.strerror}); use --base-port") from None
    return _Running(spec, settings, runner)


def _keep_token(path: Path, token: str) -> None:
    """Write a demo node's operator token, readable by its owner only."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(token + "\n")
    os.chmod(path, 0o600)


async def _connect(nodes: list[_Running]) -> None:
    """Every node pins every other one (as 'partner add --yes' does) and follows it."""
    for node in nodes:
        for other in nodes:
            if other is node:
                continue
            await node.federation.add_partner(other.settings.base_url)
    for node in nodes:
        for other in nodes:
            if other is not node:
                await node.federation.follow(other.settings.base_url)


async def _holdings(node: _Running) -> Mapping[str, int]:
    counts: dict[str, int] = {}
    after = None
    while True:
        page = await node.node.store.list_objects(
            origin=None, type_name=None, after=after, limit=500
        )
        for record in page.items:
            counts[record.origin] = counts.get(record.origin, 0) + 1
        if page.next_after is None:
            return counts
        after = page.next_after


async def run_demo(
    base_port: int,
    home: Path | None,
    *,
    say: Callable[[str], None] = print,
    stop: asyncio.Event | None = None,
    sync_timeout_s: float = 60.0,
) -> None:
    """Run the three nodes until ``stop`` is set (or SIGINT/SIGTERM arrives)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    with contextlib.ExitStack() as stack:
        root = home or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="exchange-demo-"))
        )
        nodes: list[_Running] = []
        try:
            for offset, spec in enumerate(DEMO_NODES):
                nodes.append(await _start(spec, root / spec.key, base_port + offset))
            for running in nodes:
                say(f"{running.spec.country}  {running.settings.base_url}  {running.spec.name}")
            say(f"operator tokens: {root / '<nl|be|eu>' / TOKEN_FILE}")
            expected: dict[str, int] = {}
            for running in nodes:
                base_url = running.settings.base_url
                drafts = [_example(name, base_url) for name in running.spec.examples]
                if running.spec.country == "BE":
                    drafts += scheduled_events(base_url, datetime.now(UTC))
                await running.node.publish(drafts)
                expected[base_url] = len(drafts)
            await _connect(nodes)
            await _wait_in_sync(nodes, expected, say, stop, sync_timeout_s)
            say("Open a node's URL in a browser, or: curl <url>/objects. Ctrl-C stops the demo.")
            await stop.wait()
        finally:
            for running in reversed(nodes):
                await running.runner.cleanup()
            for signum in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(signum)
        say("demo stopped")


async def _wait_in_sync(
    nodes: list[_Running],
    expected: Mapping[str, int],
    say: Callable[[str], None],
    stop: asyncio.Event,
    timeout_s: float,
) -> None:
    started = asyncio.get_running_loop().time()
    total = sum(expected.values())
    while not stop.is_set():
        holdings = [await _holdings(node) for node in nodes]
        if all(
            all(counts.get(origin, 0) >= count for origin, count in expected.items())
            for counts in holdings
        ):
            seconds = asyncio.get_running_loop().time() - started
            say(
                f"in sync after {seconds:.1f} s: every node holds all {total} objects of the "
                f"{len(nodes)} nodes, each entry verified against its origin's key and checkpoint"
            )
            return
        if asyncio.get_running_loop().time() - started > timeout_s:
            raise UsageError(f"the demo nodes did not get in sync within {timeout_s:.0f} s")
        await asyncio.sleep(0.1)
