"""The offline audit bundle: one file that holds everything an audit needs (issue: auditors).

Pure: encoding and decoding of its lines. A bundle is JSON Lines, gzip-compressed when
its name ends in ``.gz``:

1. a header: ``{"type": "ExchangeAuditBundle", "version": 1, "node": B, "exported": T,
   "nodeDocument": {...the node document when exported...}, "size": n,
   "checkpoints": k}``;
2. ``k`` checkpoint lines, oldest first: ``{"note": "<signed note>", "consistency":
   ["<base64>", ...]}``, every checkpoint the node signed up to size ``n`` with the RFC
   9162 consistency proof from its size to ``n``; the last one is the checkpoint of size
   ``n``, which the audit holds the log to;
3. ``n`` entry lines: entry ``i`` on line ``i``, exactly the bytes of its Merkle leaf (the
   entry's RFC 8785 JCS, which never holds a raw newline), or its ``Redacted`` form.

The node-document history is in the log itself (every key change is an ``Update`` of the
node document); the header's document is the newest.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from exchange.audit import CheckpointSource
from exchange.errors import UsageError

__all__ = [
    "BUNDLE_TYPE",
    "BUNDLE_VERSION",
    "BundleHeader",
    "checkpoint_line",
    "header_line",
    "parse_checkpoint_line",
    "parse_header",
]

BUNDLE_TYPE = "ExchangeAuditBundle"
BUNDLE_VERSION = 1


@dataclass(frozen=True, slots=True)
class BundleHeader:
    node: str
    exported: str
    node_document: Mapping[str, Any]
    size: int
    checkpoints: int


def header_line(header: BundleHeader) -> bytes:
    document = {
        "type": BUNDLE_TYPE,
        "version": BUNDLE_VERSION,
        "node": header.node,
        "exported": header.exported,
        "nodeDocument": dict(header.node_document),
        "size": header.size,
        "checkpoints": header.checkpoints,
    }
    return orjson.dumps(document) + b"\n"


def parse_header(line: bytes) -> BundleHeader:
    """The header, or UsageError: a file that is no bundle cannot be audited at all."""
    try:
        document = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise UsageError("not an audit bundle: the first line is not JSON") from None
    if not isinstance(document, dict) or document.get("type") != BUNDLE_TYPE:
        raise UsageError(f"not an audit bundle: the first line is no {BUNDLE_TYPE}")
    if document.get("version") != BUNDLE_VERSION:
        raise UsageError(f"bundle version {document.get('version')!r} is not {BUNDLE_VERSION}")
    node, exported = document.get("node"), document.get("exported")
    node_document, size = document.get("nodeDocument"), document.get("size")
    count = document.get("checkpoints")
    if not (
        isinstance(node, str)
        and isinstance(exported, str)
        and isinstance(node_document, dict)
        and _natural(size)
        and _natural(count)
    ):
        raise UsageError(
            "the bundle header lacks node, exported, nodeDocument, size or checkpoints"
        )
    return BundleHeader(node, exported, node_document, int(str(size)), int(str(count)))


def _natural(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def checkpoint_line(note: str, consistency: Sequence[bytes]) -> bytes:
    hashes = [base64.b64encode(h).decode() for h in consistency]
    return orjson.dumps({"note": note, "consistency": hashes}) + b"\n"


def parse_checkpoint_line(line: bytes, number: int) -> CheckpointSource:
    try:
        document = orjson.loads(line)
        note, hashes = document["note"], document["consistency"]
        if not isinstance(note, str) or not isinstance(hashes, list):
            raise TypeError
        proof = tuple(base64.b64decode(str(h), validate=True) for h in hashes)
    except (orjson.JSONDecodeError, KeyError, TypeError, binascii.Error):
        raise UsageError(f"bundle checkpoint line {number} is malformed") from None
    return CheckpointSource(note, "bundle", proof)
