"""Fuzz target: RFC 8785 JCS (exchange.canonical.canonicalize), differential.

canonicalize takes a fast path (orjson with sorted keys) when its guard says the document
has no float and no member name beyond U+FFFF, and the full ``rfc8785`` implementation
otherwise. This target holds the two together: whatever canonicalize returns must equal
``rfc8785.dumps`` of the same value, byte for byte.

Input: the first byte chooses the mode (``t``: text); the rest is either JSON text (parsed with the
I-JSON parser, as a received document is) or the source of a structured value drawn with
atheris.FuzzedDataProvider (every JSON type, and NaN, infinities, lone surrogates, integers
beyond 2^53, non-string member names, deep nesting). Crashes: an exception but an
ExchangeError; the two implementations disagreeing; canonical bytes that do not parse back
to the value (or do not canonicalize to themselves).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

with atheris.instrument_imports(include=["exchange", "rfc8785"]):
    import rfc8785

    from exchange.canonical import MAX_SAFE_INTEGER, canonicalize, parse
    from exchange.errors import ExchangeError
    from fuzz.harness import json_value


def _floats(value: Any) -> list[float]:
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        return [f for member in value.values() for f in _floats(member)]
    if isinstance(value, list):
        return [f for item in value for f in _floats(item)]
    return []


def _integral_beyond_safe(value: Any) -> bool:
    """ES6 number printing writes an integral double below 10^21 without exponent, so such
    a float above 2^53 canonicalizes to an integer literal I-JSON refuses on reading."""
    return any(
        math.isfinite(f) and f == int(f) and abs(f) > MAX_SAFE_INTEGER for f in _floats(value)
    )


def test_one_input(data: bytes) -> None:
    if data[:1] == b"t":
        try:
            value = parse(data[1:])
        except ExchangeError:
            return
    else:
        value = json_value(atheris.FuzzedDataProvider(data[1:]))
    try:
        canonical = canonicalize(value)
    except ExchangeError:
        return
    if canonical != bytes(rfc8785.dumps(value)):
        raise AssertionError(f"canonicalize and rfc8785 disagree on {value!r}")
    try:
        again = parse(canonical)
    except ExchangeError:
        if _integral_beyond_safe(value):
            return
        raise
    if again != value:
        raise AssertionError(f"{canonical!r} parses to {again!r}, not {value!r}")
    if canonicalize(again) != canonical:
        raise AssertionError(f"{canonical!r} is not canonical once parsed back")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
