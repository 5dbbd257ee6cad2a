"""Benchmark of the query API (issue 6): ``GET B/objects`` latency at 100,000 merged objects.

Builds a node store holding 100,000 objects merged from several partner nodes in several
countries, runs ``exchange serve`` on it as a subprocess, and measures, over real HTTP on
loopback (one keep-alive connection, one request at a time), the latency of representative
``/objects`` queries: type and country, a language, free text, ``updated_since``, a page
deep in the cursor, and a combination. It prints p50 and p95 per query. Target: p95 under
50 ms for each (the default page of 100 items).

The shortcut in building the store (documented, and the only one): the objects are written
through ``SQLiteStore.merge``, the same transaction a real merge uses (objects table, change
numbers, received times, language and FTS5 index rows), in batches of 5,000, but they are
synthetic and unsigned: there are no received entries and no proofs to check. The query
API never reads those; it reads the objects table and its index, which are exactly what a
real merge writes. Bodies are the shipped examples with numbered names, a random subset of
nl/en/fr/de texts, a few words from a Zipf-distributed vocabulary and updated times spread
over two years. Stores are cached in --data-dir by size.

Each measurement is a function ``measure_*`` returning its latencies, so that other
measurements (SPARQL) can be added to the same file and to :data:`MEASUREMENTS`.

    python bench/query.py                 # 100,000 objects (builds the store first, ~1 min)
    python bench/query.py --quick         # 5,000 objects, for CI
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from exchange.config import Settings, load_settings  # noqa: E402
from exchange.entries import ObjectRecord  # noqa: E402
from exchange.operator import init_node  # noqa: E402
from exchange.partners import OriginState, Partner  # noqa: E402
from exchange.query import encode_cursor  # noqa: E402
from exchange.resources import data_dir  # noqa: E402
from exchange.store.base import MergeView, MergeWrite  # noqa: E402
from exchange.store.sqlite import SQLiteStore  # noqa: E402

HOST = "127.0.0.1"
BATCH = 5000
TARGET_P95_MS = 50.0
#: (base URL, country) of the partners the objects come from; the node itself is in NL.
PARTNERS = (
    ("https://overheid.example.nl/exchange", "NL"),
    ("https://vlaanderen.example.be/exchange", "BE"),
    ("https://wallonie.example.be/exchange", "BE"),
    ("https://collectivites.example.fr/exchange", "FR"),
    ("https://kommunen.example.de/exchange", "DE"),
    ("https://communes.example.lu/exchange", "LU"),
)
LANGUAGE_SETS = (
    (("nl",), 30),
    (("nl", "en"), 25),
    (("fr",), 15),
    (("fr", "nl", "en"), 10),
    (("en",), 10),
    (("de", "en"), 7),
    (("de",), 3),
)
VOCABULARY = [f"thema{n:04d}" for n in range(2000)]


# --- building the store --------------------------------------------------------------------


def templates() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for item in sorted(data_dir("examples").iterdir(), key=lambda p: p.name):
        if item.name.endswith(".json"):
            document = json.loads(item.read_text(encoding="utf-8"))
            document.pop("@context", None)
            found.append(document)
    return found


def synthetic_object(
    number: int, origin: str, pool: Sequence[dict[str, Any]], rng: random.Random, now: datetime
) -> dict[str, Any]:
    template = pool[number % len(pool)]
    languages = rng.choices([s for s, _ in LANGUAGE_SETS], [w for _, w in LANGUAGE_SETS])[0]
    words = " ".join(
        VOCABULARY[min(int(rng.paretovariate(1.2)) - 1, len(VOCABULARY) - 1)] for _ in range(5)
    )
    body = dict(template)
    body["id"] = f"{origin}/objects/bench-{number}"
    body["attributedTo"] = origin
    for member in ("nameMap", "summaryMap", "contentMap"):
        texts = list(template.get(member, {}).values()) or [f"Object {number}"]
        text = texts[number % len(texts)]
        if member == "nameMap":
            text = f"{text} #{number}"
        elif member == "summaryMap":
            text = f"{text} {words}"
        body[member] = dict.fromkeys(languages, text)
    updated = now - timedelta(seconds=rng.randrange(2 * 365 * 86400))
    body["published"] = (updated - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body["updated"] = updated.strftime("%Y-%m-%dT%H:%M:%SZ")
    body["version"] = 1
    return body


async def build_store(settings: Settings, count: int, seed: int = 6) -> None:
    rng = random.Random(seed)
    pool = templates()
    now = datetime.now(UTC).replace(microsecond=0)
    store = SQLiteStore(settings.database)
    await store.open()
    try:
        for base_url, country in PARTNERS:
            document = {"id": base_url, "type": "Service", "country": country}
            await store.put_partner(
                Partner(base_url, base_url.split("/")[2], country, document, True, "none")
            )
        for start in range(0, count, BATCH):
            by_origin: dict[str, list[ObjectRecord]] = {}
            for number in range(start, min(start + BATCH, count)):
                origin = PARTNERS[number % len(PARTNERS)][0]
                body = synthetic_object(number, origin, pool, rng, now)
                record = ObjectRecord(body["id"], origin, body["type"], 1, False, number, body)
                by_origin.setdefault(origin, []).append(record)
            for origin, records in by_origin.items():
                write = MergeWrite(OriginState(origin, next_seq=records[-1].seq + 1), (), records)

                def plan(_: MergeView, write: MergeWrite = write) -> MergeWrite:
                    return write

                await store.merge(plan)
            print(f"  {min(start + BATCH, count):,} objects", flush=True)
    finally:
        await store.close()


def prepare(data_dir_path: Path, count: int) -> Settings:
    home = data_dir_path / f"query-{count}"
    marker = home / "built"
    if not marker.exists():
        if home.exists():
            raise SystemExit(f"{home} is incomplete: remove it and run again")
        port = free_port()
        init_node(home, base_url=f"http://{HOST}:{port}", name="Querybank", country="NL")
        settings = load_settings(home, {})
        started = time.perf_counter()
        print(f"building {count:,} merged objects in {home}", flush=True)
        asyncio.run(build_store(settings, count))
        print(f"built in {time.perf_counter() - started:.1f} s", flush=True)
        marker.write_text(str(count))
    return load_settings(home, {})


# --- serving -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def serving(settings: Settings) -> Any:
    """``exchange serve`` on the store, from this checkout, as a subprocess."""
    command = [sys.executable, "-c", "from exchange.cli import main; raise SystemExit(main())"]
    port = urlsplit(settings.base_url).port
    command += ["serve", "--home", str(settings.home), "--host", HOST, "--port", str(port)]
    environment = {**os.environ, "PYTHONPATH": str(PROJECT)}
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment)
        try:
            asyncio.run(wait_ready(settings.base_url, process))
            yield process
        except BaseException:
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace")[-2000:])
            raise
        finally:
            process.terminate()
            process.wait(timeout=20)


async def wait_ready(base_url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(f"exchange serve exited with {process.returncode}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{base_url}/objects?limit=1") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise SystemExit("exchange serve did not answer within 60 s")


# --- measuring -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    base_url: str
    session: aiohttp.ClientSession
    count: int
    rounds: int
    rng: random.Random


async def timed_get(context: Context, query: dict[str, str] | list[tuple[str, str]]) -> float:
    url = f"{context.base_url}/objects?{urlencode(query)}"
    started = time.perf_counter()
    async with context.session.get(url) as response:
        body = await response.read()
    elapsed = time.perf_counter() - started
    if response.status != 200:
        raise SystemExit(f"{url}: {response.status} {body[:300]!r}")
    return elapsed


async def repeat(context: Context, queries: Callable[[], dict[str, str]]) -> list[float]:
    return [await timed_get(context, queries()) for _ in range(context.rounds)]


async def measure_type_and_country(context: Context) -> list[float]:
    countries = sorted({c for _, c in PARTNERS})
    types = ["Case", "Event", "BestPractice"]
    return await repeat(
        context,
        lambda: {"type": context.rng.choice(types), "country": context.rng.choice(countries)},
    )


async def measure_lang(context: Context) -> list[float]:
    return await repeat(context, lambda: {"lang": context.rng.choice(["nl", "fr", "en", "de"])})


async def measure_q(context: Context) -> list[float]:
    """One word of the shared vocabulary (from common to rare) or of the examples' text."""
    words = [*VOCABULARY[:50], "participatie", "burgers", "milieu", "reuring", "natuur"]
    return await repeat(context, lambda: {"q": context.rng.choice(words)})


