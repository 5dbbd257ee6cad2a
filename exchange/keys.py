"""Ed25519 keys as Multikey (``z6Mk...``) and ``did:key``, and key validity windows.

Pure: bytes and frozen dataclasses in, bytes and frozen dataclasses out. Signing and
verification use libsodium through PyNaCl (twice as fast as OpenSSL for verify here).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

import base58
import nacl.exceptions
import nacl.signing
import nacl.utils

from exchange.errors import InvalidKey, NotYetValid

__all__ = [
    "ED25519_PRIV_PREFIX",
    "ED25519_PUB_PREFIX",
    "NOT_YET_VALID_S",
    "KeyPair",
    "PublicKey",
    "b58decode",
    "decode_multibase",
    "did_key_verification_method",
    "encode_multibase",
    "generate",
    "key_pair_from_multibase",
    "public_key_from_did_key",
    "public_key_from_multibase",
]

#: multicodec ed25519-pub (0xed) as an unsigned varint.
ED25519_PUB_PREFIX = b"\xed\x01"
#: multicodec ed25519-priv (0x1300) as an unsigned varint.
ED25519_PRIV_PREFIX = b"\x80\x26"
_DID_KEY = "did:key:"
#: A signature created ahead of the verifier's clock by more than the tolerance but by at
#: most this many seconds more is "not yet valid" rather than invalid: a partner's clock
#: minutes fast (or this node's slow) delays its entries instead of losing them. Further
#: ahead, no clock is that wrong: invalid.
NOT_YET_VALID_S = 900


def encode_multibase(data: bytes) -> str:
    """Multibase base58btc: ``z`` + base58 (Bitcoin alphabet)."""
    return "z" + base58.b58encode(data).decode("ascii")


_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
#: bytes.translate table: an alphabet character to its digit value, anything else to 0xff.
_B58_DIGITS = bytes(
    _B58_ALPHABET.index(chr(code)) if chr(code) in _B58_ALPHABET else 0xFF for code in range(256)
)
_B58_CHUNK = 10  # 58**10 < 2**64: ten digits at a time keep most arithmetic on small ints
_B58_CHUNK_BASE = 58**_B58_CHUNK


def b58decode(text: str) -> bytes:
    """Base58 (Bitcoin alphabet) decoding; the hot path of every proof verification.

    Equal to ``base58.b58decode`` (a property test holds them together), but it maps the
    text to digit values in one ``str.translate`` and multiplies the big integer once per
    ten digits instead of once per digit.
    """
    digits = text.encode("latin-1", "replace").translate(_B58_DIGITS)
    if b"\xff" in digits:
        raise InvalidKey("multibase value has characters outside the base58btc alphabet")
    value = 0
    head = len(digits) % _B58_CHUNK
    for digit in digits[:head]:
        value = value * 58 + digit
    for position in range(head, len(digits), _B58_CHUNK):
        chunk = 0
        for digit in digits[position : position + _B58_CHUNK]:
            chunk = chunk * 58 + digit
        value = value * _B58_CHUNK_BASE + chunk
    leading_zeros = len(text) - len(text.lstrip("1"))
    body = value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""
    return b"\x00" * leading_zeros + body


def decode_multibase(text: str) -> bytes:
    if not isinstance(text, str) or not text.startswith("z") or len(text) < 2:
        raise InvalidKey("not a base58btc multibase value (must start with 'z')")
    return b58decode(text[1:])


@dataclass(frozen=True, slots=True)
class PublicKey:
    """An Ed25519 public key with the window in which its signatures are valid.

    ``created`` and ``revoked`` follow protocol.md §1: a signature is valid when its own
    ``created`` lies in ``[created, revoked)``. ``None`` leaves that side open (did:key).
    """

    id: str
    raw: bytes
    created: datetime | None = None
    revoked: datetime | None = None

    def __post_init__(self) -> None:
        if len(self.raw) != 32:
            raise InvalidKey(f"an Ed25519 public key has 32 bytes, not {len(self.raw)}")

    @property
    def multibase(self) -> str:
        return encode_multibase(ED25519_PUB_PREFIX + self.raw)

    def check_valid_at(self, signed_at: datetime, now: datetime, max_clock_skew_s: int) -> None:
        """Raise :class:`InvalidKey` unless a signature created at ``signed_at`` is in window;
        :class:`NotYetValid` when it lies ahead of ``now`` by more than ``max_clock_skew_s``
        but by at most :data:`NOT_YET_VALID_S` more (it will be valid then)."""
        ahead = signed_at - now - timedelta(seconds=max_clock_skew_s)
        if ahead > timedelta(0):
            error = NotYetValid if ahead <= timedelta(seconds=NOT_YET_VALID_S) else InvalidKey
            raise error(
                f"created {signed_at.isoformat()} is more than {max_clock_skew_s} s in the future"
            )
        if self.created is not None and signed_at < self.created:
            raise InvalidKey(f"key {self.id} did not exist yet at {signed_at.isoformat()}")
        if self.revoked is not None and signed_at >= self.revoked:
            raise InvalidKey(f"key {self.id} was revoked at {self.revoked.isoformat()}")

    def verify(self, signature: bytes, message: bytes) -> bool:
        """True when ``signature`` is this key's Ed25519 signature of ``message``."""
        if len(signature) != 64:
            return False
        try:
            nacl.signing.VerifyKey(self.raw).verify(message, signature)
        except nacl.exceptions.BadSignatureError:
            return False
        return True


