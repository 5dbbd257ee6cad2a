"""Fault points: named places where a test may kill the node (bench/faults.py).

A fault point does nothing unless the process was started with ``EXCHANGE_FAULTS`` set,
for instance ``EXCHANGE_FAULTS="merge.in_transaction:0.05,inbox.after_commit:0.02"``
(``EXCHANGE_FAULTS_SEED`` seeds the draws): then each time the node passes a named point
it SIGKILLs itself with that point's probability, after one line on stderr naming the
point. The variables are read once, when this module is imported; disarmed, a point
costs one test of a module constant. Tests that run in-process arm the points with
:func:`armed` and give an action of their own (raising instead of dying).

The points (docs/decisions.md, "Faults: fault points, the node's clock, ..."):

=========================  ===============================================================
``fetch.after``            a pulled feed page has been fetched, before it is checked
``verify.after``           a run of entries (pulled or pushed) is checked, before merging
``merge.in_transaction``   a merge's rows are written, before its transaction commits
``merge.after_commit``     a merge has committed, before the pull or push goes on
``inbox.after_commit``     an inbox message has had its effect, before the 202 is sent
``append.in_transaction``  a publish's rows are written, before its transaction commits
=========================  ===============================================================
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from exchange.errors import UsageError

__all__ = ["POINTS", "FaultPlan", "armed", "fault_point", "parse_faults"]

POINTS = frozenset(
    {
        "fetch.after",
        "verify.after",
        "merge.in_transaction",
        "merge.after_commit",
        "inbox.after_commit",
        "append.in_transaction",
    }
)

Action = Callable[[str], None]


def parse_faults(text: str) -> dict[str, float]:
    """``"point:probability,..."`` as a mapping; raises UsageError for an unknown point or
    a probability outside [0, 1]."""
    plan: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, separator, value = item.partition(":")
        if name not in POINTS:
            raise UsageError(f"EXCHANGE_FAULTS: unknown fault point {name!r}")
        try:
            probability = float(value) if separator else 1.0
        except ValueError:
            raise UsageError(f"EXCHANGE_FAULTS: {value!r} is not a probability") from None
        if not 0.0 <= probability <= 1.0:
            raise UsageError(f"EXCHANGE_FAULTS: {probability} is not in [0, 1]")
        plan[name] = probability
    return plan


def _sigkill(name: str) -> None:
    sys.stderr.write(f"fault point {name}: SIGKILL\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


@dataclass(slots=True)
class FaultPlan:
    """Armed points: each fires with its probability, drawn from one seeded generator
    (points are reached from the event loop and from the store's thread)."""

    probabilities: Mapping[str, float]
    rng: random.Random
    action: Action = _sigkill
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reach(self, name: str) -> None:
        probability = self.probabilities.get(name, 0.0)
        if probability <= 0.0:
            return
        with self.lock:
            fire = self.rng.random() < probability
        if fire:
            self.action(name)


def _from_environ(environ: Mapping[str, str]) -> FaultPlan | None:
    text = environ.get("EXCHANGE_FAULTS", "")
    if not text:
        return None
    seed = int(environ.get("EXCHANGE_FAULTS_SEED", "0"))
    return FaultPlan(parse_faults(text), random.Random(seed))


_plan: FaultPlan | None = _from_environ(os.environ)


def fault_point(name: str) -> None:
    """The node passes point ``name``: nothing happens unless the points are armed."""
    if _plan is not None:
        _plan.reach(name)


@contextlib.contextmanager
def armed(probabilities: Mapping[str, float], action: Action, *, seed: int = 0) -> Iterator[None]:
    """Arm the points in this process for the block, with ``action`` instead of SIGKILL
    (in-process tests: an action that raises, as if the process had died there)."""
    global _plan
    for name in probabilities:
        if name not in POINTS:
            raise UsageError(f"unknown fault point {name!r}")
    previous = _plan
    _plan = FaultPlan(dict(probabilities), random.Random(seed), action)
    try:
        yield
    finally:
        _plan = previous
