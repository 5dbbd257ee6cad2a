"""I-JSON parsing (RFC 7493) and JSON canonicalization (RFC 8785 JCS).

Untrusted bytes go through :func:`parse` before any signature work: it rejects a byte order
mark, invalid UTF-8, duplicate member names, lone surrogates, non-finite numbers, integers
beyond ±(2^53−1), trailing data and excessive nesting, each with a one-line reason. With
``max_separators`` it first counts the text's commas and colons (an upper bound of its
members and elements, counted at memory speed) and refuses a text with more, so that a
partner cannot make the node spend seconds building a million-member table.
``integers_only=True`` adds the entry rule of protocol.md §3: every number is an integer
written without fraction or exponent.

:func:`canonicalize` produces the RFC 8785 bytes. Documents without floats whose member
names all lie in the Basic Multilingual Plane take a fast path (orjson with sorted keys,
which then equals JCS: UTF-16 and code-point order agree inside the BMP, and integers print
the same); anything else goes to the full implementation of the ``rfc8785`` package. A
differential property test holds the two together.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any, cast

import orjson
import rfc8785

from exchange.errors import InvalidJSON

__all__ = [
    "MAX_DEPTH",
    "MAX_SAFE_INTEGER",
    "MAX_SEPARATORS",
    "canonicalize",
    "check_ijson",
    "check_separators",
    "parse",
    "sha256",
]

MAX_SAFE_INTEGER = 2**53 - 1
#: Digits of the largest safe integer: a longer literal (JSON has no leading zeros) is
#: beyond it, and is refused before Python converts it (which it cannot past 4300 digits).
_SAFE_DIGITS = len(str(MAX_SAFE_INTEGER))
#: Commas and colons a message from a partner may hold (a push, a feed page, a node
#: document). Real entries hold about one per 35 bytes, so an 8 MiB push of them fits; a
#: text at this limit parses in about 0.2 s, where a million members take seconds.
MAX_SEPARATORS = 1 << 18
#: Deeper nesting than any exchange document needs; the parser refuses beyond it.
MAX_DEPTH = 64
_BOM = b"\xef\xbb\xbf"


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise InvalidJSON(f"duplicate member name {name!r} (RFC 7493 §2.3)")
            seen.add(name)
    return result


def _reject_constant(name: str) -> Any:
    raise InvalidJSON(f"{name} is not a JSON number (RFC 7493 §2.2)")


def _int_in_range(literal: str) -> int:
    if len(literal.lstrip("-")) > _SAFE_DIGITS:
        raise InvalidJSON(f"integer {literal[:20]}... is beyond ±(2^53−1) (RFC 7493 §2.2)")
    value = int(literal)
    if abs(value) > MAX_SAFE_INTEGER:
        raise InvalidJSON(f"integer {literal} is beyond ±(2^53−1) (RFC 7493 §2.2)")
    return value


def _finite_float(literal: str) -> float:
    value = float(literal)
    if value in (float("inf"), float("-inf")):
        raise InvalidJSON(f"number {literal} overflows a double (RFC 7493 §2.2)")
    return value


def _integers_only(literal: str) -> float:
    raise InvalidJSON(
        f"number {literal} has a fraction or exponent; entries hold integers only (protocol.md §3)"
    )


_SURROGATE = re.compile("[\ud800-\udfff]")
#: bytes.translate tables, which run at memory speed where a regex crawls:
_BELOW_F0 = bytes(range(0xF0))  # deleting these leaves the lead bytes of astral characters
_NUMBER_SHAPES = bytes.maketrans(b"123456789,[E", b"000000000::e")  # digits to 0, openers to :
_FRACTION_OR_EXPONENT = re.compile(rb":-?0+[.e]")  # a literal first byte: a fast search
_OPENERS = b"[{"
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


def _check_text(text: str, where: str) -> bool:
    """Reject a lone surrogate; True when ``text`` holds a character above U+FFFF."""
    if text.isascii():
        return False
    found = _SURROGATE.search(text)
    if found:
        code = ord(found.group())
        raise InvalidJSON(f"lone surrogate U+{code:04X} in {where} (RFC 7493 §2.1)")
    return _ASTRAL.search(text) is not None


def _scan(value: object, *, integers_only: bool) -> bool:
    """Raise :class:`InvalidJSON` unless ``value`` is I-JSON; True when JCS may take the fast path.

    The fast path needs no floats and no member name above U+FFFF (there, UTF-16 order and
    code point order differ).
    """
    fast = True
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is str:
            _check_text(cast(str, item), "a string")
        elif kind is bool or item is None:
            continue
        elif kind is int:
            if abs(cast(int, item)) > MAX_SAFE_INTEGER:
                raise InvalidJSON(f"integer {item} is beyond ±(2^53−1) (RFC 7493 §2.2)")
        elif kind is float:
            fast = False
            if integers_only:
                raise InvalidJSON(f"number {item!r} is not an integer (protocol.md §3)")
            if item != item or item in (float("inf"), float("-inf")):
                raise InvalidJSON(f"{item!r} is not a JSON number (RFC 7493 §2.2)")
        elif isinstance(item, Mapping):
            if depth >= MAX_DEPTH:
                raise InvalidJSON(f"nested deeper than {MAX_DEPTH} levels")
            for key, member in item.items():
                if type(key) is not str:
                    raise InvalidJSON(f"member name {key!r} is not a string")
                if _check_text(key, "a member name"):
                    fast = False
                stack.append((member, depth + 1))
        elif isinstance(item, list | tuple):
            if depth >= MAX_DEPTH:
                raise InvalidJSON(f"nested deeper than {MAX_DEPTH} levels")
            stack.extend((member, depth + 1) for member in item)
        elif isinstance(item, int):  # an int subclass (not bool): treat by value
            stack.append((int(item), depth))
        else:
            raise InvalidJSON(f"{type(item).__name__} is not a JSON value")
    return fast


def check_ijson(value: object, *, integers_only: bool = False) -> None:
    """Raise :class:`InvalidJSON` unless an already-parsed value is I-JSON.

    For values built in code rather than parsed: string keys only, no lone surrogates,
    finite floats (none at all with ``integers_only``), integers within ±(2^53−1),
    nesting within :data:`MAX_DEPTH`.
    """
    _scan(value, integers_only=integers_only)


def check_separators(data: bytes, max_separators: int) -> None:
    """Refuse ``data`` when it holds more than ``max_separators`` commas and colons."""
    count = data.count(b",") + data.count(b":")
    if count > max_separators:
        raise InvalidJSON(
            f"{count} commas and colons, more than the {max_separators} a message may hold "
            "(each member and element takes one): refused before parsing"
        )


def parse(data: bytes, *, integers_only: bool = False, max_separators: int | None = None) -> Any:
    """Parse untrusted bytes as I-JSON, or raise :class:`InvalidJSON` saying why."""
    if max_separators is not None:
        check_separators(data, max_separators)
    if data.startswith(_BOM):
        raise InvalidJSON("starts with a byte order mark (RFC 8259 §8.1)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidJSON(f"invalid UTF-8 at byte {error.start} (RFC 7493 §2.1)") from None
    try:
        value = json.loads(
            text,
            object_pairs_hook=_reject_duplicates,
            parse_constant=_reject_constant,
            parse_int=_int_in_range,
            parse_float=_integers_only if integers_only else _finite_float,
        )
    except json.JSONDecodeError as error:
        raise InvalidJSON(
            f"not JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
    except RecursionError:
        raise InvalidJSON(f"nested deeper than {MAX_DEPTH} levels") from None
    check_ijson(value, integers_only=integers_only)
    return value


def canonicalize(value: Any, *, integers_only: bool = False) -> bytes:
    """RFC 8785 canonical UTF-8 bytes of an I-JSON value (checked first, in the same walk;
    ``integers_only`` adds the entry rule of protocol.md §3)."""
    if _scan(value, integers_only=integers_only):
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    return bytes(rfc8785.dumps(value))


def parse_canonical_entry(data: bytes) -> Any | None:
    """The entry ``data`` holds, when ``data`` is already its RFC 8785 form with integers
    only (protocol.md §3); None when it is not, or when only the full path can tell.

    The fast path of audits: orjson rejects invalid UTF-8 and lone surrogates while
    parsing, and integers beyond ±(2^53−1) while serializing (``OPT_STRICT_INTEGER``), so
    what remains is cheap to rule out on the bytes: a number with a fraction or exponent
    (in compact JSON a number follows ``:``, ``,`` or ``[``; text that merely looks so,
    such as "at 10:30.", sends the caller to the full path), deep nesting, and characters
    beyond U+FFFF (where JCS and code point order may differ). A duplicate member name cannot pass:
    re-serializing would lose one of them and differ from ``data``.
    """
    if not data.startswith(b"{"):  # an entry is an object; then every number follows : , [
        return None
    if not data.isascii() and data.translate(None, _BELOW_F0):
        return None
    if _FRACTION_OR_EXPONENT.search(data.translate(_NUMBER_SHAPES)):
        return None
    if len(data) - len(data.translate(None, _OPENERS)) >= MAX_DEPTH:
        return None
    try:
        value = orjson.loads(data)
        canonical = orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER)
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        return None
    return value if canonical == data else None
