"""The query over own and merged objects (``GET B/objects``): parameters, cursor, index text.

Pure: the parameters of a request become a frozen :class:`ObjectQuery` (or an
:class:`~exchange.errors.InvalidParameter` naming the parameter), an object's body becomes
the text and languages the store indexes, and a stored object becomes the item JSON.

Order and cursor: items come in the order this node stored their current version, that is
by the store's change number (ascending ``received``). Every write of a new version takes
the next number, so an object published or merged while a client pages lands after every
cursor already handed out: nothing is skipped and nothing is listed twice unless it changed
in between (then its new version is listed again, at the end). The cursor ``after`` is that
number, opaque to clients (``c`` + base-36).

Free text ``q``: the words of the query (letters and digits, case and diacritics folded)
must each begin a word of the object's names, summaries or contents, in any language.
``lang``: RFC 4647 basic filtering over the languages of nameMap, summaryMap and contentMap
(``nl`` matches ``nl`` and ``nl-BE``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from exchange.errors import InvalidParameter
from exchange.timestamps import parse_timestamp

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_IDS",
    "MAX_LIMIT",
    "MAX_TERMS",
    "PARAMETERS",
    "TEXT_MAPS",
    "TYPES",
    "ObjectQuery",
    "StoredObject",
    "decode_cursor",
    "encode_cursor",
    "fold",
    "item_bytes",
    "item_json",
    "languages",
    "listing_bytes",
    "parse_query",
    "search_terms",
    "search_text",
    "updated_micros",
]

TYPES = ("Case", "Event", "BestPractice")
TEXT_MAPS = ("nameMap", "summaryMap", "contentMap")
DEFAULT_LIMIT = 100
MAX_LIMIT = 500
MAX_IDS = 500
MAX_TERMS = 16
MAX_QUERY_CHARS = 500
PARAMETERS = (
    "type",
    "origin",
    "country",
    "lang",
    "q",
    "updated_since",
    "id",
    "after",
    "limit",
    "deleted",
)
_REPEATABLE = frozenset({"id"})
_LANGUAGE_TAG = re.compile(r"[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*")
_COUNTRY = re.compile(r"[A-Za-z]{2}")
_CURSOR = re.compile(r"c[0-9a-z]{1,12}")
_WORD = re.compile(r"[^\W_]+")  # as FTS5 unicode61 splits words
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class ObjectQuery:
    """A validated query. ``None`` means "no filter"; an empty tuple matches nothing."""

    types: tuple[str, ...] | None = None
    origins: tuple[str, ...] | None = None
    country: str | None = None
    lang: str | None = None
    terms: tuple[str, ...] = ()
    updated_since_us: int | None = None
    ids: tuple[str, ...] | None = None
    include_deleted: bool = False
    after: int | None = None
    limit: int = DEFAULT_LIMIT


@dataclass(frozen=True, slots=True)
class StoredObject:
    """An object as the store holds it, with what the query API shows about it."""

    id: str
    type: str
    origin: str
    version: int
    deleted: bool
    seq: int
    received: str
    change: int
    #: The object as stored: compact JSON of the object as signed (or its Tombstone).
    body_json: str

    @property
    def body(self) -> Mapping[str, Any]:
        value: Mapping[str, Any] = orjson.loads(self.body_json)
        return value


def _one(params: Sequence[tuple[str, str]], name: str) -> str | None:
    values = [value for key, value in params if key == name]
    if not values:
        return None
    if len(values) > 1 and name not in _REPEATABLE:
        raise InvalidParameter(name, f"{name} may be given once")
    return values[0]


def parse_query(params: Sequence[tuple[str, str]]) -> ObjectQuery:
    """The query of ``GET B/objects``'s parameters (name, value pairs in request order)."""
    for name, _ in params:
        if name not in PARAMETERS:
            raise InvalidParameter(name, f"unknown parameter {name!r}")
    type_name = _one(params, "type")
    if type_name is not None and type_name not in TYPES:
        raise InvalidParameter("type", f"type must be one of {', '.join(TYPES)}")
    origin = _one(params, "origin")
    if origin is not None and not origin.startswith(("http://", "https://")):
        raise InvalidParameter("origin", "origin must be a node's base URL")
    country = _one(params, "country")
    if country is not None:
        if not _COUNTRY.fullmatch(country):
            raise InvalidParameter("country", "country must be an ISO 3166-1 alpha-2 code")
        country = country.upper()
    lang = _one(params, "lang")
    if lang is not None:
        if not _LANGUAGE_TAG.fullmatch(lang):
            raise InvalidParameter("lang", "lang must be a BCP 47 language tag such as nl")
        lang = lang.lower()
    text = _one(params, "q")
    terms: tuple[str, ...] = ()
    if text is not None:
        if len(text) > MAX_QUERY_CHARS:
            raise InvalidParameter("q", f"q is at most {MAX_QUERY_CHARS} characters")
        terms = search_terms(text)
        if not terms:
            raise InvalidParameter("q", "q must contain at least one letter or digit")
        if len(terms) > MAX_TERMS:
            raise InvalidParameter("q", f"q has at most {MAX_TERMS} words")
    since = _one(params, "updated_since")
    since_us = None
    if since is not None:
        try:
            since_us = _micros(parse_timestamp(since))
        except (ValueError, OverflowError):
            raise InvalidParameter(
                "updated_since", "updated_since must be an RFC 3339 date-time with an offset"
            ) from None
    ids = [value for key, value in params if key == "id"]
    if len(ids) > MAX_IDS:
        raise InvalidParameter("id", f"id may be given at most {MAX_IDS} times")
    if any(not value for value in ids):
        raise InvalidParameter("id", "id must not be empty")
    deleted = _one(params, "deleted")
    if deleted not in (None, "include", "exclude"):
        raise InvalidParameter("deleted", "deleted must be include or exclude")
    after = _one(params, "after")
    limit_text = _one(params, "limit")
    limit = DEFAULT_LIMIT
    if limit_text is not None:
        if not limit_text.isdigit() or not 1 <= int(limit_text[:4]) <= MAX_LIMIT:
            raise InvalidParameter("limit", f"limit must be an integer from 1 to {MAX_LIMIT}")
        limit = int(limit_text)
    return ObjectQuery(
        types=None if type_name is None else (type_name,),
        origins=None if origin is None else (origin,),
        country=country,
        lang=lang,
        terms=terms,
        updated_since_us=since_us,
        ids=tuple(dict.fromkeys(ids)) if ids else None,
        include_deleted=deleted == "include",
        after=None if after is None else decode_cursor(after),
        limit=limit,
    )


