"""protocol.md §7 rule 7 as a property: any interleaving, duplication, drop-then-pull,
reordering or redelivery of three origins' logs merges to the store that applying each log
once, in order, gives; and no run is ever half-applied.

Pure: no HTTP and no database. Each origin's log is a list of entries signed for real
(Create, Update and Delete over three object ids, with stale updates, revivals after a
Delete, entries tampered after signing and updates of another origin's object among them).
Deliveries are runs ``(start, entries, checkpoint claim)``, checked by
:func:`exchange.verification.check_entries` and fed to :func:`exchange.ingest.plan_run`
with the consistency proofs a publisher would serve, computed by :mod:`exchange.merkle`
from the origin's tree, against :class:`MemoryStore`, a small in-memory fake of the
store's merge (the ``MergeView`` it reads, the ``MergeWrite`` it applies in one step). A
run that arrives early raises GapError and is dropped; one whose checkpoint is older than
the one already verified raises Rollback and is dropped; in the end each origin is pulled
from the page that holds its next seq, with its newest checkpoint, as
:meth:`Federation.sync` does. The expected store comes from a reference model of rules 1-6
written here independently of :func:`exchange.merge.decide`.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.canonical import canonicalize
from exchange.checkpoint import Checkpoint, sign_checkpoint
from exchange.entries import ObjectRecord, build_entry, sign_entry
from exchange.ingest import CheckpointClaim, GapError, Rollback, plan_run
from exchange.keys import KeyPair, PublicKey
from exchange.merge import KeyRing
from exchange.merkle import CompactRange, MemorySubtrees, consistency_proof, root
from exchange.partners import OriginState, Rejection
from exchange.proof import sign_document
from exchange.store.base import MergeView, MergeWrite
from exchange.timestamps import format_timestamp
from exchange.verification import check_entries, leaf_or_none

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
KEY_CREATED = NOW - timedelta(days=30)
SIGNED_AT = NOW - timedelta(days=1)
BASE_URLS = ("https://a.example", "https://b.example/exchange", "https://c.example:8443")
OBJECTS = 3  # object ids per origin
PAGE_SIZE = 4  # of the final pull


def _key(base_url: str) -> KeyPair:
    return KeyPair(f"{base_url}/keys/2026-1", bytes([len(base_url)]) * 32)


KEYS = {base_url: _key(base_url) for base_url in BASE_URLS}
KEY_RINGS = {
    base_url: KeyRing(base_url, (PublicKey(key.id, key.public_raw, created=KEY_CREATED),))
    for base_url, key in KEYS.items()
}


# --- the logs -----------------------------------------------------------------------------

#: write: the next version (Create, or Update after it); delete: a Tombstone; stale: an
#: Update that is not newer; tamper: a write changed after signing; foreign: an Update of
#: the same object number of the next origin.
ACTIONS = ("write", "write", "delete", "stale", "tamper", "foreign")


@dataclass(frozen=True)
class Planned:
    """One entry as the publisher meant it: what the reference model needs to know."""

    activity: str
    object_id: str
    version: int
    valid: bool  # False: rejected before any merge rule (proof or origin authority)


def _practice(object_id: str, base_url: str, version: int, seq: int) -> dict[str, Any]:
    stamp = format_timestamp(SIGNED_AT + timedelta(seconds=seq))
    return {
        "id": object_id,
        "type": "BestPractice",
        "nameMap": {"en": f"Practice {object_id.rsplit('/', 1)[1]}, version {version}"},
        "practiceKind": "experience",
        "attributedTo": base_url,
        "version": version,
        "published": stamp,
        "updated": stamp,
    }


@cache
def _signed(origin: int, seq: int, action: str, number: int, version: int) -> bytes:
    """The JCS bytes of one entry, signed once per process (Ed25519 is deterministic)."""
    base_url = BASE_URLS[origin]
    at = SIGNED_AT + timedelta(seconds=seq)
    object_id = f"{base_url}/objects/{number}"
    if action == "delete":
        obj: dict[str, Any] = {
            "id": object_id,
            "type": "Tombstone",
            "formerType": "BestPractice",
            "deleted": format_timestamp(at),
        }
        activity = "Delete"
    elif action == "foreign":
        other = BASE_URLS[(origin + 1) % len(BASE_URLS)]
        obj = _practice(f"{other}/objects/{number}", base_url, version, seq)
        activity = "Update"
    else:
        obj = _practice(object_id, base_url, version, seq)
        activity = "Create" if version == 1 and action == "write" else "Update"
    entry = build_entry(seq, activity, obj, base_url, at)
    if action == "tamper":
        signed = sign_document(entry, KEYS[base_url], at)
        signed["object"]["nameMap"] = {"en": "Changed after signing"}
        return canonicalize(signed)
    return sign_entry(entry, KEYS[base_url], at, 256 * 1024).leaf


@dataclass
class Log:
    """One origin's log: signed entries, their tree, and what the reference model says."""

    base_url: str
    documents: list[Mapping[str, Any]] = field(default_factory=list)
    planned: list[Planned] = field(default_factory=list)
    tree: MemorySubtrees = field(default_factory=MemorySubtrees)

    @property
    def size(self) -> int:
        return len(self.documents)

    def claim(self, size: int, from_size: int, run_end: int, next_seq: int) -> CheckpointClaim:
        """The checkpoint of ``size`` with the proofs a publisher serves for it (as
        Federation._merge_run fetches them)."""
        previous = consistency_proof(self.tree, from_size, size) if 0 < from_size < size else []
        prefix = consistency_proof(self.tree, run_end, size) if next_seq < run_end < size else []
        hashed = root(self.tree, size)
        origin = self.base_url.split("://", 1)[1]
        note = sign_checkpoint(Checkpoint(origin, size, hashed), origin, KEYS[self.base_url])
        return CheckpointClaim(size, hashed, note, previous, prefix)


