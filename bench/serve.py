"""Benchmark of feed serving (issue 3): `exchange serve` against the aiohttp ceiling.

Builds a real, signed, verifiable log of 100,000 entries, runs `exchange serve` on it as a
subprocess and measures full feed pages served per second to a load generator in this
process (an aiohttp client over N keep-alive connections asking for random full pages
across the whole log, so the server's page cache holds only part of it). In the same run
it measures a minimal aiohttp app, also a subprocess, that returns one such page as a
fixed bytes body with the same headers: the framework ceiling. It prints both, their
ratio, and the resident memory of `serve` after the run, on this log and on a log of
1,000,000 entries under the same load. Targets: serve at least 70 % of the ceiling, and
under 150 MB RSS at 1,000,000 entries (shared/design/performance.md: only ratios measured
in the same run are comparable; absolute figures drift 20-40 % between runs).

The machine has few cores (2 here) and the load generator shares them with the server, so
each row also shows CPU use: the server's CPU time per page (robust to interference), and
the busy share of the server, the load generator and every other process. When the load
generator is near 100 % the ceiling is the client's limit, not aiohttp's. With --rounds
the two servers alternate and the best round of each counts.

By default every full page is asked for once before the rounds: the steady state of a node
whose feed has been read before, so whatever `serve` keeps (its page files under the home)
is in place and the figures do not depend on earlier runs. The page files are cleared
before that first read, so it builds every full page from the store (its pages per second
are a figure of the store backend). --cold measures without that first read: a node that
has to build the pages it is asked for.

Logs are built with the node's own pure functions (prepare_object, build_entry,
sign_entry) in a process pool, appended through the node's Store.append in batches of
1,000 as Node.publish would (Merkle nodes and a signed checkpoint per batch), then checked:
the checkpoint's signature, its root against every leaf, and a sample of entry proofs.
SQLite logs are cached in --data-dir; the 1,000,000-entry log extends a copy of the
smaller one.

It runs on each store backend (``--backend``, default both: SQLite, then PostgreSQL; see
bench/backends.py) and ends with a table of every figure per backend and the PostgreSQL /
SQLite ratio. On PostgreSQL the logs live in a fresh schema, so they are built in every run:
signing and appending run at about 550 entries/s on 2 cores, so 1,000,000 entries would take
half an hour. Its logs are therefore smaller (--postgresql-entries, default 100,000 like
SQLite's; --postgresql-big-entries, default 200,000), and the big one extends the small
one in place once that has been measured. The output names the sizes of each backend.
In the rounds `serve` answers from its page files whatever the backend; the first read of
every full page builds them from the store, so its rate is where the backends differ most.

    python bench/serve.py --data-dir /tmp/exchange-bench   # first run builds (minutes)
    python bench/serve.py --quick    # SQLite 20,000 / 100,000, PostgreSQL 20,000 / 50,000
    python bench/serve.py --skip-million --seconds 5 --connections 32
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.backends import (
    SQLITE,
    Backend,
    Figure,
    add_options,
    child_environ,
    chosen,
    comparison,
)
from exchange import feed
from exchange.checkpoint import NoteVerifier, open_note, parse_checkpoint
from exchange.config import Settings, load_settings
from exchange.entries import ObjectRecord, SignedEntry, build_entry, prepare_object, sign_entry
from exchange.keys import KeyPair, PublicKey
from exchange.merkle import CompactRange, leaf_hash
from exchange.node import Node, open_node
from exchange.operator import init_node
from exchange.proof import verify_document
from exchange.resources import data_dir
from exchange.schema import check
from exchange.store.base import Append, Transaction

HOST = "127.0.0.1"
#: Ports for the servers: below Linux's ephemeral range, so client sockets never take them.
PORTS = range(21000, 22000)
BATCH = 1000  # objects per append, as one `publish` of 1,000 objects
MARKER = "bench-log.json"  # written into a node's home once its log is built and checked
IMMUTABLE = "public, max-age=31536000, immutable"
MB = 1_000_000
#: Where `serve` keeps the full pages it has built (exchange.http.server.create_app).
PAGE_FILES = "pages"


# --- building a log ----------------------------------------------------------------------


def templates() -> list[dict[str, Any]]:
    """The shipped example objects (cases, events, best practices) without their ids."""
    found: list[dict[str, Any]] = []
    for item in sorted(data_dir("examples").iterdir(), key=lambda p: p.name):
        if item.name.endswith(".json"):
            document = json.loads(item.read_text(encoding="utf-8"))
            document.pop("id", None)
            found.append(document)
    return found


def draft_for(seq: int, base_url: str, pool: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Object number ``seq``: an example with its own id and a numbered name."""
    template = pool[seq % len(pool)]
    draft = dict(template)
    draft["id"] = f"{base_url}/objects/bench-{seq}"
    draft["nameMap"] = {lang: f"{name} #{seq}" for lang, name in template["nameMap"].items()}
    return draft


