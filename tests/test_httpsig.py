"""RFC 9421 HTTP message signatures on the inbox: RFC vectors, round trips, a row per attack."""

from __future__ import annotations

import ast
import base64
import hashlib
import hmac
import json
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import http_sf
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from exchange import httpsig
from exchange.errors import IntegrityError, InvalidKey, SignatureError, UsageError
from exchange.httpsig import (
    REQUIRED_COMPONENTS,
    VerifiedSignature,
    content_digest,
    sign_request,
    signature_base,
    signature_key_id,
    signature_key_ids,
    verify_request,
)
from exchange.keys import KeyPair, PublicKey
from tests.test_layers import FORBIDDEN_IN_CORE, SHELL_MODULES, imported_modules

NOW = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
TARGET = "https://b.example/inbox"
BODY = b'{"type":"Follow","actor":"https://a.example/","object":"https://b.example/"}'
CONTENT_TYPE = {"Content-Type": "application/activity+json"}
KEY = KeyPair("https://a.example/keys/2026-1", bytes(range(32)))
OTHER = KeyPair("https://a.example/keys/2026-1", bytes(range(1, 33)))  # same id, other key
PROXY = KeyPair("https://proxy.example/keys/1", bytes(range(2, 34)))


def b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def partners(*keys: PublicKey) -> Callable[[str], PublicKey]:
    """A resolver over configured partners' keys: never fetches, unknown ids raise."""
    known = {key.id: key for key in keys}

    def resolve(key_id: str) -> PublicKey:
        if key_id not in known:
            raise InvalidKey(f"{key_id} is not a key of a configured partner")
        return known[key_id]

    return resolve


@dataclass(frozen=True)
class Request:
    """A received request as the inbox sees it, plus the verifier's clock and keys."""

    headers: Mapping[str, str]
    body: bytes = BODY
    method: str = "POST"
    target_uri: str = TARGET
    now: datetime = NOW
    resolve_key: Callable[[str], PublicKey] = field(default=partners(KEY.public))

    def verify(self, **options: Any) -> VerifiedSignature:
        return verify_request(
            method=self.method,
            target_uri=self.target_uri,
            headers=self.headers,
            body=self.body,
            resolve_key=self.resolve_key,
            now=self.now,
            **options,
        )

    def with_headers(self, **changes: str | None) -> Request:
        """Replace (or, with None, drop) headers; names as Python identifiers."""
        headers = dict(self.headers)
        for name, value in changes.items():
            header = name.replace("_", "-")
            headers = {k: v for k, v in headers.items() if k.lower() != header.lower()}
            if value is not None:
                headers[header] = value
        return replace(self, headers=headers)


def signed(
    *,
    body: bytes = BODY,
    key: KeyPair = KEY,
    now: datetime = NOW,
    components: Sequence[str] = REQUIRED_COMPONENTS,
    label: str = "sig1",
) -> Request:
    """A request signed by our own signer."""
    headers = dict(CONTENT_TYPE)
    headers |= sign_request(
        method="POST",
        target_uri=TARGET,
        headers=headers,
        body=body,
        key=key,
        now=now,
        label=label,
        components=components,
    )
    return Request(headers=headers, body=body)


def forged(
    params: dict[str, http_sf.types.BareItemType],
    *,
    components: Sequence[str] = REQUIRED_COMPONENTS,
    sign: Callable[[bytes], bytes] = KEY.sign,
    extra_headers: Mapping[str, str] | None = None,
    label: str = "sig1",
) -> Request:
    """A request whose signature really covers ``params`` and ``components``: only the
    attacked property is wrong, so the row shows that check and not another one."""
    headers = {**CONTENT_TYPE, "Content-Digest": content_digest(BODY), **(extra_headers or {})}
    as_params = cast(Mapping[str, int | str], params)
    base = signature_base(
        method="POST", target_uri=TARGET, headers=headers, components=components, params=as_params
    )
    inner: http_sf.InnerListType = ([(name, {}) for name in components], params)
    headers["Signature-Input"] = http_sf.ser({label: inner})
    headers["Signature"] = http_sf.ser({label: sign(base)})
    return Request(headers=headers)


CREATED = int(NOW.timestamp())
GOOD_PARAMS: dict[str, http_sf.types.BareItemType] = {
    "created": CREATED,
    "keyid": KEY.id,
    "alg": "ed25519",
}


