"""Benchmark of federation catch-up: a fresh subscriber pulls a publisher's whole log.

Both nodes run on loopback in this process (real HTTP). Prints, measured in the same run:
- end-to-end catch-up (HTTP, parse, verify, validate, merge, store) in entries per second;
- the ceiling: raw single-core Ed25519 verifies per second of a 3 KB message, the faster of
  cryptography (OpenSSL) and PyNaCl (libsodium);
- their ratio, the subscriber's peak RSS, and the median push latency (publish on A to
  merged on B) over a series of single-entry publishes.

    python bench/ingest.py                  # 100,000 entries (builds the log once, cached)
    python bench/ingest.py --quick          # 5,000 entries: a smoke run, as CI runs it
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import nacl.signing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exchange.federation import fetch_node_document, partner_from_document
from tests.nodes import RunningNode


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


async def build(publisher: RunningNode, total: int) -> float:
    started = time.perf_counter()
    size = await publisher.node.store.log_size()
    batch = 2000
    while size < total:
        count = min(batch, total - size)
        await publisher.node.publish([entry_draft(size + i) for i in range(count)])
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


async def run(total: int, data_dir: Path, ceiling_s: float, samples: int, workers: int) -> None:
    home = data_dir / f"publisher-{total}"
    publisher = _reopen(home) if (home / "exchange.toml").exists() else None
    publisher = publisher or RunningNode(home, "Publisher", "NL")
    await publisher.start()
    built = await build(publisher, total)
    size = await publisher.node.store.log_size()
    entry_bytes = len((await publisher.node.store.entries(0, 1))[0])
    await publisher.stop()
    print(f"publisher: {size:,} entries of {entry_bytes:,} bytes (built in {built:.1f} s)")

    with tempfile.TemporaryDirectory() as scratch:
        subscriber = RunningNode(
            Path(scratch) / "subscriber", "Subscriber", "BE", verify_workers=workers
        )
        await subscriber.start()
        # The publisher serves from its own process, as a partner's node would.
        serving = subprocess.Popen(
            [str(Path(sys.executable).with_name("exchange")), "serve", "--home", str(home)],
            env={**os.environ, "EXCHANGE_VERIFY_WORKERS": "0"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            await _wait_up(publisher.base_url)
            await connect(subscriber, publisher)
            started = time.perf_counter()
            report = await subscriber.federation.sync(publisher.base_url)
            elapsed = time.perf_counter() - started
            worker_rss = _children_peak_rss_mb()
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
        print(
            f"subscriber peak RSS: {_peak_rss_mb():.0f} MB in its main process, "
            f"{worker_rss:.0f} MB in each verify process at most (target: under 200 MB)"
        )
        await publisher.start()
        latency = await push_latency(publisher, subscriber, samples)
        print(
            f"push latency, publish on A to merged on B, median of {samples}: "
            f"{latency * 1000:.0f} ms (target: under 1 s)"
        )
        await subscriber.stop()
        await publisher.stop()


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


def _children_peak_rss_mb() -> float:
    """The largest peak RSS (VmHWM) among this process's living children."""
    peak = 0.0
    for child in Path("/proc").glob("[0-9]*"):
        try:
            status = (child / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("PPid", "").strip() == str(os.getpid()) and "VmHWM" in fields:
            peak = max(peak, int(fields["VmHWM"].split()[0]) / 1024)
    return peak


def _reopen(home: Path) -> RunningNode:
    from exchange.config import load_settings

    node = RunningNode.__new__(RunningNode)
    settings = load_settings(home, {})
    node.port = settings.port
    node.base_url = settings.base_url
    node.token = ""
    node.settings = replace(settings, sync_interval_s=3600.0, delivery_interval_s=0.05)
    node.server = None
    return node


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5,000 entries, short ceiling run")
    parser.add_argument("--entries", type=int, help="log size (default 100,000)")
    parser.add_argument("--data-dir", type=Path, help="where built logs are kept between runs")
    parser.add_argument("--workers", type=int, help="verify processes (default: one per core)")
    options = parser.parse_args()
    total = options.entries or (5_000 if options.quick else 100_000)
    data_dir = options.data_dir or Path(tempfile.gettempdir()) / "exchange-bench-ingest"
    data_dir.mkdir(parents=True, exist_ok=True)
    workers = options.workers if options.workers is not None else (os.cpu_count() or 1)
    asyncio.run(
        run(total, data_dir, 0.5 if options.quick else 3.0, 10 if options.quick else 50, workers)
    )


if __name__ == "__main__":
    main()
