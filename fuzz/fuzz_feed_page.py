"""Fuzz target: the feed-page parser and checker (exchange.verification.parse_page and
check_page), what a node runs on every page it pulls or is pushed.

Input: the first byte chooses the mode and the second the page's startIndex. Text mode
(``t``): the
rest is the raw page (seeds: the simulated partner's feed pages). Edit mode: one of the
partner's pages, parsed, changed by structural edits drawn from the rest, and serialized
compactly again (the form the fast path takes).

Crashes: an exception but an ExchangeError; parse_page's fast path taking a page that the
strict I-JSON parser refuses, or reading another value than it; an entry verified that is
not the leaf the partner signed at that position.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

with atheris.instrument_imports(include=["exchange"]):
    from exchange.canonical import parse
    from exchange.errors import ExchangeError
    from exchange.verification import check_page, parse_page
    from fuzz.harness import NOW, mutate, partner

PARTNER = partner()


def test_one_input(data: bytes) -> None:
    start = data[1] % (len(PARTNER.leaves) + 2) if len(data) > 1 else 0
    if data[:1] == b"t":
        raw = data[2:]
    else:
        provider = atheris.FuzzedDataProvider(data[2:])
        source = PARTNER.pages[provider.ConsumeIntInRange(0, len(PARTNER.pages) - 1)][1]
        page = mutate(json.loads(source), provider, provider.ConsumeIntInRange(1, 3))
        raw = json.dumps(page, ensure_ascii=False, separators=(",", ":")).encode(
            "utf-8", "surrogatepass"
        )
    try:
        parsed, _ = parse_page(raw)
    except ExchangeError:
        return
    try:
        strict = parse(raw)
    except ExchangeError as error:
        raise AssertionError(f"parse_page took a page parse refuses: {error.detail}") from None
    if strict != parsed:
        raise AssertionError("parse_page read another page than parse")
    checked = check_page(raw, start, PARTNER.base_url, PARTNER.keys, NOW).checked
    for item in checked:
        entry = item.entry
        if entry is None or entry.activity == "Redacted":
            continue
        if not 0 <= item.seq < len(PARTNER.leaves) or entry.leaf != PARTNER.leaves[item.seq]:
            raise AssertionError(
                f"check_page verified an entry the partner did not sign at {item.seq}"
            )


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
