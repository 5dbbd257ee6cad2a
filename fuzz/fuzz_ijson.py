"""Fuzz target: the I-JSON parser (exchange.canonical.parse) and the audits' fast path
(parse_canonical_entry).

Input: any bytes, read as an untrusted body. Crashes: any exception but InvalidJSON's
family (ExchangeError); ``parse_canonical_entry`` accepting bytes that are not the RFC 8785
form of an integers-only I-JSON entry (the strict parser must give the same value, and
canonicalizing it must give back the bytes); a parsed value whose canonical form does not
parse back to it.

    python fuzz/fuzz_ijson.py [CORPUS_DIR ...] [-max_total_time=600]   # or fuzz/run.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

with atheris.instrument_imports(include=["exchange"]):
    from exchange.canonical import canonicalize, parse, parse_canonical_entry
    from exchange.errors import ExchangeError


def test_one_input(data: bytes) -> None:
    fast = parse_canonical_entry(data)
    try:
        strict = parse(data, integers_only=True)
    except ExchangeError:
        strict = None
    if fast is not None:
        if strict is None:
            raise AssertionError("parse_canonical_entry took bytes the strict parser refuses")
        if fast != strict:
            raise AssertionError("parse_canonical_entry read another value than parse")
        if canonicalize(strict, integers_only=True) != data:
            raise AssertionError("parse_canonical_entry took bytes that are not canonical")
    if strict is not None:
        canonical = canonicalize(strict, integers_only=True)
        if parse(canonical, integers_only=True) != strict:
            raise AssertionError("an entry's canonical form does not parse back to it")
        again = parse_canonical_entry(canonical)
        if again is not None and again != strict:
            raise AssertionError("parse_canonical_entry misread canonical bytes")
    try:
        value = parse(data)
    except ExchangeError:
        return
    canonicalize(value)  # an I-JSON value always has a canonical form


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
