"""What the fuzz targets share: one deterministic simulated partner and what it signs, a
JSON value drawn from fuzz input, and small checks.

Everything here is built from the project's own examples and test helpers
(:class:`tests.feed_simulator.FeedSimulator`), with a fixed clock and fixed keys, so that a
crash input found in one run reproduces in the next: ``python fuzz/fuzz_NAME.py CRASH_FILE``.
The targets put the project's root on ``sys.path`` before they import this.

The rule of every target: an exception that is not an :class:`exchange.errors.ExchangeError`
escapes and is a crash, and so is a broken invariant (raised as :class:`AssertionError`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from exchange.httpsig import sign_request_by_keys
from exchange.merge import KeyRing, keyring_from_node_document
from exchange.timestamps import format_timestamp
from tests.feed_simulator import FeedSimulator
from tests.nodes import EXAMPLES

__all__ = [
    "ACTIVITY_JSON",
    "INBOX",
    "NOW",
    "Partner",
    "SignedRequest",
    "header_block",
    "joined_fields",
    "json_value",
    "mutate",
    "partner",
    "paths",
    "signed_request",
]

#: The clock of every target: entries are signed the day before, keys made a month before.
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
#: The inbox of the receiving node, as its configured base URL gives it.
INBOX = "http://127.0.0.1:8080/inbox"
ACTIVITY_JSON = "application/activity+json"


@dataclass(frozen=True, slots=True)
class Partner:
    """The simulated partner: its log (leaves and documents), feed pages and keys."""

    simulator: FeedSimulator
    keys: KeyRing
    pages: tuple[tuple[int, bytes], ...]  # (startIndex, raw page)

    @property
    def base_url(self) -> str:
        return self.simulator.base_url

    @property
    def leaves(self) -> list[bytes]:
        return self.simulator.leaves

    def entries(self) -> list[dict[str, Any]]:
        return [self.simulator.entry(seq) for seq in range(self.simulator.size)]


def _example_objects(simulator: FeedSimulator) -> Iterable[dict[str, Any]]:
    """The project's examples, rebased under the partner and dated as it publishes."""
    stamp = format_timestamp(simulator.tick())
    for path in sorted(EXAMPLES.glob("*.json")):
        document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        document.pop("@context", None)
        document.update(
            id=simulator.object_id(path.stem),
            attributedTo=simulator.base_url,
            version=1,
            published=stamp,
            updated=stamp,
        )
        yield document


@cache
def partner() -> Partner:
    """A partner whose log holds every example, an update, a delete and a node-document
    Update, on pages of four entries."""
    simulator = FeedSimulator(port=8000, now=NOW, page_size=4)
    for document in _example_objects(simulator):
        simulator.publish("Create", document)
    simulator.create("kleine-praktijk")
    simulator.update("kleine-praktijk", nameMap={"en": "Updated", "nl": "Bijgewerkt"})
    simulator.delete("kleine-praktijk")
    node = simulator.node_document()
    del node["@context"]
    simulator.publish("Update", node)
    pages = tuple(
        (number * simulator.page_size, page)
        for number in range(simulator.size // simulator.page_size + 1)
        if (page := simulator._page(number)) is not None
    )
    return Partner(simulator, keyring_from_node_document(simulator.node_document()), pages)


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """A push to the inbox, signed as a partner node signs it (RFC 9421)."""

    method: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


@cache
def signed_request() -> SignedRequest:
    """The first feed page of :func:`partner` pushed with its checkpoint, signed by its key."""
    source = partner()
    page = json.loads(source.pages[0][1])
    page["checkpoint"] = source.simulator.signed_checkpoint()
    body = json.dumps(page, separators=(",", ":")).encode()
    headers = {"Content-Type": ACTIVITY_JSON}
    headers.update(
        sign_request_by_keys(
            method="POST",
            target_uri=INBOX,
            headers=headers,
            body=body,
            keys=[source.simulator.key],
            now=NOW,
        )
    )
    return SignedRequest("POST", tuple(headers.items()), body)


def header_block(headers: Iterable[tuple[str, str]], body: bytes) -> bytes:
    """A request's header lines, a blank line and its body: the input format of the
    RFC 9421 target, so that a real signed request seeds it."""
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return lines.encode("utf-8", "surrogateescape") + b"\r\n" + body


def joined_fields(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Field values as RFC 9421 §2.1 reads them: names lower-cased, lines trimmed and
    joined with ", " (computed here independently of exchange.httpsig)."""
    lines: dict[str, list[str]] = {}
    for name, value in headers:
        lines.setdefault(name.lower(), []).append(value.strip(" \t"))
    return {name: ", ".join(values) for name, values in lines.items()}


def json_value(data: Any, depth: int = 0) -> Any:
    """A JSON-like value drawn from an ``atheris.FuzzedDataProvider``: every JSON type,
    and the values I-JSON refuses (NaN, infinities, lone surrogates, integers beyond 2^53,
    non-string member names, deep nesting)."""
    kinds = 11 if depth < 12 else 7
    kind = data.ConsumeIntInRange(0, kinds)
    if kind == 0:
        return None
    if kind == 1:
        return data.ConsumeBool()
    if kind == 2:
        return data.ConsumeIntInRange(-1000, 1000)
    if kind == 3:
        return data.ConsumeInt(data.ConsumeIntInRange(1, 9))  # up to 2^71: beyond 2^53 too
    if kind == 4:
        return data.ConsumeFloat()  # NaN, infinities, -0.0 and subnormals included
    if kind == 5:
        return data.ConsumeRegularFloat()
    if kind in (6, 7):
        return data.ConsumeUnicode(data.ConsumeIntInRange(0, 24))  # lone surrogates too
    if kind == 8:
        return [json_value(data, depth + 1) for _ in range(data.ConsumeIntInRange(0, 4))]
    members: dict[Any, Any] = {}
    for _ in range(data.ConsumeIntInRange(0, 5)):
        name: Any = data.ConsumeUnicode(data.ConsumeIntInRange(0, 8))
        if kind == 11 and data.ConsumeIntInRange(0, 15) == 0:
            name = data.ConsumeIntInRange(0, 9)  # not a string: I-JSON refuses it
        members[name] = json_value(data, depth + 1)
    return members


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every member and item path in a parsed JSON document, depth first."""
    found = [prefix]
    if isinstance(value, Mapping):
        for name, member in value.items():
            found += paths(member, (*prefix, name))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths(item, (*prefix, index))
    return found


def mutate(document: Any, data: Any, rounds: int) -> Any:
    """``document`` (a parsed JSON value; changed in place) after up to ``rounds`` structural
    edits drawn from ``data``: replace, delete or add a member, or copy one value over
    another (a proof set, a moved id)."""
    for _ in range(rounds):
        if data.remaining_bytes() == 0:
            break
        every = paths(document)
        path = every[data.ConsumeIntInRange(0, len(every) - 1)]
        if not path:
            continue
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        action = data.ConsumeIntInRange(0, 3)
        if action == 0:
            parent[last] = json_value(data)
        elif action == 1:
            if isinstance(parent, dict):
                del parent[last]
            else:
                parent.pop(last)
        elif action == 2 and isinstance(parent, dict):
            parent[data.ConsumeUnicode(data.ConsumeIntInRange(0, 12))] = json_value(data)
        else:
            source = every[data.ConsumeIntInRange(0, len(every) - 1)]
            value = document
            for step in source:
                value = value[step]
            parent[last] = [json.loads(json.dumps(value))]  # wrapped: never a cycle
    return document
