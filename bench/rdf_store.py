"""Which RDF store for the merged view (issue 6): pyoxigraph native vs oxrdflib vs rdflib.

Builds N synthetic objects (a third each events, cases and best practices, from six
origin nodes of which two are Belgian; event start times spread over two years around
today), turns them into quads the way the view does (``exchange.rdf.object_quads``: one
JSON-LD document per batch, the shipped contexts inline, one named graph per object) and
writes them once as N-Quads. Then, for each store, it measures loading those N-Quads and
the "events in the next 30 days from Belgian nodes" query over the union of the graphs
(with fixed dateTime bounds: rdflib cannot subtract dateTimes), and checks the three
answer the same. It also prints the cost of the conversion itself and the whole view path
(``RdfView.apply``: convert and load, as a node does at start).

    python bench/rdf_store.py                 # 100,000 objects (rdflib alone takes minutes)
    python bench/rdf_store.py --quick         # 5,000 objects
    python bench/rdf_store.py --skip-rdflib   # only the two Oxigraph stores

Figures measured on the 2-core machine (Python 3.11, pyoxigraph 0.5.13, oxrdflib 0.5.0,
rdflib 7.6), 100,000 objects, 1.07 M quads: see docs/decisions.md "Linked data and SPARQL".
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pyoxigraph as ox

from exchange.entries import ObjectRecord
from exchange.rdf import object_quads
from exchange.rdf_view import RdfView

ORIGINS = [
    ("https://be-vl.example/exchange", "BE"),
    ("https://be-wa.example/exchange", "BE"),
    ("https://nl.example/exchange", "NL"),
    ("https://de.example/exchange", "DE"),
    ("https://fr.example/exchange", "FR"),
    ("https://lu.example/exchange", "LU"),
]
NOW = datetime.now(UTC).replace(microsecond=0)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def synthetic(count: int, seed: int = 6) -> list[ObjectRecord]:
    """``count`` objects as the objects table would hold them after merging."""
    rng = random.Random(seed)
    records = []
    for n in range(count):
        origin, _ = ORIGINS[n % len(ORIGINS)]
        kind = ("Event", "Case", "BestPractice")[n % 3]
        body: dict[str, Any] = {
            "id": f"{origin}/objects/{kind.lower()}-{n}",
            "type": kind,
            "nameMap": {"nl": f"Object {n}", "fr": f"Objet {n}"},
            "summaryMap": {"nl": f"Samenvatting van object {n}"},
            "attributedTo": origin,
            "version": 1,
            "published": "2026-01-01T00:00:00Z",
            "updated": "2026-01-01T00:00:00Z",
        }
        if kind == "Event":
            body["startTime"] = stamp(NOW + timedelta(hours=rng.randint(-365 * 24, 365 * 24)))
            body["location"] = {"type": "Place", "nameMap": {"nl": "Zaal"}}
        elif kind == "BestPractice":
            body["practiceKind"] = "experience"
        records.append(ObjectRecord(body["id"], origin, kind, 1, False, n, body))
    return records


def node_nquads() -> bytes:
    lines = [
        f'<{base}> <https://w3id.org/exchange/ns#country> "{country}" <{base}> .\n'
        for base, country in ORIGINS
    ]
    return "".join(lines).encode()


QUERY = f"""
PREFIX as: <https://www.w3.org/ns/activitystreams#>
PREFIX exv: <https://w3id.org/exchange/ns#>
PREFIX xsd: <http://www.w3.org/2001/XMLSchema#>
SELECT ?event ?start WHERE {{
  ?node exv:country "BE" .
  ?event a as:Event ; as:attributedTo ?node ; as:startTime ?start .
  FILTER (?start >= "{stamp(NOW)}"^^xsd:dateTime
          && ?start < "{stamp(NOW + timedelta(days=30))}"^^xsd:dateTime)
}}
"""


def timed(work: Any, rounds: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(rounds):
        started = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="5,000 objects")
    parser.add_argument("--skip-rdflib", action="store_true")
    args = parser.parse_args()
    count = 5_000 if args.quick else args.objects
    records = synthetic(count)

    started = time.perf_counter()
    quads: list[ox.Quad] = []
    for offset in range(0, count, 1000):
        quads += object_quads([r.body for r in records[offset : offset + 1000]])
    convert_s = time.perf_counter() - started
    nquads = ox.serialize(quads, format=ox.RdfFormat.N_QUADS) or b""
    nquads += node_nquads()
    print(f"{count:,} objects, {len(quads):,} quads, {len(nquads) / 1e6:.0f} MB of N-Quads")
    print(f"JSON-LD -> quads (exchange.rdf.object_quads): {convert_s:.2f} s")

    def view_path() -> RdfView:
        view = RdfView()
        for offset in range(0, count, 1000):
            batch = records[offset : offset + 1000]
            view.apply([(r.seq + 1, r) for r in batch])
        return view

    view_s, view = timed(view_path, 1)
    print(f"RdfView.apply, the whole view path (convert + load): {view_s:.2f} s")
    view.store.load(node_nquads(), format=ox.RdfFormat.N_QUADS)
    native_query = lambda: sorted(  # noqa: E731
        str(s["event"]) for s in view.store.query(QUERY, use_default_graph_as_union=True)
    )
    print()
    print(f"{'store':<22}{'load':>10}{'query p50':>12}{'answers':>9}{'load vs native':>16}")
    rows: list[tuple[str, float, float, int]] = []

    def native_load() -> ox.Store:
        store = ox.Store()
        store.load(nquads, format=ox.RdfFormat.N_QUADS)
        return store

    load_s, store = timed(native_load, 3)
    query_s, expected = timed(
        lambda: sorted(
            str(s["event"]) for s in store.query(QUERY, use_default_graph_as_union=True)
        ),
        20,
    )
    assert expected == native_query()
    rows.append(("pyoxigraph native", load_s, query_s, len(expected)))

    from rdflib import Dataset

    def rdflib_load(store_name: str, parser: str) -> Dataset:
        dataset = Dataset(store=store_name, default_union=True)
        dataset.parse(data=nquads, format=parser)
        return dataset

    def rdflib_query(dataset: Dataset) -> list[str]:
        return sorted(f"<{row[0]}>" for row in dataset.query(QUERY))  # type: ignore[index]

    load_s, dataset = timed(lambda: rdflib_load("Oxigraph", "ox-nquads"), 1)
    query_s, answer = timed(lambda: rdflib_query(dataset), 5)
    assert answer == expected, "oxrdflib answers differently"
    rows.append(("oxrdflib (rdflib API)", load_s, query_s, len(answer)))
    del dataset
    if not args.skip_rdflib:
        load_s, dataset = timed(lambda: rdflib_load("default", "nquads"), 1)
        query_s, answer = timed(lambda: rdflib_query(dataset), 1)
        assert answer == expected, "rdflib answers differently"
        rows.append(("rdflib Memory", load_s, query_s, len(answer)))
    native_load_s = rows[0][1]
    for name, load_s, query_s, answers in rows:
        print(
            f"{name:<22}{load_s:>9.2f}s{query_s * 1000:>10.1f}ms{answers:>9}"
            f"{load_s / native_load_s:>15.1f}x"
        )
    native_query_s = rows[0][2]
    for name, _, query_s, _ in rows[1:]:
        print(f"query: {name} is {query_s / native_query_s:.0f}x slower than pyoxigraph native")


if __name__ == "__main__":
    main()