_WORKER: dict[str, Any] = {}


def _worker_init(home: str) -> None:
    settings = load_settings(Path(home), {})
    key, _ = Node.load_key(settings)
    _WORKER.update(settings=settings, key=key, templates=templates())


def _sign_chunk(start: int, count: int) -> list[tuple[int, str, str, bytes]]:
    """Prepare, build and sign entries ``[start, start + count)`` as Node.publish does."""
    settings: Settings = _WORKER["settings"]
    key: KeyPair = _WORKER["key"]
    now = datetime.now(UTC)
    rows = []
    for seq in range(start, start + count):
        obj = prepare_object(
            draft_for(seq, settings.base_url, _WORKER["templates"]),
            base_url=settings.base_url,
            current=None,
            now=now,
            personal_data=settings.personal_data,
        )
        entry = build_entry(seq, "Create", obj, settings.base_url, now)
        moment = datetime.fromisoformat(entry["published"].replace("Z", "+00:00"))
        signed = sign_entry(entry, key, moment, settings.max_entry_bytes)
        rows.append((signed.seq, signed.object_id, str(obj["type"]), signed.leaf))
    return rows


async def _append_rows(node: Node, rows: list[tuple[int, str, str, bytes]]) -> None:
    entries, records = [], []
    for seq, object_id, type_name, leaf in rows:
        document = orjson.loads(leaf)
        entries.append(SignedEntry(seq, object_id, document, leaf))
        records.append(
            ObjectRecord(object_id, node.base_url, type_name, 1, False, seq, document["object"])
        )
    first = rows[0][0]

    def plan(transaction: Transaction) -> Append:
        if transaction.size != first:
            raise RuntimeError(f"log size {transaction.size}, expected {first}")
        return Append(entries, records)

    await node.store.append(plan, node.sign_checkpoint)


