"""Running an audit, and exporting the bundle it can run on: the shell around
:mod:`exchange.audit`.

An audit streams: a bundle is read line by line, a live node page by page, and the
entries are verified in worker processes a chunk at a time, with a bounded number of
chunks in flight, while the fold keeps O(log n) state. Memory stays flat whatever the
size of the log.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import multiprocessing
import os
import sys
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, cast

from exchange.audit import (
    AuditFold,
    AuditReport,
    CheckpointSource,
    EntryVerdict,
    check_lines,
    check_page_entries,
    verify_checkpoints,
)
from exchange.bundle import (
    BundleHeader,
    checkpoint_line,
    header_line,
    parse_checkpoint_line,
    parse_header,
)
from exchange.config import Settings
from exchange.errors import ExchangeError, FetchError, IntegrityError, UsageError
from exchange.http.client import Fetcher, fetcher
from exchange.merge import KeyRing, check_node_document, keyring_from_node_document
from exchange.merkle import SubtreeSource, consistency_proof
from exchange.node import open_node
from exchange.origins import origin
from exchange.store.base import merkle_proof
from exchange.timestamps import format_timestamp

__all__ = [
    "AuditUnavailable",
    "ExportSummary",
    "audit_bundle",
    "audit_node",
    "export_bundle",
    "read_trusted_checkpoints",
]

#: Entries per chunk sent to a worker: large enough that pickling costs little.
CHUNK_ENTRIES = 512
#: Bytes of whole entry lines per chunk when workers read the bundle themselves.
CHUNK_BYTES = 1 << 20
#: Log entries read from the store per query when exporting.
EXPORT_BATCH = 2000

Progress = Callable[[int], None]
#: A function for a worker process and its arguments; it returns the verdicts of a chunk.
Chunk = tuple[Callable[..., list[EntryVerdict]], tuple[Any, ...]]


class AuditUnavailable(UsageError):
    """The audit cannot run: the node or the bundle cannot be read at all (exit 2)."""

    slug = "audit-unavailable"
    title = "The audit cannot run"


# --- export --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExportSummary:
    path: Path
    size: int
    checkpoints: int
    bytes_written: int


def _open_write(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return cast(IO[bytes], gzip.open(path, "wb", compresslevel=6))
    return path.open("wb")


def _open_read(path: Path) -> IO[bytes]:
    try:
        with path.open("rb") as probe:
            magic = probe.read(2)
        if magic == b"\x1f\x8b":
            return cast(IO[bytes], gzip.open(path, "rb"))
        return path.open("rb")
    except OSError as error:
        raise AuditUnavailable(f"{path}: {error.strerror or error}") from None


async def export_bundle(settings: Settings, path: Path, *, force: bool = False) -> ExportSummary:
    """Write the node's offline audit bundle (see :mod:`exchange.bundle`) to ``path``."""
    if path.exists() and not force:
        raise UsageError(f"{path} exists; pass --force to overwrite it")
    partial = path.with_name(path.name + ".partial")
    async with open_node(settings) as node:
        await node.refresh()
        latest = await node.store.latest_checkpoint()
        if latest is None:
            raise UsageError("the node has no checkpoint yet")
        size, _ = latest
        notes = await node.store.list_checkpoints(size)
        header = BundleHeader(
            node.base_url,
            format_timestamp(datetime.now(UTC)),
            node.node_document(),
            size,
            len(notes),
        )
        with _open_write(partial) as out:
            out.write(header_line(header))
            for checkpoint_size, note in notes:
                proof: list[bytes] = []
                if 0 < checkpoint_size < size:
                    proof = await merkle_proof(node.store, _consistency_to(checkpoint_size, size))
                out.write(checkpoint_line(note, proof))
            for start in range(0, size, EXPORT_BATCH):
                leaves = await node.store.entries(start, min(size, start + EXPORT_BATCH))
                out.write(b"".join(leaf + b"\n" for leaf in leaves))
    os.replace(partial, path)
    return ExportSummary(path, size, len(notes), path.stat().st_size)


