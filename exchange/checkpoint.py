"""C2SP signed notes and tlog checkpoints (protocol.md §5).

A checkpoint is the note text ``<origin>\\n<size>\\n<base64 root>\\n`` signed by the log's
Ed25519 key. Signature lines read ``— <name> <base64(key ID || signature)>``; the key ID is
the first four bytes of SHA-256(name || 0x0A || 0x01 || public key). Verifier keys are
written ``<name>+<hex key ID>+<base64(0x01 || public key)>`` and parsed from the left,
since base64 may itself contain ``+``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from exchange.errors import CheckpointError
from exchange.keys import KeyPair, PublicKey

__all__ = [
    "MAX_NOTE_BYTES",
    "Checkpoint",
    "CheckpointError",
    "NoteVerifier",
    "key_id",
    "open_note",
    "parse_checkpoint",
    "sign_checkpoint",
    "sign_note",
    "verifier_key",
]

ED25519_ALGORITHM = 0x01
MAX_NOTE_BYTES = 64 * 1024
_MAX_SIGNATURES = 100
_SIGNATURE_PREFIX = "\u2014 "  # an em dash and a space


def key_id(name: str, public_raw: bytes) -> bytes:
    """C2SP signed-note: the first 4 bytes of SHA-256(name || 0x0A || 0x01 || key)."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519_ALGORITHM]) + public_raw).digest()[
        :4
    ]


def _check_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" for c in name):
        raise CheckpointError(f"key name {name!r} must be non-empty, without spaces or '+'")


@dataclass(frozen=True, slots=True)
class NoteVerifier:
    """A signed-note verifier key: the name signatures carry and the Ed25519 key."""

    name: str
    public: PublicKey

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public.raw)

    def encode(self) -> str:
        return verifier_key(self.name, self.public.raw)

    @classmethod
    def parse(cls, text: str) -> NoteVerifier:
        """Parse ``name+keyid+key``, split from the left."""
        parts = text.strip().split("+", 2)
        if len(parts) != 3:
            raise CheckpointError("verifier key must read name+keyid+key")
        name, hex_id, encoded = parts
        _check_name(name)
        try:
            data = base64.b64decode(encoded, validate=True)
            expected_id = bytes.fromhex(hex_id)
        except (binascii.Error, ValueError):
            raise CheckpointError("verifier key has a malformed key ID or key") from None
        if len(data) != 33 or data[0] != ED25519_ALGORITHM:
            raise CheckpointError("verifier key is not an Ed25519 key")
        verifier = cls(name, PublicKey(text.strip(), data[1:]))
        if verifier.key_id != expected_id:
            raise CheckpointError("verifier key's key ID does not match its name and key")
        return verifier


def verifier_key(name: str, public_raw: bytes) -> str:
    _check_name(name)
    encoded = base64.b64encode(bytes([ED25519_ALGORITHM]) + public_raw).decode()
    return f"{name}+{key_id(name, public_raw).hex()}+{encoded}"


def sign_note(text: str, name: str, key: KeyPair, cosigners: Sequence[KeyPair] = ()) -> str:
    """A signed note: ``text`` (ending in a newline), a blank line, then one signature line
    by ``key`` and one by each of ``cosigners``, in that order, all under ``name``.

    Co-signers are a node's retired but unrevoked keys: a verifier that still pins one of
    them verifies the note with it (lines by keys it does not know are ignored).
    """
    _check_text(text)
    _check_name(name)
    lines = []
    for signer in (key, *cosigners):
        signature = signer.sign(text.encode())
        encoded = base64.b64encode(key_id(name, signer.public_raw) + signature).decode()
        lines.append(f"{_SIGNATURE_PREFIX}{name} {encoded}\n")
    return f"{text}\n" + "".join(lines)


def _check_text(text: str) -> None:
    if not text.endswith("\n") or "\n\n" in text or text.startswith("\n"):
        raise CheckpointError("note text must be non-empty lines, each ending in a newline")
    if any(c != "\n" and ord(c) < 0x20 for c in text):
        raise CheckpointError("note text contains control characters")


def open_note(note: str, verifiers: Iterable[NoteVerifier]) -> tuple[str, tuple[NoteVerifier, ...]]:
    """Verify a signed note; return its text and the known keys whose signatures verified.

    Lines by unknown keys (witness cosignatures, say) are ignored; a known key's bad
    signature, or no verifying signature at all, raises :class:`CheckpointError`.
    """
    if len(note.encode()) > MAX_NOTE_BYTES:
        raise CheckpointError(f"signed note is larger than {MAX_NOTE_BYTES} bytes")
    text, separator, signatures = note.rpartition("\n\n")
    if not separator or not signatures.endswith("\n"):
        raise CheckpointError("signed note has no signature block")
    text += "\n"
    _check_text(text)
    lines = signatures[:-1].split("\n")
    if len(lines) > _MAX_SIGNATURES:
        raise CheckpointError("signed note has too many signature lines")
    known = {(v.name, v.key_id): v for v in verifiers}
    verified: list[NoteVerifier] = []
    for line in lines:
        name, signature = _parse_signature_line(line)
        verifier = known.get((name, signature[:4]))
        if verifier is None:
            continue
        if not verifier.public.verify(signature[4:], text.encode()):
            raise CheckpointError(f"signature by {name} does not verify")
        verified.append(verifier)
    if not verified:
        raise CheckpointError("no signature on the note is by a known key")
    return text, tuple(verified)


def _parse_signature_line(line: str) -> tuple[str, bytes]:
    if not line.startswith(_SIGNATURE_PREFIX):
        raise CheckpointError("signature line must start with an em dash and a space")
    name, space, encoded = line[len(_SIGNATURE_PREFIX) :].partition(" ")
    if not space:
        raise CheckpointError("signature line must read '— <name> <signature>'")
    try:
        signature = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise CheckpointError("signature line is not base64") from None
    if len(signature) < 5:
        raise CheckpointError("signature line is too short")
    return name, signature


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A C2SP tlog-checkpoint: the log's origin, its size and its Merkle root."""

    origin: str
    size: int
    root_hash: bytes

    def body(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root_hash).decode()}\n"


def sign_checkpoint(
    checkpoint: Checkpoint, name: str, key: KeyPair, cosigners: Sequence[KeyPair] = ()
) -> str:
    return sign_note(checkpoint.body(), name, key, cosigners)


def parse_checkpoint(text: str, expected_origin: str | None = None) -> Checkpoint:
    """Parse verified note text as a checkpoint (protocol.md §5: no extension lines)."""
    lines = text.split("\n")
    if len(lines) != 4 or lines[3] != "":
        raise CheckpointError("checkpoint must have exactly origin, size and root lines")
    origin, size_text, root_text = lines[:3]
    if expected_origin is not None and origin != expected_origin:
        raise CheckpointError(f"checkpoint is for origin {origin!r}, not {expected_origin!r}")
    if not size_text.isdigit() or (size_text != "0" and size_text.startswith("0")):
        raise CheckpointError("checkpoint size is not a decimal number")
    try:
        root_hash = base64.b64decode(root_text, validate=True)
    except binascii.Error:
        raise CheckpointError("checkpoint root is not base64") from None
    if len(root_hash) != 32:
        raise CheckpointError("checkpoint root is not a SHA-256 hash")
    return Checkpoint(origin, int(size_text), root_hash)
