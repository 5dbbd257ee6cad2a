"""RFC 8785 canonicalization and RFC 7493 I-JSON parsing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import rfc8785
from hypothesis import given

from exchange.canonical import (
    MAX_SAFE_INTEGER,
    canonicalize,
    check_ijson,
    parse,
    parse_canonical_entry,
)
from exchange.errors import InvalidJSON
from tests.strategies import ijson_values, integer_values, reparseable_values

JCS_CASES = ["arrays", "french", "structures", "unicode", "values", "weird"]


@pytest.mark.parametrize("name", JCS_CASES)
def test_rfc8785_vectors(vectors: Path, name: str) -> None:
    # Source: RFC 8785 test data (cyberphone/json-canonicalization), shared/vectors/jcs.
    source = (vectors / "jcs" / "input" / f"{name}.json").read_bytes()
    expected = (vectors / "jcs" / "output" / f"{name}.json").read_bytes()
    assert canonicalize(parse(source)) == expected


def test_member_names_sort_by_utf16_code_units() -> None:
    # U+1F602 is D83D DE02 in UTF-16 and sorts before U+FB33; by code point it sorts after.
    value = {"\ufb33": 1, "\U0001f602": 2, "\u20ac": 3}
    assert canonicalize(value) == '{"\u20ac":3,"\U0001f602":2,"\ufb33":1}'.encode()


@given(integer_values)
def test_fast_path_equals_full_rfc8785(value: object) -> None:
    assert canonicalize(value) == rfc8785.dumps(value)


@given(ijson_values)
def test_any_ijson_value_canonicalizes_like_rfc8785(value: object) -> None:
    assert canonicalize(value) == rfc8785.dumps(value)


@given(reparseable_values)
def test_canonicalization_is_idempotent(value: object) -> None:
    once = canonicalize(value)
    assert canonicalize(parse(once)) == once


REJECTED = {
    "duplicate member": (b'{"a": 1, "a": 2}', "duplicate member name 'a'"),
    "nested duplicate": (b'{"x": {"b": 1, "b": 1}}', "duplicate member name 'b'"),
    "lone high surrogate": (b'{"a": "\\ud800"}', "lone surrogate U+D800"),
    "lone low surrogate in name": (b'{"\\udc00": 1}', "lone surrogate U+DC00"),
    "NaN": (b'{"a": NaN}', "NaN is not a JSON number"),
    "Infinity": (b"[Infinity]", "Infinity is not a JSON number"),
    "-Infinity": (b"[-Infinity]", "-Infinity is not a JSON number"),
    "overflowing double": (b"[1e400]", "overflows a double"),
    "integer beyond 2^53": (b'{"n": 9007199254740992}', "beyond ±(2^53−1)"),
    "negative integer beyond 2^53": (b"[-9007199254740992]", "beyond ±(2^53−1)"),
    # Past 4300 digits Python's int() raises a ValueError of its own: refused before it.
    "integer of 5000 digits": (b"[" + b"9" * 5000 + b"]", "beyond ±(2^53−1)"),
    "negative integer of 5000 digits": (b"[-" + b"1" * 5000 + b"]", "beyond ±(2^53−1)"),
    "byte order mark": (b'\xef\xbb\xbf{"a": 1}', "byte order mark"),
    "invalid UTF-8": (b'{"a": "\xff"}', "invalid UTF-8 at byte 7"),
    "trailing data": (b'{"a": 1} {"b": 2}', "Extra data"),
    "truncated": (b'{"a": ', "not JSON"),
    "deep nesting": (b"[" * 10000 + b"]" * 10000, "nested deeper than"),
}


@pytest.mark.parametrize(("data", "reason"), REJECTED.values(), ids=REJECTED.keys())
def test_not_ijson_is_rejected_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidJSON, match=re.escape(reason)):
        parse(data)


def test_a_text_with_more_commas_and_colons_than_allowed_is_refused_before_parsing() -> None:
    assert parse(b'{"a": [0,0,0,0,0,0,0,0]}', max_separators=8) == {"a": [0] * 8}
    with pytest.raises(InvalidJSON, match="9 commas and colons, more than the 8"):
        parse(b'{"a": [0,0,0,0,0,0,0,0,0]}', max_separators=8)
    with pytest.raises(InvalidJSON, match="refused before parsing"):  # not even JSON
        parse(b"::::::::: not JSON", max_separators=8)


def test_largest_safe_integers_are_accepted() -> None:
    assert parse(b"[9007199254740991, -9007199254740991]") == [MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER]


@pytest.mark.parametrize("literal", [b"[1.0]", b"[1e3]", b"[0.5]", b"[-2E-2]"])
def test_entries_hold_integers_only(literal: bytes) -> None:
    assert parse(literal) == json.loads(literal)
    with pytest.raises(InvalidJSON, match="fraction or exponent"):
        parse(literal, integers_only=True)


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), 2**53, {"a": "\udfff"}, {1: "x"}, {"a": object()}],
    ids=["nan", "inf", "2^53", "surrogate", "int key", "object"],
)
def test_check_ijson_rejects_values_built_in_code(value: object) -> None:
    with pytest.raises(InvalidJSON):
        check_ijson(value)
    with pytest.raises(InvalidJSON):
        canonicalize(value)


def _full_path_entry(data: bytes) -> object | None:
    """What the fast path must agree with: strict parse, integers only, JCS equal to data."""
    try:
        value = parse(data, integers_only=True)
        return value if canonicalize(value, integers_only=True) == data else None
    except InvalidJSON:
        return None


@given(ijson_values)
def test_the_canonical_fast_path_accepts_only_what_the_full_path_accepts(value: object) -> None:
    """parse_canonical_entry never accepts bytes the full path refuses: on canonical bytes
    it agrees or defers (None), and on re-serialized non-canonical bytes it refuses."""
    value = {"entry": value, "seq": 7}
    canonical = canonicalize(value)
    fast = parse_canonical_entry(canonical)
    if fast is not None:
        assert fast == _full_path_entry(canonical)
    spaced = json.dumps(value, ensure_ascii=False, indent=1).encode()
    if spaced != canonical:
        assert parse_canonical_entry(spaced) is None


FAST_PATH_REFUSES = {
    "duplicate member": b'{"a":1,"a":1}',
    "fraction": b'{"a":1.5}',
    "exponent": b'{"a":[1e5]}',
    "integer beyond 2^53": b'{"a":9007199254740992}',
    "unsorted members": b'{"b":1,"a":2}',
    "whitespace": b'{"a": 1}',
    "character beyond U+FFFF": '{"a":"\U0001f602"}'.encode(),
    "lone surrogate": b'{"a":"\\ud800"}',
    "escaped solidus": b'{"a":"\\/"}',
    "deep nesting": b"[" * 70 + b"]" * 70,
}


@pytest.mark.parametrize("name", sorted(FAST_PATH_REFUSES))
def test_the_canonical_fast_path_refuses(name: str) -> None:
    assert parse_canonical_entry(FAST_PATH_REFUSES[name]) is None


def test_the_canonical_fast_path_takes_a_signed_entry_as_it_is() -> None:
    data = canonicalize({"id": "https://a.example/log/1", "seq": 1, "nameMap": {"nl": "Café"}})
    assert parse_canonical_entry(data) == {
        "id": "https://a.example/log/1",
        "nameMap": {"nl": "Café"},
        "seq": 1,
    }


@pytest.mark.parametrize(
    "header",
    [b'"startIndex":9007199254740993', b'"nested":' + b"[" * 100 + b"]" * 100],
    ids=["integer-beyond-2-53", "nested-100-deep"],
)
def test_a_feed_page_read_by_the_fast_path_is_i_json_in_its_header_too(header: bytes) -> None:
    # Found by fuzz/fuzz_feed_page.py: orjson's fast path took a header the strict parser
    # refuses, so one page was read two ways.
    from exchange.verification import parse_page

    page = b'{"type":"OrderedCollectionPage",' + header + b',"orderedItems":[]}'
    with pytest.raises(InvalidJSON):
        parse(page)
    with pytest.raises(InvalidJSON):
        parse_page(page)
    valid = b'{"type":"OrderedCollectionPage","startIndex":5,"orderedItems":[]}'
    assert parse_page(valid) == (parse(valid), [])