def build_log(origin: int, ops: Sequence[tuple[str, int]]) -> Log:
    base_url = BASE_URLS[origin]
    log = Log(base_url)
    versions: dict[int, int] = {}  # the publisher's own counter per object number
    for seq, (action, number) in enumerate(ops):
        current = versions.get(number, 0)
        version = {"write": current + 1, "stale": max(current, 1), "delete": 0}.get(action, 1)
        if action == "write":
            versions[number] = version
        if action == "foreign":
            version = 99
        leaf = _signed(origin, seq, action, number, version)
        log.documents.append(json.loads(leaf))
        log.tree.append(leaf)
        object_id = str(log.documents[-1]["object"]["id"])
        activity = str(log.documents[-1]["type"])
        log.planned.append(
            Planned(activity, object_id, version, action not in ("tamper", "foreign"))
        )
    return log


# --- the reference model of rules 1-6 ------------------------------------------------------


def reference(log: Log) -> tuple[list[dict[str, ObjectRecord]], list[frozenset[int]]]:
    """For every prefix length n of the log: the objects after applying entries [0, n)
    once in order, and the seqs rejected among them."""
    objects: dict[str, ObjectRecord] = {}
    rejected: set[int] = set()
    states, rejections = [dict(objects)], [frozenset(rejected)]
    for seq, (plan, document) in enumerate(zip(log.planned, log.documents, strict=True)):
        current = objects.get(plan.object_id)
        body = document["object"]
        if not plan.valid or (
            current is not None and current.deleted and plan.activity != "Delete"
        ):
            rejected.add(seq)  # rule 1 or the proof; rule 5: never revived
        elif plan.activity == "Delete":
            if current is None or not current.deleted:
                version = 0 if current is None else current.version
                objects[plan.object_id] = ObjectRecord(
                    plan.object_id, log.base_url, "BestPractice", version, True, seq, body
                )
        elif current is not None and plan.version <= current.version:
            rejected.add(seq)  # rule 4
        else:
            objects[plan.object_id] = ObjectRecord(
                plan.object_id, log.base_url, "BestPractice", plan.version, False, seq, body
            )
        states.append(dict(objects))
        rejections.append(frozenset(rejected))
    return states, rejections


# --- a fake of the store's merge ------------------------------------------------------------


class MemoryStore:
    """The part of a Store that merging uses: a MergeView to plan against, and the writes of
    a MergeWrite applied all at once (as SQLiteStore.merge does in one transaction)."""

    def __init__(self) -> None:
        self.origins: dict[str, OriginState] = {}
        self.objects: dict[str, ObjectRecord] = {}
        self.received: dict[tuple[str, int], bytes] = {}
        self.rejections: list[Rejection] = []

    def origin_state(self, base_url: str) -> OriginState | None:
        return self.origins.get(base_url)

    def get_object(self, object_id: str) -> ObjectRecord | None:
        return self.objects.get(object_id)

    def get_objects(self, object_ids: Sequence[str]) -> dict[str, ObjectRecord]:
        return {i: self.objects[i] for i in object_ids if i in self.objects}

    def merge(self, plan: Callable[[MergeView], MergeWrite]) -> MergeWrite:
        write = plan(self)
        state = write.origin
        for seq, hashed, _, _ in write.received:
            # SQLite's primary key (origin, seq): an entry is never merged twice.
            assert (state.base_url, seq) not in self.received, f"seq {seq} merged twice"
            self.received[(state.base_url, seq)] = hashed
        self.origins[state.base_url] = state
        for record in write.objects:
            self.objects[record.id] = record
        self.rejections.extend(write.rejections)
        assert write.partner_document is None
        return write

    def snapshot(self) -> tuple[Any, ...]:
        return (
            dict(self.origins),
            dict(self.objects),
            dict(self.received),
            list(self.rejections),
        )