def _consistency_to(first: int, second: int) -> Callable[[SubtreeSource], list[bytes]]:
    return lambda source: consistency_proof(source, first, second)


# --- trusted checkpoints -------------------------------------------------------------------


def read_trusted_checkpoints(path: Path) -> list[str]:
    """Signed notes from a file: a JSON list of notes (or ``{"checkpoints": [...]}``, as
    ``/checkpoints`` serves it), or notes one after another in plain text."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise AuditUnavailable(f"{path}: {error}") from None
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")):
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise AuditUnavailable(f"{path}: not JSON: {error}") from None
        items = document.get("checkpoints", []) if isinstance(document, dict) else document
        notes = [item.get("note") if isinstance(item, dict) else item for item in items]
        if not all(isinstance(note, str) for note in notes):
            raise AuditUnavailable(f"{path}: every checkpoint must be a signed note")
        return [str(note) for note in notes]
    return _split_notes(text, path)


def _split_notes(text: str, path: Path) -> list[str]:
    """Notes in a row: text lines, a blank line, signature lines (``— ``), then the next."""
    notes: list[str] = []
    current: list[str] = []
    in_signatures = False
    for line in text.splitlines():
        if in_signatures and not line.startswith("— "):
            notes.append("\n".join(current) + "\n")
            current, in_signatures = [], False
            if not line.strip():
                continue
        if not line.strip() and current and not in_signatures:
            in_signatures = True
        current.append(line)
    if current:
        notes.append("\n".join(current) + "\n")
    if not notes:
        raise AuditUnavailable(f"{path}: no signed notes in it")
    return notes


# --- the pipeline --------------------------------------------------------------------------


@contextmanager
def worker_pool(workers: int) -> Iterator[Executor | None]:
    """Spawned worker processes (none when ``workers`` is 0 or 1: verify in-process)."""
    if workers <= 1:
        yield None
        return
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
    try:
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class _InOrder:
    """Submit chunks to the pool, at most ``window`` in flight, and yield verdicts in order."""

    def __init__(self, executor: Executor | None, window: int) -> None:
        self.executor = executor
        self.window = window
        self.pending: deque[Future[list[EntryVerdict]] | list[EntryVerdict]] = deque()

    def submit(self, function: Callable[..., list[EntryVerdict]], *args: Any) -> None:
        if self.executor is None:
            self.pending.append(function(*args))
        else:
            self.pending.append(self.executor.submit(function, *args))

    @property
    def full(self) -> bool:
        return len(self.pending) >= self.window

    async def next(self) -> list[EntryVerdict]:
        head = self.pending.popleft()
        if isinstance(head, list):
            return head
        return await asyncio.wrap_future(head)


async def _fold_chunks(
    chunks: AsyncIterator[Chunk],
    fold: AuditFold,
    executor: Executor | None,
    progress: Progress | None,
) -> None:
    workers = getattr(executor, "_max_workers", 1)
    queue = _InOrder(executor, window=2 * workers + 2)

    def take(verdicts: list[EntryVerdict]) -> None:
        for verdict in verdicts:
            fold.add(verdict)
        if progress is not None:
            progress(len(verdicts))

    async for function, args in chunks:
        queue.submit(function, *args)
        while queue.full:
            take(await queue.next())
    while queue.pending:
        take(await queue.next())


def _workers(requested: int | None) -> int:
    return requested if requested is not None else (os.cpu_count() or 1)


# --- auditing a bundle ---------------------------------------------------------------------


async def audit_bundle(
    path: Path,
    *,
    trusted: Sequence[str] = (),
    witnesses: Sequence[str] = (),
    workers: int | None = None,
    progress_factory: Callable[[int], Progress] | None = None,
    now: datetime | None = None,
) -> AuditReport:
    """Audit a bundle; it touches the network only to ask ``witnesses`` for gossip."""
    moment = now or datetime.now(UTC)
    with _open_read(path) as stream:
        header = parse_header(stream.readline())
        document = header.node_document
        base_url, keys = _node_keys(document, header.node)
        sources = [
            parse_checkpoint_line(stream.readline(), number + 1)
            for number in range(header.checkpoints)
        ]
        if sources:
            sources[-1] = CheckpointSource(sources[-1].note, "node", sources[-1].consistency)
        sources += [CheckpointSource(note, "trusted") for note in trusted]
        if witnesses:
            async with fetcher(None) as client:
                sources += await _gossip(client, base_url, witnesses)
        fold = _fold(base_url, str(path), document, sources, moment)
        progress = progress_factory(header.size) if progress_factory else None

        async def chunks() -> AsyncIterator[Chunk]:
            position = 0
            while True:
                lines = list(_read_lines(stream, CHUNK_ENTRIES))
                if not lines:
                    return
                yield check_lines, (lines, position, base_url, keys, moment)
                position += len(lines)

        async def ranges() -> AsyncIterator[Chunk]:
            """Byte ranges of whole lines: each worker reads its own, so the entries cross
            no process boundary (the main process only finds where lines end)."""
            position, offset = 0, stream.tell()
            while True:
                block = stream.read(CHUNK_BYTES)
                if not block:
                    return
                if not block.endswith(b"\n"):
                    block += stream.readline()
                count = block.count(b"\n") + (not block.endswith(b"\n"))
                args = (str(path), offset, len(block), position, base_url, keys, moment)
                yield check_bundle_range, args
                offset += len(block)
                position += count

        with worker_pool(_workers(workers)) as executor:
            seekable = executor is not None and not isinstance(stream, gzip.GzipFile)
            await _fold_chunks(ranges() if seekable else chunks(), fold, executor, progress)
    return fold.finish()


def check_bundle_range(
    path: str, offset: int, length: int, start: int, base_url: str, keys: KeyRing, now: datetime
) -> list[EntryVerdict]:
    """Worker side of :func:`audit_bundle`: check the entry lines in a byte range."""
    with open(path, "rb") as stream:
        stream.seek(offset)
        data = stream.read(length)
    lines = data.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    return check_lines(lines, start, base_url, keys, now)


def _read_lines(stream: IO[bytes], count: int) -> Iterator[bytes]:
    for _ in range(count):
        line = stream.readline()
        if not line:
            return
        yield line[:-1] if line.endswith(b"\n") else line


def _node_keys(document: Any, base_url: str) -> tuple[str, KeyRing]:
    """The node document the audit relies on must at least be one: else it cannot run."""
    if not isinstance(document, dict):
        raise AuditUnavailable("the node document is not a JSON object")
    try:
        check_node_document(document, base_url)
        return base_url, keyring_from_node_document(document)
    except IntegrityError as error:
        raise AuditUnavailable(
            f"the node document of {base_url} is unusable: {error.detail}"
        ) from None


def _fold(
    base_url: str,
    source: str,
    document: Mapping[str, Any],
    sources: Sequence[CheckpointSource],
    now: datetime,
) -> AuditFold:
    try:
        verified, findings = verify_checkpoints(sources, document)
    except UsageError as error:
        raise AuditUnavailable(error.detail) from None
    node = next((c for c in verified if c.source == "node"), None)
    others = [c for c in verified if c.source != "node"]
    return AuditFold(
        base_url=base_url,
        source=source,
        document=document,
        node_checkpoint=node,
        others=others,
        findings=findings,
        now=now,
    )


# --- auditing a live node ------------------------------------------------------------------


async def audit_node(
    url: str,
    *,
    trusted: Sequence[str] = (),
    witnesses: Sequence[str] = (),
    workers: int | None = None,
    progress_factory: Callable[[int], Progress] | None = None,
    now: datetime | None = None,
    pages_in_flight: int = 4,
) -> AuditReport:
    """Audit a node over HTTP: its document, its checkpoint, every feed page, and the
    checkpoints of it that its partners (and ``witnesses``) hold."""
    moment = now or datetime.now(UTC)
    base_url = url.rstrip("/")
    try:
        origin(base_url)
    except IntegrityError as error:
        raise AuditUnavailable(f"{url}: {error.detail}") from None
    async with fetcher(None, timeout_s=60.0) as client:
        try:
            document = await client.get_json(base_url)
            _, keys = _node_keys(document, base_url)
            note = await client.get_text(str(document["checkpoint"]))
        except (FetchError, IntegrityError) as error:
            raise AuditUnavailable(f"cannot read {base_url}: {error.detail}") from None
        partners = await _partners_of(client, base_url)
        sources = [CheckpointSource(note, "node")]
        sources += [CheckpointSource(n, "trusted") for n in trusted]
        sources += await _gossip(client, base_url, [*partners, *witnesses])
        fold = _fold(base_url, base_url, document, sources, moment)
        size = fold.node_checkpoint.size if fold.node_checkpoint else 0
        page_size = int(document.get("pageSize", 100))
        outbox = str(document["outbox"])
        progress = progress_factory(size) if progress_factory else None

        async def fetch(number: int) -> bytes:
            try:
                _, body, _ = await client.get_bytes(f"{outbox}/{number}")
            except FetchError as error:
                raise AuditUnavailable(f"cannot read page {number}: {error.detail}") from None
            return body

        async def chunks() -> AsyncIterator[Chunk]:
            numbers = iter(range(0, (size + page_size - 1) // page_size))
            window: deque[tuple[int, asyncio.Task[bytes]]] = deque()
            try:
                for number in numbers:
                    window.append((number, asyncio.ensure_future(fetch(number))))
                    if len(window) < pages_in_flight:
                        continue
                    got, task = window.popleft()
                    yield _page_chunk(got, await task, size, page_size, base_url, keys, moment)
                while window:
                    got, task = window.popleft()
                    yield _page_chunk(got, await task, size, page_size, base_url, keys, moment)
            finally:
                for _, task in window:
                    task.cancel()

        with worker_pool(_workers(workers)) as executor:
            await _fold_chunks(chunks(), fold, executor, progress)
    return fold.finish()


def _page_chunk(
    number: int,
    raw: bytes,
    size: int,
    page_size: int,
    base_url: str,
    keys: KeyRing,
    now: datetime,
) -> Chunk:
    start = number * page_size
    limit = min(page_size, size - start)
    return check_page_entries, (raw, start, limit, base_url, keys, now)


async def _partners_of(client: Fetcher, base_url: str) -> list[str]:
    """The origins the node follows (its ``/checkpoints``): they are likely to follow it
    back and hold its checkpoints."""
    try:
        body = await client.get_json(f"{base_url}/checkpoints")
    except ExchangeError:
        return []
    items = body.get("checkpoints") if isinstance(body, dict) else None
    if not isinstance(items, list):
        return []
    return [str(i["origin"]) for i in items if isinstance(i, dict) and "origin" in i][:64]


async def _gossip(client: Fetcher, base_url: str, nodes: Sequence[str]) -> list[CheckpointSource]:
    """The checkpoints of ``base_url`` that ``nodes`` verified, from their ``/checkpoints``;
    a node that does not answer is passed over (gossip is extra evidence, not a must)."""
    sources: list[CheckpointSource] = []
    for node in dict.fromkeys(n.rstrip("/") for n in nodes):
        if node == base_url:
            continue
        try:
            body = await client.get_json(f"{node}/checkpoints")
        except ExchangeError as error:
            print(f"exchange audit: no gossip from {node}: {error.detail}", file=sys.stderr)
            continue
        items = body.get("checkpoints") if isinstance(body, dict) else None
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict) or item.get("origin") != base_url:
                continue
            notes = [item.get("note"), *(item.get("evidence") or [])]
            sources += [CheckpointSource(n, f"gossip {node}") for n in notes if isinstance(n, str)]
    return sources
