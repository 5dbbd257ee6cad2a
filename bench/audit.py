"""Benchmark of the offline audit: `exchange audit BUNDLE` over a clean bundle.

Prints, measured in the same run:
- audited entries per second (read, parse, canonical check, schema, origin rules, proof,
  Merkle tree, checkpoints) with one verifying process per core, and with one process;
- the ceiling: raw single-core Ed25519 verifies per second (PyNaCl, the library the audit
  uses) of a 64-byte message, which is what eddsa-jcs-2022 signs (two SHA-256 hashes);
- their ratio (target: at least 60%), and the peak RSS of the auditing process and of its
  largest worker, to show that memory does not grow with the log.

The bundle holds realistic ~3 KB events (the same as bench/ingest.py), a key rotation
halfway, an erasure, and a checkpoint every 1,000 entries; `--small` takes ~1 KB best
practices instead.

    python bench/audit.py                   # 100,000 entries (the bundle is built once, cached)
    python bench/audit.py --quick           # 5,000 entries: a smoke run, as CI runs it
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import nacl.signing
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ingest import entry_draft
from exchange.auditor import audit_bundle
from tests.synthetic_log import SyntheticLog


def build_bundle(path: Path, entries: int, small: bool = False) -> float:
    """Write a clean bundle of ``entries`` entries; the seconds it took."""
    started = time.perf_counter()
    log = SyntheticLog()
    if small:  # ~1 KB best practices, a rotation halfway
        log.bulk(entries // 2, checkpoint_every=1000)
        log.rotate()
        log.bulk(entries - len(log.leaves), checkpoint_every=1000)
        log.write_bundle(path)
        return time.perf_counter() - started
    erased: str | None = None
    while len(log.leaves) < entries - 1:
        seq = log.publish(entry_draft(len(log.leaves)))
        if erased is None:
            erased = str(orjson.loads(log.leaves[seq])["object"]["id"])
        if len(log.leaves) == entries // 2:
            log.rotate()
        if len(log.leaves) % 1000 == 0:
            log.sign_checkpoint()
    assert erased is not None
    log.erase(erased, "benchmark: a person asked to be forgotten")
    log.write_bundle(path)
    return time.perf_counter() - started


def raw_verify_rate(seconds: float = 2.0) -> float:
    """Single-core Ed25519 verifications per second of a 64-byte message."""
    key = nacl.signing.SigningKey.generate()
    message = os.urandom(64)
    signed = key.sign(message)
    verify = key.verify_key.verify
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(500):
            verify(signed.message, signed.signature)
        count += 500
    return count / (time.perf_counter() - started)


def audit_rate(path: Path, entries: int, workers: int) -> float:
    started = time.perf_counter()
    report = asyncio.run(audit_bundle(path, workers=workers))
    elapsed = time.perf_counter() - started
    if not report.clean or abs(report.size - entries) > 1:
        raise SystemExit(f"the clean bundle did not audit clean: {report.counts}, {report.size}")
    return report.size / elapsed


spawn = multiprocessing.get_context("spawn")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5,000 entries (CI)")
    parser.add_argument("--entries", type=int, help="entries in the bundle")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--small", action="store_true", help="~1 KB entries instead of ~3 KB")
    parser.add_argument("--cache", default=tempfile.gettempdir(), help="where bundles are kept")
    args = parser.parse_args()
    entries = args.entries or (5_000 if args.quick else 100_000)
    kind = "small" if args.small else "events"
    path = Path(args.cache) / f"exchange-audit-bench-{kind}-{entries}.jsonl"
    if not path.exists():
        # Built in another process, so that this one's peak RSS is the audit's alone.
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as builder:
            built = builder.submit(build_bundle, path, entries, args.small).result()
        print(f"built a clean bundle of {entries:,} entries in {built:.1f} s ({path})")
    megabytes = path.stat().st_size / 1e6
    print(f"bundle: {entries:,} entries, {megabytes:.0f} MB, one core count {os.cpu_count()}")
    ceiling = raw_verify_rate(1.0 if args.quick else 3.0)
    parallel = audit_rate(path, entries, args.workers)
    single = audit_rate(path, entries, 1)
    ceiling = (ceiling + raw_verify_rate(1.0 if args.quick else 3.0)) / 2  # before and after
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"raw Ed25519 verify, one core (PyNaCl, 64-byte message): {ceiling:,.0f} /s")
    print(
        f"audit, {args.workers} verifying processes: {parallel:,.0f} entries/s "
        f"= {parallel / ceiling:.0%} of the raw verify rate (target: at least 60%)"
    )
    print(f"audit, 1 process:  {single:,.0f} entries/s = {single / ceiling:.0%} of it")
    print(f"peak RSS: auditing process {own:.0f} MB, largest worker {children:.0f} MB")


if __name__ == "__main__":
    main()