def deliver(store: MemoryStore, log: Log, start: int, end: int, size: int) -> str:
    """Deliver entries [start, end) under the checkpoint of ``size``, as the shell does: the
    entries are checked first (proofs, schema, rule 1), then planned and written in one
    step. Returns merged, gap or rollback."""
    state = store.origin_state(log.base_url) or OriginState(log.base_url)
    claim = log.claim(size, state.checkpoint_size, end, state.next_seq)
    documents = copy.deepcopy(log.documents[start:end])
    checked = check_entries(
        documents,
        [leaf_or_none(document) for document in documents],
        start,
        base_url=log.base_url,
        keys=KEY_RINGS[log.base_url],
        now=NOW,
    )
    before = store.snapshot()

    def plan(view: MergeView) -> MergeWrite:
        current = view.origin_state(log.base_url) or OriginState(log.base_url)
        return plan_run(current, checked, start, claim, now=NOW, get_objects=view.get_objects)

    try:
        write = store.merge(plan)
    except (GapError, Rollback) as error:
        assert store.snapshot() == before  # refused as a whole
        return "gap" if isinstance(error, GapError) else "rollback"
    # Applied as a whole: everything up to the run's end, under the claimed checkpoint.
    assert write.origin.next_seq == max(state.next_seq, end)
    assert write.origin.checkpoint_size == max(state.checkpoint_size, size)
    assert documents == log.documents[start:end]  # the core never changes what it was given
    return "merged"


# --- the property ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    origin: int
    start: int
    end: int
    size: int  # of the checkpoint it carries


@dataclass(frozen=True)
class Scenario:
    ops: tuple[tuple[tuple[str, int], ...], ...]
    schedule: tuple[Run, ...]
    pulls: tuple[int, ...]


operations = st.lists(
    st.tuples(st.sampled_from(ACTIONS), st.integers(0, OBJECTS - 1)), max_size=10
).map(tuple)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    ops = tuple(draw(operations) for _ in BASE_URLS)
    runs: list[Run] = []
    for origin, entries in enumerate(ops):
        size = len(entries)
        cuts = draw(st.sets(st.integers(1, size - 1), max_size=4)) if size > 1 else set()
        bounds = [0, *sorted(cuts), size] if size else []
        for first, end in itertools.pairwise(bounds):
            start = draw(st.integers(max(0, first - 2), first))  # may overlap the run before
            runs.append(Run(origin, start, end, draw(st.integers(end, size))))
    schedule: list[Run] = []
    if runs:
        dropped = draw(st.sets(st.integers(0, len(runs) - 1)))
        duplicated = draw(st.lists(st.sampled_from(runs), max_size=6))
        kept = [run for index, run in enumerate(runs) if index not in dropped]
        schedule = draw(st.permutations(kept + duplicated))
    pulls = tuple(draw(st.permutations(range(len(BASE_URLS)))))
    return Scenario(ops, tuple(schedule), pulls)


def _check(store: MemoryStore, logs: Sequence[Log], models: Sequence[Any]) -> None:
    """The store is exactly each log applied once, in order, up to its next seq."""
    expected: dict[str, ObjectRecord] = {}
    for log, (states, rejections) in zip(logs, models, strict=True):
        state = store.origin_state(log.base_url) or OriginState(log.base_url)
        expected.update(states[state.next_seq])
        recorded = [r.seq for r in store.rejections if r.origin == log.base_url]
        assert Counter(recorded) == Counter(rejections[state.next_seq])  # each once
        received = {seq for (origin, seq) in store.received if origin == log.base_url}
        merged = set(range(state.next_seq)) - rejections[state.next_seq]
        assert received == merged  # a rejected entry leaves no content, verified or not
        if state.checkpoint_size:
            assert state.checkpoint_root == root(log.tree, state.checkpoint_size)
        assert CompactRange(state.next_seq, state.peaks).root() == root(log.tree, state.next_seq)
    assert store.objects == expected


@settings(max_examples=100, deadline=None)
@given(scenarios())
def test_any_delivery_of_the_logs_merges_to_applying_each_log_once_in_order(
    scenario: Scenario,
) -> None:
    logs = [build_log(origin, ops) for origin, ops in enumerate(scenario.ops)]
    models = [reference(log) for log in logs]
    store = MemoryStore()
    for run in scenario.schedule:
        deliver(store, logs[run.origin], run.start, run.end, run.size)
        _check(store, logs, models)
    for origin in scenario.pulls:  # a pull: from the page holding next_seq, newest checkpoint
        log = logs[origin]
        state = store.origin_state(log.base_url) or OriginState(log.base_url)
        if log.size:
            start = state.next_seq - state.next_seq % PAGE_SIZE
            assert deliver(store, log, start, log.size, log.size) == "merged"
        _check(store, logs, models)
    for log, (states, _) in zip(logs, models, strict=True):
        state = store.origin_state(log.base_url) or OriginState(log.base_url)
        assert (state.next_seq, state.checkpoint_size) == (log.size, log.size)
        assert {i: r for i, r in store.objects.items() if r.origin == log.base_url} == states[-1]