async def measure_updated_since(context: Context) -> list[float]:
    def query() -> dict[str, str]:
        days = context.rng.choice([1, 7, 30, 365])
        since = datetime.now(UTC) - timedelta(days=days)
        return {"updated_since": since.strftime("%Y-%m-%dT%H:%M:%SZ")}

    return await repeat(context, query)


async def measure_deep_cursor(context: Context) -> list[float]:
    """A page far down the listing: the cursor of an item at 80-99 % of the store (the
    bench knows the cursor's form; clients only follow next links)."""

    def query() -> dict[str, str]:
        position = context.rng.randrange(context.count * 8 // 10, context.count * 99 // 100)
        return {"after": encode_cursor(position)}

    return await repeat(context, query)


async def measure_combined(context: Context) -> list[float]:
    return await repeat(
        context,
        lambda: {
            "type": "Event",
            "country": context.rng.choice(["BE", "FR"]),
            "lang": "fr",
            "q": context.rng.choice(["reuring", "thema0001", "thema0003"]),
        },
    )


Measurement = Callable[[Context], Awaitable[list[float]]]
#: Every measurement of this benchmark, in the order printed.
MEASUREMENTS: dict[str, Measurement] = {
    "/objects type+country": measure_type_and_country,
    "/objects lang": measure_lang,
    "/objects q": measure_q,
    "/objects updated_since": measure_updated_since,
    "/objects deep cursor": measure_deep_cursor,
    "/objects type+country+lang+q": measure_combined,
}


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def measure_all(base_url: str, count: int, rounds: int, selected: Sequence[str]) -> bool:
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        context = Context(base_url, session, count, rounds, random.Random(7))
        for _ in range(20):  # warm the connection and the page cache of SQLite
            await timed_get(context, {"limit": "100"})
        ok = True
        print(f"{'query':<32} {'p50 ms':>8} {'p95 ms':>8}  (n={rounds}, {count:,} objects)")
        for name in selected:
            latencies = await MEASUREMENTS[name](context)
            p50, p95 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.95) * 1000
            verdict = "ok" if p95 < TARGET_P95_MS else f"over {TARGET_P95_MS:.0f} ms"
            ok = ok and p95 < TARGET_P95_MS
            print(f"{name:<32} {p50:8.1f} {p95:8.1f}  {verdict}", flush=True)
        return ok


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5,000 objects (CI)")
    parser.add_argument("--objects", type=int, default=None, help="default 100,000")
    parser.add_argument("--rounds", type=int, default=None, help="requests per query")
    parser.add_argument(
        "--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "exchange-bench"
    )
    parser.add_argument("--only", action="append", choices=[*MEASUREMENTS, "sparql"])
    args = parser.parse_args(argv)
    count = args.objects or (5_000 if args.quick else 100_000)
    rounds = args.rounds or (40 if args.quick else 200)
    selected = [name for name in args.only or MEASUREMENTS if name != "sparql"]
    ok = True
    if selected:
        settings = prepare(args.data_dir, count)
        with serving(settings):
            ok = asyncio.run(measure_all(settings.base_url, count, rounds, selected))
    if not args.only or "sparql" in args.only:
        # The SPARQL half (bench/sparql.py): the Belgian-events query at the same size.
        from bench.sparql import measure as measure_sparql

        asyncio.run(measure_sparql(count, min(rounds, 100)))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
