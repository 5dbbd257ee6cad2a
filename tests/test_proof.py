"""eddsa-jcs-2022 Data Integrity proofs: W3C vectors, one negative test per check, properties."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from exchange.canonical import canonicalize, parse, sha256
from exchange.errors import InvalidKey, NotYetValid, ProofError
from exchange.keys import NOT_YET_VALID_S, KeyPair, PublicKey, key_pair_from_multibase
from exchange.proof import (
    create_proof,
    did_key_resolver,
    hash_data,
    proof_configuration,
    sign_document,
    transform,
    verify_document,
)
from tests.strategies import ijson_objects, ijson_values

NOW = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
CREATED = datetime(2023, 2, 24, 23, 36, 38, tzinfo=UTC)


# Source: W3C VC Data Integrity EdDSA Cryptosuites v1.0, test vectors for eddsa-jcs-2022
# (shared/vectors/vc-di-eddsa).
@pytest.fixture(scope="module")
def w3c(vectors: Path) -> dict[str, Any]:
    folder = vectors / "vc-di-eddsa"
    read = lambda name: (folder / name).read_text().strip()  # noqa: E731
    return {
        "key": json.loads(read("keyPair.json")),
        "unsigned": parse((folder / "unsigned.json").read_bytes()),
        "signed": parse((folder / "signedJCS.json").read_bytes()),
        "proof_config": parse((folder / "proofConfigJCS.json").read_bytes()),
        "canon_doc": read("canonDocJCS.txt"),
        "canon_proof": read("proofCanonJCS.txt"),
        "doc_hash": read("docHashJCS.txt"),
        "proof_hash": read("proofHashJCS.txt"),
        "combined_hash": read("combinedHashJCS.txt"),
        "sig_hex": read("sigHexJCS.txt"),
        "sig_b58": read("sigBTC58JCS.txt"),
    }


def vector_key(w3c: dict[str, Any]) -> KeyPair:
    method = w3c["signed"]["proof"]["verificationMethod"]
    return key_pair_from_multibase(method, w3c["key"]["privateKeyMultibase"])


def test_w3c_signed_vector_verifies(w3c: dict[str, Any]) -> None:
    (verified,) = verify_document(w3c["signed"], did_key_resolver, NOW)
    assert verified.created == CREATED
    assert verified.verification_method.startswith(
        "did:key:z6MkrJVnaZkeFzdQyMZu1cgjg7k1pZZ6pvBQ7XJPt4swbTQ2"
    )


def test_w3c_intermediate_values(w3c: dict[str, Any]) -> None:
    document = transform(w3c["unsigned"])
    config = proof_configuration(w3c["proof_config"])
    assert document.decode() == w3c["canon_doc"]
    assert config.decode() == w3c["canon_proof"]
    assert sha256(document).hex() == w3c["doc_hash"]
    assert sha256(config).hex() == w3c["proof_hash"]
    assert hash_data(document, config).hex() == w3c["combined_hash"]
    assert vector_key(w3c).sign(hash_data(document, config)).hex() == w3c["sig_hex"]


def test_resigning_reproduces_the_w3c_proof_value_byte_for_byte(w3c: dict[str, Any]) -> None:
    proof = create_proof(w3c["unsigned"], vector_key(w3c), CREATED)
    assert proof["proofValue"] == w3c["sig_b58"] == w3c["signed"]["proof"]["proofValue"]
    assert canonicalize(proof) == canonicalize(w3c["signed"]["proof"])


def test_a_created_proof_has_exactly_the_conservative_members(w3c: dict[str, Any]) -> None:
    proof = create_proof(w3c["unsigned"], vector_key(w3c), datetime(2026, 1, 2, 3, 4, 5, 999, UTC))
    assert set(proof) == {
        "@context",
        "type",
        "cryptosuite",
        "verificationMethod",
        "proofPurpose",
        "created",
        "proofValue",
    }
    assert proof["created"] == "2026-01-02T03:04:05Z"
    assert proof["@context"] == w3c["unsigned"]["@context"]


def tampered(document: dict[str, Any], path: tuple[str, ...], value: object) -> dict[str, Any]:
    result = copy.deepcopy(document)
    target = result
    for part in path[:-1]:
        target = target[part]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return result


_DELETE = object()

# One row per verification branch, named after what an attacker (or an accident) did.
NEGATIVE = {
    "name changed by one character": (("name",), "Alumni Credentiak", "signature"),
    "member added after signing": (("extra",), "x", "signature"),
    "member removed after signing": (("description",), _DELETE, "signature"),
    "proof missing": (("proof",), _DELETE, "no proof"),
    "empty proof set": (("proof",), [], "proof set is empty"),
    "proof is not an object": (("proof",), "z123", "not a JSON object"),
    "unsupported cryptosuite": (("proof", "cryptosuite"), "ecdsa-jcs-2019", "cryptosuite"),
    "wrong proof type": (("proof", "type"), "Ed25519Signature2020", "cryptosuite"),
    "wrong proof purpose": (("proof", "proofPurpose"), "authentication", "proofPurpose"),
    "proofValue missing": (("proof", "proofValue"), _DELETE, "proofValue"),
    "proofValue not multibase": (("proof", "proofValue"), "u2HnFSSPP", "proofValue"),
    "proofValue not base58": (("proof", "proofValue"), "z0OIl", "proofValue"),
    "signature truncated": (("proof", "proofValue"), "z2HnFSSPPBzR36zdDgK8Pb", "64 bytes"),
    "proof created changed": (("proof", "created"), "2023-02-24T23:36:39Z", "signature"),
    "proof created not a date-time": (("proof", "created"), "yesterday", "created"),
    "proof created in the future": (("proof", "created"), "2026-11-23T10:05:01Z", "future"),
    "proof context not a prefix": (
        ("proof", "@context"),
        ["https://www.w3.org/ns/credentials/examples/v2"],
        "@context",
    ),
    "verificationMethod missing": (("proof", "verificationMethod"), _DELETE, "verificationMethod"),
    "verificationMethod not a did:key": (
        ("proof", "verificationMethod"),
        "https://evil.example/key",
        "not a did:key",
    ),
    "verificationMethod another key": (
        ("proof", "verificationMethod"),
        "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK",
        "signature",
    ),
    "verificationMethod not Ed25519": (
        ("proof", "verificationMethod"),
        "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme",
        "Ed25519",
    ),
}


@pytest.mark.parametrize(("path", "value", "reason"), NEGATIVE.values(), ids=NEGATIVE.keys())
def test_each_failed_check_is_named(
    w3c: dict[str, Any], path: tuple[str, ...], value: object, reason: str
) -> None:
    document = tampered(w3c["signed"], path, value)
    with pytest.raises(ProofError, match=reason):
        verify_document(document, did_key_resolver, NOW)


def test_signing_an_already_signed_document_is_refused(w3c: dict[str, Any]) -> None:
    with pytest.raises(ProofError, match="already signed"):
        create_proof(w3c["signed"], vector_key(w3c), NOW)


def key_with_window(pair: KeyPair, created: datetime | None, revoked: datetime | None) -> PublicKey:
    return PublicKey(pair.id, pair.public_raw, created=created, revoked=revoked)


@pytest.mark.parametrize(
    ("created", "revoked", "reason"),
    [
        (CREATED + timedelta(seconds=1), None, "did not exist yet"),
        (None, CREATED, "was revoked"),
        (None, CREATED - timedelta(days=1), "was revoked"),
    ],
    ids=["key created after the proof", "revoked at the proof's instant", "revoked before"],
)
def test_key_validity_window_is_honoured(
    w3c: dict[str, Any], created: datetime | None, revoked: datetime | None, reason: str
) -> None:
    pair = vector_key(w3c)
    with pytest.raises(InvalidKey, match=reason):
        verify_document(w3c["signed"], lambda _: key_with_window(pair, created, revoked), NOW)


def test_signature_inside_the_window_is_valid(w3c: dict[str, Any]) -> None:
    pair = vector_key(w3c)
    window = key_with_window(pair, CREATED, CREATED + timedelta(seconds=1))
    assert verify_document(w3c["signed"], lambda _: window, NOW)


@pytest.mark.parametrize(
    ("ahead_s", "error"),
    [
        (300, None),  # the tolerance: valid
        (301, NotYetValid),  # a clock minutes off: valid later, so it waits
        (300 + NOT_YET_VALID_S, NotYetValid),
        (301 + NOT_YET_VALID_S, InvalidKey),  # no clock is that wrong: invalid
    ],
)
def test_a_signature_ahead_of_the_clock_is_not_yet_valid_then_invalid(
    ahead_s: int, error: type[InvalidKey] | None
) -> None:
    key = SIGNER.public
    signed_at = NOW + timedelta(seconds=ahead_s)
    if error is None:
        key.check_valid_at(signed_at, NOW, 300)
        return
    with pytest.raises(error, match="in the future") as raised:
        key.check_valid_at(signed_at, NOW, 300)
    assert isinstance(raised.value, NotYetValid) == (error is NotYetValid)


SIGNER = KeyPair("https://node.example/keys/2026-1", bytes(range(32)))


def resolve_signer(method: str) -> PublicKey:
    if method != SIGNER.id:
        raise InvalidKey(f"unknown key {method}")
    return SIGNER.public


@given(ijson_objects)
def test_sign_then_verify_round_trips(document: dict[str, Any]) -> None:
    document.pop("proof", None)
    signed = sign_document(document, SIGNER, NOW)
    assert verify_document(signed, resolve_signer, NOW)
    # ... and survives serialization and the strict parser.
    assert verify_document(parse(json.dumps(signed).encode()), resolve_signer, NOW)


def _paths(value: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, member in value.items():
            found += _paths(member, (*prefix, key))
    elif isinstance(value, list):
        for index, member in enumerate(value):
            found += _paths(member, (*prefix, index))
    return found


@given(ijson_objects, st.data())
def test_any_single_mutation_fails_verification(
    document: dict[str, Any], data: st.DataObject
) -> None:
    document.pop("proof", None)
    signed = sign_document(document, SIGNER, NOW)
    path = data.draw(st.sampled_from(_paths(signed)), label="path")
    mutation = data.draw(st.sampled_from(["replace", "delete", "add"]), label="mutation")
    mutated = copy.deepcopy(signed)
    parent: Any = mutated
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if mutation == "replace":
        parent[last] = data.draw(ijson_values, label="new value")
    elif mutation == "delete":
        del parent[last]
    elif isinstance(parent, dict):
        new_name = data.draw(st.text(max_size=5), label="new member")
        assume(new_name not in parent)
        parent[new_name] = data.draw(ijson_values, label="new value")
    else:
        parent.insert(int(str(last)), data.draw(ijson_values, label="inserted"))
    assume(canonicalize(mutated) != canonicalize(signed))
    with pytest.raises(ProofError):
        verify_document(mutated, resolve_signer, NOW)


@given(st.binary(max_size=80))
def test_fast_base58_decoding_equals_the_base58_library(data: bytes) -> None:
    import base58

    from exchange.keys import b58decode

    encoded = base58.b58encode(data).decode()
    assert b58decode(encoded) == base58.b58decode(encoded) == data
