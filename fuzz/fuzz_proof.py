"""Fuzz target: Data Integrity proof verification (exchange.proof.verify_document) and the
whole entry check a node runs on what a partner sends (exchange.merge.verify_entry).

Input: the first byte chooses the mode. Text mode (``t``): the rest is a document's bytes, parsed
with the I-JSON parser (seeds: the simulated partner's signed entries). Edit mode: one of
the partner's signed entries is changed by structural edits drawn from the rest (a member
replaced, deleted, added, or a value copied over another: a proof set, a moved id).

Crashes: an exception but an ExchangeError; a document accepted whose unsecured content or
proof differs from what the partner signed (the signature cannot be forged, so accepting a
changed document is a bug); an entry accepted whose canonical bytes are not the signed leaf.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

with atheris.instrument_imports(include=["exchange", "base58"]):
    from exchange.canonical import canonicalize, parse
    from exchange.errors import ExchangeError
    from exchange.keys import PublicKey
    from exchange.merge import verify_entry
    from exchange.proof import did_key_resolver, verify_document
    from fuzz.harness import NOW, mutate, partner

PARTNER = partner()
ENTRIES = PARTNER.entries()


def resolve(method: str) -> PublicKey:
    """The partner's keys; any other did:key is resolved from itself (more parsing to fuzz)."""
    try:
        return PARTNER.keys.resolve(method)
    except ExchangeError:
        return did_key_resolver(method)


def _unsecured(document: dict[str, Any]) -> bytes:
    return canonicalize({name: value for name, value in document.items() if name != "proof"})


SIGNED = [(_unsecured(entry), canonicalize(entry["proof"])) for entry in ENTRIES]


def test_one_input(data: bytes) -> None:
    if data[:1] == b"t":
        try:
            document = parse(data[1:])
        except ExchangeError:
            return
    else:
        provider = atheris.FuzzedDataProvider(data[1:])
        original = ENTRIES[provider.ConsumeIntInRange(0, len(ENTRIES) - 1)]
        document = mutate(parse(canonicalize(original)), provider, provider.ConsumeIntInRange(1, 4))
    if not isinstance(document, dict):
        return
    try:
        verify_document(document, resolve, NOW)
    except ExchangeError:
        pass
    else:
        proofs = document["proof"] if isinstance(document["proof"], list) else [document["proof"]]
        signed = (_unsecured(document), *(canonicalize(proof) for proof in proofs))
        if not any(
            signed[0] == unsecured and set(signed[1:]) == {proof} for unsecured, proof in SIGNED
        ):
            raise AssertionError("verify_document accepted a document the partner did not sign")
    seq = document.get("seq")
    expected = seq if isinstance(seq, int) and 0 <= seq < len(ENTRIES) else 0
    try:
        entry = verify_entry(
            document, base_url=PARTNER.base_url, expected_seq=expected, keys=PARTNER.keys, now=NOW
        )
    except ExchangeError:
        return
    if entry.leaf != PARTNER.leaves[expected] and entry.activity != "Redacted":
        raise AssertionError(f"verify_entry accepted a changed entry {expected}")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