async def extend_log(settings: Settings, target: int, workers: int) -> int:
    """Append entries until the log holds ``target``; returns how many were appended."""
    loop = asyncio.get_running_loop()
    context = multiprocessing.get_context("spawn")  # no fork next to the store's thread
    async with open_node(settings) as node:
        size = start = await node.store.log_size()
        if size > target:
            raise SystemExit(f"{settings.home}: log has {size} entries, more than {target}")
        with ProcessPoolExecutor(
            workers, mp_context=context, initializer=_worker_init, initargs=(str(settings.home),)
        ) as pool:
            pending: deque[asyncio.Future[list[tuple[int, str, str, bytes]]]] = deque()
            next_seq, started, reported = size, time.perf_counter(), size
            while next_seq < target or pending:
                while next_seq < target and len(pending) < 2 * workers + 2:
                    count = min(BATCH, target - next_seq)
                    pending.append(loop.run_in_executor(pool, _sign_chunk, next_seq, count))
                    next_seq += count
                rows = await pending.popleft()
                await _append_rows(node, rows)
                size = rows[-1][0] + 1
                if size - reported >= max(target // 10, BATCH) or size == target:
                    rate = (size - start) / (time.perf_counter() - started)
                    print(f"  {size:>10,} / {target:,} entries, {rate:,.0f}/s", flush=True)
                    reported = size
        return size - start


async def verify_log(settings: Settings, expected: int, sample: int = 200) -> str:
    """Check the log is real: checkpoint signature, root over every leaf, entry proofs."""
    async with open_node(settings) as node:
        latest = await node.store.latest_checkpoint()
        if latest is None or latest[0] != expected:
            raise SystemExit(f"{settings.home}: checkpoint {latest and latest[0]} != {expected}")
        verifier = NoteVerifier(settings.origin, PublicKey(node.key.id, node.key.public_raw))
        text, _ = open_note(latest[1], [verifier])
        checkpoint = parse_checkpoint(text, settings.origin)
        tree, step = CompactRange(), 5000
        for start in range(0, expected, step):
            for leaf in await node.store.entries(start, min(start + step, expected)):
                tree.append_hash(leaf_hash(leaf))
        if tree.size != expected or tree.root() != checkpoint.root_hash:
            raise SystemExit(f"{settings.home}: the leaves do not match the signed root")

        def resolve(method: str) -> PublicKey:
            if method != node.key.id:
                raise SystemExit(f"entry signed by unknown key {method}")
            return node.key.public

        now = datetime.now(UTC)
        rng = random.Random(expected)
        for seq in sorted(rng.sample(range(expected), min(sample, expected))):
            leaf = (await node.store.entries(seq, seq + 1))[0]
            document = orjson.loads(leaf)
            check(document, "entry")
            verify_document(document, resolve, now, max_clock_skew_s=86400 * 365)
            if document["seq"] != seq:
                raise SystemExit(f"entry {seq} carries seq {document['seq']}")
        return checkpoint.root_hash.hex()


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
        return True


def free_port(avoid: int = 0) -> int:
    for port in PORTS:
        if port != avoid and port_free(port):
            return port
    raise SystemExit(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


@dataclass(frozen=True, slots=True)
class Log:
    settings: Settings
    entries: int
    built_s: float
    appended: int  # entries signed and appended in this run
    root: str
    cached: bool = False


async def ensure_log(
    home: Path,
    entries: int,
    workers: int,
    seed: Path | None,
    environ: dict[str, str] | None = None,
) -> Log:
    """The node in ``home`` with a checked log of ``entries``: cached, extended or built.

    A new node starts from a copy of ``seed`` (a smaller log's home) when given: the same
    node, key and base URL, so only the missing entries are signed. Otherwise it is created
    with ``environ`` as what ``init_node`` reads (its store: bench/backends.py).
    """
    marker = home / MARKER
    if marker.exists():
        facts = json.loads(marker.read_text())
        if facts["entries"] == entries:
            built_s = float(facts.get("built_s", 0.0))
            return Log(load_settings(home, {}), entries, built_s, 0, facts["root"], cached=True)
    started = time.perf_counter()
    marker.unlink(missing_ok=True)
    if not (home / "exchange.toml").exists():
        if home.exists():
            shutil.rmtree(home)
        if seed is not None:
            shutil.copytree(seed, home, ignore=shutil.ignore_patterns(MARKER, PAGE_FILES))
        else:
            port = free_port()
            init_node(
                home,
                base_url=f"http://{HOST}:{port}",
                name="bench",
                country="NL",
                environ=environ or {},
            )
    settings = load_settings(home, {})
    print(f"building a log of {entries:,} entries in {home}", flush=True)
    appended = await extend_log(settings, entries, workers)
    root = await verify_log(settings, entries)
    built_s = time.perf_counter() - started
    marker.write_text(json.dumps({"entries": entries, "root": root, "built_s": built_s}))
    return Log(settings, entries, built_s, appended, root)


# --- servers -----------------------------------------------------------------------------


def run_ceiling_server(port: int, body_file: Path) -> None:
    """The framework ceiling: the same aiohttp serving one fixed page, no work per request."""
    body = body_file.read_bytes()
    tag = feed.etag(body)

    async def page(request: web.Request) -> web.Response:
        headers = {"ETag": tag, "Cache-Control": IMMUTABLE}
        return web.Response(body=body, content_type=feed.ACTIVITY_JSON, headers=headers)

    app = web.Application()
    app.add_routes([web.get("/feed/{number}", page)])
    web.run_app(app, host=HOST, port=port, print=None, handle_signals=True)


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid


def start_server(name: str, command: list[str], base_url: str, log_path: Path) -> Server:
    with log_path.open("wb") as log:
        # A node's store is the one its exchange.toml names, whatever this process's
        # EXCHANGE_DATABASE_* say.
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=child_environ()
        )
    return Server(name, process, base_url, log_path)


async def wait_ready(server: Server, path: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                tail = server.log_path.read_text(errors="replace")[-2000:]
                raise SystemExit(f"{server.name} exited with {server.process.returncode}:\n{tail}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(server.base_url + path) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise SystemExit(f"{server.name} did not answer within {timeout_s:.0f} s")


def stop_server(server: Server) -> None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


@contextlib.asynccontextmanager
async def serving(server: Server, ready_path: str) -> AsyncIterator[Server]:
    try:
        await wait_ready(server, ready_path)
        yield server
    finally:
        stop_server(server)


def serve_command(settings: Settings) -> list[str]:
    script = Path(sys.executable).with_name("exchange")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "exchange.cli"]
    return [*command, "serve", "--home", str(settings.home)]


# --- measuring ---------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """The process ids of a process's children, grandchildren and so on."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                found += [int(child), *descendants(int(child))]
    return found


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, and the VmRSS of its descendants, in kB."""
    found = {"children": 0, "children_kb": 0}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0])
    for child in descendants(pid):
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{child}/status").read_text()
            found["children"] += 1
            found["children_kb"] += int(status.split("VmRSS:", 1)[1].split()[0])
    return found


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process and all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_seconds() -> tuple[float, float]:
    """CPU seconds all cores spent busy, and waiting on disk, since boot."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    per_second = os.sysconf("SC_CLK_TCK")
    return (sum(ticks[:8]) - ticks[3] - ticks[4]) / per_second, ticks[4] / per_second


@dataclass(frozen=True, slots=True)
class Load:
    requests: int
    bytes: int
    failures: int
    seconds: float
    client_cpu_s: float
    server_cpu_s: float
    other_cpu_s: float  # every other process on the machine, during the run
    iowait_s: float  # cores idle while waiting on disk (a cold OS page cache)

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    @property
    def mb_per_second(self) -> float:
        return self.bytes / self.seconds / MB


async def generate_load(
    server: Server, pages: int, seconds: float, connections: int, warmup_s: float
) -> Load:
    """Request random full pages ``/feed/{k}``, ``k < pages``, over ``connections``."""
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=False
    ) as session:

        async def worker(number: int, deadline: float, tally: list[int]) -> None:
            rng = random.Random(number * 7919 + pages)
            while loop.time() < deadline:
                url = f"{server.base_url}/feed/{rng.randrange(pages)}"
                received = 0
                async with session.get(url) as response:
                    # count the body as it streams in: joining it would cost the client
                    # a 600 kB copy per page, CPU that the servers need (2 cores)
                    async for chunk in response.content.iter_any():
                        received += len(chunk)
                    ok = response.status == 200
                tally[0 if ok else 2] += 1
                tally[1] += received if ok else 0

        async def phase(duration: float) -> list[int]:
            tally = [0, 0, 0]  # responses 200, their bytes, other responses
            deadline = loop.time() + duration
            await asyncio.gather(*(worker(i, deadline, tally) for i in range(connections)))
            return tally

        await phase(warmup_s)
        server_cpu, client_cpu = cpu_seconds(server.pid), time.process_time()
        (busy, iowait), started = machine_seconds(), time.perf_counter()
        ok, size, failed = await phase(seconds)
        elapsed = time.perf_counter() - started
        client_cpu = time.process_time() - client_cpu
        server_cpu = cpu_seconds(server.pid) - server_cpu
        busy_after, iowait_after = machine_seconds()
        other = max(busy_after - busy - client_cpu - server_cpu, 0.0)
        return Load(ok, size, failed, elapsed, client_cpu, server_cpu, other, iowait_after - iowait)


async def sample_page(server: Server, number: int, page_size: int) -> bytes:
    """Fetch one full page and check it is what protocol.md §4 says it is."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{server.base_url}/feed/{number}") as response,
    ):
        body = await response.read()
        headers = response.headers
    document = json.loads(body)
    seqs = [item["seq"] for item in document.get("orderedItems", [])]
    first = number * page_size
    if (
        response.status != 200
        or headers.get("Cache-Control") != IMMUTABLE
        or not headers.get("ETag", "").startswith('"')  # a strong ETag
        or document.get("startIndex") != first
        or seqs != list(range(first, first + page_size))
    ):
        raise SystemExit(f"page {number} is not a full feed page: {body[:200]!r}")
    return body


async def visit_all_pages(server: Server, pages: int, connections: int) -> float:
    """Ask for every full page once (in order, over ``connections``): the steady state of a
    node that has served its whole feed before, whatever it keeps."""
    numbers = iter(range(pages))
    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:

        async def worker() -> None:
            for number in numbers:
                async with session.get(f"{server.base_url}/feed/{number}") as response:
                    await response.read()
                    if response.status != 200:
                        raise SystemExit(f"page {number}: HTTP {response.status}")

        await asyncio.gather(*(worker() for _ in range(connections)))
    return time.perf_counter() - started


def describe_files(folder: Path) -> str:
    if not folder.is_dir():
        return f"no page files ({folder} does not exist)"
    files = [path.stat().st_size for path in folder.iterdir() if path.is_file()]
    return f"{len(files):,} page files, {sum(files) / MB:,.0f} MB, in {folder}"


@dataclass(frozen=True, slots=True)
class ServeRun:
    log: Log
    loads: list[Load]  # one per round
    memory_idle: dict[str, int]
    memory_after: dict[str, int]
    warm_s: float | None  # asking for every full page once before the rounds (not --cold)

    @property
    def best(self) -> Load:
        return max(self.loads, key=lambda load: load.per_second)


def start_serve(log: Log, work: Path) -> Server:
    settings = log.settings
    if not port_free(settings.port):
        raise SystemExit(
            f"port {settings.port} (in the cached log's base URL {settings.base_url}) is taken; "
            f"free it or remove {settings.home}"
        )
    name = f"serve, {log.entries:,} entries"
    log_path = work / f"serve-{log.entries}.log"
    return start_server(name, serve_command(settings), settings.base_url, log_path)


def start_ceiling(body: bytes, work: Path) -> Server:
    body_file = work / "ceiling-page.json"
    body_file.write_bytes(body)
    port = free_port()
    script = str(Path(__file__).resolve())
    command = [
        sys.executable,
        script,
        "--ceiling-server",
        str(port),
        "--ceiling-body",
        str(body_file),
    ]
    return start_server(
        "ceiling: aiohttp, fixed body", command, f"http://{HOST}:{port}", work / "ceiling.log"
    )


async def run_rounds(
    log: Log, args: argparse.Namespace, work: Path, with_ceiling: bool
) -> tuple[ServeRun, list[Load], int]:
    """Load `serve` (and the ceiling, alternating with it) for ``args.rounds`` rounds."""
    settings, cores = log.settings, os.cpu_count() or 1
    pages = feed.last_page(log.entries, settings.page_size)  # the full pages: 0 .. pages-1
    ceilings: list[Load] = []
    page_files = settings.home / PAGE_FILES
    shutil.rmtree(page_files, ignore_errors=True)
    serve = start_serve(log, work)
    seconds = None
    async with serving(serve, "/feed"):
        body = await sample_page(serve, pages // 2, settings.page_size)
        idle = memory_kb(serve.pid)
        if args.cold:
            print(f"{serve.name}: cold, {page_files} cleared before the start", flush=True)
        else:
            seconds = await visit_all_pages(serve, pages, args.connections)
            print(
                f"{serve.name}: warm, every full page asked for once before the rounds"
                f" ({pages:,} pages built from the store in {seconds:,.1f} s,"
                f" {pages / seconds:,.0f}/s); {describe_files(page_files)}",
                flush=True,
            )
        async with contextlib.AsyncExitStack() as stack:
            ceiling = None
            if with_ceiling:
                ceiling = await stack.enter_async_context(
                    serving(start_ceiling(body, work), "/feed/0")
                )
            loads = []
            for number in range(1, args.rounds + 1):
                loads.append(
                    await generate_load(serve, pages, args.seconds, args.connections, args.warmup)
                )
                if args.rounds > 1:
                    print(load_row(f"{number}: {serve.name}", loads[-1], cores), flush=True)
                if ceiling is not None:
                    ceilings.append(
                        await generate_load(
                            ceiling, pages, args.seconds, args.connections, args.warmup
                        )
                    )
                    if args.rounds > 1:
                        print(load_row(f"{number}: {ceiling.name}", ceilings[-1], cores))
        after = memory_kb(serve.pid)
    return ServeRun(log, loads, idle, after, seconds), ceilings, len(body)


# --- report ------------------------------------------------------------------------------


def mb(kb: int) -> str:
    return f"{kb * 1024 / MB:.1f} MB"


def load_row(label: str, load: Load, cores: int) -> str:
    failures = f", {load.failures} FAILED" if load.failures else ""
    others, iowait = load.other_cpu_s / load.seconds, load.iowait_s / load.seconds
    warning = "  (other processes were busy: figures disturbed)" if others > 0.15 else ""
    if iowait > 0.05:
        warning += f"  (iowait {iowait:.0%}: the log is not all in the OS page cache yet)"
    return (
        f"{label:<36} {load.per_second:>7,.0f} req/s {load.mb_per_second:>6,.0f} MB/s"
        f" | server {load.server_cpu_s / load.requests * 1e6:>5,.0f} µs CPU/page"
        f" | CPU % of {cores * 100}: server {load.server_cpu_s / load.seconds:4.0%},"
        f" load generator {load.client_cpu_s / load.seconds:4.0%}, others {others:4.0%}"
        f"{failures}{warning}"
    )


def describe_log(log: Log) -> str:
    if log.cached:
        how = f"cached (its last build took {log.built_s:,.1f} s)"
    else:
        rate = log.appended / log.built_s
        how = f"built in {log.built_s:,.1f} s ({log.appended:,} signed, {rate:,.0f} entries/s"
        how += " including the check)"
    return f"log {log.entries:>9,} entries: {how}; root {log.root[:16]}…  {log.settings.home}"


def describe_memory(run: ServeRun, target_mb: float | None) -> str:
    verdict = ""
    if target_mb is not None:
        over = run.memory_after["VmHWM"] * 1024 / MB >= target_mb
        verdict = f"  ({'ABOVE' if over else 'meets'} the target of {target_mb:g} MB)"
    after = run.memory_after
    children = "no child processes"
    if after["children"]:
        children = f"its {after['children']} child processes {mb(after['children_kb'])} more"
    return (
        f"{'serve RSS, ' + format(run.log.entries, ',') + ' entries':<36}"
        f" idle {mb(run.memory_idle['VmRSS'])}, after the run {mb(after['VmRSS'])}"
        f" (VmRSS), peak {mb(after['VmHWM'])} (VmHWM); {children}{verdict}"
    )


@dataclass(frozen=True, slots=True)
class BackendRun:
    """What one backend's part of the run measured."""

    small: ServeRun
    ceiling: Load
    big: ServeRun | None


async def bench(args: argparse.Namespace) -> None:
    cores = os.cpu_count() or 1
    data = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="exchange-"))
    data.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="exchange-bench-run-"))
    try:
        print(f"exchange feed-serving benchmark (bench/serve.py){' --quick' if args.quick else ''}")
        print(
            f"python {platform.python_version()}, aiohttp {aiohttp.__version__}, {cores} cores;"
            f" the load generator (an aiohttp client in this process) and the server under"
            f" test share them"
        )
        with chosen(args) as backends:
            runs = {}
            for backend in backends:
                runs[backend.label] = await bench_backend(backend, args, data, work)
            if len(runs) > 1:
                print(f"\n== measured in this run; {log_sizes(runs)}")
                print(summary(runs))
        if not args.data_dir:
            print("(logs were built in a temporary folder; give --data-dir to keep them)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not args.data_dir:
            shutil.rmtree(data, ignore_errors=True)


def sizes_of(backend: Backend, args: argparse.Namespace) -> tuple[int, int | None]:
    """The entries of the backend's main log and of its big one (None: skipped)."""
    if backend.name == SQLITE:
        small, big = args.entries, args.big_entries
    else:
        small, big = args.postgresql_entries, args.postgresql_big_entries
    return small, None if args.skip_million else big


async def bench_backend(
    backend: Backend, args: argparse.Namespace, data: Path, work: Path
) -> BackendRun:
    cores = os.cpu_count() or 1
    entries, big_entries = sizes_of(backend, args)
    sizes = f"{entries:,}" + ("" if big_entries is None else f" and {big_entries:,}")
    print(f"\n== {backend.label}: logs of {sizes} entries", flush=True)
    if backend.name == SQLITE:
        small = await ensure_log(data / f"log-{entries}", entries, cores, None)
    else:  # a fresh schema: built in this run, in a home of the run
        home = work / f"log-{backend.name}"
        small = await ensure_log(home, entries, cores, None, backend.environ("log"))
    print(describe_log(small), flush=True)

    settings = small.settings
    pages = feed.last_page(small.entries, settings.page_size)
    print(
        f"load: {args.connections} connections asking for random full pages"
        f" /feed/{{0..last-1}}; per server and round {args.warmup:g} s warm-up,"
        f" then {args.seconds:g} s measured; {args.rounds} round(s), serve and ceiling"
        f" alternating, the best round of each counts\n",
        flush=True,
    )
    run, ceilings, page_bytes = await run_rounds(small, args, work, with_ceiling=True)
    ceiling = max(ceilings, key=lambda load: load.per_second)
    ratio = run.best.per_second / ceiling.per_second
    cached_pages = settings.page_cache_bytes // page_bytes
    verdict = "meets" if ratio >= 0.70 else "BELOW"
    if args.rounds > 1:
        print()
    print(load_row(f"serve, {small.entries:,} entries", run.best, cores))
    print(load_row("ceiling: aiohttp, fixed body", ceiling, cores))
    print(f"{'ratio serve / ceiling':<36} {ratio:>7.1%}   ({verdict} the target of 70 %)")
    print(
        f"{'page':<36} {page_bytes:,} bytes ({settings.page_size} entries); page cache"
        f" budget {settings.page_cache_bytes / 2**20:g} MiB (settings.page_cache_bytes)"
        f" = about {cached_pages:,} pages, {min(cached_pages / pages, 1):.1%} of the"
        f" {pages:,} full pages"
    )
    print(describe_memory(run, None), flush=True)
    if big_entries is None:
        return BackendRun(run, ceiling, None)

    print()
    if backend.name == SQLITE:
        big_home = data / f"log-{big_entries}"
        big = await ensure_log(big_home, big_entries, cores, small.settings.home)
    else:  # the measured main log, extended in place
        big = await ensure_log(small.settings.home, big_entries, cores, None)
    print(describe_log(big), flush=True)
    big_run, _, _ = await run_rounds(big, args, work, with_ceiling=False)
    big_pages = feed.last_page(big.entries, big.settings.page_size)
    big_ratio = big_run.best.per_second / ceiling.per_second
    if args.rounds > 1:
        print()
    print(load_row(f"serve, {big.entries:,} entries", big_run.best, cores))
    print(
        f"{'ratio serve / ceiling':<36} {big_ratio:>7.1%}   (the ceiling above;"
        f" {big_pages:,} full pages, cache {min(cached_pages / big_pages, 1):.1%})"
    )
    print(describe_memory(big_run, 150), flush=True)
    return BackendRun(run, ceiling, big_run)


def log_sizes(runs: dict[str, BackendRun]) -> str:
    def entries(run: BackendRun) -> str:
        big = "" if run.big is None else f" / {run.big.log.entries:,}"
        return f"{run.small.log.entries:,}{big}"

    return "log sizes (main / big): " + ", ".join(
        f"{label} {entries(run)}" for label, run in runs.items()
    )


def summary(runs: dict[str, BackendRun]) -> str:
    """Each figure per backend, and the PostgreSQL / SQLite ratio."""

    def figure(name: str, unit: str, better: str, value: Any, digits: int = 0) -> Figure:
        values = {label: value(run) for label, run in runs.items()}
        found = {label: float(v) for label, v in values.items() if v is not None}
        return Figure(name, unit, found, better, digits)

    def pages_per_s(serve: ServeRun | None) -> float | None:
        if serve is None or serve.warm_s is None:
            return None
        return feed.last_page(serve.log.entries, serve.log.settings.page_size) / serve.warm_s

    def built_per_s(serve: ServeRun | None) -> float | None:
        if serve is None or not serve.log.appended:
            return None
        return serve.log.appended / serve.log.built_s

    def peak_mb(serve: ServeRun | None) -> float | None:
        return None if serve is None else serve.memory_after["VmHWM"] * 1024 / MB

    def big(value: Any) -> Any:
        return lambda run: None if run.big is None else value(run.big, run.ceiling)

    return comparison(
        [
            figure("serve, main log", "req/s", "higher", lambda r: r.small.best.per_second),
            figure(
                "ceiling: aiohttp, fixed body", "req/s", "higher", lambda r: r.ceiling.per_second
            ),
            figure(
                "serve / ceiling, main log",
                "%",
                "higher",
                lambda r: 100 * r.small.best.per_second / r.ceiling.per_second,
                1,
            ),
            figure(
                "server CPU per page, main log",
                "µs",
                "lower",
                lambda r: r.small.best.server_cpu_s / r.small.best.requests * 1e6,
            ),
            figure(
                "first read of every full page, main log",
                "pages/s",
                "higher",
                lambda r: pages_per_s(r.small),
            ),
            figure("serve peak RSS, main log", "MB", "lower", lambda r: peak_mb(r.small), 1),
            figure("serve, big log", "req/s", "higher", big(lambda b, c: b.best.per_second)),
            figure(
                "serve / ceiling, big log",
                "%",
                "higher",
                big(lambda b, c: 100 * b.best.per_second / c.per_second),
                1,
            ),
            figure(
                "first read of every full page, big log",
                "pages/s",
                "higher",
                lambda r: pages_per_s(r.big),
            ),
            figure("serve peak RSS, big log", "MB", "lower", lambda r: peak_mb(r.big), 1),
            figure(
                "log build, main log (this run)",
                "entries/s",
                "higher",
                lambda r: built_per_s(r.small),
            ),
            figure(
                "log build, big log (this run)",
                "entries/s",
                "higher",
                lambda r: built_per_s(r.big),
            ),
        ]
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join((__doc__ or "").splitlines()[-4:]),
    )
    parser.add_argument(
        "--quick", action="store_true", help="20,000 / 100,000 entries, 2 s runs (CI smoke)"
    )
    parser.add_argument("--seconds", type=float, help="measured seconds per server (10)")
    parser.add_argument("--warmup", type=float, help="unmeasured seconds before each run (2)")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections")
    parser.add_argument("--rounds", type=int, help="rounds per server, best counts (2)")
    parser.add_argument("--data-dir", help="where built logs are cached (default: a temp dir)")
    parser.add_argument("--entries", type=int, help="entries in the main log (100,000)")
    parser.add_argument("--big-entries", type=int, help="entries in the big log (1,000,000)")
    parser.add_argument(
        "--postgresql-entries", type=int, help="entries in PostgreSQL's main log (100,000)"
    )
    parser.add_argument(
        "--postgresql-big-entries",
        type=int,
        help="entries in PostgreSQL's big log (200,000; built in every run)",
    )
    parser.add_argument("--skip-million", action="store_true", help="skip the big log")
    parser.add_argument(
        "--cold",
        action="store_true",
        help="clear the page files serve keeps under its home before each log's run, instead"
        " of asking for every full page once before measuring (the default: steady state)",
    )
    add_options(parser)
    parser.add_argument("--ceiling-server", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ceiling-body", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quick = args.quick
    for name, full, short in (
        ("seconds", 10.0, 2.0),
        ("rounds", 2, 1),
        ("warmup", 2.0, 0.5),
        ("entries", 100_000, 20_000),
        ("big_entries", 1_000_000, 100_000),
        ("postgresql_entries", 100_000, 20_000),
        ("postgresql_big_entries", 200_000, 50_000),
    ):
        if getattr(args, name) is None:
            setattr(args, name, short if quick else full)
    if args.big_entries <= args.entries:
        parser.error("--big-entries must be larger than --entries")
    if args.postgresql_big_entries <= args.postgresql_entries:
        parser.error("--postgresql-big-entries must be larger than --postgresql-entries")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.ceiling_server is not None:
        run_ceiling_server(args.ceiling_server, Path(args.ceiling_body))
        return
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
