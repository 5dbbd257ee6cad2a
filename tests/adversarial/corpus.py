"""What a corpus case is: a name, a layer, the hostile input, and what the node must answer.

A :class:`Case` names its expected problem type (the part after
``https://w3id.org/exchange/problems/``, see ``exchange/errors.py``) and HTTP status, and
carries its attack in one of four shapes, which decide the channel it runs through:

- :class:`Inbox`: a request to ``POST B/inbox`` built from the case's own pinned partner
  (signed with its key unless the case is about signatures), with an optional setup that
  runs before the store digest is taken. For a push whose transport checks pass the node
  answers 202 and records each rejected entry; the expected problem is then the recorded
  one (protocol.md §6).
- :class:`Pull`: a hostile feed simulator the node pulls from; a pull has no answer to the
  attacker, so the expected problem is the one the pull records (status None).
- :class:`OriginPair`: two URLs judged by :func:`exchange.origins.same_origin` alone.
- :class:`Portal`: partner text pushed to the inbox, then the portal pages are rendered:
  the text never appears there unescaped.

Bodies are built by generators (functions), so that the corpus needs no binary files and
large inputs (a 100 MB body, a gzip bomb, a million members) are made on the spot.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from exchange.keys import KeyPair
from tests.adversarial.harness import World, push_page, signed_headers
from tests.feed_simulator import FeedSimulator

__all__ = [
    "LAYERS",
    "Case",
    "Inbox",
    "Message",
    "OriginPair",
    "Portal",
    "Pull",
    "Stage",
    "Stream",
    "push_of",
    "signed",
]

#: The layers of issue 8 §1, in the order the corpus runs them.
LAYERS = (
    "json",
    "json-ld",
    "object-proof",
    "http-signature",
    "authorisation",
    "feed-sync",
    "origins",
    "portal",
)


@dataclass(frozen=True, slots=True)
class Message:
    """A request to the inbox: the body and the headers exactly as they are sent."""

    body: bytes
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Stream:
    """A body too large to hold in memory: ``chunk`` repeated up to ``total`` bytes, sent
    over a raw socket with a Content-Length (or chunked) while the answer is read."""

    head: Mapping[str, str]
    chunk: bytes
    total: int
    chunked: bool = False


@dataclass(frozen=True, slots=True)
class Stage:
    """What a case's generator works with: the live node and the case's own partner."""

    world: World
    sim: FeedSimulator

    @property
    def key(self) -> KeyPair:
        return self.sim.key


Build = Callable[[Stage], Awaitable[Message | Stream]]
Setup = Callable[[Stage], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Inbox:
    build: Build
    setup: Setup | None = None
    #: The request is sent once before the store digest is taken, and then again exactly
    #: as it was (an exact replay must be accepted twice and applied once).
    replay: bool = False


@dataclass(frozen=True, slots=True)
class Pull:
    #: Make the case's simulator hostile (after ``honest`` valid entries were pulled).
    plant: Callable[[Stage], None]
    #: Valid entries the node pulls and merges before the store digest is taken.
    honest: int = 0


@dataclass(frozen=True, slots=True)
class OriginPair:
    first: str
    second: str
    #: True: the same origin; False: different origins; None: a URL is refused outright.
    same: bool | None


@dataclass(frozen=True, slots=True)
class Portal:
    #: The partner's text, as the object's English name (or ``member`` when given).
    text: Any
    member: str = "nameMap"
    #: The text is plain text the schema lets through: it merges and must show escaped.
    #: Otherwise the schema refuses the entry and the text shows nowhere.
    merges: bool = False


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    layer: str
    #: The problem type answered (or recorded, for a 202 push or a pull); None only where
    #: the right outcome records nothing (an exact replay, plain text that merges).
    problem: str | None
    #: The HTTP status answered; None for a pull and an origin pair.
    status: int | None
    attack: Inbox | Pull | OriginPair | Portal
    about: str = ""

    @property
    def channel(self) -> str:
        return {Inbox: "inbox", Pull: "pull", OriginPair: "origin", Portal: "portal"}[
            type(self.attack)
        ]


def signed(stage: Stage, body: bytes, **options: Any) -> Message:
    """``body`` signed by the case's partner as protocol.md §6 asks (``options`` go to
    :func:`~tests.adversarial.harness.signed_headers`)."""
    key = options.pop("key", stage.key)
    return Message(body, signed_headers(stage.world.inbox, body, key, **options))


def push_of(stage: Stage, start: int, **changes: Any) -> Message:
    """A signed push of the simulator's entries from ``start`` to its end, with its newest
    checkpoint (members of the page replaced by ``changes``)."""
    page = push_page(stage.sim, start)
    page.update(changes)
    return signed(stage, json.dumps(page).encode())
