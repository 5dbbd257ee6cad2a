"""The paged feed (protocol.md §4): page arithmetic and page documents, built as bytes.

Entries are spliced into pages as the exact bytes stored (their JCS form), never
re-serialized, so a page is as cheap to build as it is to read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from exchange.resources import CONTEXT_IRIS

__all__ = [
    "ACTIVITY_JSON",
    "Page",
    "collection_document",
    "etag",
    "last_page",
    "page",
    "page_document",
    "page_etag",
]

ACTIVITY_JSON = "application/activity+json"


def last_page(total: int, page_size: int) -> int:
    """The first page that is not full: floor(totalItems / pageSize) (may be empty)."""
    return total // page_size


@dataclass(frozen=True, slots=True)
class Page:
    number: int
    start: int
    end: int
    full: bool


def page(number: int, total: int, page_size: int) -> Page | None:
    """Page ``number`` of a log of ``total`` entries, or None beyond the last page."""
    if number < 0 or number > last_page(total, page_size):
        return None
    start = number * page_size
    end = min(start + page_size, total)
    return Page(number, start, end, end - start == page_size)


def _dumps(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def collection_document(base_url: str, total: int, page_size: int) -> bytes:
    return _dumps(
        {
            "@context": list(CONTEXT_IRIS),
            "id": f"{base_url}/feed",
            "type": "OrderedCollection",
            "totalItems": total,
            "pageSize": page_size,
            "first": f"{base_url}/feed/0",
            "last": f"{base_url}/feed/{last_page(total, page_size)}",
        }
    )


def page_document(base_url: str, page_info: Page, entries: Sequence[bytes]) -> bytes:
    """An OrderedCollectionPage with ``entries`` (stored bytes) spliced in unchanged."""
    header: dict[str, object] = {
        "@context": list(CONTEXT_IRIS),
        "id": f"{base_url}/feed/{page_info.number}",
        "type": "OrderedCollectionPage",
        "partOf": f"{base_url}/feed",
        "startIndex": page_info.start,
    }
    if page_info.number > 0:
        header["prev"] = f"{base_url}/feed/{page_info.number - 1}"
    if page_info.full:
        header["next"] = f"{base_url}/feed/{page_info.number + 1}"
    head = _dumps(header)[:-1] + b',"orderedItems":['
    if not entries:
        return head + b"]}"
    # One copy of the (large) entries: the head and tail ride on the first and last one.
    parts = list(entries)
    parts[0] = head + parts[0]
    parts[-1] = parts[-1] + b"]}"
    return b",".join(parts)


def etag(body: bytes) -> str:
    """A strong ETag: the body's SHA-256, shortened."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def page_etag(
    base_url: str,
    page_info: Page,
    leaf_hashes: Sequence[bytes],
    redacted: Collection[int] = (),
) -> str:
    """A strong ETag for a page without hashing its body again: the page's bytes are a
    function of its place in the feed and of its entries, which their leaf hashes name,
    and of which of them an erasure redacted (``redacted``: their seqs), which changes the
    entry but not its leaf hash."""
    marked = frozenset(redacted)
    digest = hashlib.sha256(f"{base_url}/feed/{page_info.number}\n".encode())
    for seq, hashed in enumerate(leaf_hashes, start=page_info.start):
        digest.update(b"Redacted" + hashed if seq in marked else hashed)
    return '"' + digest.hexdigest()[:32] + '"'