# --- RFC 9421 B.2.6 and RFC 9530 vectors -------------------------------------------------


# Source: RFC 9421 Appendix B.1.4 (test-key-ed25519) and B.2.6 (signing a request using
# ed25519); Content-Digest values of RFC 9530 Appendix B.1 (shared/vectors/rfc9421).
@pytest.fixture(scope="module")
def b26(vectors: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((vectors / "rfc9421" / "b26-ed25519.json").read_text())
    return data


def b26_key(b26: dict[str, Any]) -> KeyPair:
    return KeyPair(b26["key"]["kid"], b64url(b26["key"]["d"]))


def b26_request(b26: dict[str, Any]) -> Request:
    public = PublicKey(b26["key"]["kid"], b64url(b26["key"]["x"]))
    headers = dict(b26["request"]["headers"])
    headers["Signature-Input"] = b26["signature_input"]
    headers["Signature"] = b26["signature"]
    return Request(
        headers=headers,
        body=b26["request"]["body"].encode(),
        method=b26["request"]["method"],
        target_uri=b26["request"]["url"],
        # created=1618884473; the Date header says two seconds later.
        now=datetime.fromtimestamp(1618884475, UTC),
        resolve_key=partners(public),
    )


B26_COMPONENTS = ("date", "@method", "@path", "@authority", "content-type", "content-length")
B26_PARAMS: dict[str, int | str] = {"created": 1618884473, "keyid": "test-key-ed25519"}


def test_rfc9421_b26_jwk_private_key_matches_its_public_key(b26: dict[str, Any]) -> None:
    assert b26_key(b26).public_raw == b64url(b26["key"]["x"])


def test_rfc9421_b26_signature_base_is_reproduced(b26: dict[str, Any]) -> None:
    base = signature_base(
        method=b26["request"]["method"],
        target_uri=b26["request"]["url"],
        headers=b26["request"]["headers"],
        components=B26_COMPONENTS,
        params=B26_PARAMS,
    )
    assert base.decode("ascii") == b26["signature_base"]


def test_rfc9421_b26_key_ids_are_parsed(b26: dict[str, Any]) -> None:
    request = b26_request(b26)
    assert signature_key_id(request.headers) == "test-key-ed25519"
    assert signature_key_ids(request.headers) == ("test-key-ed25519",)


def test_rfc9421_b26_signature_verifies(b26: dict[str, Any]) -> None:
    verified = b26_request(b26).verify(
        required_components=B26_COMPONENTS, unsafe_allow_missing_alg=True
    )
    assert verified == VerifiedSignature(
        "test-key-ed25519", datetime.fromtimestamp(1618884473, UTC), B26_COMPONENTS
    )


def test_rfc9421_b26_has_no_alg_so_the_strict_default_refuses_it(b26: dict[str, Any]) -> None:
    with pytest.raises(SignatureError, match="alg: missing"):
        b26_request(b26).verify(required_components=B26_COMPONENTS)


def test_rfc9421_b26_with_the_default_policy_lacks_our_components(b26: dict[str, Any]) -> None:
    with pytest.raises(SignatureError, match="@target-uri, content-digest not covered"):
        b26_request(b26).verify(unsafe_allow_missing_alg=True)


def test_rfc9421_b26_resigning_reproduces_the_signature_bytes(b26: dict[str, Any]) -> None:
    base = b26["signature_base"].encode("ascii")
    signature = b26_key(b26).sign(base)  # Ed25519 is deterministic (RFC 8032)
    assert http_sf.ser({"sig-b26": signature}) == b26["signature"]


def test_rfc9530_sha256_content_digest(b26: dict[str, Any]) -> None:
    vector = b26["content_digest_rfc9530_b1"]
    assert content_digest(vector["body"].encode()) == vector["sha-256"]


def test_rfc9530_sha512_content_digest_is_checked_too(b26: dict[str, Any]) -> None:
    # The B.2 request carries an uncovered sha-512 Content-Digest; it is still recomputed.
    vector = b26["content_digest_rfc9530_b1"]
    assert b26["request"]["headers"]["Content-Digest"] == vector["sha-512"]
    request = b26_request(b26)
    options: dict[str, Any] = {
        "required_components": B26_COMPONENTS,
        "unsafe_allow_missing_alg": True,
    }
    request.verify(**options)
    with pytest.raises(SignatureError, match="Content-Digest: sha-512 does not match the body"):
        replace(request, body=b'{"hello": "World"}').verify(**options)


# --- sign -> verify ----------------------------------------------------------------------


def test_sign_then_verify_round_trip() -> None:
    request = signed()
    assert request.verify() == VerifiedSignature(KEY.id, NOW, REQUIRED_COMPONENTS)


def test_signed_headers_are_those_of_protocol_section_6() -> None:
    headers = sign_request(
        method="post", target_uri=TARGET, headers=CONTENT_TYPE, body=BODY, key=KEY, now=NOW
    )
    assert set(headers) == {"Content-Digest", "Signature-Input", "Signature"}
    assert headers["Content-Digest"] == content_digest(BODY)
    assert headers["Signature-Input"] == (
        'sig1=("@method" "@target-uri" "content-type" "content-digest")'
        f';created={CREATED};keyid="{KEY.id}";alg="ed25519"'
    )
    parsed = http_sf.parse(headers["Signature"].encode(), tltype="dictionary")
    assert isinstance(parsed, dict)
    assert list(parsed) == ["sig1"]
    member = parsed["sig1"]
    assert isinstance(member, tuple)
    assert isinstance(member[0], bytes)
    assert len(member[0]) == 64


def test_created_is_the_signing_second_rounded_down() -> None:
    verified = signed(now=NOW + timedelta(microseconds=999_999)).verify()
    assert verified.created == NOW


def test_extra_covered_components_round_trip() -> None:
    components = (*REQUIRED_COMPONENTS, "@authority", "@path", "@query", "@scheme")
    assert signed(components=components).verify().covered_components == components


@given(body=st.binary(max_size=4096), flip=st.integers(min_value=0))
def test_any_body_round_trips_and_one_flipped_byte_fails(body: bytes, flip: int) -> None:
    request = signed(body=body)
    assert request.verify().key_id == KEY.id
    if body:
        index = flip % len(body)
        tampered = body[:index] + bytes([body[index] ^ 0x01]) + body[index + 1 :]
        with pytest.raises(SignatureError, match="Content-Digest: sha-256 does not match"):
            replace(request, body=tampered).verify()


# --- attacks: one named row per verification branch --------------------------------------

GOOD = signed()


def hmac_with_public_key(base: bytes) -> bytes:
    """Algorithm confusion: an HMAC keyed with the (public) Ed25519 key bytes."""
    return hmac.new(KEY.public_raw, base, hashlib.sha256).digest()


def p256_key(key_id: str) -> PublicKey:
    """A resolver gone wrong: hands back a key that needs another algorithm."""
    return cast(PublicKey, ec.generate_private_key(ec.SECP256R1()).public_key())


def flip_signature(value: str) -> str:
    label, _, encoded = value.partition("=")
    raw = bytearray(base64.b64decode(encoded.strip(":")))
    raw[0] ^= 0x80
    return f"{label}=:{base64.b64encode(bytes(raw)).decode()}:"


ATTACKS = [
    # the headers themselves
    pytest.param(
        GOOD.with_headers(signature=None), "Signature: header missing", id="signature_missing"
    ),
    pytest.param(
        GOOD.with_headers(signature_input=None),
        "Signature-Input: header missing",
        id="signature_input_missing",
    ),
    pytest.param(
        GOOD.with_headers(signature_input="sig1=((("),
        "Signature-Input: malformed structured field",
        id="garbage_signature_input",
    ),
    pytest.param(
        GOOD.with_headers(signature_input='sig1=("@method" "content-type";;'),
        "Signature-Input: malformed structured field",
        id="garbage_signature_input_unterminated",
    ),
    pytest.param(
        GOOD.with_headers(signature="sig1=:not base64!:"),
        "Signature: malformed structured field",
        id="garbage_signature",
    ),
    pytest.param(
        GOOD.with_headers(signature_input='sig1=("@method");keyid="é"'),
        "Signature-Input: malformed structured field \\(not ASCII\\)",
        id="non_ascii_signature_input",
    ),
    pytest.param(
        GOOD.with_headers(signature_input=""),
        "Signature-Input: no signature in it",
        id="empty_signature_input",
    ),
    pytest.param(
        GOOD.with_headers(signature='sig1="c2lnbmF0dXJl"'),
        "Signature 'sig1': not a byte sequence",
        id="signature_not_a_byte_sequence",
    ),
    pytest.param(
        GOOD.with_headers(signature_input=f'sig1="@method";keyid="{KEY.id}"'),
        "not an inner list",
        id="signature_input_not_an_inner_list",
    ),
    pytest.param(
        GOOD.with_headers(
            signature_input=GOOD.headers["Signature-Input"]
            + ', sig1=("@method");created=1;keyid="https://evil.example/k"'
        ),
        "Signature-Input: duplicate dictionary key 'sig1'",
        id="duplicate_signature_input_labels",
    ),
    pytest.param(
        GOOD.with_headers(
            signature_input=GOOD.headers["Signature-Input"] + ';keyid="https://evil.example/k"'
        ),
        "Signature-Input: duplicate parameter key 'keyid'",
        id="duplicate_keyid_parameter_smuggling",
    ),
    pytest.param(
        GOOD.with_headers(signature=GOOD.headers["Signature"].replace("sig1=", "sig2=")),
        "labels are not those of Signature-Input",
        id="signature_labels_differ",
    ),
    pytest.param(
        GOOD.with_headers(
            signature_input=", ".join(
                f'sig{n}=("@method");created={CREATED};keyid="k{n}"' for n in range(9)
            ),
            signature=", ".join(f"sig{n}=:AAAA:" for n in range(9)),
        ),
        "more than 8 signatures",
        id="too_many_signatures",
    ),
    pytest.param(
        forged({"keyid": KEY.id, "created": CREATED, "alg": "ed25519", "foo": 1}),
        "unknown parameter 'foo'",
        id="unknown_signature_parameter",
    ),
    pytest.param(
        GOOD.with_headers(
            signature_input=GOOD.headers["Signature-Input"].replace(
                '"content-digest"', '"content-digest";key="sha-512"'
            )
        ),
        "component parameters are not supported",
        id="component_parameter_dictionary_member_games",
    ),
    pytest.param(forged({**GOOD_PARAMS, "keyid": ""}), "keyid missing", id="keyid_empty_string"),
    pytest.param(
        GOOD.with_headers(
            signature_input=GOOD.headers["Signature-Input"].replace(
                f'keyid="{KEY.id}"', "keyid=token"
            )
        ),
        "parameter keyid is not a string",
        id="keyid_is_a_token_not_a_string",
    ),
    # coverage
    pytest.param(
        signed(components=("@method", "@target-uri", "content-type")),
        "content-digest not covered",
        id="content_digest_not_covered",
    ),
    pytest.param(
        signed(components=("@method", "content-type", "content-digest")),
        "@target-uri not covered",
        id="target_uri_not_covered",
    ),
    pytest.param(
        signed(components=("@target-uri", "content-type", "content-digest")),
        "@method not covered",
        id="method_not_covered",
    ),
    pytest.param(
        signed(components=("@method", "@target-uri", "content-digest")),
        "content-type not covered",
        id="content_type_not_covered",
    ),
    pytest.param(
        forged(
            GOOD_PARAMS,
            components=(*REQUIRED_COMPONENTS, "date"),
            extra_headers={"Date": "Mon, 23 Nov 2026 10:00:00 GMT"},
        ).with_headers(date=None),
        "date: covered header missing",
        id="covered_header_absent_from_request",
    ),
    pytest.param(
        GOOD.with_headers(
            signature_input=GOOD.headers["Signature-Input"].replace(
                '"content-digest"', '"content-digest" "@signature-params"'
            )
        ),
        "@signature-params: cannot be a covered component",
        id="signature_params_covered",
    ),
    pytest.param(
        GOOD.with_headers(
            signature_input=GOOD.headers["Signature-Input"].replace(
                '"content-digest"', '"content-digest" "@status"'
            )
        ),
        "@status: derived component not supported",
        id="response_component_in_a_request",
    ),
    pytest.param(
        GOOD.with_headers(
            signature_input=GOOD.headers["Signature-Input"].replace(
                '"content-type"', '"content-type" "content-type"'
            )
        ),
        "component 'content-type' is covered twice",
        id="component_covered_twice",
    ),
    pytest.param(
        GOOD.with_headers(content_type='text/plain\n"@method": GET'),
        "content-type: header value has control or non-ASCII characters",
        id="newline_in_covered_header_forges_base_lines",
    ),
    # the body and its digest
    pytest.param(
        replace(GOOD, body=b'{"type":"Undo"}'),
        "Content-Digest: sha-256 does not match the body",
        id="digest_mismatch_swapped_body",
    ),
    pytest.param(
        replace(GOOD, body=b'{"type":"Undo"}').with_headers(
            content_digest=content_digest(b'{"type":"Undo"}')
        ),
        "Signature 'sig1': does not verify",
        id="swapped_body_with_recomputed_digest",
    ),
    pytest.param(
        GOOD.with_headers(content_digest=None),
        "Content-Digest: header missing",
        id="digest_header_missing",
    ),
    pytest.param(
        GOOD.with_headers(content_digest=http_sf.ser({"sha-512": hashlib.sha512(BODY).digest()})),
        "Content-Digest: no sha-256 digest",
        id="digest_without_sha256",
    ),
    pytest.param(
        GOOD.with_headers(content_digest="sha-256=:AAAA"),
        "Content-Digest: malformed structured field",
        id="digest_garbage",
    ),
    pytest.param(
        GOOD.with_headers(content_digest='sha-256="X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE="'),
        "Content-Digest: sha-256 is not a byte sequence",
        id="digest_as_string",
    ),
    pytest.param(
        GOOD.with_headers(
            content_digest=GOOD.headers["Content-Digest"]
            + ", sha-512=:"
            + base64.b64encode(hashlib.sha512(b"other").digest()).decode()
            + ":"
        ),
        "Content-Digest: sha-512 does not match the body",
        id="digest_second_algorithm_mismatch",
    ),
    # time
    pytest.param(
        signed(now=NOW - timedelta(seconds=301)),
        "created: 301 s in the past, more than 300 s",
        id="stale_created",
    ),
    pytest.param(
        signed(now=NOW + timedelta(seconds=301)),
        "created: 301 s in the future, more than 300 s",
        id="future_created",
    ),
    pytest.param(
        forged({"keyid": KEY.id, "alg": "ed25519"}), "created: missing", id="created_missing"
    ),
    pytest.param(
        forged({**GOOD_PARAMS, "created": "1795431600"}),
        "parameter created is not an integer",
        id="created_as_string",
    ),
    pytest.param(
        forged({**GOOD_PARAMS, "created": True}),
        "parameter created is not an integer",
        id="created_as_boolean",
    ),
    pytest.param(
        forged({**GOOD_PARAMS, "created": 10**14}),
        "in the future",
        id="created_far_beyond_datetime",
    ),
    pytest.param(
        forged({**GOOD_PARAMS, "created": CREATED - 10, "expires": CREATED - 11}),
        "expires: before created",
        id="expires_before_created",
    ),
    pytest.param(
        forged({**GOOD_PARAMS, "created": CREATED - 10, "expires": CREATED - 1}),
        "expires: the signature has expired",
        id="expired",
    ),
    # algorithm confusion
    pytest.param(
        forged({**GOOD_PARAMS, "alg": "hmac-sha256"}, sign=hmac_with_public_key),
        "alg: 'hmac-sha256' is not \"ed25519\"",
        id="alg_hmac_sha256_keyed_with_the_public_key",
    ),
    pytest.param(
        forged({**GOOD_PARAMS, "alg": "rsa-v1_5-sha256"}),
        "alg: 'rsa-v1_5-sha256' is not \"ed25519\"",
        id="alg_rsa_v1_5_sha256",
    ),
    pytest.param(
        forged({**GOOD_PARAMS, "alg": "ED25519"}),
        "alg: 'ED25519' is not",
        id="alg_in_another_case",
    ),
    pytest.param(forged({"created": CREATED, "keyid": KEY.id}), "alg: missing", id="alg_missing"),
    pytest.param(
        replace(GOOD, resolve_key=p256_key),
        "the key is not an Ed25519 key",
        id="resolved_key_needs_another_algorithm",
    ),
    # keys
    pytest.param(
        replace(GOOD, resolve_key=partners(PROXY.public)),
        "keyid: no key accepted for any signature",
        id="unknown_keyid",
    ),
    pytest.param(
        replace(GOOD, resolve_key=partners(OTHER.public)),
        "Signature 'sig1': does not verify",
        id="other_key_under_the_same_keyid",
    ),
    pytest.param(
        replace(GOOD, resolve_key=partners(replace(KEY.public, revoked=NOW - timedelta(days=1)))),
        "was revoked",
        id="revoked_key",
    ),
    pytest.param(
        replace(GOOD, resolve_key=partners(replace(KEY.public, created=NOW + timedelta(days=1)))),
        "did not exist yet",
        id="key_not_yet_valid",
    ),
    # the signature and what it covers
    pytest.param(
        GOOD.with_headers(signature=flip_signature(GOOD.headers["Signature"])),
        "Signature 'sig1': does not verify",
        id="flipped_signature_bit",
    ),
    pytest.param(
        GOOD.with_headers(signature="sig1=:" + base64.b64encode(bytes(63)).decode() + ":"),
        "Signature 'sig1': does not verify",
        id="truncated_signature",
    ),
    pytest.param(replace(GOOD, method="PUT"), "does not verify", id="tampered_method"),
    pytest.param(
        replace(GOOD, target_uri="https://b.example/outbox"),
        "does not verify",
        id="tampered_target_uri_other_path",
    ),
    pytest.param(
        replace(GOOD, target_uri=TARGET + "?page=2"),
        "does not verify",
        id="tampered_target_uri_query",
    ),
    pytest.param(
        replace(GOOD, target_uri="https://c.example/inbox"),
        "does not verify",
        id="tampered_target_uri_other_node",
    ),
    pytest.param(
        replace(GOOD, target_uri="http://b.example/inbox"),
        "does not verify",
        id="tampered_target_uri_scheme",
    ),
    pytest.param(
        GOOD.with_headers(content_type="application/ld+json"),
        "does not verify",
        id="tampered_content_type",
    ),
    pytest.param(
        GOOD.with_headers(
            signature_input=GOOD.headers["Signature-Input"].replace(
                f";created={CREATED}", f";created={CREATED + 1}"
            )
        ),
        "does not verify",
        id="tampered_created",
    ),
    pytest.param(
        replace(GOOD, target_uri="https://user@b.example/inbox"),
        "is not an absolute http\\(s\\) URI",
        id="target_uri_with_user_info",
    ),
    pytest.param(
        replace(GOOD, target_uri="https://b.example/in box"),
        "has characters a URI cannot have",
        id="target_uri_with_space",
    ),
]


@pytest.mark.parametrize(("request_", "error"), ATTACKS)
def test_attack_is_refused(request_: Request, error: str) -> None:
    with pytest.raises(SignatureError, match=error):
        request_.verify()


def test_every_attack_row_is_otherwise_a_valid_request() -> None:
    """The forged rows differ from a good request only in what they attack."""
    forged(GOOD_PARAMS).verify()
    forged(
        GOOD_PARAMS, components=(*REQUIRED_COMPONENTS, "date"), extra_headers={"Date": "x"}
    ).verify()


def test_signature_errors_are_401_integrity_errors() -> None:
    error = SignatureError("x")
    assert isinstance(error, IntegrityError)
    assert (error.status, error.problem, error.title) == (
        401,
        "http-signature",
        "HTTP signature does not verify",
    )
    assert error.to_problem()["type"] == "https://w3id.org/exchange/problems/http-signature"


# --- what is accepted --------------------------------------------------------------------


def test_exact_replay_is_not_detected_here() -> None:
    """A captured push replayed inside the clock window verifies again, by design: pushes
    are idempotent and the merge layer (protocol.md §7) ignores entries it already has."""
    request = GOOD
    first = request.verify()
    again = replace(request, now=NOW + timedelta(seconds=299)).verify()
    assert first == again


@pytest.mark.parametrize("skew_s", [300, -300])
def test_created_exactly_at_the_clock_window_edge_is_accepted(skew_s: int) -> None:
    replace(signed(now=NOW + timedelta(seconds=skew_s)), now=NOW).verify()


def test_clock_window_is_configurable() -> None:
    request = replace(GOOD, now=NOW + timedelta(seconds=60))
    request.verify(max_clock_skew_s=60)
    with pytest.raises(SignatureError, match="more than 59 s"):
        request.verify(max_clock_skew_s=59)


@pytest.mark.parametrize(
    "rename",
    [
        pytest.param(str.lower, id="lower"),
        pytest.param(str.upper, id="upper"),
        pytest.param(lambda name: name.title().swapcase(), id="swapped"),
        pytest.param(
            lambda name: "".join(c.upper() if i % 2 else c.lower() for i, c in enumerate(name)),
            id="alternating",
        ),
    ],
)
def test_header_name_case_variations_are_accepted(rename: Callable[[str], str]) -> None:
    headers = {rename(name): value for name, value in GOOD.headers.items()}
    assert replace(GOOD, headers=headers).verify().key_id == KEY.id
    assert signature_key_id(headers) == KEY.id


def test_header_values_are_trimmed() -> None:
    headers = {name: f" \t{value} " for name, value in GOOD.headers.items()}
    replace(GOOD, headers=headers).verify()


def test_method_is_compared_upper_case() -> None:
    replace(GOOD, method="post").verify()


def test_target_uri_is_normalised_on_both_sides() -> None:
    request = replace(GOOD, target_uri="HTTPS://B.Example:443/inbox")
    assert request.verify().key_id == KEY.id
    base = signature_base(
        method="POST",
        target_uri="https://b.example:8443",
        headers={},
        components=("@target-uri", "@authority", "@path", "@query"),
        params={},
    )
    assert base.decode() == (
        '"@target-uri": https://b.example:8443/\n'
        '"@authority": b.example:8443\n'
        '"@path": /\n'
        '"@query": ?\n'
        '"@signature-params": ("@target-uri" "@authority" "@path" "@query")'
    )


# --- several signatures ------------------------------------------------------------------


def two_signatures(first: KeyPair, second: KeyPair, *, break_first: bool = False) -> Request:
    """``first`` signs as sig1, then a second party (a proxy, a rotation) appends sig2."""
    one = signed(key=first, label="sig1")
    two = signed(key=second, label="sig2")
    sig1 = one.headers["Signature"]
    if break_first:
        sig1 = flip_signature(sig1)
    # Two header lines spelt in two cases are combined with ", " (RFC 9421 §2.1).
    return Request(
        headers={
            **CONTENT_TYPE,
            "Content-Digest": one.headers["Content-Digest"],
            "Signature-Input": one.headers["Signature-Input"],
            "signature-input": two.headers["Signature-Input"],
            "Signature": sig1,
            "signature": two.headers["Signature"],
        }
    )


def test_several_signatures_the_first_accepted_keyid_is_verified() -> None:
    request = two_signatures(KEY, PROXY)
    assert signature_key_ids(request.headers) == (KEY.id, PROXY.id)
    assert signature_key_id(request.headers) == KEY.id
    assert request.verify().key_id == KEY.id
    # The receiver knows only the proxy: the sender's signature is skipped, not failed.
    only_proxy = replace(request, resolve_key=partners(PROXY.public))
    assert only_proxy.verify().key_id == PROXY.id


def test_several_signatures_a_broken_chosen_one_does_not_fall_back() -> None:
    request = two_signatures(KEY, PROXY, break_first=True)
    with pytest.raises(SignatureError, match="Signature 'sig1': does not verify"):
        replace(request, resolve_key=partners(KEY.public, PROXY.public)).verify()


# --- signature_key_id: parse only --------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the network was touched")

    for name in ("socket", "create_connection", "getaddrinfo", "gethostbyname"):
        monkeypatch.setattr(socket, name, refuse)


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize(
    "key_id",
    [
        "http://127.0.0.1/keys/1",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "https://[::1]:8443/keys/1",
    ],
)
def test_keyid_naming_an_internal_address_is_only_parsed_never_fetched(key_id: str) -> None:
    attacker = KeyPair(key_id, bytes(range(3, 35)))
    request = signed(key=attacker)
    assert signature_key_id(request.headers) == key_id
    asked: list[str] = []

    def configured_partners_only(requested: str) -> PublicKey:
        asked.append(requested)
        return partners(KEY.public)(requested)

    with pytest.raises(SignatureError, match="keyid: no key accepted"):
        replace(request, resolve_key=configured_partners_only).verify()
    assert asked == [key_id]


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        pytest.param({}, "Signature-Input: header missing", id="missing"),
        pytest.param({"Signature-Input": "sig1=("}, "malformed", id="garbage"),
        pytest.param({"Signature-Input": 'sig1=("@method")'}, "keyid missing", id="no_keyid"),
        pytest.param(
            {"Signature-Input": 'a=("@method");keyid="x", a=("@method");keyid="y"'},
            "duplicate dictionary key",
            id="duplicate_labels",
        ),
    ],
)
def test_signature_key_id_refuses_what_it_cannot_parse(headers: dict[str, str], error: str) -> None:
    with pytest.raises(SignatureError, match=error):
        signature_key_id(headers)


