"""Corpus layer: feed sync. The node pulls from a partner whose feed or checkpoint is hostile
(protocol.md §4, §5). A pull answers nobody, so each case names the problem the pull must
record; the attack always sits in the first page the pull fetches, so nothing may merge.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from exchange.checkpoint import Checkpoint, sign_checkpoint
from exchange.merkle import root
from tests.adversarial.corpus import Case, Pull, Stage
from tests.adversarial.transport import million_members
from tests.feed_simulator import key_pair

__all__ = ["FEED"]


def _grow(stage: Stage, count: int, name: str = "pulled") -> None:
    first = stage.sim.size
    for number in range(first, first + count):
        stage.sim.create(f"{name}-{number}")


def _rollback(stage: Stage) -> None:
    stage.sim.checkpoint_size = 2


def _fork(stage: Stage) -> None:
    sim = stage.sim
    sim.fork(2, sim.sign(2, "Create", sim.best_practice("forked")))


def _gap(stage: Stage) -> None:
    _grow(stage, 4)
    stage.sim.dropped = {stage.sim.size - 3}


def _reordered(stage: Stage) -> None:
    _grow(stage, 4)
    sim = stage.sim
    first, second = sim.size - 4, sim.size - 3
    sim.substitute(first, sim.leaves[second])
    sim.substitute(second, sim.leaves[first])


def _stale_page(stage: Stage) -> None:
    """The last page as a cache kept it from an older checkpoint (2 of the 4 entries)."""
    _grow(stage, 2)
    sim = stage.sim
    number = (sim.size - 1) // sim.page_size
    stale = sim._page(number)
    assert stale is not None
    _grow(stage, 2, "later")
    sim.page_override[number] = stale


def _next_loops(stage: Stage) -> None:
    _grow(stage, 8)
    sim = stage.sim
    page = (sim.size - 8) // sim.page_size
    sim.next_links[page] = f"{sim.base_url}/feed/{page}"


def _drip(stage: Stage) -> None:
    _grow(stage, 1)
    stage.sim.drip_s = 1.0


def _redirect(target: str) -> Callable[[Stage], None]:
    def plant(stage: Stage) -> None:
        _grow(stage, 1)
        url = target.format(listener=stage.world.listener.port)
        stage.sim.redirects[f"{stage.sim.prefix}/checkpoint"] = url

    return plant


def _redirect_page(stage: Stage) -> None:
    _grow(stage, 1)
    sim = stage.sim
    url = f"http://127.0.0.1:{stage.world.listener.port}/feed/0"
    sim.redirects[f"{sim.prefix}/feed/{(sim.size - 1) // sim.page_size}"] = url


def _checkpoint_by_another_key(stage: Stage) -> None:
    _grow(stage, 1)
    stage.sim.checkpoint_override = stage.sim.signed_checkpoint(key=key_pair("x", "forger"))


def _checkpoint_of_another_origin(stage: Stage) -> None:
    _grow(stage, 1)
    sim = stage.sim
    other = Checkpoint("other.example", sim.size, root(sim.tree, sim.size))
    sim.checkpoint_override = sign_checkpoint(other, sim.origin, sim.key)


def _swapped_entry(stage: Stage) -> None:
    _grow(stage, 4)
    sim = stage.sim
    seq = sim.size - 2
    sim.substitute(seq, sim.sign(seq, "Create", sim.best_practice("swapped")))


def _page(make: Callable[[], bytes]) -> Callable[[Stage], None]:
    def plant(stage: Stage) -> None:
        _grow(stage, 4)
        sim = stage.sim
        sim.page_override[(sim.size - 1) // sim.page_size] = make()

    return plant


def _forged_root(stage: Stage) -> None:
    stage.sim.checkpoint_override = stage.sim.signed_checkpoint(
        root_hash=hashlib.sha256(b"another tree").digest()
    )


FEED = [
    Case(
        "feed-rollback",
        "feed-sync",
        "rollback",
        None,
        Pull(_rollback, honest=6),
        "a validly signed checkpoint smaller than the one verified before",
    ),
    Case(
        "feed-fork-same-size-other-root",
        "feed-sync",
        "equivocation",
        None,
        Pull(_fork, honest=6),
        "history rewritten and signed again: the origin is halted with both notes as evidence",
    ),
    Case(
        "feed-forged-root",
        "feed-sync",
        "equivocation",
        None,
        Pull(_forged_root, honest=6),
    ),
    Case(
        "feed-gap",
        "feed-sync",
        "integrity",
        None,
        Pull(_gap, honest=4),
        "a page leaves out an entry the checkpoint covers",
    ),
    Case(
        "feed-reordered-entries",
        "feed-sync",
        "merkle-proof",
        None,
        Pull(_reordered, honest=4),
    ),
    Case(
        "feed-page-from-an-older-checkpoint",
        "feed-sync",
        "integrity",
        None,
        Pull(_stale_page, honest=4),
        "the last page as a cache kept it, shorter than the newest checkpoint says",
    ),
    Case(
        "feed-next-loops",
        "feed-sync",
        "integrity",
        None,
        Pull(_next_loops, honest=4),
        "a page's next points back at itself",
    ),
    Case(
        "feed-one-byte-per-second",
        "feed-sync",
        "fetch",
        None,
        Pull(_drip),
        "the pull ends at the node's fetch timeout; the node answers meanwhile",
    ),
    Case(
        "feed-checkpoint-redirects-to-loopback",
        "feed-sync",
        "fetch",
        None,
        Pull(_redirect("http://127.0.0.1:{listener}/checkpoint")),
        "a redirect is never followed: the address it names sees no connection",
    ),
    Case(
        "feed-checkpoint-redirects-to-metadata",
        "feed-sync",
        "fetch",
        None,
        Pull(_redirect("http://169.254.169.254/latest/meta-data/")),
    ),
    Case(
        "feed-page-redirects-to-loopback",
        "feed-sync",
        "fetch",
        None,
        Pull(_redirect_page),
    ),
    Case(
        "feed-checkpoint-by-another-key",
        "feed-sync",
        "checkpoint",
        None,
        Pull(_checkpoint_by_another_key),
    ),
    Case(
        "feed-checkpoint-of-another-origin",
        "feed-sync",
        "checkpoint",
        None,
        Pull(_checkpoint_of_another_origin),
    ),
    Case(
        "feed-entry-swapped-under-the-root",
        "feed-sync",
        "merkle-proof",
        None,
        Pull(_swapped_entry, honest=4),
        "a validly signed entry that is not the one the checkpoint's tree holds",
    ),
    Case(
        "feed-page-not-json",
        "feed-sync",
        "invalid-json",
        None,
        Pull(_page(lambda: b"<html><body>502 Bad Gateway</body></html>"), honest=4),
    ),
    Case(
        "feed-page-of-a-million-members",
        "feed-sync",
        "invalid-json",
        None,
        Pull(_page(million_members), honest=4),
        "refused on its structure before it is parsed: the node keeps answering",
    ),
]
