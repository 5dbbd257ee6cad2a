"""SPARQL at 100,000 merged objects (issue 6): the Belgian-events query over HTTP.

Fills a node's objects table with N merged objects from six partner nodes (two of them
Belgian; the objects of bench/rdf_store.py, a third of them events spread over two years
around today) and pins the partners, then starts the node's real aiohttp app on a
loopback port and measures:

- the load time: from the start of the app until the RDF view is built from the objects
  table (what every start of a node costs), and the resident memory after it;
- p50 and p95 of ``GET /sparql`` with the acceptance query
  (``exchange.sparql.BELGIAN_EVENTS_NEXT_30_DAYS``), asked one after another by a client
  in the same process; as the ceiling in the same run, the same query evaluated directly
  on the view's store (no HTTP, no serialization);
- the same for a ``GET /checkpoint``, to show what HTTP alone costs here.

Target: p95 under 500 ms at 100,000 objects. bench/query.py runs it after the /objects
latencies, at the same size.

    python bench/sparql.py            # 100,000 objects
    python bench/sparql.py --quick    # 5,000 objects, for CI
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp
from aiohttp.test_utils import TestServer
from rdf_store import ORIGINS, synthetic

from exchange.http.linked_data import LINKED_DATA
from exchange.http.server import create_app
from exchange.operator import init_node
from exchange.partners import Partner
from exchange.sparql import BELGIAN_EVENTS_NEXT_30_DAYS
from exchange.store.sql import put_objects as _put_objects
from exchange.store.sqlite import SQLiteStore


async def fill(database: Path, count: int) -> None:
    store = SQLiteStore(database)
    await store.open()
    try:
        for base_url, country in ORIGINS:
            document = {
                "id": base_url,
                "type": "Service",
                "country": country,
                "nameMap": {"nl": f"Knooppunt {country}"},
            }
            await store.put_partner(Partner(base_url, f"Knooppunt {country}", country, document))
        records = synthetic(count)
        for offset in range(0, count, 1000):
            batch = records[offset : offset + 1000]

            def write(connection, batch=batch):  # type: ignore[no-untyped-def]
                connection.execute("BEGIN")
                _put_objects(connection, batch)
                connection.execute("COMMIT")

            await store._run(write)
    finally:
        await store.close()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def measure(count: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder) / "node"
        port = 18000 + (time.time_ns() // 1000) % 2000
        result = init_node(
            home, base_url=f"http://127.0.0.1:{port}", name="Benchknooppunt", country="NL"
        )
        settings = replace(result.settings, sync_interval_s=3600.0, verify_workers=0)
        started = time.perf_counter()
        await fill(settings.database, count)
        written_s = time.perf_counter() - started
        print(f"{count:,} objects written to the objects table in {written_s:.1f} s")

        server = TestServer(create_app(settings), host="127.0.0.1", port=port)
        started = time.perf_counter()
        await server.start_server()
        linked = server.app[LINKED_DATA]
        while not linked.built:
            await asyncio.sleep(0.05)
        load_s = time.perf_counter() - started
        quads = len(linked.view.store)
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"RDF view built at start: {load_s:.1f} s, {quads:,} quads, peak RSS {rss_mb:.0f} MB")
        try:
            url = f"{settings.base_url}/sparql?{urlencode({'query': BELGIAN_EVENTS_NEXT_30_DAYS})}"
            headers = {"Accept": "application/sparql-results+json"}
            async with aiohttp.ClientSession() as session:
                times, answers = [], 0
                for n in range(rounds + 3):
                    begun = time.perf_counter()
                    async with session.get(url, headers=headers) as response:
                        assert response.status == 200, await response.text()
                        document = await response.json(content_type=None)
                    if n >= 3:  # the first ones warm up
                        times.append(time.perf_counter() - begun)
                    answers = len(document["results"]["bindings"])
                http = []
                for _ in range(rounds):
                    begun = time.perf_counter()
                    async with session.get(f"{settings.base_url}/checkpoint") as response:
                        await response.read()
                    http.append(time.perf_counter() - begun)
            direct = []
            for _ in range(rounds):
                begun = time.perf_counter()
                list(
                    linked.view.store.query(
                        BELGIAN_EVENTS_NEXT_30_DAYS, use_default_graph_as_union=True
                    )
                )
                direct.append(time.perf_counter() - begun)
        finally:
            await server.close()
        p50, p95 = statistics.median(times), percentile(times, 0.95)
        print(
            f"GET /sparql, Belgian events in the next 30 days ({answers} answers, "
            f"{rounds} requests):"
        )
        print(
            f"  p50 {p50 * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms (target p95 < 500 ms: "
            f"{'met' if p95 < 0.5 else 'MISSED'})"
        )
        d50 = statistics.median(direct)
        print(
            f"  ceiling, the query on the store itself: p50 {d50 * 1000:.1f} ms "
            f"(HTTP endpoint / ceiling = {p50 / d50:.2f})"
        )
        print(f"GET /checkpoint: p50 {statistics.median(http) * 1000:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="5,000 objects, 30 requests")
    args = parser.parse_args()
    if args.quick:
        args.objects, args.rounds = 5_000, 30
    asyncio.run(measure(args.objects, args.rounds))


if __name__ == "__main__":
    main()