# --- usage errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        pytest.param({"now": datetime(2026, 11, 23)}, "timezone-aware", id="naive_now"),
        pytest.param({"headers": {}}, "content-type: covered header missing", id="no_content_type"),
        pytest.param({"label": "Sig 1"}, "label 'Sig 1'", id="bad_label"),
        pytest.param({"key": KeyPair("", bytes(32))}, "no id", id="key_without_id"),
        pytest.param({"target_uri": "/inbox"}, "not an absolute", id="relative_target"),
        pytest.param({"method": "PO ST"}, "not an HTTP method", id="bad_method"),
    ],
)
def test_sign_request_refuses_what_it_cannot_sign(changes: dict[str, Any], error: str) -> None:
    arguments: dict[str, Any] = {
        "method": "POST",
        "target_uri": TARGET,
        "headers": CONTENT_TYPE,
        "body": BODY,
        "key": KEY,
        "now": NOW,
    } | changes
    with pytest.raises(UsageError, match=error):
        sign_request(**arguments)


def test_an_empty_policy_fails() -> None:
    with pytest.raises(UsageError, match="empty policy"):
        GOOD.verify(required_components=())


def test_verify_needs_an_aware_clock() -> None:
    with pytest.raises(UsageError, match="timezone-aware"):
        replace(GOOD, now=datetime(2026, 11, 23, 10)).verify()


