"""Benchmark of the per-entry core: canonicalization, schema validation, sign and verify.

Prints each figure next to its peer measured in the same run, and the ratio
(shared/design/performance.md: absolute figures drift 20-40 % between runs, ratios do not).

    python bench/core.py            # about 20 s
    python bench/core.py --quick    # a few seconds, as CI runs it
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import jsonschema
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from exchange.canonical import canonicalize, parse
from exchange.keys import KeyPair
from exchange.proof import sign_document, verify_document
from exchange.resources import data_dir
from exchange.schema import check, schema_document


def per_second(action: Callable[[], object], seconds: float) -> float:
    count, started = 0, time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        for _ in range(50):
            action()
        count += 50
    return count / (time.perf_counter() - started)


def row(label: str, ours: float, peer_label: str, peer: float) -> None:
    print(
        f"{label:<44} {ours:>10,.0f}/s   {peer_label:<30} {peer:>10,.0f}/s"
        f"   ratio {ours / peer:5.1f}x"
    )


def event_example() -> dict[str, Any]:
    for item in sorted(data_dir("examples").iterdir(), key=lambda p: p.name):
        if item.name.endswith(".json"):
            document = json.loads(item.read_text(encoding="utf-8"))
            if document.get("type") == "Event":
                return dict(document)
    raise SystemExit("no Event example found")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run, as in CI")
    seconds = 0.3 if parser.parse_args().quick else 2.0

    event = event_example()
    entry = {
        "@context": event.pop("@context"),
        "id": "https://samenwerken.example.nl/exchange/log/42",
        "type": "Create",
        "seq": 42,
        "actor": "https://samenwerken.example.nl/exchange",
        "published": "2026-11-23T10:00:00Z",
        "object": event,
    }
    size = len(canonicalize(entry))
    print(f"entry: a Create of the example Event, {size} bytes canonical\n")

    row(
        "JCS, guarded orjson fast path",
        per_second(lambda: canonicalize(entry), seconds),
        "rfc8785 (full)",
        per_second(lambda: rfc8785.dumps(entry), seconds),
    )
    raw = json.dumps(entry).encode()
    row(
        "I-JSON strict parse",
        per_second(lambda: parse(raw, integers_only=True), seconds),
        "json.loads (no checks)",
        per_second(lambda: json.loads(raw), seconds),
    )

    check(event, "event")
    plain = jsonschema.Draft202012Validator(
        schema_document("event"),
        registry=_referencing_registry(),
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )
    row(
        "schema check, jsonschema-rs (built once)",
        per_second(lambda: check(event, "event"), seconds),
        "jsonschema (built once)",
        per_second(lambda: plain.validate(event), seconds),
    )

    key = KeyPair("https://samenwerken.example.nl/exchange/keys/2026-1", bytes(range(32)))
    now = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    signed = sign_document(entry, key, now)
    public = key.public
    row(
        "sign entry (JCS + SHA-256 + PyNaCl)",
        per_second(lambda: sign_document(entry, key, now), seconds),
        "raw Ed25519 sign, cryptography",
        per_second(_cryptography_sign(), seconds),
    )
    row(
        "verify entry (JCS + SHA-256 + PyNaCl)",
        per_second(lambda: verify_document(signed, lambda _: public, now), seconds),
        "raw Ed25519 verify, cryptography",
        per_second(_cryptography_verify(), seconds),
    )


def _referencing_registry() -> Any:
    from referencing import Registry, Resource

    resources = []
    for item in data_dir("schemas").iterdir():
        if item.name.endswith(".schema.json"):
            document = json.loads(item.read_text(encoding="utf-8"))
            resources.append((document["$id"], Resource.from_contents(document)))
    return Registry().with_resources(resources)


def _cryptography_sign() -> Callable[[], object]:
    private = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    return lambda: private.sign(b"x" * 64)


def _cryptography_verify() -> Callable[[], object]:
    private = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    public, signature = private.public_key(), private.sign(b"x" * 64)
    return lambda: public.verify(signature, b"x" * 64)


if __name__ == "__main__":
    main()
