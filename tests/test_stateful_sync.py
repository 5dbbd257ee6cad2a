"""Issue 8 §3: federation sync as a hypothesis state machine (RuleBasedStateMachine).

A real node (SQLite store in a temporary home, its Federation shell) subscribes to three
origins whose logs are signed once per process (the logs of tests/test_merge_property.py,
with stale updates, revivals, tampered entries and updates of another origin's object).
The rules interleave at will:

- ``publish``: an origin appends entries and pushes them (the push may start earlier);
- ``deliver``: the oldest push in flight reaches the node's inbox (Federation.receive_push);
- ``duplicate``: a push already sent is sent again; ``reorder``: a later push overtakes;
- ``crash``: the node dies, possibly at a fault point (exchange/faults.py) inside the
  merge transaction (its rows written, not committed) or just after its commit; its
  in-memory state is dropped and its store closed; ``restart`` opens it again;
- ``pull``: the node pulls an origin (Federation.sync) from the pages of its feed.

The origins are served by a fake fetcher (no HTTP): checkpoints, feed pages and
consistency proofs computed from each log's tree. After every step the store, read
directly from its SQLite file, must hold:

- merged ⊆ published: each merged entry is the origin's entry at that seq, published;
- no duplicates: no entry merged twice, no entry rejected twice;
- cursors never ahead of the checkpoint: next_seq <= verified checkpoint <= published,
  both roots those of the origin's tree;
- the state of in-order application: each origin's objects and rejections equal applying
  its log once, in order, up to next_seq (the reference model of test_merge_property).

At the end the node is restarted if need be and pulls every origin: it then holds each log
applied in order, entirely. CI runs 200 examples of 50 steps.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import json
import random
import shutil
import sqlite3
import tempfile
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from exchange import faults
from exchange.canonical import canonicalize, parse
from exchange.checkpoint import verifier_key
from exchange.config import Settings, load_settings
from exchange.errors import FetchError
from exchange.federation import Federation
from exchange.merkle import CompactRange, consistency_proof, leaf_hash, root
from exchange.node import Node, open_node
from exchange.operator import create_store, init_node
from exchange.partners import Partner
from exchange.resources import CONTEXT_IRIS
from exchange.timestamps import format_timestamp
from tests.conftest import sqlite_only
from tests.test_merge_property import (
    ACTIONS,
    BASE_URLS,
    KEY_CREATED,
    KEYS,
    OBJECTS,
    Log,
    Run,
    build_log,
    reference,
)

PAGE_SIZE = 4
LOG_SIZE = 40  # entries signed per origin; a run publishes fewer
VARIANTS = 2  # logs per origin, one chosen per run


def _ops(seed: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    return [(rng.choice(ACTIONS), rng.randrange(OBJECTS)) for _ in range(LOG_SIZE)]


@dataclass(frozen=True)
class Origin:
    """One origin's log, signed once, with what serving and checking it needs."""

    log: Log
    leaves: tuple[bytes, ...]
    states: tuple[dict[str, Any], ...]  # reference: objects after each prefix
    rejections: tuple[frozenset[int], ...]  # reference: seqs rejected in each prefix

    @property
    def base_url(self) -> str:
        return self.log.base_url

    def document(self) -> dict[str, Any]:
        """Its node document, as a subscriber pins it (protocol.md §1)."""
        b = self.base_url
        key = KEYS[b]
        return {
            "@context": list(CONTEXT_IRIS),
            "id": b,
            "type": "Service",
            "nameMap": {"en": b},
            "country": "BE",
            "inbox": f"{b}/inbox",
            "outbox": f"{b}/feed",
            "checkpoint": f"{b}/checkpoint",
            "logOrigin": b.split("://", 1)[1],
            "checkpointKey": verifier_key(b.split("://", 1)[1], key.public_raw),
            "pageSize": PAGE_SIZE,
            "assertionMethod": [
                {
                    "id": key.id,
                    "type": "Multikey",
                    "controller": b,
                    "publicKeyMultibase": key.public_multibase,
                    "created": format_timestamp(KEY_CREATED),
                    "revoked": None,
                }
            ],
        }

    def note(self, size: int) -> str:
        return self.log.claim(size, 0, size, size).note

    def page(self, number: int, published: int) -> bytes:
        """Feed page ``number`` as the origin serves it while ``published`` entries exist."""
        outbox = f"{self.base_url}/feed"
        start = number * PAGE_SIZE
        end = min(start + PAGE_SIZE, published)
        header: dict[str, Any] = {
            "@context": list(CONTEXT_IRIS),
            "id": f"{outbox}/{number}",
            "type": "OrderedCollectionPage",
            "partOf": outbox,
            "startIndex": start,
        }
        if end - start == PAGE_SIZE:
            header["next"] = f"{outbox}/{number + 1}"
        head = json.dumps(header, separators=(",", ":")).encode()[:-1]
        return head + b',"orderedItems":[' + b",".join(self.leaves[start:end]) + b"]}"