@lru_cache(maxsize=16)
def _signing_key(seed: bytes) -> nacl.signing.SigningKey:
    """Deriving the key pair from the seed costs more than a signature: keep a few."""
    return nacl.signing.SigningKey(seed)


@dataclass(frozen=True, slots=True)
class KeyPair:
    """An Ed25519 signing key (its 32-byte seed) and the id of its verification method."""

    id: str
    seed: bytes

    def __post_init__(self) -> None:
        if len(self.seed) != 32:
            raise InvalidKey(f"an Ed25519 secret key has a 32-byte seed, not {len(self.seed)}")

    @property
    def public_raw(self) -> bytes:
        return bytes(_signing_key(self.seed).verify_key)

    @property
    def public(self) -> PublicKey:
        return PublicKey(self.id, self.public_raw)

    @property
    def public_multibase(self) -> str:
        return encode_multibase(ED25519_PUB_PREFIX + self.public_raw)

    @property
    def secret_multibase(self) -> str:
        return encode_multibase(ED25519_PRIV_PREFIX + self.seed)

    def sign(self, message: bytes) -> bytes:
        return bytes(_signing_key(self.seed).sign(message).signature)

    def __repr__(self) -> str:  # never print the seed
        return f"KeyPair(id={self.id!r}, public={self.public_multibase!r})"


def did_key_verification_method(public_multibase: str) -> str:
    """``did:key:z6Mk...#z6Mk...``: the verification method of a did:key."""
    return f"{_DID_KEY}{public_multibase}#{public_multibase}"


def public_key_from_multibase(key_id: str, text: str) -> PublicKey:
    """Decode a Multikey ``publicKeyMultibase`` (``z6Mk...``)."""
    data = decode_multibase(text)
    if not data.startswith(ED25519_PUB_PREFIX):
        raise InvalidKey("publicKeyMultibase is not an Ed25519 public key (multicodec 0xed)")
    return PublicKey(key_id, data[len(ED25519_PUB_PREFIX) :])


def public_key_from_did_key(verification_method: str) -> PublicKey:
    """Resolve a ``did:key`` verification method to its key, without any I/O."""
    if not verification_method.startswith(_DID_KEY):
        raise InvalidKey(f"{verification_method!r} is not a did:key")
    did, _, fragment = verification_method.partition("#")
    identifier = did[len(_DID_KEY) :]
    if fragment and fragment != identifier:
        raise InvalidKey("did:key fragment does not name the key of the DID")
    return public_key_from_multibase(verification_method, identifier)


def key_pair_from_multibase(key_id: str, secret_multibase: str) -> KeyPair:
    """Decode a Multikey ``secretKeyMultibase`` (``z3u2...``, multicodec ed25519-priv)."""
    data = decode_multibase(secret_multibase)
    if not data.startswith(ED25519_PRIV_PREFIX):
        raise InvalidKey("secretKeyMultibase is not an Ed25519 secret key (multicodec 0x1300)")
    return KeyPair(key_id, data[len(ED25519_PRIV_PREFIX) :])


def generate(key_id: str | None = None) -> KeyPair:
    """A new random Ed25519 key; without an id it is named by its did:key."""
    seed = nacl.utils.random(32)
    pair = KeyPair(key_id or "", seed)
    if key_id is None:
        pair = KeyPair(did_key_verification_method(pair.public_multibase), seed)
    return pair
