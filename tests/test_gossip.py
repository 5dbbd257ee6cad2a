"""Checkpoint gossip and equivocation across partners (protocol.md §5).

First the pure decision as a table of named scenarios over real RFC 6962 trees, and the
``B/checkpoints`` document both ways. Then real nodes on loopback: an origin (a
:class:`~tests.feed_simulator.FeedSimulator`) forks its log and shows each of two partners
its own branch; each partner accepts its branch, and the first partner's next pull, which
reads what the second holds, proves the fork and halts the origin with both signed notes.
An honest origin whose partners hold different sizes is never halted, an origin that
cannot answer leaves the question open, and a partner that gossips garbage or notes the
origin did not sign halts nothing.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from exchange.checkpoint import Checkpoint, sign_checkpoint
from exchange.config import load_settings
from exchange.errors import IntegrityError, UsageError
from exchange.federation import fetch_node_document, partner_from_document
from exchange.gossip import (
    MAX_CHECKPOINTS_BYTES,
    Decision,
    GossipItem,
    checkpoints_document,
    compare,
    parse_checkpoints,
)
from exchange.ingest import CheckpointClaim
from exchange.merkle import EMPTY_ROOT, MemorySubtrees, consistency_proof, root
from exchange.operator import partner_statuses
from exchange.partners import OriginState
from tests.feed_simulator import FeedSimulator, key_pair, running_simulator
from tests.nodes import RunningNode, make_node, practice

# --- the pure decision ----------------------------------------------------------------------


def _tree(forked_at: int | None = None, size: int = 12) -> MemorySubtrees:
    tree = MemorySubtrees()
    for seq in range(size):
        leaf = f"entry {seq}" + (" (forked)" if seq == forked_at else "")
        tree.append(leaf.encode())
    return tree


HONEST, FORKED = _tree(), _tree(forked_at=2)


def _claim(tree: MemorySubtrees, size: int) -> CheckpointClaim:
    return CheckpointClaim(size, root(tree, size), f"note of size {size}")


def _empty(root_hash: bytes = EMPTY_ROOT) -> CheckpointClaim:
    return CheckpointClaim(0, root_hash, "note of size 0")


@dataclass(frozen=True)
class Scenario:
    mine: CheckpointClaim
    theirs: CheckpointClaim
    proof: Callable[[], Sequence[bytes]] | None
    expected: str
    proof_sizes: tuple[int, int] = (0, 0)


def _proof(tree: MemorySubtrees, first: int, second: int) -> Callable[[], Sequence[bytes]]:
    return lambda: consistency_proof(tree, first, second)


SCENARIOS = {
    "same-size-same-root": Scenario(_claim(HONEST, 6), _claim(HONEST, 6), None, "consistent"),
    "same-size-other-root": Scenario(_claim(HONEST, 6), _claim(FORKED, 6), None, "equivocation"),
    "both-empty": Scenario(_empty(), _empty(), None, "consistent"),
    "empty-tree-is-extended-by-any": Scenario(_empty(), _claim(HONEST, 9), None, "consistent"),
    "size-0-with-another-root": Scenario(
        _claim(HONEST, 9), _empty(hashlib.sha256(b"x").digest()), None, "equivocation"
    ),
    "theirs-larger-needs-a-proof": Scenario(
        _claim(HONEST, 6), _claim(HONEST, 9), None, "need-proof", (6, 9)
    ),
    "mine-larger-needs-a-proof": Scenario(
        _claim(HONEST, 9), _claim(HONEST, 6), None, "need-proof", (6, 9)
    ),
    "theirs-larger-proven": Scenario(
        _claim(HONEST, 6), _claim(HONEST, 9), _proof(HONEST, 6, 9), "consistent"
    ),
    "mine-larger-proven": Scenario(
        _claim(HONEST, 9), _claim(HONEST, 6), _proof(HONEST, 6, 9), "consistent"
    ),
    "power-of-two-size-proven": Scenario(
        _claim(HONEST, 4), _claim(HONEST, 11), _proof(HONEST, 4, 11), "consistent"
    ),
    "fork-then-grow-proof-of-the-fork": Scenario(
        _claim(HONEST, 6), _claim(FORKED, 9), _proof(FORKED, 6, 9), "equivocation"
    ),
    "fork-then-grow-proof-of-the-honest-tree": Scenario(
        _claim(HONEST, 6), _claim(FORKED, 9), _proof(HONEST, 6, 9), "equivocation"
    ),
    "my-branch-grew-theirs-is-older-fork": Scenario(
        _claim(HONEST, 11), _claim(FORKED, 4), _proof(HONEST, 4, 11), "equivocation"
    ),
    "empty-proof": Scenario(_claim(HONEST, 6), _claim(HONEST, 9), lambda: [], "equivocation"),
    "proof-between-other-sizes": Scenario(
        _claim(HONEST, 6), _claim(HONEST, 9), _proof(HONEST, 5, 9), "equivocation"
    ),
    "proof-with-a-flipped-hash": Scenario(
        _claim(HONEST, 6),
        _claim(HONEST, 9),
        lambda: [bytes([h[0] ^ 1]) + h[1:] for h in consistency_proof(HONEST, 6, 9)],
        "equivocation",
    ),
}


@pytest.mark.parametrize("scenario", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_the_gossip_decision(scenario: Scenario) -> None:
    proof = None if scenario.proof is None else scenario.proof()
    decision = compare(scenario.mine, scenario.theirs, proof)
    assert decision.verdict == scenario.expected
    if decision.verdict == "need-proof":
        assert (decision.first, decision.second) == scenario.proof_sizes
    assert bool(decision.reason) == (decision.verdict == "equivocation")


def test_a_decision_is_the_same_whichever_side_holds_which() -> None:
    for scenario in SCENARIOS.values():
        proof = None if scenario.proof is None else scenario.proof()
        there = compare(scenario.mine, scenario.theirs, proof)
        back = compare(scenario.theirs, scenario.mine, proof)
        assert (there.verdict, there.first, there.second) == (
            back.verdict,
            back.first,
            back.second,
        )


def test_need_proof_then_the_proof_decides() -> None:
    mine, theirs = _claim(HONEST, 3), _claim(HONEST, 12)
    asked = compare(mine, theirs)
    assert asked == Decision("need-proof", first=3, second=12)
    proof = consistency_proof(HONEST, asked.first, asked.second)
    assert compare(mine, theirs, proof) == Decision("consistent")


# --- the B/checkpoints document ----------------------------------------------------------------

BASE = "https://node.example/exchange"


def test_the_checkpoints_document_lists_verified_origins_by_origin() -> None:
    states = [
        OriginState(
            "https://z.example",
            checkpoint_size=9,
            checkpoint_root=root(HONEST, 9),
            checkpoint_note="note z",
            halted=True,
            halt_reason="equivocation",
            evidence=("note z", "note fork"),
        ),
        OriginState("https://never-verified.example"),
        OriginState(
            "https://a.example/sub",
            next_seq=3,
            checkpoint_size=6,
            checkpoint_root=root(HONEST, 6),
            checkpoint_note="note a",
        ),
    ]
    document = checkpoints_document(BASE, states)
    assert document == {
        "id": f"{BASE}/checkpoints",
        "checkpoints": [
            {
                "origin": "https://a.example/sub",
                "logOrigin": "a.example/sub",
                "size": 6,
                "rootHash": base64.b64encode(root(HONEST, 6)).decode(),
                "note": "note a",
                "halted": False,
                "evidence": [],
            },
            {
                "origin": "https://z.example",
                "logOrigin": "z.example",
                "size": 9,
                "rootHash": base64.b64encode(root(HONEST, 9)).decode(),
                "note": "note z",
                "halted": True,
                "evidence": ["note z", "note fork"],
            },
        ],
    }
    assert parse_checkpoints(document, BASE) == [
        GossipItem("https://a.example/sub", "note a"),
        GossipItem("https://z.example", "note z", True, ("note z", "note fork")),
    ]


NOT_CHECKPOINTS = {
    "a-list": [],
    "no-checkpoints": {"id": f"{BASE}/checkpoints"},
    "checkpoints-not-a-list": {"checkpoints": {"origin": BASE}},
    "item-not-an-object": {"checkpoints": ["note"]},
    "item-without-note": {"checkpoints": [{"origin": BASE}]},
    "note-not-a-string": {"checkpoints": [{"origin": BASE, "note": 7}]},
    "halted-not-a-boolean": {"checkpoints": [{"origin": BASE, "note": "n", "halted": "yes"}]},
    "evidence-not-notes": {"checkpoints": [{"origin": BASE, "note": "n", "evidence": [1]}]},
    "too-many-items": {"checkpoints": [{"origin": BASE, "note": "n"}] * 10_001},
}


@pytest.mark.parametrize("document", NOT_CHECKPOINTS.values(), ids=NOT_CHECKPOINTS.keys())
def test_a_document_that_is_not_a_checkpoints_document_is_refused(document: Any) -> None:
    with pytest.raises(IntegrityError):
        parse_checkpoints(document, f"{BASE}/checkpoints")


#: [federation] numbers: (setting, its default, a value the environment may set, values
#: it may not). A gossip interval of 0 means every pull; a fetch timeout must be positive;
#: the inbox's rate limit per partner is a whole number of requests a minute.
FEDERATION_NUMBERS = {
    "gossip-interval": ("gossip_interval_s", 300.0, "0", ("-1", "soon", "nan", "inf")),
    "fetch-timeout": ("fetch_timeout_s", 30.0, "2.5", ("0", "-1", "soon", "inf")),
    "inbox-requests-per-minute": ("inbox_requests_per_minute", 600, "60", ("0", "-1", "1.5")),
}


@pytest.mark.parametrize(
    ("name", "default", "allowed", "wrong"),
    FEDERATION_NUMBERS.values(),
    ids=FEDERATION_NUMBERS.keys(),
)
def test_a_federation_setting_comes_from_the_config_and_the_environment(
    tmp_path: Path, name: str, default: float, allowed: str, wrong: tuple[str, ...]
) -> None:
    home = tmp_path / "node"
    make_node(home)
    variable = f"EXCHANGE_{name.upper()}"
    assert getattr(load_settings(home, {}), name) == default
    assert getattr(load_settings(home, {variable: allowed}), name) == float(allowed)
    config = home / "exchange.toml"
    config.write_text(config.read_text() + f"\n[federation]\n{name} = 42\n")
    assert getattr(load_settings(home, {}), name) == 42.0
    for value in wrong:
        with pytest.raises(UsageError):
            load_settings(home, {variable: value})


# --- real nodes on loopback ------------------------------------------------------------------


async def pin(node: RunningNode, base_url: str, *, following: str = "accepted") -> None:
    """``node`` pins ``base_url`` as a partner, as 'exchange partner add --yes' does."""
    document = await fetch_node_document(node.federation.fetcher, base_url)
    partner = partner_from_document(document, datetime.now(UTC))
    await node.node.store.put_partner(replace(partner, following=following))


async def get_checkpoints(node: RunningNode, etag: str | None = None) -> aiohttp.ClientResponse:
    headers = {"If-None-Match": etag} if etag else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{node.base_url}/checkpoints", headers=headers) as response,
    ):
        await response.read()
        return response


async def checkpoints_of(node: RunningNode) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{node.base_url}/checkpoints") as response,
    ):
        assert response.status == 200
        document: dict[str, Any] = await response.json()
        return document


async def state_of(node: RunningNode, origin: str) -> OriginState:
    state = await node.node.store.origin_state(origin)
    assert state is not None
    return state


@pytest.fixture
async def partners(tmp_path: Path) -> AsyncIterator[tuple[RunningNode, RunningNode]]:
    """Two subscriber nodes that gossip at every pull. The first pins the second (it reads
    its /checkpoints); the second knows only the origin."""
    first = RunningNode(tmp_path / "p1", "Eerste partner", "NL", gossip_interval_s=0.0)
    second = RunningNode(tmp_path / "p2", "Tweede partner", "BE", gossip_interval_s=0.0)
    await first.start()
    await second.start()
    yield first, second
    await second.stop()
    await first.stop()


@pytest.fixture
async def origin() -> AsyncIterator[FeedSimulator]:
    async with running_simulator() as simulator:
        for number in range(6):
            simulator.create(f"object-{number}")
        yield simulator


def _fork_same_size(sim: FeedSimulator) -> None:
    sim.fork(2, sim.sign(2, "Create", sim.best_practice("forked")))


def _fork_then_grow(sim: FeedSimulator) -> None:
    _fork_same_size(sim)
    for name in ("grown-1", "grown-2", "grown-3"):
        sim.create(name)


FORKS = {"fork-same-size-other-root": _fork_same_size, "fork-then-grow": _fork_then_grow}


@pytest.mark.parametrize("fork", FORKS.values(), ids=FORKS.keys())
async def test_a_fork_shown_to_two_partners_halts_the_origin_at_the_next_pull(
    fork: Callable[[FeedSimulator], None],
    partners: tuple[RunningNode, RunningNode],
    origin: FeedSimulator,
) -> None:
    first, second = partners
    await pin(first, origin.base_url)
    await pin(first, second.base_url, following="none")
    await pin(second, origin.base_url)

    # The first partner accepts the history as it is; the second holds nothing yet.
    assert not (await first.federation.sync(origin.base_url)).error
    mine = origin.signed_checkpoint()
    assert (await state_of(first, origin.base_url)).checkpoint_note == mine

    # The origin forks; the second partner, new to it, accepts the fork.
    fork(origin)
    theirs = origin.signed_checkpoint()
    assert not (await second.federation.sync(origin.base_url)).error
    assert (await state_of(second, origin.base_url)).checkpoint_note == theirs
    assert not (await state_of(second, origin.base_url)).halted

    # To the first partner the origin still shows the history it verified (a split view).
    origin.checkpoint_override = mine
    report = await first.federation.sync(origin.base_url)

    assert second.base_url in report.error
    state = await state_of(first, origin.base_url)
    assert state.halted
    assert second.base_url in state.halt_reason
    assert state.evidence == (mine, theirs)
    (rejection,) = await first.node.store.list_rejections()
    assert (rejection.origin, rejection.seq, rejection.problem) == (
        origin.base_url,
        None,
        "equivocation",
    )
    statuses = {s.partner.base_url: s for s in await partner_statuses(first.federation)}
    assert statuses[origin.base_url].origin.halted  # 'exchange partner list' shows it
    (item,) = (await checkpoints_of(first))["checkpoints"]
    assert item["origin"] == origin.base_url
    assert (item["note"], item["size"], item["halted"]) == (mine, 6, True)
    assert item["evidence"] == [mine, theirs]

    # Nothing of the origin merges any more, even once it serves one history again.
    origin.checkpoint_override = None
    origin.create("later")
    assert "halted" in (await first.federation.sync(origin.base_url)).error
    assert await first.node.store.get_object(origin.object_id("later")) is None
    assert len(await first.node.store.list_rejections()) == 1


async def test_an_honest_origin_whose_partners_hold_different_sizes_is_not_halted(
    partners: tuple[RunningNode, RunningNode], origin: FeedSimulator
) -> None:
    first, second = partners
    await pin(first, origin.base_url)
    await pin(first, second.base_url, following="none")
    await pin(second, origin.base_url)
    assert not (await second.federation.sync(origin.base_url)).error  # holds 6

    for name in ("more-1", "more-2", "more-3"):
        origin.create(name)
    assert not (await first.federation.sync(origin.base_url)).error  # holds 9, proves 6..9
    assert "/example.org/proof/consistency?first=6&second=9" in origin.requests

    for name in ("more-4", "more-5", "more-6"):
        origin.create(name)
    assert not (await second.federation.sync(origin.base_url)).error  # holds 12
    origin.checkpoint_size = 9  # the first partner's pull sees nothing new
    assert not (await first.federation.sync(origin.base_url)).error
    assert "/example.org/proof/consistency?first=9&second=12" in origin.requests

    for node in partners:
        assert not (await state_of(node, origin.base_url)).halted
        assert await node.node.store.list_rejections() == []
    (item,) = (await checkpoints_of(first))["checkpoints"]
    assert (item["size"], item["halted"], item["evidence"]) == (9, False, [])


async def test_an_origin_that_cannot_answer_leaves_gossip_open_until_it_does(
    partners: tuple[RunningNode, RunningNode], origin: FeedSimulator
) -> None:
    first, second = partners
    await pin(first, origin.base_url)
    await pin(first, second.base_url, following="none")
    await pin(second, origin.base_url)
    await first.federation.sync(origin.base_url)
    mine = origin.signed_checkpoint()
    _fork_then_grow(origin)
    await second.federation.sync(origin.base_url)

    await origin.close()  # the proof that would settle it cannot be fetched
    report = await first.federation.sync(origin.base_url)
    assert report.error  # the pull failed, and gossip found nothing it could prove
    assert not (await state_of(first, origin.base_url)).halted

    await origin.start()
    origin.checkpoint_override = mine
    origin.requests.clear()
    report = await first.federation.sync(origin.base_url)
    assert any(path.startswith("/example.org/proof/consistency") for path in origin.requests)
    assert (await state_of(first, origin.base_url)).halted
    assert second.base_url in report.error


class GossipingSimulator(FeedSimulator):
    """A partner that answers ``/checkpoints`` with whatever a test sets."""

    def __init__(self, **options: Any) -> None:
        super().__init__(prefix="/gossip.example", **options)
        self.gossip_status = 200
        self.gossip_body = b'{"checkpoints": []}'

    def app(self) -> web.Application:
        async def checkpoints(request: web.Request) -> web.Response:
            self.requests.append(request.path_qs)
            return web.Response(
                status=self.gossip_status, body=self.gossip_body, content_type="application/json"
            )

        app = super().app()
        app.router.add_get(f"{self.prefix}/checkpoints", checkpoints)
        return app


def _document(origin: str, note: str) -> bytes:
    item = {"origin": origin, "note": note, "halted": False, "evidence": []}
    return json.dumps({"checkpoints": [item]}).encode()


OTHER_ROOT = hashlib.sha256(b"a root the origin never signed").digest()


GARBAGE: dict[str, Callable[[FeedSimulator, GossipingSimulator], tuple[int, bytes]]] = {
    "server-error": lambda o, g: (500, b"oops"),
    "not-json": lambda o, g: (200, b"<html>checkpoints</html>"),
    "duplicate-member-names": lambda o, g: (200, b'{"checkpoints": [], "checkpoints": []}'),
    "not-a-checkpoints-document": lambda o, g: (200, b'{"checkpoints": {"a": 1}}'),
    "larger-than-the-cap": lambda o, g: (200, b" " * (MAX_CHECKPOINTS_BYTES + 1)),
    "note-signed-by-the-gossiper": lambda o, g: (
        200,
        _document(
            o.base_url,
            sign_checkpoint(Checkpoint(o.origin, o.size, OTHER_ROOT), o.origin, g.key),
        ),
    ),
    "note-signed-by-an-unknown-key-with-the-origins-name": lambda o, g: (
        200,
        _document(
            o.base_url,
            sign_checkpoint(
                Checkpoint(o.origin, o.size, OTHER_ROOT),
                o.origin,
                key_pair("attacker", "attacker"),
            ),
        ),
    ),
    "origins-note-with-another-root-and-its-signature": lambda o, g: (
        200,
        _document(
            o.base_url,
            o.signed_checkpoint().replace(
                base64.b64encode(root(o.tree, o.size)).decode(),
                base64.b64encode(OTHER_ROOT).decode(),
            ),
        ),
    ),
    "note-of-another-origin-under-its-name": lambda o, g: (
        200,
        _document(o.base_url, g.signed_checkpoint()),
    ),
    "not-a-note": lambda o, g: (200, _document(o.base_url, "checkpoint 6, trust me")),
}


@pytest.mark.parametrize("garbage", GARBAGE.values(), ids=GARBAGE.keys())
async def test_a_partner_that_gossips_garbage_halts_nothing(
    garbage: Callable[[FeedSimulator, GossipingSimulator], tuple[int, bytes]],
    tmp_path: Path,
    origin: FeedSimulator,
) -> None:
    node = RunningNode(tmp_path / "node", "Partner", "NL", gossip_interval_s=0.0)
    gossiper = GossipingSimulator()
    await gossiper.start()
    await node.start()
    try:
        await pin(node, origin.base_url)
        await pin(node, gossiper.base_url, following="none")
        gossiper.gossip_status, gossiper.gossip_body = garbage(origin, gossiper)
        report = await node.federation.sync(origin.base_url)
        assert "/gossip.example/checkpoints" in gossiper.requests  # gossip did run
        assert not report.error
        state = await state_of(node, origin.base_url)
        assert (state.halted, state.next_seq, state.checkpoint_size) == (False, 6, 6)
        assert await node.node.store.list_rejections() == []
    finally:
        await node.stop()
        await gossiper.close()


async def test_the_same_gossip_halts_when_the_origin_did_sign_it(
    tmp_path: Path, origin: FeedSimulator
) -> None:
    """The control for the garbage table: a conflicting note the origin really signed,
    relayed by the same partner, halts the origin."""
    node = RunningNode(tmp_path / "node", "Partner", "NL", gossip_interval_s=0.0)
    gossiper = GossipingSimulator()
    await gossiper.start()
    await node.start()
    try:
        await pin(node, origin.base_url)
        await pin(node, gossiper.base_url, following="none")
        forged = origin.signed_checkpoint(root_hash=OTHER_ROOT)
        gossiper.gossip_body = _document(origin.base_url, forged)
        report = await node.federation.sync(origin.base_url)
        assert gossiper.base_url in report.error
        state = await state_of(node, origin.base_url)
        assert state.halted
        assert state.evidence == (origin.signed_checkpoint(), forged)
    finally:
        await node.stop()
        await gossiper.close()


async def test_gossip_runs_at_most_once_per_interval(tmp_path: Path, origin: FeedSimulator) -> None:
    node = RunningNode(tmp_path / "node", "Partner", "NL", gossip_interval_s=3600.0)
    gossiper = GossipingSimulator()
    await gossiper.start()
    await node.start()
    try:
        await pin(node, origin.base_url)
        await pin(node, gossiper.base_url, following="none")
        for _ in range(3):
            assert not (await node.federation.sync(origin.base_url)).error
        assert gossiper.requests.count("/gossip.example/checkpoints") == 1
    finally:
        await node.stop()
        await gossiper.close()


# --- the route -----------------------------------------------------------------------------


async def test_the_checkpoints_route_serves_what_the_node_verified(
    partners: tuple[RunningNode, RunningNode], origin: FeedSimulator
) -> None:
    first, second = partners
    empty = await get_checkpoints(first)
    assert empty.status == 200
    assert empty.content_type == "application/json"
    assert empty.headers["Cache-Control"] == "no-cache"
    assert (await checkpoints_of(first)) == {
        "id": f"{first.base_url}/checkpoints",
        "checkpoints": [],
    }

    await pin(first, origin.base_url)
    await pin(first, second.base_url)
    await second.node.publish([practice(1)])
    await first.federation.sync(origin.base_url)
    await first.federation.sync(second.base_url)

    document = await checkpoints_of(first)
    items = document["checkpoints"]
    assert [item["origin"] for item in items] == sorted([origin.base_url, second.base_url])
    by_origin = {item["origin"]: item for item in items}
    simulated = by_origin[origin.base_url]
    assert simulated == {
        "origin": origin.base_url,
        "logOrigin": origin.origin,
        "size": 6,
        "rootHash": base64.b64encode(root(origin.tree, 6)).decode(),
        "note": origin.signed_checkpoint(),
        "halted": False,
        "evidence": [],
    }
    latest = await second.node.store.latest_checkpoint()
    assert by_origin[second.base_url]["note"] == latest[1]

    response = await get_checkpoints(first)
    etag = response.headers["ETag"]
    assert etag.startswith('"')  # strong
    revalidated = await get_checkpoints(first, etag)
    assert revalidated.status == 304
    assert revalidated.headers["ETag"] == etag
    origin.create("one-more")
    await first.federation.sync(origin.base_url)
    assert (await get_checkpoints(first, etag)).status == 200
