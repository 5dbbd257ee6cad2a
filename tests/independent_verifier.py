"""An independent auditor of an exchange node, written from the standards alone.

It checks what a node serves over HTTP against the specifications, not against the
project's code: W3C vc-di-eddsa (eddsa-jcs-2022) for entry proofs, RFC 9162 §2.1 for the
Merkle tree and its inclusion and consistency proofs, C2SP signed-note and tlog-checkpoint
for checkpoints, and protocol.md §1, §3, §4 and §5 for the shapes on the wire.

It imports nothing from ``exchange`` (tests/test_independent_verifier.py parses these
imports to keep it so): only the standard library, ``cryptography`` for Ed25519,
``rfc8785`` for JCS and ``aiohttp`` as the HTTP client. Verifiers raise
:class:`VerificationError`; they never return a bool.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = [
    "AuditedLog",
    "Checkpoint",
    "Feed",
    "NodeDocument",
    "NodeKey",
    "NoteVerifier",
    "VerificationError",
    "audit_log",
    "base58btc_decode",
    "ed25519_multikey",
    "entry_leaf_hash",
    "fetch_checkpoint",
    "fetch_consistency_proof",
    "fetch_feed",
    "fetch_inclusion_proof",
    "fetch_log_entry",
    "fetch_multikey",
    "fetch_node_document",
    "hash_data_eddsa_jcs_2022",
    "jcs",
    "leaf_hash",
    "merkle_root",
    "node_hash",
    "note_key_id",
    "parse_checkpoint",
    "parse_ijson",
    "parse_verifier_key",
    "read_node_document",
    "verify_checkpoint",
    "verify_consistency",
    "verify_eddsa_jcs_2022",
    "verify_entry",
    "verify_inclusion",
    "verify_note",
    "verify_root",
]


class VerificationError(Exception):
    """What the node served does not verify, or does not follow the wire contract."""


ACTIVITY_JSON = "application/activity+json"
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
MAX_ENTRY_BYTES = 256 * 1024  # protocol.md §3
MAX_SAFE_INTEGER = 2**53 - 1  # protocol.md §3, RFC 7493 §2.2
MAX_CLOCK_SKEW_S = 300  # protocol.md §1
HASH_BYTES = 32


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


# --- JSON: RFC 8259 parsed under I-JSON (RFC 7493) rules ----------------------------------


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise VerificationError(f"duplicate member name {name!r} (RFC 7493 §2.3)")
        result[name] = value
    return result


def _reject_constant(name: str) -> Any:
    raise VerificationError(f"{name} is not a JSON number (RFC 7493 §2.2)")


def _check_ijson(value: Any, integers_only: bool, path: str = "") -> None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            raise VerificationError(f"{path or '/'}: lone surrogate (RFC 7493 §2.1)") from error
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int):
        if integers_only and abs(value) > MAX_SAFE_INTEGER:
            raise VerificationError(f"{path}: integer {value} beyond ±(2^53-1) (protocol.md §3)")
    elif isinstance(value, float):
        if integers_only:
            raise VerificationError(f"{path}: {value!r} is not an integer (protocol.md §3)")
        if not math.isfinite(value):
            raise VerificationError(f"{path}: non-finite number (RFC 7493 §2.2)")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_ijson(item, integers_only, f"{path}/{index}")
    elif isinstance(value, dict):
        for name, item in value.items():
            _check_ijson(name, integers_only, path)
            _check_ijson(item, integers_only, f"{path}/{name}")
    else:
        raise VerificationError(f"{path}: {type(value).__name__} is not JSON")


def parse_ijson(data: bytes, *, integers_only: bool = False) -> Any:
    """Parse UTF-8 JSON text, rejecting what I-JSON forbids (and, for entries, non-integers)."""
    try:
        value = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_reject_duplicates,
            parse_constant=_reject_constant,
        )
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise VerificationError(f"not JSON text: {error}") from error
    _check_ijson(value, integers_only)
    return value


def jcs(value: Any) -> bytes:
    """RFC 8785: the canonical UTF-8 bytes of a JSON value."""
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, UnicodeEncodeError) as error:
        raise VerificationError(f"cannot canonicalize: {error}") from error


def _strict_base64(text: object, what: str, length: int | None = None) -> bytes:
    """Standard base64 with padding (RFC 4648 §4), nothing else (protocol.md §5)."""
    if not isinstance(text, str):
        raise VerificationError(f"{what}: expected a base64 string, got {text!r}")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise VerificationError(f"{what}: not base64: {text!r}") from error
    if base64.b64encode(raw).decode() != text:
        raise VerificationError(f"{what}: not canonical padded base64: {text!r}")
    if length is not None and len(raw) != length:
        raise VerificationError(f"{what}: expected {length} bytes, got {len(raw)}")
    return raw


# --- base58btc, multibase and Multikey ------------------------------------------------------

BASE58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
ED25519_PUB_MULTICODEC = b"\xed\x01"  # multicodec ed25519-pub, varint 0xed


def base58btc_decode(text: str) -> bytes:
    """The Bitcoin base58 alphabet; each leading '1' is a leading zero byte."""
    number = 0
    for char in text:
        digit = BASE58_ALPHABET.find(char)
        if digit < 0:
            raise VerificationError(f"{char!r} is not a base58btc digit")
        number = number * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))
    return b"\x00" * zeros + number.to_bytes((number.bit_length() + 7) // 8, "big")


def _multibase_base58btc(value: object, what: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("z"):
        raise VerificationError(f"{what}: expected base58btc multibase ('z...'), got {value!r}")
    return base58btc_decode(value[1:])


def ed25519_multikey(public_key_multibase: object) -> bytes:
    """Multikey publicKeyMultibase -> the raw 32-byte Ed25519 public key."""
    raw = _multibase_base58btc(public_key_multibase, "publicKeyMultibase")
    if len(raw) != 34 or not raw.startswith(ED25519_PUB_MULTICODEC):
        raise VerificationError(f"{public_key_multibase!r} is not an Ed25519 Multikey")
    return raw[2:]


def _ed25519_verify(public_key: bytes, signature: bytes, message: bytes, what: str) -> None:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError) as error:
        raise VerificationError(f"{what}: the Ed25519 signature does not verify") from error


# --- W3C vc-di-eddsa: eddsa-jcs-2022 --------------------------------------------------------

_XSD_DATETIME = re.compile(r"-?\d{4,}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?")


def _context_list(value: object) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def hash_data_eddsa_jcs_2022(secured: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """vc-di-eddsa §3.3.2 steps 1-7: (hashData, proofBytes) of a secured document."""
    proof = secured.get("proof")
    if not isinstance(proof, Mapping):
        raise VerificationError("the document has no proof object")
    # Step 1: the unsecured document is the secured one without its proof.
    unsecured = {name: value for name, value in secured.items() if name != "proof"}
    # Step 2: the proof options are the proof without its proofValue.
    options = {name: value for name, value in proof.items() if name != "proofValue"}
    # Step 3: proofBytes, the base58btc multibase-decoded proofValue.
    proof_bytes = _multibase_base58btc(proof.get("proofValue"), "proofValue")
    # Step 4: the document's @context must start with the proof's, which then replaces it.
    if "@context" in options:
        proof_context = _context_list(options["@context"])
        document_context = _context_list(secured.get("@context"))
        if document_context[: len(proof_context)] != proof_context:
            raise VerificationError("the document @context does not start with the proof's")
        unsecured["@context"] = options["@context"]
    # Step 5, §3.3.3 Transformation.
    if options.get("type") != "DataIntegrityProof":
        raise VerificationError(f"proof type {options.get('type')!r} is not DataIntegrityProof")
    if options.get("cryptosuite") != "eddsa-jcs-2022":
        raise VerificationError(f"cryptosuite {options.get('cryptosuite')!r} is not eddsa-jcs-2022")
    transformed = jcs(unsecured)
    # Step 6, §3.3.5 Proof Configuration: created, if set, is an XML Schema dateTime.
    created = options.get("created")
    if created is not None and not (isinstance(created, str) and _XSD_DATETIME.fullmatch(created)):
        raise VerificationError(f"proof created {created!r} is not a dateTime")
    proof_config = jcs(options)
    # Step 7, §3.3.4 Hashing: SHA-256(proofConfig) || SHA-256(transformedDocument).
    return _sha256(proof_config) + _sha256(transformed), proof_bytes


def verify_eddsa_jcs_2022(secured: Mapping[str, Any], public_key: bytes) -> None:
    """vc-di-eddsa §3.3.2, step 8 (§3.3.6): Ed25519 over hashData with the given key."""
    hash_data, proof_bytes = hash_data_eddsa_jcs_2022(secured)
    if len(proof_bytes) != 64:
        raise VerificationError(f"proofValue decodes to {len(proof_bytes)} bytes, not 64")
    _ed25519_verify(public_key, proof_bytes, hash_data, "eddsa-jcs-2022 proof")


# --- RFC 9162 §2.1: the Merkle tree ---------------------------------------------------------


def leaf_hash(leaf: bytes) -> bytes:
    """RFC 9162 §2.1.1: SHA-256(0x00 || leaf)."""
    return _sha256(b"\x00" + leaf)


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 §2.1.1: SHA-256(0x01 || left || right)."""
    return _sha256(b"\x01" + left + right)


