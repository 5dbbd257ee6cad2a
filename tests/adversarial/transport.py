"""Corpus layers that never get past the inbox's transport checks: JSON and HTTP signature.

Every JSON body is signed by the case's pinned partner (the HTTP signature covers the raw
bytes, so it is checked first and verifies): what is refused is the body itself. The
signature cases send a valid push (one entry) with a signature that is wrong in exactly one
way, or a keyid that names what no node may fetch.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import hmac
import itertools
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import http_sf

from exchange.httpsig import REQUIRED_COMPONENTS, content_digest, signature_base
from exchange.keys import KeyPair
from tests.adversarial.corpus import Case, Inbox, Message, Stage, Stream, push_of, signed
from tests.adversarial.harness import ACTIVITY_JSON, signed_headers

__all__ = ["HTTP_SIGNATURE", "JSON"]

MiB = 1024 * 1024


def _page(stage: Stage, items: str = "[]", **extra: str) -> str:
    """A push page written by hand, so that any part of it can be made hostile."""
    members = {
        "type": '"OrderedCollectionPage"',
        "partOf": json.dumps(f"{stage.sim.base_url}/feed"),
        "startIndex": "0",
        "orderedItems": items,
        "checkpoint": json.dumps(stage.sim.signed_checkpoint()),
        **extra,
    }
    return "{" + ",".join(f'"{name}":{value}' for name, value in members.items()) + "}"


def body(make: Callable[[Stage], bytes | str], **options: str) -> Inbox:
    """A case whose body ``make`` writes, signed by the partner (with Content-Type
    ``options['content_type']`` when given)."""

    async def build(stage: Stage) -> Message:
        made = make(stage)
        data = made.encode() if isinstance(made, str) else made
        return signed(stage, data, **options)

    return Inbox(build)


@functools.cache
def million_members() -> bytes:
    """One JSON object of 1,000,000 distinct short member names (7.8 MiB: under the 8 MiB
    body limit), the shape that makes a parser build a million-entry table."""
    alphabet = [chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"\\']
    names = itertools.islice(
        ("".join(t) for n in (1, 2, 3, 4) for t in itertools.product(alphabet, repeat=n)),
        1_000_000,
    )
    return ("{" + ",".join(f'"{name}":0' for name in names) + "}").encode()


@functools.cache
def gzip_bomb() -> bytes:
    """256 MiB of zeros as gzip: about 250 KiB on the wire."""
    return gzip.compress(bytes(256 * MiB), compresslevel=9)


async def _gzip_bomb(stage: Stage) -> Message:
    bomb = gzip_bomb()
    message = signed(stage, bomb)
    return Message(bomb, {**message.headers, "Content-Encoding": "gzip"})


def _streamed(chunked: bool) -> Callable[[Stage], Awaitable[Stream]]:
    async def build(stage: Stage) -> Stream:
        # The signature headers are those of an empty body: the node must refuse the
        # request on its size before it reads (or digests) anything of it.
        head = dict(signed(stage, b"").headers)
        return Stream(head, bytes(64 * 1024), 100 * 1000 * 1000, chunked=chunked)

    return build


JSON = [
    Case(
        "json-duplicate-member",
        "json",
        "invalid-json",
        400,
        body(lambda s: _page(s).replace('{"type"', '{"type":"Follow","type"', 1)),
        "RFC 7493 §2.3: two 'type' members; a parser keeping the last one would differ",
    ),
    Case(
        "json-duplicate-member-deep",
        "json",
        "invalid-json",
        400,
        body(lambda s: _page(s, items='[{"seq":0,"seq":1}]')),
        "a duplicate inside an entry of a push",
    ),
    Case("json-nan", "json", "invalid-json", 400, body(lambda s: _page(s, startIndex="NaN"))),
    Case(
        "json-infinity",
        "json",
        "invalid-json",
        400,
        body(lambda s: _page(s, startIndex="-Infinity")),
    ),
    Case(
        "json-lone-surrogate",
        "json",
        "invalid-json",
        400,
        body(lambda s: _page(s, summary='"\\ud800 lone"')),
        "RFC 7493 §2.1: an escaped lone surrogate is no Unicode text",
    ),
    Case(
        "json-invalid-utf8",
        "json",
        "invalid-json",
        400,
        body(
            lambda s: (
                _page(s).encode().replace(b'"OrderedCollectionPage"', b'"Ordered\xc0\xafPage"')
            )
        ),
        "an overlong encoding of '/'",
    ),
    Case(
        "json-byte-order-mark",
        "json",
        "invalid-json",
        400,
        body(lambda s: b"\xef\xbb\xbf" + _page(s).encode()),
    ),
    Case(
        "json-integer-beyond-2-53",
        "json",
        "invalid-json",
        400,
        body(lambda s: _page(s, startIndex="9007199254740993")),
        "2^53 + 1 reads as 2^53 in a double: two numbers, one value",
    ),
    Case(
        "json-integer-of-5000-digits",
        "json",
        "invalid-json",
        400,
        body(lambda s: _page(s, startIndex="9" * 5000)),
        "beyond Python's int-from-string digit limit: a ValueError that is not a JSON error",
    ),
    Case(
        "json-number-with-exponent",
        "json",
        "invalid-json",
        400,
        body(lambda s: _page(s, startIndex="1e2")),
        "protocol.md §3: inbox bodies carry entries, whose numbers are integers only",
    ),
    Case(
        "json-nesting-10000-deep",
        "json",
        "invalid-json",
        400,
        body(lambda s: _page(s, items="[" * 10_000 + "]" * 10_000)),
    ),
    Case(
        "json-a-million-members",
        "json",
        "invalid-json",
        400,
        body(lambda s: million_members()),
        "7.8 MiB, under the body limit: refused on its structure before it is parsed",
    ),
    Case(
        "json-100-mb-body-with-length",
        "json",
        "too-large",
        413,
        Inbox(_streamed(chunked=False)),
        "a declared 100 MB body: 413 before the node reads it (at most 1 MiB read)",
    ),
    Case(
        "json-100-mb-body-chunked",
        "json",
        "length-required",
        411,
        Inbox(_streamed(chunked=True)),
        "100 MB without a declared length: refused before reading (at most 1 MiB read)",
    ),
    Case(
        "json-gzip-bomb",
        "json",
        "unsupported-media-type",
        415,
        Inbox(_gzip_bomb),
        "256 MiB of zeros in 250 KiB of gzip: the inbox takes no content coding",
    ),
    Case(
        "json-trailing-data",
        "json",
        "invalid-json",
        400,
        body(lambda s: _page(s) + '{"type":"Follow"}'),
        "a second document after the first: a lenient parser reads the first only",
    ),
    Case("json-top-level-array", "json", "bad-request", 400, body(lambda s: f"[{_page(s)}]")),
    Case("json-top-level-string", "json", "bad-request", 400, body(lambda s: '"Follow"')),
    Case("json-empty-body", "json", "invalid-json", 400, body(lambda s: b"")),
    Case(
        "json-wrong-content-type",
        "json",
        "unsupported-media-type",
        415,
        body(_page, content_type="text/plain"),
    ),
]


# --- HTTP signature ------------------------------------------------------------------------


def _valid_push(stage: Stage) -> bytes:
    """A valid push of one new entry of the partner."""
    stage.sim.create("signed-push")
    return push_of(stage, 0).body


def _tampered(change: Callable[[Stage, bytes], Message]) -> Inbox:
    async def build(stage: Stage) -> Message:
        return change(stage, _valid_push(stage))

    return Inbox(build)


def _digest_mismatch(stage: Stage, data: bytes) -> Message:
    message = signed(stage, data)
    return Message(data.replace(b"signed-push", b"forged-push"), message.headers)


def _without_signature(stage: Stage, data: bytes) -> Message:
    return Message(data, {"Content-Type": ACTIVITY_JSON, "Content-Digest": content_digest(data)})


def _covering(*components: str) -> Callable[[Stage, bytes], Message]:
    return lambda stage, data: signed(stage, data, components=components)


def _at(offset: timedelta) -> Callable[[Stage, bytes], Message]:
    return lambda stage, data: signed(stage, data, now=datetime.now(UTC) + offset)


def _params(
    alg: str | None, sign: Callable[[Stage, bytes], bytes]
) -> Callable[[Stage, bytes], Message]:
    """A signature whose parameters name ``alg`` (or none), made by ``sign`` over the base."""

    def make(stage: Stage, data: bytes) -> Message:
        headers = {"Content-Type": ACTIVITY_JSON, "Content-Digest": content_digest(data)}
        params: dict[str, int | str] = {
            "created": int(datetime.now(UTC).timestamp()),
            "keyid": stage.key.id,
        }
        if alg is not None:
            params["alg"] = alg
        base = signature_base(
            method="POST",
            target_uri=stage.world.inbox,
            headers=headers,
            components=REQUIRED_COMPONENTS,
            params=params,
        )
        inner: http_sf.InnerListType = ([(c, {}) for c in REQUIRED_COMPONENTS], params)
        headers["Signature-Input"] = http_sf.ser({"sig1": inner})
        headers["Signature"] = http_sf.ser({"sig1": sign(stage, base)})
        return Message(data, headers)

    return make


def _hmac_with_public_key(stage: Stage, base: bytes) -> bytes:
    """Algorithm confusion: the public key, which anyone has, used as an HMAC secret."""
    return hmac.new(stage.key.public_raw, base, hashlib.sha256).digest()


def _by_key(
    key: Callable[[Stage], KeyPair], **options: object
) -> Callable[[Stage, bytes], Message]:
    return lambda stage, data: signed(stage, data, key=key(stage), **options)


def _keyid(make: Callable[[Stage], str]) -> Inbox:
    """A request signed by a key whose keyid is ``make(stage)``: refused with 403 before
    anything is fetched (protocol.md §6), so the listener it may name sees no connection."""

    async def build(stage: Stage) -> Message:
        key = KeyPair(make(stage), hashlib.sha256(b"corpus keyid").digest())
        return signed(stage, _valid_push(stage), key=key)

    return Inbox(build)


def _listener(stage: Stage) -> str:
    return f"127.0.0.1:{stage.world.listener.port}"


def _signed_as(method: str, target: str | None) -> Callable[[Stage, bytes], Message]:
    def make(stage: Stage, data: bytes) -> Message:
        where = target or stage.world.inbox
        return Message(data, signed_headers(where, data, stage.key, method=method))

    return make


async def _replayed(stage: Stage) -> Message:
    return signed(stage, _valid_push(stage))


async def _flood(stage: Stage) -> None:
    """Requests of the partner (answered 400, nothing to merge) until the node says 429."""
    for _ in range(500):
        message = signed(stage, b"{}")
        if (await stage.world.post(message.body, message.headers)).status == 429:
            return
    raise AssertionError("500 requests in a row and no 429")


async def _one_more(stage: Stage) -> Message:
    return signed(stage, _valid_push(stage))


HTTP_SIGNATURE = [
    Case(
        "signature-missing", "http-signature", "http-signature", 401, _tampered(_without_signature)
    ),
    Case(
        "signature-digest-mismatch",
        "http-signature",
        "http-signature",
        401,
        _tampered(_digest_mismatch),
        "Misskey CVE-2023-49079: the body changed after signing; Content-Digest no longer matches",
    ),
    Case(
        "signature-content-digest-not-covered",
        "http-signature",
        "http-signature",
        401,
        _tampered(_covering("@method", "@target-uri", "content-type")),
        "the body could be swapped under a valid signature",
    ),
    Case(
        "signature-target-uri-not-covered",
        "http-signature",
        "http-signature",
        401,
        _tampered(_covering("@method", "content-type", "content-digest")),
        "Misskey CVE-2023-49079: a signature for another host's inbox would be replayable here",
    ),
    Case(
        "signature-created-stale",
        "http-signature",
        "http-signature",
        401,
        _tampered(_at(timedelta(hours=-1))),
    ),
    Case(
        "signature-created-in-the-future",
        "http-signature",
        "http-signature",
        401,
        _tampered(_at(timedelta(hours=1))),
    ),
    Case(
        "signature-for-another-inbox",
        "http-signature",
        "http-signature",
        401,
        _tampered(_signed_as("POST", "http://127.0.0.1:9/inbox")),
        "a valid signature captured at another node's inbox, replayed here",
    ),
    Case(
        "signature-for-another-method",
        "http-signature",
        "http-signature",
        401,
        _tampered(_signed_as("PUT", None)),
    ),
    Case(
        "signature-exact-replay",
        "http-signature",
        None,
        202,
        Inbox(_replayed, replay=True),
        "the same signed push twice within the clock window: accepted twice, applied once",
    ),
    Case(
        "signature-alg-hmac-with-public-key",
        "http-signature",
        "http-signature",
        401,
        _tampered(_params("hmac-sha256", _hmac_with_public_key)),
        "algorithm confusion: the public key as an HMAC secret",
    ),
    Case(
        "signature-alg-rsa",
        "http-signature",
        "http-signature",
        401,
        _tampered(_params("rsa-pss-sha512", lambda stage, base: bytes(256))),
    ),
    Case(
        "signature-alg-missing",
        "http-signature",
        "http-signature",
        401,
        _tampered(_params(None, lambda stage, base: stage.key.sign(base))),
        "a valid Ed25519 signature, but protocol.md §6 requires alg",
    ),
    Case(
        "signature-by-another-partners-key",
        "http-signature",
        "http-signature",
        401,
        _tampered(_by_key(lambda s: KeyPair(s.key.id, s.world.bystander.key.seed))),
        "the partner's keyid, signed with the key of another pinned partner",
    ),
    Case(
        "signature-key-not-listed",
        "http-signature",
        "http-signature",
        401,
        _tampered(_by_key(lambda s: KeyPair(f"{s.sim.base_url}/keys/unlisted", bytes(32)))),
        "a keyid under the partner's base URL that its node document does not list",
    ),
    Case(
        "inbox-flood-past-the-burst",
        "http-signature",
        "too-many-requests",
        429,
        Inbox(_one_more, setup=_flood),
        "a partner past its token bucket (decisions.md: 600 a minute, bursts of 60)",
    ),
    Case(
        "keyid-loopback",
        "http-signature",
        "forbidden",
        403,
        _keyid(lambda s: f"http://{_listener(s)}/keys/1"),
        "mastodon#5482: a keyid naming a local address is never fetched",
    ),
    Case(
        "keyid-localhost-https",
        "http-signature",
        "forbidden",
        403,
        _keyid(lambda s: f"https://localhost:{s.world.listener.port}/actor#main-key"),
    ),
    Case(
        "keyid-cloud-metadata",
        "http-signature",
        "forbidden",
        403,
        _keyid(lambda s: "http://169.254.169.254/latest/meta-data/iam/keys/1"),
    ),
    Case(
        "keyid-port-1",
        "http-signature",
        "forbidden",
        403,
        _keyid(lambda s: "http://127.0.0.1:1/keys/1"),
    ),
    Case(
        "keyid-userinfo-look-alike",
        "http-signature",
        "forbidden",
        403,
        _keyid(lambda s: f"http://127.0.0.1:{s.sim.port}@{_listener(s)}{s.sim.prefix}/keys/2026-1"),
        "the partner's host and port as user information before the listener's address",
    ),
    Case(
        "keyid-not-a-url",
        "http-signature",
        "forbidden",
        403,
        _keyid(lambda s: "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"),
    ),
    Case(
        "keyid-invalid-port",
        "http-signature",
        "forbidden",
        403,
        _keyid(lambda s: "http://127.0.0.1:99999/keys/1"),
    ),
]
