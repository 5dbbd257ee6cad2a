"""Child process of tests/test_crash_consistency.py: publish until the log holds a target size.

Usage: ``python tests/crash_publisher.py HOME TARGET SEED``. Publishes minimal BestPractice
drafts in batches of 1 to 50 through :func:`exchange.node.open_node`, continuing from the
log size already in the store, and reports each step on stdout (flushed) so that the parent
knows how far it got when it kills this process with SIGKILL:

``pragma <synchronous> <journal_mode>`` once the node is open, ``begin <size> <count>``
before a publish, ``ok <size>`` after it returned (committed), ``done <size>`` at the end.
"""

from __future__ import annotations

import asyncio
import random
import sys
from pathlib import Path

from exchange.config import load_settings
from exchange.node import open_node
from exchange.store.sqlite import SQLiteStore


async def publish_until(home: Path, target: int, seed: int) -> None:
    rng = random.Random(seed)
    settings = load_settings(home, {})
    async with open_node(settings) as node:
        assert isinstance(node.store, SQLiteStore)
        synchronous, journal_mode = await node.store.durability()
        print(f"pragma {synchronous} {journal_mode}", flush=True)
        size = await node.store.log_size()
        while size < target:
            count = min(rng.randint(1, 50), target - size)
            drafts = [
                {
                    "type": "BestPractice",
                    "nameMap": {"en": f"practice {size + i}"},
                    "practiceKind": "experience",
                }
                for i in range(count)
            ]
            print(f"begin {size} {count}", flush=True)
            outcomes = await node.publish(drafts)
            seqs = [outcome.seq for outcome in outcomes if outcome.action == "created"]
            if seqs != list(range(size, size + count)):
                raise SystemExit(f"publish at {size} of {count} drafts returned {outcomes}")
            size += count
            print(f"ok {size}", flush=True)
        print(f"done {size}", flush=True)


if __name__ == "__main__":
    asyncio.run(publish_until(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