def _origin(index: int, variant: int) -> Origin:
    log = build_log(index, _ops(1000 * variant + index))
    states, rejections = reference(log)
    leaves = tuple(canonicalize(document) for document in log.documents)
    return Origin(log, leaves, tuple(states), tuple(rejections))


ORIGINS = [
    [_origin(index, variant) for index in range(len(BASE_URLS))] for variant in range(VARIANTS)
]


class LogFetcher:
    """The three origins as a Fetcher sees them, without HTTP: each serves what it has
    published so far (its checkpoint, feed pages, consistency proofs)."""

    def __init__(self, origins: list[Origin], published: dict[str, int]) -> None:
        self.origins = {origin.base_url: origin for origin in origins}
        self.published = published

    def _answer(self, url: str) -> bytes:
        parts = urlsplit(url)
        for base_url, origin in self.origins.items():
            prefix = urlsplit(base_url)
            if (parts.scheme, parts.netloc) != (prefix.scheme, prefix.netloc):
                continue
            path = parts.path.removeprefix(prefix.path)
            size = self.published[base_url]
            if path == "/checkpoint":
                return origin.note(size).encode()
            if path == "/checkpoints":
                return b'{"checkpoints": []}'
            if path.startswith("/feed/"):
                number = int(path.removeprefix("/feed/"))
                if number * PAGE_SIZE > size:
                    raise FetchError(f"{url}: HTTP 404", status_code=404)
                return origin.page(number, size)
            if path == "/proof/consistency":
                query = parse_qs(parts.query)
                first, second = int(query["first"][0]), int(query["second"][0])
                if not 0 < first <= second <= size:
                    raise FetchError(f"{url}: HTTP 400", status_code=400)
                hashes = consistency_proof(origin.log.tree, first, second)
                encoded = [base64.b64encode(h).decode() for h in hashes]
                return json.dumps({"hashes": encoded}).encode()
        raise FetchError(f"{url}: HTTP 404", status_code=404)

    async def get_bytes(
        self,
        url: str,
        *,
        accept: str = "",
        etag: str | None = None,
        max_bytes: int | None = None,
    ) -> tuple[int, bytes, str | None]:
        return 200, self._answer(url), None

    async def get_json(self, url: str) -> Any:
        return parse(self._answer(url))


class Crash(BaseException):
    """The node dies where a fault point fires (not an Exception: nothing catches it)."""


def _die(point: str) -> None:
    raise Crash(point)


#: Where the homes live: in memory when the machine has a tmpfs, since every merge commits
#: durably (synchronous=FULL) and fsyncs on a disk would be most of the run's time.
SCRATCH = "/dev/shm" if Path("/dev/shm").is_dir() else None


def _template() -> Path:
    """A node home with its store created once; every run starts from a copy."""
    folder = Path(tempfile.mkdtemp(prefix="exchange-stateful-", dir=SCRATCH))
    atexit.register(shutil.rmtree, folder, True)
    result = init_node(
        folder / "node",
        base_url="http://127.0.0.1:8080",
        name="Stateful",
        country="NL",
        environ={},  # SQLite in both passes: the machine reads the file after every step
    )
    asyncio.run(create_store(result.settings))
    return folder / "node"


