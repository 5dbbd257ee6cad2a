"""W3C Data Integrity proofs with the ``eddsa-jcs-2022`` cryptosuite.

One function per step of the cryptosuite (VC Data Integrity EdDSA Cryptosuites v1.0 §3.3):
transformation (JCS of the document), proof configuration (JCS of the proof options),
hashing (SHA-256 of each, proof config hash first) and proof serialization (Ed25519,
base58btc multibase). :func:`verify_proof` raises :class:`~exchange.errors.ProofError`
naming the check that failed; it never returns a boolean.

Conservative in what we sign (protocol.md §3): a proof we create has exactly the members
``@context``, ``type``, ``cryptosuite``, ``verificationMethod``, ``proofPurpose``,
``created`` (UTC to the second) and ``proofValue``. Liberal in what we verify: any proof
the W3C algorithm accepts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from exchange.canonical import canonicalize, sha256
from exchange.errors import InvalidKey, ProofError
from exchange.keys import (
    KeyPair,
    PublicKey,
    decode_multibase,
    encode_multibase,
    public_key_from_did_key,
)
from exchange.timestamps import format_timestamp, parse_timestamp

__all__ = [
    "CRYPTOSUITE",
    "KeyResolver",
    "VerifiedProof",
    "create_proof",
    "did_key_resolver",
    "hash_data",
    "proof_configuration",
    "sign_document",
    "transform",
    "verify_document",
    "verify_proof",
]

CRYPTOSUITE = "eddsa-jcs-2022"
PROOF_TYPE = "DataIntegrityProof"
#: Resolves a verificationMethod IRI to its key, or raises InvalidKey. Never fetches a URL
#: named by the document itself: resolvers are built from configured partners or did:key.
KeyResolver = Callable[[str], PublicKey]


@dataclass(frozen=True, slots=True)
class VerifiedProof:
    """What a successful verification established."""

    verification_method: str
    created: datetime
    proof_purpose: str


def did_key_resolver(verification_method: str) -> PublicKey:
    """Resolve ``did:key`` verification methods only; anything else is unknown."""
    if not verification_method.startswith("did:key:"):
        raise InvalidKey(
            f"verificationMethod {verification_method} is not a did:key and no key was given"
        )
    return public_key_from_did_key(verification_method)


# --- the cryptosuite's steps -------------------------------------------------------------


def transform(unsecured_document: Mapping[str, Any]) -> bytes:
    """§3.3.4 Transformation: the JCS bytes of the document without its proof."""
    return canonicalize(dict(unsecured_document))


def proof_configuration(options: Mapping[str, Any]) -> bytes:
    """§3.3.5 Proof configuration: the JCS bytes of the proof options (no proofValue)."""
    if options.get("type") != PROOF_TYPE or options.get("cryptosuite") != CRYPTOSUITE:
        raise ProofError(
            f"cryptosuite: expected {PROOF_TYPE} with {CRYPTOSUITE}, got "
            f"{options.get('type')!r} with {options.get('cryptosuite')!r}"
        )
    created = options.get("created")
    if created is not None:
        _parse_created(created)
    return canonicalize(dict(options))


def hash_data(transformed_document: bytes, canonical_proof_config: bytes) -> bytes:
    """§3.3.3 Hashing: SHA-256(proof config) || SHA-256(document), 64 bytes."""
    return sha256(canonical_proof_config) + sha256(transformed_document)


# --- creating ----------------------------------------------------------------------------


def create_proof(
    document: Mapping[str, Any],
    key: KeyPair,
    created: datetime,
    *,
    proof_purpose: str = "assertionMethod",
) -> dict[str, Any]:
    """§3.3.1 Create Proof: the proof for ``document`` (which must not carry one)."""
    if "proof" in document:
        raise ProofError("proof: the document is already signed; remove its proof first")
    options: dict[str, Any] = {
        "type": PROOF_TYPE,
        "cryptosuite": CRYPTOSUITE,
        "created": format_timestamp(created),
        "verificationMethod": key.id,
        "proofPurpose": proof_purpose,
    }
    if "@context" in document:
        options["@context"] = document["@context"]
    signature = key.sign(hash_data(transform(document), proof_configuration(options)))
    return {**options, "proofValue": encode_multibase(signature)}


def sign_document(document: Mapping[str, Any], key: KeyPair, created: datetime) -> dict[str, Any]:
    """``document`` with an eddsa-jcs-2022 proof added."""
    return {**document, "proof": create_proof(document, key, created)}


# --- verifying ---------------------------------------------------------------------------


def _parse_created(value: object) -> datetime:
    if not isinstance(value, str):
        raise ProofError("created: not an RFC 3339 date-time string")
    try:
        return parse_timestamp(value)
    except ValueError as error:
        raise ProofError(f"created: {error}") from None


def verify_proof(
    document: Mapping[str, Any],
    proof: Mapping[str, Any],
    resolve_key: KeyResolver,
    now: datetime,
    *,
    expected_purpose: str = "assertionMethod",
    max_clock_skew_s: int = 300,
    transformed: bytes | None = None,
) -> VerifiedProof:
    """§3.3.2 Verify Proof of one ``proof`` over ``document`` (given without any proof).

    ``transformed``, when given, is the caller's JCS of ``document`` (saves computing it
    again); it is used only when the proof's @context leaves the document unchanged.
    """
    if not isinstance(proof, Mapping):
        raise ProofError("proof: not a JSON object")
    # Step 1-2: proof options are the proof without proofValue.
    options = {name: value for name, value in proof.items() if name != "proofValue"}
    proof_value = proof.get("proofValue")
    if not isinstance(proof_value, str):
        raise ProofError("proofValue: missing or not a string")
    purpose = options.get("proofPurpose")
    if purpose != expected_purpose:
        raise ProofError(f"proofPurpose: expected {expected_purpose!r}, got {purpose!r}")
    unsecured = dict(document)
    # Step 3: a proof @context must be a prefix of the document's, in order.
    if "@context" in options:
        proof_context = options["@context"]
        document_context = unsecured.get("@context")
        if not _is_context_prefix(proof_context, document_context):
            raise ProofError("@context: the proof's @context is not a prefix of the document's")
        if proof_context != document_context:
            unsecured["@context"] = proof_context
            transformed = None
    canonical_config = proof_configuration(options)
    created = _parse_created(options.get("created"))
    method = options.get("verificationMethod")
    if not isinstance(method, str):
        raise ProofError("verificationMethod: missing or not a string")
    key = resolve_key(method)
    key.check_valid_at(created, now, max_clock_skew_s)
    try:
        signature = decode_multibase(proof_value)
    except InvalidKey:
        raise ProofError("proofValue: not a base58btc multibase value") from None
    if len(signature) != 64:
        raise ProofError(f"proofValue: an Ed25519 signature has 64 bytes, not {len(signature)}")
    document_bytes = transformed if transformed is not None else transform(unsecured)
    if not key.verify(signature, hash_data(document_bytes, canonical_config)):
        raise ProofError(
            "signature: does not match the document (changed after signing, or another key)"
        )
    return VerifiedProof(method, created, purpose)


def _is_context_prefix(proof_context: object, document_context: object) -> bool:
    def as_list(value: object) -> list[object]:
        return list(value) if isinstance(value, list) else [value]

    if document_context is None:
        return False
    prefix, full = as_list(proof_context), as_list(document_context)
    return len(prefix) <= len(full) and full[: len(prefix)] == prefix


def verify_document(
    document: Mapping[str, Any],
    resolve_key: KeyResolver,
    now: datetime,
    *,
    expected_purpose: str = "assertionMethod",
    max_clock_skew_s: int = 300,
) -> tuple[VerifiedProof, ...]:
    """Verify every proof of a secured document (a single proof or a proof set).

    An unsigned document fails: there is nothing to trust.
    """
    if "proof" not in document:
        raise ProofError("proof: the document has no proof")
    proofs = document["proof"]
    proof_list = proofs if isinstance(proofs, list) else [proofs]
    if not proof_list:
        raise ProofError("proof: the proof set is empty")
    unsecured = {name: value for name, value in document.items() if name != "proof"}
    return tuple(
        verify_proof(
            unsecured,
            proof,
            resolve_key,
            now,
            expected_purpose=expected_purpose,
            max_clock_skew_s=max_clock_skew_s,
        )
        for proof in proof_list
    )
