"""Fuzz target: RFC 9421 parsing and verification (exchange.httpsig.signature_key_id,
signature_key_ids and verify_request) on fuzzed headers.

Input: the first byte chooses the mode. Text mode (``t``; the second byte picks the method):
the rest is header lines, a blank line
and a body (seeds: a push the simulated partner signed); values are decoded as aiohttp
decodes them (UTF-8, undecodable bytes as lone surrogates), a name may repeat. Edit mode:
the signed push with one header replaced, spliced, cut or repeated, and maybe its method or
a byte of its body changed, all drawn from the rest.

Crashes: an exception but an ExchangeError; a request accepted that is not the one the
partner signed (another method or body, a covered field with another value, another keyid).
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import atheris
from multidict import CIMultiDict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

with atheris.instrument_imports(include=["exchange", "http_sf"]):
    from exchange.errors import ExchangeError
    from exchange.httpsig import signature_key_id, signature_key_ids, verify_request
    from fuzz.harness import INBOX, NOW, joined_fields, partner, signed_request

PARTNER = partner()
SIGNED = signed_request()
SIGNED_FIELDS = joined_fields(SIGNED.headers)
METHODS = ("POST", "post", "GET", "PUT", "P\x00ST", "")


def _text_request(raw: bytes) -> tuple[list[tuple[str, str]], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    headers = []
    for line in head.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if colon:
            text = value.decode("utf-8", "surrogateescape").strip(" \t")
            headers.append((name.decode("utf-8", "surrogateescape"), text))
    return headers, body


def _edited_request(
    provider: atheris.FuzzedDataProvider,
) -> tuple[str, list[tuple[str, str]], bytes]:
    headers = list(SIGNED.headers)
    body = SIGNED.body
    method = SIGNED.method
    for _ in range(provider.ConsumeIntInRange(1, 3)):
        index = provider.ConsumeIntInRange(0, len(headers) - 1)
        name, value = headers[index]
        action = provider.ConsumeIntInRange(0, 6)
        size = provider.ConsumeIntInRange(0, 64)
        fresh = provider.ConsumeBytes(size).decode("utf-8", "surrogateescape")
        at = provider.ConsumeIntInRange(0, len(value))
        if action == 0:
            headers[index] = (name, fresh)
        elif action == 1:
            headers[index] = (name, value[:at] + fresh + value[at:])
        elif action == 2:
            headers[index] = (name, value[:at] + value[at + size :])
        elif action == 3:
            headers.append((name.upper(), fresh))
        elif action == 4:
            headers.append((provider.ConsumeUnicodeNoSurrogates(12), fresh))
        elif action == 5:
            del headers[index]
            if not headers:
                break
        else:
            method = METHODS[provider.ConsumeIntInRange(0, len(METHODS) - 1)]
    if provider.ConsumeIntInRange(0, 7) == 0 and body:
        at = provider.ConsumeIntInRange(0, len(body) - 1)
        body = body[:at] + bytes([provider.ConsumeIntInRange(0, 255)]) + body[at + 1 :]
    return method, headers, body


def test_one_input(data: bytes) -> None:
    if data[:1] == b"t":
        method = METHODS[data[1] % 3] if len(data) > 1 else SIGNED.method
        headers, body = _text_request(data[2:])
    else:
        method, headers, body = _edited_request(atheris.FuzzedDataProvider(data[1:]))
    request_headers = CIMultiDict(headers)  # as aiohttp gives the inbox its headers
    for read in (signature_key_id, signature_key_ids):
        with contextlib.suppress(ExchangeError):
            read(request_headers)
    try:
        verified = verify_request(
            method=method,
            target_uri=INBOX,
            headers=request_headers,
            body=body,
            resolve_key=PARTNER.keys.resolve,
            now=NOW,
        )
    except ExchangeError:
        return
    fields = joined_fields(headers)
    changed = [
        name
        for name in verified.covered_components
        if not name.startswith("@") and fields.get(name) != SIGNED_FIELDS.get(name)
    ]
    if method.upper() != SIGNED.method or body != SIGNED.body or changed:
        raise AssertionError(f"verify_request accepted a changed request ({method}, {changed})")
    if verified.key_id != PARTNER.simulator.key.id:
        raise AssertionError(f"verify_request accepted keyid {verified.key_id!r}")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