TEMPLATE = _template()


class SyncMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.folder = Path(tempfile.mkdtemp(prefix="exchange-stateful-run-", dir=SCRATCH))
        home = self.folder / "node"
        shutil.copytree(TEMPLATE, home)
        self.settings: Settings = replace(load_settings(home, {}), verify_workers=0)
        self.origins: list[Origin] = []
        self.published: dict[str, int] = {}
        self.network: list[Run] = []  # pushes in flight, oldest first
        self.sent: list[Run] = []  # every push sent, for duplicates
        self.stack: AsyncExitStack | None = None
        self.federation: Federation | None = None
        self.db = sqlite3.connect(self.settings.database, isolation_level=None)

    # --- the node's lives ------------------------------------------------------------------

    def run(self, work: Any) -> Any:
        return self.loop.run_until_complete(work)

    async def _open(self) -> None:
        stack = AsyncExitStack()
        node: Node = await stack.enter_async_context(open_node(self.settings))
        fetcher = LogFetcher(self.origins, self.published)
        self.federation = Federation(node, fetcher)
        self.stack = stack

    async def _close(self) -> None:
        assert self.stack is not None
        await self.stack.aclose()
        self.stack, self.federation = None, None

    @property
    def up(self) -> bool:
        return self.federation is not None

    @initialize(variants=st.lists(st.integers(0, VARIANTS - 1), min_size=3, max_size=3))
    def start(self, variants: list[int]) -> None:
        """The node pins and follows the three origins (one log variant each)."""
        self.origins = [ORIGINS[v][index] for index, v in enumerate(variants)]
        self.published.update({origin.base_url: 0 for origin in self.origins})
        self.run(self._open())
        assert self.federation is not None
        now = format_timestamp(datetime.now(UTC))
        for origin in self.origins:
            partner = Partner(
                origin.base_url, origin.base_url, "BE", origin.document(), following="accepted"
            )
            self.run(self.federation.store.put_partner(replace(partner, added_at=now)))

    # --- the origins and the network ---------------------------------------------------------

    @rule(
        origin=st.integers(0, 2),
        count=st.integers(1, 3),
        back=st.integers(0, 2),
        short=st.integers(0, 2),
    )
    def publish(self, origin: int, count: int, back: int, short: int) -> None:
        """The origin appends ``count`` entries and pushes from ``back`` entries before them
        (a push after a failed one starts earlier) up to ``short`` entries before its end
        (a push holds at most so many), with its newest checkpoint."""
        base_url = self.origins[origin].base_url
        before = self.published[base_url]
        size = min(LOG_SIZE, before + count)
        if size == before:
            return
        self.published[base_url] = size
        start = max(0, before - back)
        push = Run(origin, start, max(start + 1, size - short), size)
        self.network.append(push)
        self.sent.append(push)

    def _push(self, push: Run) -> None:
        """The node receives ``push`` at its inbox (lost when the node is down)."""
        if self.federation is None:
            return
        origin = self.origins[push.origin]
        partner = self.run(self.federation.partner(origin.base_url))
        page = {
            "type": "OrderedCollectionPage",
            "partOf": f"{origin.base_url}/feed",
            "startIndex": push.start,
            "orderedItems": [json.loads(leaf) for leaf in origin.leaves[push.start : push.end]],
            "checkpoint": origin.note(push.size),
        }
        self.run(self.federation.receive_push(partner, page))

    @rule()
    @precondition(lambda self: self.network)
    def deliver(self) -> None:
        self._push(self.network.pop(0))

    @rule(data=st.data())
    @precondition(lambda self: self.sent)
    def duplicate(self, data: st.DataObject) -> None:
        self.network.append(data.draw(st.sampled_from(self.sent)))

    @rule(data=st.data())
    @precondition(lambda self: len(self.network) > 1)
    def reorder(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(1, len(self.network) - 1))
        self._push(self.network.pop(index))

    @rule(origin=st.integers(0, 2))
    @precondition(lambda self: self.up)
    def pull(self, origin: int) -> None:
        assert self.federation is not None
        report = self.run(self.federation.sync(self.origins[origin].base_url))
        assert report.error == "", report.error

    @rule(
        point=st.sampled_from([None, "verify.after", "merge.in_transaction", "merge.after_commit"]),
        via=st.sampled_from(["deliver", "pull"]),
        origin=st.integers(0, 2),
    )
    @precondition(lambda self: self.up)
    def crash(self, point: str | None, via: str, origin: int) -> None:
        """The node dies: at ``point`` while it takes the next push or pulls ``origin`` (if
        the point is reached), else at once. Its in-memory state is gone; its store keeps
        what was committed."""
        if point is not None:
            with faults.armed({point: 1.0}, _die):
                try:
                    if via == "deliver" and self.network:
                        self.deliver()
                    else:
                        self.pull(origin)
                except Crash:
                    pass
        self.run(self._close())

    @rule()
    @precondition(lambda self: not self.up)
    def restart(self) -> None:
        self.run(self._open())

    # --- invariants ------------------------------------------------------------------------

    @invariant()
    def the_store_is_each_log_applied_in_order_up_to_its_cursor(self) -> None:
        for origin in self.origins:
            self.check(origin)

    def check(self, origin: Origin) -> int:
        base_url, published = origin.base_url, self.published[origin.base_url]
        tree = origin.log.tree
        row = self.db.execute(
            "SELECT next_seq, peaks, checkpoint_size, checkpoint_root, halted FROM origins"
            " WHERE base_url = ?",
            (base_url,),
        ).fetchone()
        next_seq, peaks, size, checkpoint_root, halted = row or (0, "[]", 0, None, 0)
        # Cursors never ahead of the checkpoint, nor the checkpoint of what was published.
        assert not halted
        assert 0 <= next_seq <= size <= published, (next_seq, size, published)
        if size:
            assert bytes(checkpoint_root) == root(tree, size)
        merged = CompactRange(next_seq, tuple(bytes.fromhex(p) for p in json.loads(peaks)))
        assert merged.root() == root(tree, next_seq)
        # Merged ⊆ published, nothing twice: exactly the entries below next_seq that merged.
        received = self.db.execute(
            "SELECT seq, leaf_hash FROM received WHERE origin = ? ORDER BY seq", (base_url,)
        ).fetchall()
        merged = [seq for seq in range(next_seq) if seq not in origin.rejections[next_seq]]
        assert [seq for seq, _ in received] == merged  # a rejected entry leaves no content
        for seq, hashed in received:
            assert bytes(hashed) == leaf_hash(origin.leaves[seq])
        rejected = self.db.execute(
            "SELECT seq, problem, reason FROM rejections WHERE origin = ? AND seq IS NOT NULL",
            (base_url,),
        ).fetchall()
        expected = sorted(origin.rejections[next_seq])
        assert sorted(seq for seq, _, _ in rejected) == expected, (rejected, expected)
        # The objects: those of applying the log in order up to next_seq.
        objects = {
            object_id: (int(version), bool(deleted), int(seq))
            for object_id, version, deleted, seq in self.db.execute(
                "SELECT id, version, deleted, seq FROM objects WHERE origin = ?", (base_url,)
            )
        }
        assert objects == {
            object_id: (record.version, record.deleted, record.seq)
            for object_id, record in origin.states[next_seq].items()
        }
        return int(next_seq)

    def teardown(self) -> None:
        try:
            if not self.up:
                self.restart()
            for index, origin in enumerate(self.origins):
                self.pull(index)
                assert self.check(origin) == self.published[origin.base_url]
        finally:
            if self.up:
                self.run(self._close())
            self.loop.close()
            self.db.close()
            shutil.rmtree(self.folder, ignore_errors=True)


SyncMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=50, deadline=None)
# The machine's node keeps its store in SQLite in both passes (it reads the file after every
# step), so the PostgreSQL pass would only run it again.
TestSyncMachine = sqlite_only("the machine reads its node's SQLite file")(SyncMachine.TestCase)