def encode_cursor(change: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        change, rest = divmod(change, 36)
        text = digits[rest] + text
        if change == 0:
            return "c" + text


def decode_cursor(text: str) -> int:
    if not _CURSOR.fullmatch(text):
        raise InvalidParameter("after", "after must be a cursor from a next link")
    return int(text[1:], 36)


def fold(text: str) -> str:
    """Lower case without diacritics (NFKD, combining marks dropped, casefolded)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def search_terms(text: str) -> tuple[str, ...]:
    """The words of a free-text query, folded, without repeats, in order."""
    return tuple(dict.fromkeys(_WORD.findall(fold(text))))


def _texts(body: Mapping[str, Any]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for member in TEXT_MAPS:
        values = body.get(member)
        if isinstance(values, Mapping):
            found += [(str(k), v) for k, v in values.items() if isinstance(v, str)]
    return found


def search_text(body: Mapping[str, Any]) -> str:
    """What ``q`` searches: the folded words of every name, summary and content."""
    return " ".join(" ".join(_WORD.findall(fold(value))) for _, value in _texts(body))


def languages(body: Mapping[str, Any]) -> frozenset[str]:
    """The languages the object has a text in, lower case, each with its prefixes
    (``nl-BE`` gives ``nl-be`` and ``nl``), so that an exact lookup is RFC 4647 basic
    filtering."""
    tags: set[str] = set()
    for tag, _ in _texts(body):
        parts = tag.lower().split("-")
        tags.update("-".join(parts[:n]) for n in range(1, len(parts) + 1) if parts[0])
    return frozenset(tags)


def _micros(value: datetime) -> int:
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def updated_micros(body: Mapping[str, Any]) -> int | None:
    """The object's ``updated`` (else ``published``; a Tombstone's ``deleted``) in
    microseconds since 1970 UTC, or None when it has none that parses."""
    for member in ("updated", "published", "deleted"):
        value = body.get(member)
        if isinstance(value, str):
            try:
                return _micros(parse_timestamp(value))
            except (ValueError, OverflowError):
                continue
    return None


def _meta(stored: StoredObject, base_url: str, countries: Mapping[str, str]) -> dict[str, Any]:
    return {
        "id": stored.id,
        "type": stored.type,
        "origin": stored.origin,
        "country": countries.get(stored.origin),
        "version": stored.version,
        "seq": stored.seq,
        "received": stored.received,
        # Merged objects are stored only after their proofs and merge rules held (§7).
        "verification": "own" if stored.origin == base_url else "verified",
        "deleted": stored.deleted,
    }


def item_json(
    stored: StoredObject, *, base_url: str, countries: Mapping[str, str]
) -> dict[str, Any]:
    """One item of ``GET B/objects`` (and ``GET B/objects/by-id``)."""
    return {**_meta(stored, base_url, countries), "object": stored.body}


def item_bytes(stored: StoredObject, *, base_url: str, countries: Mapping[str, str]) -> bytes:
    """:func:`item_json` serialized, with the stored object spliced in as it is (no parse)."""
    head = orjson.dumps(_meta(stored, base_url, countries))[:-1]
    return head + b',"object":' + stored.body_json.encode() + b"}"


def listing_bytes(
    items: Sequence[StoredObject],
    following: str | None,
    *,
    base_url: str,
    countries: Mapping[str, str],
) -> bytes:
    """The JSON of one page of ``GET B/objects``: ``{"items": [...], "next": ...}``."""
    parts = b",".join(item_bytes(s, base_url=base_url, countries=countries) for s in items)
    return b'{"items":[' + parts + b'],"next":' + orjson.dumps(following) + b"}"
