"""Checking whole feed pages: the CPU-bound part of ingest, run in worker processes.

Pure and picklable: :func:`check_page` takes a page's raw bytes and returns, per entry,
either the verified facts or the reason it was rejected, so that the shell can spread
pages over every core and merge the results in order.

A page is parsed with orjson and accepted as it is only when re-serializing what was
parsed (each entry by RFC 8785) gives back the received bytes exactly: then no member name
was duplicated and nothing was read differently from what was sent. Its header must then
pass the I-JSON checks too (orjson reads integers beyond 2^53 and deeper nesting than the
strict parser allows; the entries were checked by RFC 8785). Any other page goes through
the strict I-JSON parser (protocol.md §3).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from exchange.canonical import (
    MAX_SEPARATORS,
    canonicalize,
    check_ijson,
    check_separators,
    parse,
)
from exchange.errors import IntegrityError
from exchange.merge import KeyRing, VerifiedEntry, verify_entry
from exchange.merkle import leaf_hash

__all__ = [
    "Checked",
    "PageCheck",
    "changes_keys",
    "check_entries",
    "check_page",
    "check_page_verdicts",
    "leaf_or_none",
    "page_check_from_verdicts",
    "parse_page",
]


@dataclass(frozen=True, slots=True)
class Checked:
    """One entry after verification: ``entry`` when it verified, else the reason."""

    seq: int
    leaf_hash: bytes | None  # None: the entry could not even be hashed
    entry: VerifiedEntry | None = None
    problem: str = ""
    reason: str = ""


def changes_keys(item: Checked) -> bool:
    """A verified Update of the node document: the entries after it use its keys."""
    entry = item.entry
    return entry is not None and entry.object_id == entry.origin and entry.activity == "Update"


@dataclass(frozen=True, slots=True)
class PageCheck:
    page: Mapping[str, Any]
    checked: Sequence[Checked]
    keys: KeyRing  # the keys the entries were checked with


def parse_page(raw: bytes) -> tuple[dict[str, Any], list[bytes | None]]:
    """The page and each entry's JCS bytes (None where an entry is not I-JSON with integers).

    A page with more commas and colons than a partner's message may hold is refused before
    either parser builds it (:data:`~exchange.canonical.MAX_SEPARATORS`)."""
    check_separators(raw, MAX_SEPARATORS)
    try:
        page = orjson.loads(raw)
    except orjson.JSONDecodeError:
        page = None
    if isinstance(page, dict) and isinstance(page.get("orderedItems"), list):
        leaves = [leaf_or_none(item) for item in page["orderedItems"]]
        if None not in leaves and list(page)[-1] == "orderedItems":
            header = {name: value for name, value in page.items() if name != "orderedItems"}
            rebuilt = (
                json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode()[:-1]
                + b',"orderedItems":['
                + b",".join(leaf for leaf in leaves if leaf is not None)
                + b"]}"
            )
            if rebuilt == raw:
                check_ijson(header)  # InvalidJSON, as from the strict parser
                return page, leaves
    strict = parse(raw)  # raises InvalidJSON with the reason
    if not isinstance(strict, dict) or not isinstance(strict.get("orderedItems"), list):
        raise IntegrityError("not an OrderedCollectionPage with orderedItems")
    return strict, [leaf_or_none(item) for item in strict["orderedItems"]]


def leaf_or_none(item: object) -> bytes | None:
    """The entry's JCS bytes, or None when it breaks the entry rules of §3."""
    try:
        return canonicalize(item, integers_only=True)
    except IntegrityError:
        return None


def check_entries(
    documents: Sequence[Any],
    leaves: Sequence[bytes | None],
    start: int,
    *,
    base_url: str,
    keys: KeyRing,
    now: datetime,
) -> list[Checked]:
    """Verify entries ``start, start+1, ...`` of ``base_url``'s log."""
    results: list[Checked] = []
    for offset, (document, leaf) in enumerate(zip(documents, leaves, strict=True)):
        seq = start + offset
        if leaf is None or not isinstance(document, dict):
            results.append(_not_ijson(seq, document))
            continue
        try:
            entry = verify_entry(
                document, base_url=base_url, expected_seq=seq, keys=keys, now=now, leaf=leaf
            )
        except IntegrityError as error:
            results.append(
                Checked(seq, leaf_hash(leaf), problem=error.problem, reason=error.detail)
            )
            continue
        results.append(Checked(seq, entry.leaf_hash, entry))
    return results


def _not_ijson(seq: int, document: object) -> Checked:
    """An entry that breaks the entry rules of §3 is rejected; it still has a leaf (and the
    run goes on) when it is I-JSON at all."""
    try:
        canonicalize(document, integers_only=True)
        reason = "an entry is a JSON object"
    except IntegrityError as error:
        reason = error.detail
    try:
        hashed: bytes | None = leaf_hash(canonicalize(document))
    except IntegrityError:
        hashed = None
    return Checked(seq, hashed, problem="invalid-json", reason=reason)


def check_page(raw: bytes, start: int, base_url: str, keys: KeyRing, now: datetime) -> PageCheck:
    """Parse and verify a whole page (run in a worker process)."""
    page, leaves = parse_page(raw)
    items = page["orderedItems"]
    checked = check_entries(items, leaves, start, base_url=base_url, keys=keys, now=now)
    return PageCheck(page, checked, keys)


#: What crosses the process boundary per entry: small values, no parsed documents, so that
#: pickling costs little. (seq, leaf hash, leaf, activity, object id, problem, reason)
Verdict = tuple[int, bytes | None, bytes, str, str | None, str, str]


def check_page_verdicts(
    raw: bytes, start: int, base_url: str, keys: KeyRing, now: datetime
) -> list[Verdict]:
    """:func:`check_page` for a worker process: verdicts only; the caller parses the page."""
    verdicts: list[Verdict] = []
    for item in check_page(raw, start, base_url, keys, now).checked:
        entry = item.entry
        if entry is None:
            verdicts.append((item.seq, item.leaf_hash, b"", "", None, item.problem, item.reason))
        else:
            verdicts.append(
                (item.seq, entry.leaf_hash, entry.leaf, entry.activity, entry.object_id, "", "")
            )
    return verdicts


def page_check_from_verdicts(
    raw: bytes, verdicts: Sequence[Verdict], base_url: str, keys: KeyRing
) -> PageCheck:
    """The :class:`PageCheck` of a page whose verdicts a worker computed.

    A worker returns verdicts only for a page it parsed without error, so the page has no
    duplicate member and orjson reads it as the strict parser does.
    """
    page = orjson.loads(raw)
    items = page["orderedItems"]
    checked = []
    for document, (seq, hashed, leaf, activity, object_id, problem, reason) in zip(
        items, verdicts, strict=True
    ):
        if problem or hashed is None:
            checked.append(Checked(seq, hashed, problem=problem, reason=reason))
        else:
            entry = VerifiedEntry(base_url, seq, activity, object_id, document, hashed, leaf)
            checked.append(Checked(seq, hashed, entry))
    return PageCheck(page, checked, keys)