def merkle_root(leaf_hashes: Sequence[bytes]) -> bytes:
    """RFC 9162 §2.1.1 MTH over finished leaf hashes; the empty tree's is SHA-256("")."""

    def mth(start: int, end: int) -> bytes:
        n = end - start
        if n == 0:
            return _sha256(b"")
        if n == 1:
            return leaf_hashes[start]
        k = 1 << ((n - 1).bit_length() - 1)  # the largest power of two smaller than n
        return node_hash(mth(start, start + k), mth(start + k, end))

    return mth(0, len(leaf_hashes))


def verify_root(leaf_hashes: Sequence[bytes], root: bytes) -> None:
    computed = merkle_root(leaf_hashes)
    if computed != root:
        raise VerificationError(
            f"the Merkle root over {len(leaf_hashes)} leaves is {computed.hex()}, "
            f"the checkpoint says {root.hex()}"
        )


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """RFC 9162 §2.1.3.2: ``leaf`` (a finished leaf hash) is entry ``index`` of the tree."""
    # Step 1.
    if not 0 <= index < size:
        raise VerificationError(f"leaf index {index} is not below tree size {size}")
    # Steps 2-3.
    fn, sn, r = index, size - 1, leaf
    # Step 4.
    for p in proof:
        if sn == 0:  # 4a
            raise VerificationError("the inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:  # 4b
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1  # 4c
    # Step 5.
    if sn != 0:
        raise VerificationError("the inclusion proof is shorter than the tree is deep")
    if r != root:
        raise VerificationError(f"the inclusion proof for entry {index} leads to another root")


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 §2.1.4.2: the tree of size ``second`` extends the tree of size ``first``."""
    if not 0 < first <= second:
        raise VerificationError(f"need 0 < first <= second, got {first} and {second}")
    if first == second:  # RFC 9162 §2.1.4.1: PROOF(n, D[n]) is empty; protocol.md §5
        if proof:
            raise VerificationError("a consistency proof between equal sizes must be empty")
        if first_root != second_root:
            raise VerificationError(f"two roots for the same size {first}")
        return
    # Step 1.
    if not proof:
        raise VerificationError("the consistency proof is empty")
    # Step 2.
    path = list(proof)
    if first & (first - 1) == 0:
        path.insert(0, first_root)
    # Step 3.
    fn, sn = first - 1, second - 1
    # Step 4.
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    # Step 5.
    fr = sr = path[0]
    # Step 6.
    for c in path[1:]:
        if sn == 0:  # 6a
            raise VerificationError("the consistency proof is longer than the tree is deep")
        if fn & 1 or fn == sn:  # 6b
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1  # 6c
    # Step 7.
    if sn != 0:
        raise VerificationError("the consistency proof is shorter than the tree is deep")
    if fr != first_root:
        raise VerificationError(f"the consistency proof does not lead to the size-{first} root")
    if sr != second_root:
        raise VerificationError(f"the consistency proof does not lead to the size-{second} root")


# --- C2SP signed-note and tlog-checkpoint ---------------------------------------------------

ED25519_NOTE_ALGORITHM = 0x01
_SIGNATURE_PREFIX = "\u2014 "  # an em dash and a space
_DECIMAL = re.compile(r"0|[1-9][0-9]*")


@dataclass(frozen=True, slots=True)
class NoteVerifier:
    """A signed-note verifier key ``<name>+<hex key ID>+<base64(0x01 || key)>``."""

    name: str
    key_id: bytes
    public_key: bytes


def note_key_id(name: str, public_key: bytes) -> bytes:
    """C2SP signed-note: the first 4 bytes of SHA-256(name || 0x0A || 0x01 || key)."""
    return _sha256(name.encode() + b"\n" + bytes([ED25519_NOTE_ALGORITHM]) + public_key)[:4]


def parse_verifier_key(text: str) -> NoteVerifier:
    """Split from the left (protocol.md §5): the base64 key may itself contain '+'."""
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise VerificationError(f"verifier key {text!r} is not name+keyid+key")
    name, hex_id, encoded = parts
    if not name or any(c.isspace() for c in name):
        raise VerificationError(f"verifier key name {name!r} is empty or has spaces")
    if not re.fullmatch(r"[0-9a-f]{8}", hex_id):
        raise VerificationError(f"verifier key ID {hex_id!r} is not 8 lowercase hex digits")
    key = _strict_base64(encoded, "verifier key", 33)
    if key[0] != ED25519_NOTE_ALGORITHM:
        raise VerificationError(f"verifier key algorithm {key[0]} is not Ed25519 (1)")
    verifier = NoteVerifier(name, bytes.fromhex(hex_id), key[1:])
    if note_key_id(name, verifier.public_key) != verifier.key_id:
        raise VerificationError(f"verifier key {text!r}: the key ID does not match the key")
    return verifier


def verify_note(note: bytes, verifier: NoteVerifier) -> str:
    """C2SP signed-note: the note's text, once a signature by ``verifier`` verifies.

    Lines of unknown keys (such as witness cosignatures) are ignored; a line that claims
    the verifier's name and key ID but does not verify fails the note.
    """
    try:
        decoded = note.decode("utf-8")
    except UnicodeDecodeError as error:
        raise VerificationError("the note is not UTF-8") from error
    split = decoded.rfind("\n\n")
    if split < 0 or not decoded.endswith("\n"):
        raise VerificationError("the note has no blank line before its signatures")
    text, block = decoded[: split + 1], decoded[split + 2 :]
    verified = False
    for line in block[:-1].split("\n"):
        if not line.startswith(_SIGNATURE_PREFIX):
            raise VerificationError(f"signature line {line!r} does not start with '— '")
        name, space, encoded = line[len(_SIGNATURE_PREFIX) :].partition(" ")
        if not space or not name:
            raise VerificationError(f"signature line {line!r} is not '— <name> <signature>'")
        signature = _strict_base64(encoded, "note signature")
        if len(signature) < 5:
            raise VerificationError(f"signature line {line!r} is too short")
        if name != verifier.name or signature[:4] != verifier.key_id:
            continue
        if len(signature) != 4 + 64:
            raise VerificationError(f"signature line {line!r}: not an Ed25519 signature")
        _ed25519_verify(verifier.public_key, signature[4:], text.encode(), "signed note")
        verified = True
    if not verified:
        raise VerificationError(f"no signature line by {verifier.name} {verifier.key_id.hex()}")
    return text


@dataclass(frozen=True, slots=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes


def parse_checkpoint(text: str) -> Checkpoint:
    """C2SP tlog-checkpoint: origin, decimal size, base64 root; no extension lines here."""
    lines = text.split("\n")
    if lines[-1] != "" or len(lines) != 4:
        raise VerificationError(
            f"a checkpoint is origin, size and root, one per line (protocol.md §5): {text!r}"
        )
    origin, size, root = lines[:3]
    if not origin:
        raise VerificationError("the checkpoint origin is empty")
    if not _DECIMAL.fullmatch(size):
        raise VerificationError(f"checkpoint size {size!r} is not a decimal number")
    return Checkpoint(origin, int(size), _strict_base64(root, "checkpoint root", HASH_BYTES))


# --- protocol.md §1: the node document ------------------------------------------------------

_RFC3339_UTC_SECONDS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z")


def _timestamp(value: object, what: str) -> datetime:
    if not isinstance(value, str):
        raise VerificationError(f"{what}: expected a timestamp, got {value!r}")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as error:
        raise VerificationError(f"{what}: {value!r} is not a timestamp") from error
    if moment.tzinfo is None:
        raise VerificationError(f"{what}: {value!r} has no time zone")
    return moment


@dataclass(frozen=True, slots=True)
class NodeKey:
    id: str
    public_key: bytes
    created: datetime
    revoked: datetime | None


@dataclass(frozen=True, slots=True)
class NodeDocument:
    base_url: str
    origin: str
    checkpoint_verifier: NoteVerifier
    keys: Mapping[str, NodeKey]
    document: Mapping[str, Any]


def read_node_document(base_url: str, body: bytes) -> NodeDocument:
    """protocol.md §1: the node document, its signing keys and its checkpoint key."""
    document = parse_ijson(body)
    if not isinstance(document, dict):
        raise VerificationError("the node document is not a JSON object")
    expected = {
        "id": base_url,
        "type": "Service",
        "inbox": f"{base_url}/inbox",
        "outbox": f"{base_url}/feed",
        "checkpoint": f"{base_url}/checkpoint",
        "logOrigin": base_url.split("://", 1)[1],
    }
    for member, value in expected.items():
        if document.get(member) != value:
            raise VerificationError(f"node document {member} is {document.get(member)!r}")
    methods = document.get("assertionMethod")
    if not isinstance(methods, list) or not methods:
        raise VerificationError("the node document lists no assertionMethod keys")
    keys: dict[str, NodeKey] = {}
    for method in methods:
        if not isinstance(method, dict) or method.get("type") != "Multikey":
            raise VerificationError(f"assertionMethod {method!r} is not a Multikey")
        key_id = method.get("id")
        if not isinstance(key_id, str) or not key_id.startswith(f"{base_url}/keys/"):
            raise VerificationError(f"key id {key_id!r} is not under {base_url}/keys/")
        if method.get("controller") != base_url:
            raise VerificationError(f"key {key_id} has controller {method.get('controller')!r}")
        multibase = method.get("publicKeyMultibase")
        if not isinstance(multibase, str) or not multibase.startswith("z6Mk"):
            raise VerificationError(f"key {key_id}: publicKeyMultibase {multibase!r}")
        revoked = method.get("revoked")
        keys[key_id] = NodeKey(
            key_id,
            ed25519_multikey(multibase),
            _timestamp(method.get("created"), f"key {key_id} created"),
            None if revoked is None else _timestamp(revoked, f"key {key_id} revoked"),
        )
    checkpoint_key = document.get("checkpointKey")
    if not isinstance(checkpoint_key, str):
        raise VerificationError("the node document has no checkpointKey")
    verifier = parse_verifier_key(checkpoint_key)
    if verifier.name != expected["logOrigin"]:
        raise VerificationError(f"checkpointKey names {verifier.name!r}, not the log origin")
    current = [k for k in keys.values() if k.revoked is None]
    if verifier.public_key not in [k.public_key for k in current]:
        raise VerificationError("checkpointKey is not one of the node's current signing keys")
    return NodeDocument(base_url, expected["logOrigin"], verifier, keys, document)


# --- protocol.md §3: entries ---------------------------------------------------------------

_FORBIDDEN_KEYWORDS = {"@graph", "@reverse", "@included", "@nest", "@id", "@type"}
_PROOF_MEMBERS = {
    "@context",
    "type",
    "cryptosuite",
    "verificationMethod",
    "proofPurpose",
    "created",
    "proofValue",
}
_REDACTED_MEMBERS = {"id", "type", "seq", "leafHash"}


def _check_keywords(value: Any, path: str, top: bool) -> None:
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_keywords(item, f"{path}/{index}", False)
    elif isinstance(value, dict):
        for name, item in value.items():
            if name in _FORBIDDEN_KEYWORDS:
                raise VerificationError(f"{path}/{name}: forbidden member (protocol.md §3)")
            if name == "@context" and not (top or path == "/proof"):
                raise VerificationError(f"{path}/@context: only at the top and in the proof")
            _check_keywords(item, f"{path}/{name}", False)


def verify_entry(
    entry: Any, seq: int, node: NodeDocument, now: datetime, *, max_skew_s: int = MAX_CLOCK_SKEW_S
) -> None:
    """protocol.md §3: entry ``seq`` is well formed and its eddsa-jcs-2022 proof verifies."""
    base = node.base_url
    if not isinstance(entry, dict):
        raise VerificationError(f"entry {seq} is not a JSON object")
    _check_ijson(entry, True)
    if len(jcs(entry)) > MAX_ENTRY_BYTES:
        raise VerificationError(f"entry {seq} is larger than {MAX_ENTRY_BYTES} bytes")
    if entry.get("id") != f"{base}/log/{seq}" or entry.get("seq") != seq:
        raise VerificationError(f"entry {seq} carries id {entry.get('id')!r}")
    if entry.get("type") == "Redacted":
        if set(entry) != _REDACTED_MEMBERS:
            raise VerificationError(f"redacted entry {seq} has members {sorted(entry)}")
        _strict_base64(entry["leafHash"], f"entry {seq} leafHash", HASH_BYTES)
        return
    if entry.get("type") not in ("Create", "Update", "Delete"):
        raise VerificationError(f"entry {seq} has type {entry.get('type')!r}")
    if entry.get("actor") != base:
        raise VerificationError(f"entry {seq} has actor {entry.get('actor')!r}")
    obj = entry.get("object")
    object_id = obj.get("id") if isinstance(obj, dict) else None
    if not isinstance(object_id, str) or not (
        object_id == base or object_id.startswith(f"{base}/")
    ):
        raise VerificationError(f"entry {seq}: the object {object_id!r} is not one of {base}")
    _check_keywords(entry, "", True)
    proof = entry.get("proof")
    if not isinstance(proof, dict) or set(proof) != _PROOF_MEMBERS:
        raise VerificationError(f"entry {seq}: the proof has members {sorted(proof or {})}")
    if proof["@context"] != entry.get("@context"):
        raise VerificationError(f"entry {seq}: proof @context differs from the entry's")
    if proof["proofPurpose"] != "assertionMethod":
        raise VerificationError(f"entry {seq}: proofPurpose {proof['proofPurpose']!r}")
    for member, value in (("published", entry.get("published")), ("created", proof["created"])):
        if not isinstance(value, str) or not _RFC3339_UTC_SECONDS.fullmatch(value):
            raise VerificationError(f"entry {seq}: {member} {value!r} is not UTC to the second")
    key = node.keys.get(proof["verificationMethod"])
    if key is None:
        raise VerificationError(f"entry {seq}: unknown key {proof['verificationMethod']!r}")
    created = _timestamp(proof["created"], f"entry {seq} proof created")
    # protocol.md §1: created in [key.created, key.revoked), at most 300 s ahead of now.
    if created < key.created or (key.revoked is not None and created >= key.revoked):
        raise VerificationError(f"entry {seq}: signed outside the validity of {key.id}")
    if created > now + timedelta(seconds=max_skew_s):
        raise VerificationError(f"entry {seq}: signed in the future ({proof['created']})")
    try:
        verify_eddsa_jcs_2022(entry, key.public_key)
    except VerificationError as error:
        raise VerificationError(f"entry {seq}: {error}") from error


def entry_leaf_hash(entry: Mapping[str, Any]) -> bytes:
    """protocol.md §5: the leaf hash of an entry, or the one a Redacted entry keeps."""
    if entry.get("type") == "Redacted" and set(entry) == _REDACTED_MEMBERS:
        return _strict_base64(entry["leafHash"], "leafHash", HASH_BYTES)
    return leaf_hash(jcs(entry))


def verify_checkpoint(note: bytes, node: NodeDocument) -> Checkpoint:
    """protocol.md §5: a checkpoint of this node's log, signed with its checkpointKey."""
    checkpoint = parse_checkpoint(verify_note(note, node.checkpoint_verifier))
    if checkpoint.origin != node.origin:
        raise VerificationError(f"checkpoint origin {checkpoint.origin!r} is not {node.origin!r}")
    return checkpoint


# --- HTTP: what a node serves ---------------------------------------------------------------


async def _get(session: aiohttp.ClientSession, url: str, accept: str, content_type: str) -> bytes:
    async with session.get(url, headers={"Accept": accept}, allow_redirects=False) as response:
        if response.status != 200:
            raise VerificationError(f"GET {url}: HTTP {response.status}")
        if response.content_type != content_type:
            raise VerificationError(f"GET {url}: {response.content_type}, not {content_type}")
        chunks: list[bytes] = []
        received = 0
        async for chunk in response.content.iter_chunked(64 * 1024):
            received += len(chunk)
            if received > MAX_RESPONSE_BYTES:
                raise VerificationError(f"GET {url}: larger than {MAX_RESPONSE_BYTES} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


async def fetch_node_document(session: aiohttp.ClientSession, base_url: str) -> NodeDocument:
    body = await _get(session, base_url, ACTIVITY_JSON, ACTIVITY_JSON)
    return read_node_document(base_url, body)


async def fetch_multikey(session: aiohttp.ClientSession, key_id: str) -> bytes:
    """protocol.md §1: a key IRI dereferences to its Multikey; the raw Ed25519 key."""
    document = parse_ijson(await _get(session, key_id, ACTIVITY_JSON, ACTIVITY_JSON))
    if not isinstance(document, dict) or document.get("id") != key_id:
        raise VerificationError(f"GET {key_id}: not the Multikey {key_id}")
    if document.get("type") != "Multikey":
        raise VerificationError(f"GET {key_id}: type {document.get('type')!r}")
    return ed25519_multikey(document.get("publicKeyMultibase"))


async def fetch_checkpoint(session: aiohttp.ClientSession, base_url: str) -> bytes:
    return await _get(session, f"{base_url}/checkpoint", "text/plain", "text/plain")


async def _fetch_hashes(session: aiohttp.ClientSession, url: str) -> list[bytes]:
    document = parse_ijson(await _get(session, url, "application/json", "application/json"))
    hashes = document.get("hashes") if isinstance(document, dict) else None
    if not isinstance(hashes, list):
        raise VerificationError(f"GET {url}: no hashes list")
    return [_strict_base64(h, f"GET {url} hash", HASH_BYTES) for h in hashes]


async def fetch_inclusion_proof(
    session: aiohttp.ClientSession, base_url: str, index: int, size: int
) -> list[bytes]:
    return await _fetch_hashes(session, f"{base_url}/proof/inclusion?index={index}&size={size}")


async def fetch_consistency_proof(
    session: aiohttp.ClientSession, base_url: str, first: int, second: int
) -> list[bytes]:
    url = f"{base_url}/proof/consistency?first={first}&second={second}"
    return await _fetch_hashes(session, url)


async def fetch_log_entry(session: aiohttp.ClientSession, base_url: str, seq: int) -> Any:
    body = await _get(session, f"{base_url}/log/{seq}", ACTIVITY_JSON, ACTIVITY_JSON)
    return parse_ijson(body, integers_only=True)


@dataclass(frozen=True, slots=True)
class Feed:
    total_items: int
    page_size: int
    pages: int
    entries: tuple[Any, ...]


async def fetch_feed(session: aiohttp.ClientSession, base_url: str) -> Feed:
    """protocol.md §4: walk the feed from its first page, following ``next``."""
    collection = parse_ijson(await _get(session, f"{base_url}/feed", ACTIVITY_JSON, ACTIVITY_JSON))
    if not isinstance(collection, dict) or collection.get("type") != "OrderedCollection":
        raise VerificationError("GET /feed: not an OrderedCollection")
    total, size = collection.get("totalItems"), collection.get("pageSize")
    if not isinstance(total, int) or total < 0 or not isinstance(size, int) or size < 1:
        raise VerificationError(f"GET /feed: totalItems {total!r}, pageSize {size!r}")
    links = {
        "id": f"{base_url}/feed",
        "first": f"{base_url}/feed/0",
        "last": f"{base_url}/feed/{total // size}",
    }
    for member, value in links.items():
        if collection.get(member) != value:
            raise VerificationError(f"GET /feed: {member} is {collection.get(member)!r}")
    entries: list[Any] = []
    url: str | None = links["first"]
    number = 0
    while url is not None:
        page = parse_ijson(await _get(session, url, ACTIVITY_JSON, ACTIVITY_JSON))
        if not isinstance(page, dict) or page.get("type") != "OrderedCollectionPage":
            raise VerificationError(f"GET {url}: not an OrderedCollectionPage")
        items = page.get("orderedItems")
        if not isinstance(items, list):
            raise VerificationError(f"GET {url}: no orderedItems")
        expected: dict[str, object] = {
            "id": url,
            "partOf": links["id"],
            "startIndex": number * size,
            "prev": f"{base_url}/feed/{number - 1}" if number > 0 else None,
        }
        for member, wanted in expected.items():
            if page.get(member) != wanted:
                raise VerificationError(f"GET {url}: {member} is {page.get(member)!r}")
        following = page.get("next")
        if following is not None:
            if following != f"{base_url}/feed/{number + 1}" or len(items) != size:
                raise VerificationError(f"page {number}: next {following!r}, {len(items)} items")
            url = following
        elif len(items) >= size:
            raise VerificationError(f"page {number} is full but has no next")
        else:
            url = None
        entries.extend(items)
        number += 1
    if len(entries) < total:
        raise VerificationError(f"the feed holds {len(entries)} entries, totalItems is {total}")
    return Feed(total, size, number, tuple(entries))


@dataclass(frozen=True, slots=True)
class AuditedLog:
    node: NodeDocument
    checkpoint: Checkpoint
    feed: Feed
    leaf_hashes: tuple[bytes, ...]


async def audit_log(
    session: aiohttp.ClientSession, base_url: str, now: datetime | None = None
) -> AuditedLog:
    """Every entry's proof, and the Merkle root over them against the signed checkpoint."""
    node = await fetch_node_document(session, base_url)
    checkpoint = verify_checkpoint(await fetch_checkpoint(session, base_url), node)
    feed = await fetch_feed(session, base_url)
    if len(feed.entries) < checkpoint.size:
        raise VerificationError(
            f"the checkpoint covers {checkpoint.size} entries, the feed holds {len(feed.entries)}"
        )
    moment = now or datetime.now(UTC)
    for seq, entry in enumerate(feed.entries):
        verify_entry(entry, seq, node, moment)
    leaf_hashes = tuple(entry_leaf_hash(entry) for entry in feed.entries)
    verify_root(leaf_hashes[: checkpoint.size], checkpoint.root)
    return AuditedLog(node, checkpoint, feed, leaf_hashes)
