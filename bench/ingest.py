"""Benchmark of federation catch-up: a fresh subscriber pulls a publisher's whole log.

Both nodes run on loopback (real HTTP), the subscriber in the measuring process. Prints,
measured in the same run:
- end-to-end catch-up (HTTP, parse, verify, validate, merge, store) in entries per second;
- the ceiling: raw single-core Ed25519 verifies per second of a 3 KB message, the faster of
  cryptography (OpenSSL) and PyNaCl (libsodium);
- their ratio, the subscriber's peak RSS, and the median push latency (publish on A to
  merged on B) over a series of single-entry publishes.

It runs the same workload on each store backend (``--backend``, default both: SQLite, then
PostgreSQL, publisher and subscriber on the same backend) and ends with a table of every
figure per backend and the PostgreSQL / SQLite ratio (bench/backends.py). Each backend is
measured in a process of its own (so each peak RSS is that backend's subscriber alone). The
SQLite publisher's log is built once and kept in --data-dir; on PostgreSQL each run builds
it in a fresh schema, dropped at the end, so its log is smaller by default (50,000
entries, --postgresql-entries): the figures are per entry, and the output names the sizes.

    python bench/ingest.py                  # SQLite 100,000 entries, PostgreSQL 50,000
    python bench/ingest.py --quick          # 5,000 entries on each: a smoke run, as CI runs it
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import nacl.signing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.backends import (
    POSTGRESQL,
    SQLITE,
    Backend,
    Figure,
    add_options,
    child_environ,
    chosen,
    comparison,
)
from exchange.federation import fetch_node_document, partner_from_document
from exchange.node import Node, open_node
from tests.nodes import RunningNode

#: The default log size on PostgreSQL: its log is built in every run (about 5 min for
#: 100,000 entries on 2 shared cores, then as long again to catch up), so that a full run
#: of both backends stays under 15 minutes.
POSTGRESQL_ENTRIES = 50_000


def entry_draft(number: int) -> dict[str, Any]:
    """A realistic ~3 KB Event: multilingual text, venue, organiser, roles."""
    text = (
        "Een debatavond over samenwerking tussen overheden over grenzen heen, met "
        "praktijkvoorbeelden uit gemeenten, provincies en het Rijk. "
    ) * 6
    return {
        "type": "Event",
        "nameMap": {"nl": f"Reuring!Café #{number}", "en": f"Reuring!Café #{number}"},
        "summaryMap": {"nl": text[:600], "en": text[:600]},
        "contentMap": {"nl": text, "en": text},
        "startTime": "2026-11-21T17:00:00+01:00",
        "location": {
            "type": "Place",
            "nameMap": {"nl": "De Glazen Zaal"},
            "address": {"type": "Address", "postName": "Den Haag", "adminUnitL1": "NL"},
        },
        "organizer": [
            {"type": "Organization", "nameMap": {"nl": "Vereniging voor OverheidsManagement"}}
        ],
        "inLanguage": ["nl"],
    }


def verify_ceiling(seconds: float) -> tuple[float, str]:
    message = b"x" * 3000
    results = {}
    private = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    public, signature = private.public_key(), private.sign(message)
    results["cryptography"] = _rate(lambda: public.verify(signature, message), seconds)
    key = nacl.signing.SigningKey(bytes(range(32)))
    signed = key.sign(message)
    verify = key.verify_key.verify
    results["PyNaCl"] = _rate(lambda: verify(signed), seconds)
    name = max(results, key=lambda k: results[k])
    return results[name], name


def _rate(action: Any, seconds: float) -> float:
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(100):
            action()
        count += 100
    return count / (time.perf_counter() - started)


async def build(publisher: Node, total: int) -> float:
    started = time.perf_counter()
    size = await publisher.store.log_size()
    batch = 2000
    while size < total:
        count = min(batch, total - size)
        await publisher.publish([entry_draft(size + i) for i in range(count)])
        size += count
    return time.perf_counter() - started


async def connect(subscriber: RunningNode, publisher: RunningNode) -> None:
    from datetime import UTC, datetime

    document = await fetch_node_document(subscriber.federation.fetcher, publisher.base_url)
    partner = partner_from_document(document, datetime.now(UTC))
    await subscriber.node.store.put_partner(replace(partner, following="accepted"))


async def push_latency(publisher: RunningNode, subscriber: RunningNode, samples: int) -> float:
    # The subscriber follows for real: the publisher pushes every append.
    publisher_document = await fetch_node_document(
        publisher.federation.fetcher, subscriber.base_url
    )
    from datetime import UTC, datetime

    await publisher.node.store.put_partner(
        partner_from_document(publisher_document, datetime.now(UTC))
    )
    await subscriber.federation.follow(publisher.base_url)
    latencies = []
    for number in range(samples):
        started = time.perf_counter()
        (outcome,) = await publisher.node.publish([entry_draft(10_000_000 + number)])
        while await subscriber.node.store.get_object(outcome.id) is None:
            await asyncio.sleep(0.002)
        latencies.append(time.perf_counter() - started)
    return statistics.median(latencies)


@dataclass(frozen=True, slots=True)
class Measured:
    """What the measuring process of one backend found."""

    entries: int
    catch_up_per_s: float
    ceiling_per_s: float
    peak_rss_mb: float
    worker_rss_mb: float
    push_latency_ms: float


async def prepare(backend: Backend, home: Path, total: int) -> float | None:
    """Build (or extend) the publisher's log of ``total`` entries in ``home``; returns the
    entries appended per second, None when an earlier run built it all."""
    publisher = _reopen(home) if (home / "exchange.toml").exists() else None
    publisher = publisher or RunningNode(
        home, "Publisher", "NL", environ=backend.environ("publisher")
    )
    # Published through the node alone: a started node would also build its RDF view.
    async with open_node(publisher.settings) as node:
        before = await node.store.log_size()
        built = await build(node, total)
        size = await node.store.log_size()
        entry_bytes = len((await node.store.entries(0, 1))[0])
    print(f"publisher: {size:,} entries of {entry_bytes:,} bytes (built in {built:.1f} s)")
    return (size - before) / built if size > before else None


async def measure(
    home: Path, subscriber_environ: dict[str, str], ceiling_s: float, samples: int, workers: int
) -> Measured:
    """Catch-up, ceiling, memory and push latency against the publisher built in ``home``.
    Runs in a process of its own per backend, so that the peak RSS is the subscriber's."""
    publisher = _reopen(home)
    size = await _log_size(publisher)
    with tempfile.TemporaryDirectory() as scratch:
        subscriber = RunningNode(
            Path(scratch) / "subscriber",
            "Subscriber",
            "BE",
            environ=subscriber_environ,
            verify_workers=workers,
        )
        await subscriber.start()
        # The publisher serves from its own process, as a partner's node would.
        serving = subprocess.Popen(
            [str(Path(sys.executable).with_name("exchange")), "serve", "--home", str(home)],
            env=child_environ(EXCHANGE_VERIFY_WORKERS="0"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            await _wait_up(publisher.base_url)
            await connect(subscriber, publisher)
            started = time.perf_counter()
            report = await subscriber.federation.sync(publisher.base_url)
            elapsed = time.perf_counter() - started
            worker_rss = _children_peak_rss_mb(exclude=serving.pid)
        finally:
            serving.send_signal(signal.SIGTERM)
            serving.wait(timeout=30)
        if report.error or report.merged_to != size:
            raise SystemExit(f"catch-up failed: {report}")
        rate = size / elapsed
        ceiling, library = verify_ceiling(ceiling_s)
        print(
            f"catch-up: {size:,} entries in {elapsed:.1f} s = {rate:,.0f} entries/s "
            f"({workers} verify processes; publisher serving from its own process; 2 cores)"
        )
        print(f"ceiling: {ceiling:,.0f} Ed25519 verifies/s of a 3 KB message, one core ({library})")
        print(f"ratio: {rate / ceiling:.0%} of the ceiling (target: at least 50%)")
        peak_rss = _peak_rss_mb()
        print(
            f"subscriber peak RSS: {peak_rss:.0f} MB in its main process, "
            f"{worker_rss:.0f} MB in each verify process at most (target: under 200 MB)"
        )
        await publisher.start()
        latency = await push_latency(publisher, subscriber, samples)
        print(
            f"push latency, publish on A to merged on B, median of {samples}: "
            f"{latency * 1000:.0f} ms (target: under 1 s)",
            flush=True,
        )
        await subscriber.stop()
        await publisher.stop()
    return Measured(size, rate, ceiling, peak_rss, worker_rss, latency * 1000)


async def _log_size(node: RunningNode) -> int:
    """The log size, read from the store (starting the node would build its RDF view)."""
    async with open_node(node.settings) as opened:
        return int(await opened.store.log_size())


def measure_apart(
    backend: Backend, home: Path, options: argparse.Namespace, result: Path
) -> Measured:
    """Run :func:`measure` for ``backend`` in a new process of this script."""
    command = [sys.executable, str(Path(__file__).resolve()), "--measure", str(home)]
    command += ["--result", str(result), "--workers", str(options.workers)]
    command += ["--backend", backend.name, "--database-url", options.database_url]
    if backend.database_url:
        command += ["--subscriber-schema", backend.schema("subscriber")]
    if options.quick:
        command.append("--quick")
    subprocess.run(command, check=True)
    return Measured(**json.loads(result.read_text()))


def summary(results: dict[str, tuple[Measured, float | None]]) -> str:
    def figure(name: str, unit: str, better: str, value: Any, digits: int = 0) -> Figure:
        values = {label: value(*found) for label, found in results.items()}
        return Figure(
            name, unit, {k: v for k, v in values.items() if v is not None}, better, digits
        )

    return comparison(
        [
            figure("catch-up", "entries/s", "higher", lambda m, b: m.catch_up_per_s),
            figure(
                "catch-up / verify ceiling",
                "%",
                "higher",
                lambda m, b: 100 * m.catch_up_per_s / m.ceiling_per_s,
                1,
            ),
            figure("subscriber peak RSS", "MB", "lower", lambda m, b: m.peak_rss_mb),
            figure("verify process peak RSS", "MB", "lower", lambda m, b: m.worker_rss_mb),
            figure("push latency, median", "ms", "lower", lambda m, b: m.push_latency_ms),
            figure("publisher build", "entries/s", "higher", lambda m, b: b),
        ]
    )


async def _wait_up(base_url: str) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            try:
                async with session.get(f"{base_url}/feed") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit(f"{base_url} did not come up")


def _children_peak_rss_mb(exclude: int) -> float:
    """The largest peak RSS (VmHWM) among this process's living children but ``exclude``."""
    peak = 0.0
    for child in Path("/proc").glob("[0-9]*"):
        if child.name == str(exclude):
            continue
        try:
            status = (child / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("PPid", "").strip() == str(os.getpid()) and "VmHWM" in fields:
            peak = max(peak, int(fields["VmHWM"].split()[0]) / 1024)
    return peak


def _reopen(home: Path) -> RunningNode:
    return RunningNode.reopen(home, sync_interval_s=3600.0, delivery_interval_s=0.05)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5,000 entries, short ceiling run")
    parser.add_argument("--entries", type=int, help="log size (default 100,000)")
    parser.add_argument(
        "--postgresql-entries",
        type=int,
        help="log size on PostgreSQL, where it is built in every run (default: --entries,"
        f" at most {POSTGRESQL_ENTRIES:,})",
    )
    parser.add_argument("--data-dir", type=Path, help="where built logs are kept between runs")
    parser.add_argument("--workers", type=int, help="verify processes (default: one per core)")
    add_options(parser)
    # A measuring process (measure_apart): the publisher's home, where to write the figures,
    # the subscriber's schema on PostgreSQL.
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--subscriber-schema", default="", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.workers is None:
        options.workers = os.cpu_count() or 1
    if options.measure is not None:
        ceiling_s, samples = (0.5, 10) if options.quick else (3.0, 50)
        environ = {}
        if options.subscriber_schema:
            environ = {
                "EXCHANGE_DATABASE_URL": options.database_url,
                "EXCHANGE_DATABASE_SCHEMA": options.subscriber_schema,
            }
        measured = asyncio.run(
            measure(options.measure, environ, ceiling_s, samples, options.workers)
        )
        options.result.write_text(json.dumps(asdict(measured)))
        return
    total = options.entries or (5_000 if options.quick else 100_000)
    sizes = {SQLITE: total, POSTGRESQL: min(total, POSTGRESQL_ENTRIES)}
    if options.postgresql_entries:
        sizes[POSTGRESQL] = options.postgresql_entries
    data_dir = options.data_dir or Path(tempfile.gettempdir()) / "exchange-bench-ingest"
    data_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    with chosen(options) as backends, tempfile.TemporaryDirectory() as scratch:
        for backend in backends:
            entries = sizes[backend.name]
            print(f"\n== {backend.label}: {entries:,} entries", flush=True)
            # The SQLite publisher is kept between runs; a PostgreSQL schema is fresh.
            home = data_dir / f"publisher-{entries}"
            if backend.database_url:
                home = Path(scratch) / f"publisher-{backend.name}"
            built = asyncio.run(prepare(backend, home, entries))
            result = Path(scratch) / f"{backend.name}.json"
            results[backend.label] = measure_apart(backend, home, options, result), built
    if len(results) > 1:
        sizes = ", ".join(f"{label} {found[0].entries:,}" for label, found in results.items())
        print(f"\n== measured in this run; entries caught up: {sizes}")
        print(summary(results))


if __name__ == "__main__":
    main()
