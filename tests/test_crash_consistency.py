"""Issue 3: an append is atomic and a checkpoint is served only once its entries are durable.

A real child process (tests/crash_publisher.py) publishes 10,000 entries through
``open_node`` + ``Node.publish`` in batches of 1 to 50; the test kills it with SIGKILL at
seeded random moments (once during start-up, then at random log sizes plus a random delay,
so that kills land inside and between transactions) and restarts it until the log holds
10,000 entries. After every kill, before anything reopens the node, the test reads the
SQLite file directly and checks that log, Merkle nodes, objects and checkpoints agree and
verify, and that nothing the child acknowledged, or a reader saw, was lost.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from exchange.canonical import canonicalize
from exchange.checkpoint import NoteVerifier, open_note, parse_checkpoint, verifier_key
from exchange.config import Settings
from exchange.errors import InvalidKey
from exchange.keys import KeyPair, PublicKey
from exchange.merkle import (
    EMPTY_ROOT,
    CompactRange,
    DictSubtrees,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    perfect_subtrees_completed_by,
    root,
    verify_consistency,
    verify_inclusion,
)
from exchange.node import Node
from exchange.operator import init_node
from exchange.proof import verify_document
from tests.conftest import sqlite_only

PUBLISHER = Path(__file__).with_name("crash_publisher.py")
BASE_URL = "http://127.0.0.1:18999"
TARGET = 10_000
SEED = 20_240_603
SIZE_KILLS = 5  # kills at random log sizes, after one kill during start-up
SAMPLE = 300  # entries whose proofs are verified after each kill (all at the end)
SQLITE_SYNCHRONOUS_FULL = 2


@dataclass
class Run:
    """What one publisher process reported before it ended."""

    start: int  # the log size when it was started
    lines: list[str] = field(default_factory=list)
    served: int = 0  # the largest checkpoint size a concurrent reader saw
    end: int | None = None  # the log size found after it ended (may be unacknowledged)
    killed: bool = False

    def acknowledged(self) -> list[int]:
        """Sizes whose publish returned (committed) in this process."""
        return [int(line.split()[1]) for line in self.lines if line.startswith("ok ")]

    def possible_sizes(self) -> set[int]:
        """Log sizes the store may hold after this process ended: the last acknowledged
        one, or one more whole batch if a publish had begun and was not yet acknowledged."""
        size, possible = self.start, {self.start}
        for line in self.lines:
            word, *numbers = line.split()
            if word == "begin":
                begin, count = map(int, numbers)
                assert begin == size, f"publish began at {begin}, log was at {size}"
                possible = {size, size + count}
            elif word in {"ok", "done"}:
                size = int(numbers[0])
                possible = {size}
        return possible


@dataclass
class Subject:
    """The node under test as the parent sees it: its settings and keys."""

    settings: Settings
    key: KeyPair
    verifier: NoteVerifier

    @property
    def database(self) -> Path:
        return self.settings.database

    def resolve(self, method: str) -> PublicKey:
        if method != self.key.id:
            raise InvalidKey(f"{method} is not this node's key {self.key.id}")
        return self.key.public


@contextmanager
def _database(path: Path) -> Iterator[sqlite3.Connection]:
    uri = f"{path.as_uri()}?mode=rw"  # never create the store: only the node does
    with closing(sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30)) as connection:
        yield connection


def _complete_lines(data: str) -> list[str]:
    """Whole lines only: a SIGKILL may cut the last one."""
    lines = data.split("\n")
    return [line for line in lines[:-1] if line]


def _check_served(node: Subject, run: Run) -> None:
    """A reader sees a checkpoint and the entries it covers together, never one alone."""
    with _database(node.database) as connection:
        connection.execute("BEGIN")
        size, note = connection.execute(
            "SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1"
        ).fetchone()
        (log_size,) = connection.execute("SELECT COALESCE(MAX(seq) + 1, 0) FROM log").fetchone()
        connection.execute("COMMIT")
    assert size == log_size, f"a reader saw checkpoint {size} over a log of {log_size}"
    text, _ = open_note(note, [node.verifier])
    assert parse_checkpoint(text, node.settings.origin).size == size
    run.served = max(run.served, size)


def _publish(
    node: Subject,
    seed: int,
    start: int,
    stderr: Path,
    *,
    kill_at_size: int | None = None,
    at_start: bool = False,
    delay: float = 0.0,
) -> Run:
    """Run the publisher to the end, or SIGKILL it ``delay`` s after it acknowledged a log
    of ``kill_at_size`` entries or more (``delay`` s after it started when ``at_start``)."""
    run = Run(start)
    killing = at_start or kill_at_size is not None
    with stderr.open("w") as errors:
        process = subprocess.Popen(
            [sys.executable, "-u", str(PUBLISHER), str(node.settings.home), str(TARGET), str(seed)],
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
        try:
            assert process.stdout is not None
            if not at_start:
                for count, line in enumerate(iter(process.stdout.readline, "")):
                    if not line.endswith("\n"):
                        break
                    run.lines.append(line.rstrip("\n"))
                    if count % 5 == 0:
                        _check_served(node, run)
                    if (
                        kill_at_size is not None
                        and line.startswith("ok ")
                        and int(line.split()[1]) >= kill_at_size
                    ):
                        break
            if killing:
                time.sleep(delay)
                if process.poll() is None:
                    process.send_signal(signal.SIGKILL)
                    run.killed = True
            run.lines += _complete_lines(process.stdout.read())
            returncode = process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    if run.killed:
        assert returncode == -signal.SIGKILL, stderr.read_text()
    else:
        assert returncode == 0, stderr.read_text()
    pragmas = [line for line in run.lines if line.startswith("pragma ")]
    if run.acknowledged():
        # synchronous=FULL in WAL mode: a commit returns only after the WAL is fsynced.
        assert pragmas == [f"pragma {SQLITE_SYNCHRONOUS_FULL} wal"], run.lines[:3]
    return run


def _store_created(node: Subject) -> bool:
    """Whether the store exists (a kill during the first start-up may precede it)."""
    if not node.database.exists():
        return False
    with _database(node.database) as connection:
        tables = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return "log" in {name for (name,) in tables}


def _check_store(node: Subject, runs: list[Run], rng: random.Random, sample: int | None) -> int:
    """Check the store as a restart finds it; return its log size."""
    if not _store_created(node):
        assert not any(run.acknowledged() for run in runs), "acknowledged entries were lost"
        return 0
    with _database(node.database) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        log = connection.execute(
            "SELECT seq, object_id, leaf, leaf_hash FROM log ORDER BY seq"
        ).fetchall()
        merkle = connection.execute("SELECT level, idx, hash FROM merkle").fetchall()
        checkpoints = connection.execute(
            "SELECT size, root, note FROM checkpoints ORDER BY size"
        ).fetchall()
        objects = connection.execute(
            "SELECT id, origin, type, version, deleted, seq, body FROM objects"
        ).fetchall()
    size = len(log)
    last = runs[-1]
    if not checkpoints:  # killed between creating the store and signing the empty log
        assert (size, merkle, objects) == (0, [], []), "entries without any checkpoint"
        assert not any(run.acknowledged() for run in runs), "acknowledged entries were lost"
        return 0

    # Atomic: the log holds whole batches only, with no gap, and lost nothing acknowledged.
    assert [row[0] for row in log] == list(range(size)), "the log has a gap"
    assert size in last.possible_sizes(), (
        f"log size {size} after a kill; the publisher's last lines were {last.lines[-3:]}"
    )
    assert size >= max(run.served for run in runs), "a checkpoint a reader saw was lost"

    # Merkle nodes: exactly those of the first `size` leaves, each right.
    expected: dict[tuple[int, int], bytes] = {}
    source = DictSubtrees(expected)
    compact = CompactRange()
    for seq, _, leaf, stored_hash in log:
        assert bytes(stored_hash) == leaf_hash(bytes(leaf)), f"entry {seq}: wrong leaf hash"
        for level, index, value in perfect_subtrees_completed_by(
            source, seq, leaf_hash(bytes(leaf))
        ):
            expected[(level, index)] = value
        compact.append_hash(bytes(stored_hash))
    stored = {(level, index): bytes(value) for level, index, value in merkle}
    assert stored.keys() == expected.keys(), (
        f"Merkle nodes missing {sorted(expected.keys() - stored.keys())[:5]}, "
        f"extra {sorted(stored.keys() - expected.keys())[:5]}"
    )
    assert stored == expected, "a stored Merkle node is wrong"
    tree = DictSubtrees(stored)
    tree_root = root(tree, size)
    assert tree_root == compact.root()

    # Checkpoints: one per acknowledged publish (plus the empty log's and one committed but
    # unacknowledged), each signed by the node, the latest over exactly the whole log.
    sizes = [row[0] for row in checkpoints]
    acknowledged = {0, size} | {ok for run in runs for ok in run.acknowledged()}
    acknowledged |= {run.end for run in runs if run.end is not None}
    assert set(sizes) == acknowledged, (
        f"checkpoint sizes {sorted(set(sizes) ^ acknowledged)[:5]} are not publish boundaries"
    )
    assert sizes[-1] == size, f"latest checkpoint is for {sizes[-1]}, the log holds {size}"
    latest_root = bytes(checkpoints[-1][1])
    assert latest_root == tree_root, "the latest checkpoint's root is not the log's"
    for checkpoint_size, checkpoint_root, note in checkpoints:
        text, verified = open_note(note, [node.verifier])
        assert verified == (node.verifier,)
        parsed = parse_checkpoint(text, node.settings.origin)
        assert (parsed.size, parsed.root_hash) == (checkpoint_size, bytes(checkpoint_root))
        if checkpoint_size == 0:
            assert parsed.root_hash == EMPTY_ROOT
            continue
        extension = consistency_proof(tree, checkpoint_size, size)
        verify_consistency(checkpoint_size, size, parsed.root_hash, latest_root, extension)

    # Objects: one new object per entry, its state that of its entry.
    assert len(objects) == size
    by_id = {row[0]: row for row in objects}
    assert len(by_id) == size
    for seq, object_id, _, _ in log:
        _, origin, type_name, version, deleted, object_seq, _ = by_id[object_id]
        assert (origin, type_name, version, deleted, object_seq) == (
            BASE_URL,
            "BestPractice",
            1,
            0,
            seq,
        )

    # Entries: the leaf is the JCS of a Create signed with the node's key (a sample of them,
    # always including the last batches, where a torn write would be).
    checked: Sequence[int]
    if sample is None:
        checked = range(size)
    else:
        recent = range(max(0, size - 100), size)
        checked = sorted(set(rng.sample(range(size), min(sample, size))) | set(recent))
    now = datetime.now(UTC)
    for seq in checked:
        _, object_id, leaf, stored_hash = log[seq]
        entry = json.loads(bytes(leaf))
        assert canonicalize(entry) == bytes(leaf), f"entry {seq}: the leaf is not JCS"
        assert entry["id"] == f"{BASE_URL}/log/{seq}"
        assert (entry["seq"], entry["type"]) == (seq, "Create")
        assert entry["object"]["id"] == object_id
        assert entry["object"]["nameMap"] == {"en": f"practice {seq}"}
        assert json.loads(by_id[object_id][6]) == entry["object"]
        (proof,) = verify_document(entry, node.resolve, now)
        assert proof.verification_method == node.key.id
        path = inclusion_proof(tree, seq, size)
        verify_inclusion(bytes(stored_hash), seq, size, path, latest_root)
    return size


@sqlite_only("it reads the SQLite file, its pragmas and its WAL directly")
def test_sigkilled_publisher_leaves_a_log_merkle_state_and_checkpoint_that_agree(
    tmp_path: Path,
) -> None:
    home = tmp_path / "node"
    settings = init_node(home, base_url=BASE_URL, name="Crash node", country="NL").settings
    key, _ = Node.load_key(settings)
    verifier = NoteVerifier.parse(verifier_key(settings.origin, key.public_raw))
    node = Subject(settings, key, verifier)
    rng = random.Random(SEED)
    kills: list[tuple[int, float]] = [(0, rng.uniform(0.1, 0.5))]  # during start-up
    kills += [
        (size, rng.uniform(0, 0.03)) for size in sorted(rng.sample(range(TARGET), SIZE_KILLS))
    ]

    runs: list[Run] = []
    size = 0
    for number, (kill_at_size, delay) in enumerate(kills):
        stderr = tmp_path / f"publisher-{number}.err"
        if number == 0:
            run = _publish(node, SEED, size, stderr, at_start=True, delay=delay)
        else:
            run = _publish(
                node, SEED + number, size, stderr, kill_at_size=kill_at_size, delay=delay
            )
        runs.append(run)
        size = run.end = _check_store(node, runs, rng, sample=SAMPLE)
    stderr = tmp_path / "publisher-final.err"
    runs.append(_publish(node, SEED + len(kills), size, stderr))
    assert runs[-1].lines[-1] == f"done {TARGET}"
    assert _check_store(node, runs, rng, sample=None) == TARGET
    assert sum(run.killed for run in runs) >= SIZE_KILLS