# --- interoperability with an independent implementation ---------------------------------

INTEROP_NOW = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)  # past: it checks the wall clock


@dataclass
class LibraryMessage:
    method: str
    url: str
    headers: dict[str, str]


def test_http_message_signatures_verifies_our_signature() -> None:
    import http_message_signatures as hms
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    headers = dict(CONTENT_TYPE)
    headers |= sign_request(
        method="POST", target_uri=TARGET, headers=headers, body=BODY, key=KEY, now=INTEROP_NOW
    )
    resolver = hms.MappingKeyResolver(
        public_keys={KEY.id: Ed25519PublicKey.from_public_bytes(KEY.public_raw)}, private_keys={}
    )
    verifier = hms.HTTPMessageVerifier(
        signature_algorithm=hms.algorithms.ED25519, key_resolver=resolver
    )
    (result,) = verifier.verify(
        LibraryMessage("POST", TARGET, headers),
        max_age=None,
        require_components=REQUIRED_COMPONENTS,
        body=BODY,
    )
    assert result.parameters == {
        "created": int(INTEROP_NOW.timestamp()),
        "keyid": KEY.id,
        "alg": "ed25519",
    }


def test_we_verify_a_signature_made_by_http_message_signatures() -> None:
    import http_message_signatures as hms
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    resolver = hms.MappingKeyResolver(
        public_keys={}, private_keys={KEY.id: Ed25519PrivateKey.from_private_bytes(KEY.seed)}
    )
    signer = hms.HTTPMessageSigner(
        signature_algorithm=hms.algorithms.ED25519, key_resolver=resolver
    )
    message = LibraryMessage("POST", TARGET, dict(CONTENT_TYPE))
    signer.sign(
        message,
        key_id=KEY.id,
        created=INTEROP_NOW,
        label="sig1",
        covered_component_ids=REQUIRED_COMPONENTS,
        body=BODY,
    )
    verified = Request(headers=message.headers, now=INTEROP_NOW).verify()
    assert verified == VerifiedSignature(KEY.id, INTEROP_NOW, REQUIRED_COMPONENTS)


# --- layering ----------------------------------------------------------------------------


def test_httpsig_is_pure_core() -> None:
    """style.md principles 1 and 13 (tests/test_layers.py does not list httpsig yet)."""
    path = Path(httpsig.__file__)
    imports = imported_modules(path)
    assert not imports & SHELL_MODULES
    assert not {name.split(".")[0] for name in imports} & (FORBIDDEN_IN_CORE | {"os", "time"})
    assert not imports & {"urllib.request", "http.client", "requests", "httpx"}
    clocks = {"now", "utcnow", "today", "time", "monotonic"}
    calls = [
        node.func.attr
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    ]
    assert not clocks & set(calls), "the core reads no clock: now is a parameter"
