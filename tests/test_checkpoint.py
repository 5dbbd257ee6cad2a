"""C2SP signed notes and tlog checkpoints."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from exchange.checkpoint import (
    Checkpoint,
    CheckpointError,
    NoteVerifier,
    key_id,
    open_note,
    parse_checkpoint,
    sign_checkpoint,
    sign_note,
)
from exchange.keys import KeyPair
from exchange.merkle import EMPTY_ROOT


# Source: C2SP signed-note, the reference vector of golang.org/x/mod/sumdb/note
# (shared/vectors/tlog/signed-note.json).
@pytest.fixture(scope="module")
def note_vector(vectors: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((vectors / "tlog" / "signed-note.json").read_text())
    return data


def vector_signer(note_vector: dict[str, Any]) -> tuple[str, KeyPair]:
    _, _, name, _, encoded = note_vector["signer_key"].split("+", 4)
    seed = base64.b64decode(encoded)[1:]
    return name, KeyPair(name, seed)


def test_vector_note_verifies(note_vector: dict[str, Any]) -> None:
    verifier = NoteVerifier.parse(note_vector["verifier_key"])
    text, verified = open_note(note_vector["note"], [verifier])
    assert text == note_vector["text"]
    assert verified == (verifier,)


def test_key_id_rule(note_vector: dict[str, Any]) -> None:
    name, signer = vector_signer(note_vector)
    expected = note_vector["verifier_key"].split("+")[1]
    assert key_id(name, signer.public_raw).hex() == expected
    assert NoteVerifier.parse(note_vector["verifier_key"]).encode() == note_vector["verifier_key"]


def test_signing_reproduces_the_vector(note_vector: dict[str, Any]) -> None:
    name, signer = vector_signer(note_vector)
    assert sign_note(note_vector["text"], name, signer) == note_vector["note"]


SIGNER = KeyPair("node", bytes(range(32)))
ORIGIN = "samenwerken.example.nl/exchange"
VERIFIER = NoteVerifier.parse(
    f"{ORIGIN}+{key_id(ORIGIN, SIGNER.public_raw).hex()}+"
    + base64.b64encode(b"\x01" + SIGNER.public_raw).decode()
)


def test_checkpoint_round_trip_and_empty_log() -> None:
    checkpoint = Checkpoint(ORIGIN, 0, EMPTY_ROOT)
    note = sign_checkpoint(checkpoint, ORIGIN, SIGNER)
    assert note.startswith(
        f"{ORIGIN}\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n— {ORIGIN} "
    )
    text, _ = open_note(note, [VERIFIER])
    assert parse_checkpoint(text, ORIGIN) == checkpoint


def test_unknown_witness_lines_are_ignored() -> None:
    note = sign_checkpoint(Checkpoint(ORIGIN, 5, b"\x07" * 32), ORIGIN, SIGNER)
    witness = KeyPair("w", bytes(32))
    witness_line = sign_note("x\n", "witness.example", witness).split("\n\n")[1]
    text, verified = open_note(note + witness_line, [VERIFIER])
    assert parse_checkpoint(text).size == 5
    assert verified == (VERIFIER,)


def note(size: int = 5) -> str:
    return sign_checkpoint(Checkpoint(ORIGIN, size, b"\x07" * 32), ORIGIN, SIGNER)


BROKEN_NOTES = {
    "size rewritten": lambda: note().replace("\n5\n", "\n6\n", 1),
    "signature by another key": lambda: sign_checkpoint(
        Checkpoint(ORIGIN, 5, b"\x07" * 32), ORIGIN, KeyPair("x", bytes(32))
    ),
    "no signature block": lambda: Checkpoint(ORIGIN, 5, b"\x07" * 32).body(),
    "signature not base64": lambda: note().rsplit(" ", 1)[0] + " !!!\n",
    "hyphen instead of em dash": lambda: note().replace("— ", "- "),
    "oversized": lambda: "x\n" * 40000 + "\n— a AAAA\n",
}


@pytest.mark.parametrize("make", BROKEN_NOTES.values(), ids=BROKEN_NOTES.keys())
def test_broken_notes_are_rejected(make: Any) -> None:
    with pytest.raises(CheckpointError):
        open_note(make(), [VERIFIER])


@pytest.mark.parametrize(
    "body",
    [
        f"{ORIGIN}\n5\n",
        f"{ORIGIN}\n05\n" + base64.b64encode(b"\x00" * 32).decode() + "\n",
        f"{ORIGIN}\n-1\n" + base64.b64encode(b"\x00" * 32).decode() + "\n",
        f"{ORIGIN}\n5\n" + base64.b64encode(b"\x00" * 31).decode() + "\n",
        f"{ORIGIN}\n5\n" + base64.b64encode(b"\x00" * 32).decode() + "\nextension\n",
    ],
    ids=["no root", "leading zero", "negative", "short root", "extension line"],
)
def test_malformed_checkpoint_bodies(body: str) -> None:
    with pytest.raises(CheckpointError):
        parse_checkpoint(body)


def test_checkpoint_of_another_origin_is_refused() -> None:
    with pytest.raises(CheckpointError, match=r"not 'other\.example'"):
        parse_checkpoint(Checkpoint(ORIGIN, 1, EMPTY_ROOT).body(), "other.example")


def test_verifier_key_with_plus_in_base64_parses_from_the_left() -> None:
    for seed in range(64):
        pair = KeyPair("k", bytes([seed]) * 32)
        encoded = base64.b64encode(b"\x01" + pair.public_raw).decode()
        if "+" in encoded:
            text = f"name+{key_id('name', pair.public_raw).hex()}+{encoded}"
            assert NoteVerifier.parse(text).public.raw == pair.public_raw
            return
    pytest.fail("no key with '+' in its base64 among the seeds tried")
