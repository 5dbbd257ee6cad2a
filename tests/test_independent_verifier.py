"""Acceptance: a verifier written from the standards alone checks a served log of 1,000+ entries.

tests/independent_verifier.py imports nothing from ``exchange``: only ``cryptography``,
``rfc8785``, ``aiohttp`` and the standard library. Its pieces are first checked against the
standards' vectors in ../shared/vectors (W3C vc-di-eddsa, RFC 6962 / RFC 9162, C2SP
signed-note, RFC 8785), then pointed over HTTP at a real node on loopback: every entry's
proof, the Merkle root over all entries against the signed checkpoint, inclusion proofs for
random entries and a consistency proof between an older and a newer checkpoint
(protocol.md §3-§5). Negative cases show the checks can fail.
"""

from __future__ import annotations

import ast
import asyncio
import copy
import json
import random
import re
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web

from exchange.http.server import create_app
from exchange.operator import init_node
from tests import independent_verifier as iv
from tests.nodes import free_port

T = TypeVar("T")

TESTS = Path(__file__).resolve().parent
PROJECT = TESTS.parent
VECTORS = PROJECT.parent / "shared" / "vectors"
VERIFIER = TESTS / "independent_verifier.py"

#: The older checkpoint is read after FIRST entries, the newer after FIRST + SECOND.
#: Neither is a power of two, so the consistency proof takes the general path.
FIRST, SECOND, BATCH = 523, 514, 200
SEED = 6962


def run(work: Callable[[aiohttp.ClientSession], Awaitable[T]]) -> T:
    async def main() -> T:
        async with aiohttp.ClientSession() as session:
            return await work(session)

    return asyncio.run(main())


def flip(data: bytes, index: int = 0) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


# --- the verifier stays independent ----------------------------------------------------------

ALLOWED_THIRD_PARTY = {"aiohttp", "cryptography", "rfc8785"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"relative import in {path.name}, line {node.lineno}"
            assert node.module is not None
            names.add(node.module)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            assert node.func.id != "__import__", f"dynamic import in {path.name}"
    return names


def test_verifier_imports_only_the_standard_library_cryptography_jcs_and_aiohttp() -> None:
    modules = imported_modules(VERIFIER)
    roots = {name.split(".")[0] for name in modules}
    assert "exchange" not in roots
    assert "importlib" not in roots
    assert roots - sys.stdlib_module_names <= ALLOWED_THIRD_PARTY, roots
    assert {"cryptography.hazmat.primitives.asymmetric.ed25519", "rfc8785"} <= modules


def test_importing_the_verifier_loads_no_exchange_module() -> None:
    script = (
        "import sys, tests.independent_verifier\n"
        "loaded = [m for m in sys.modules if m == 'exchange' or m.startswith('exchange.')]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=PROJECT, check=True, timeout=60)


# --- the verifier's pieces against the standards' vectors -----------------------------------


def vc_vector(name: str) -> str:
    return (VECTORS / "vc-di-eddsa" / name).read_text(encoding="utf-8").strip()


@pytest.mark.parametrize("name", sorted(p.name for p in (VECTORS / "jcs" / "input").glob("*.json")))
def test_jcs_matches_the_rfc8785_vectors(name: str) -> None:
    source = (VECTORS / "jcs" / "input" / name).read_bytes()
    expected = (VECTORS / "jcs" / "output" / name).read_bytes().rstrip(b"\n")
    assert iv.jcs(iv.parse_ijson(source)) == expected


def test_base58btc_and_multikey_decode_the_vc_di_eddsa_vectors() -> None:
    signature = iv.base58btc_decode(vc_vector("sigBTC58JCS.txt")[1:])
    assert signature == bytes.fromhex(vc_vector("sigHexJCS.txt"))
    pair = json.loads(vc_vector("keyPair.json"))
    assert len(iv.ed25519_multikey(pair["publicKeyMultibase"])) == 32
    assert iv.base58btc_decode("11") == b"\x00\x00"
    with pytest.raises(iv.VerificationError):
        iv.base58btc_decode("0OIl")
    with pytest.raises(iv.VerificationError):
        iv.ed25519_multikey(pair["privateKeyMultibase"])


def test_eddsa_jcs_2022_reproduces_the_w3c_vector() -> None:
    signed = json.loads(vc_vector("signedJCS.json"))
    hash_data, proof_bytes = iv.hash_data_eddsa_jcs_2022(signed)
    assert hash_data[:32] == bytes.fromhex(vc_vector("proofHashJCS.txt"))
    assert hash_data[32:] == bytes.fromhex(vc_vector("docHashJCS.txt"))
    assert hash_data == bytes.fromhex(vc_vector("combinedHashJCS.txt"))
    assert proof_bytes == bytes.fromhex(vc_vector("sigHexJCS.txt"))
    unsigned = json.loads(vc_vector("unsigned.json"))
    assert iv.jcs(unsigned) == vc_vector("canonDocJCS.txt").encode()
    options = {k: v for k, v in signed["proof"].items() if k != "proofValue"}
    assert iv.jcs(options) == vc_vector("proofCanonJCS.txt").encode()
    public = iv.ed25519_multikey(json.loads(vc_vector("keyPair.json"))["publicKeyMultibase"])
    iv.verify_eddsa_jcs_2022(signed, public)


def _set(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        target = document
        for name in path[:-1]:
            target = target[name]
        target[path[-1]] = value

    return change


EDDSA_TAMPERINGS = {
    "subject-changed": _set(("credentialSubject", "alumniOf"), "The School of Forgeries"),
    "member-added": _set(("evidence",), "forged"),
    "proof-created-changed": _set(("proof", "created"), "2023-02-24T23:36:39Z"),
    "proof-purpose-changed": _set(("proof", "proofPurpose"), "authentication"),
    "proof-context-not-a-prefix": _set(("proof", "@context"), ["https://example.org/other"]),
    "cryptosuite-changed": _set(("proof", "cryptosuite"), "eddsa-rdfc-2022"),
    "proof-value-not-multibase": _set(("proof", "proofValue"), "2HnFSSPPBzR36zdDgK8PbEHe"),
    "proof-value-truncated": _set(
        ("proof", "proofValue"),
        "z2HnFSSPPBzR36zdDgK8PbEHeXbR56YF24jwMpt3R1eHXQzJDMWS93FCzpvJpwTWd3GAVFuUfjoJdcnTMuVor51a",
    ),
}


@pytest.mark.parametrize("tampering", EDDSA_TAMPERINGS)
def test_eddsa_jcs_2022_rejects_a_tampered_w3c_vector(tampering: str) -> None:
    signed = json.loads(vc_vector("signedJCS.json"))
    public = iv.ed25519_multikey(json.loads(vc_vector("keyPair.json"))["publicKeyMultibase"])
    EDDSA_TAMPERINGS[tampering](signed)
    with pytest.raises(iv.VerificationError):
        iv.verify_eddsa_jcs_2022(signed, public)


def test_eddsa_jcs_2022_rejects_another_key() -> None:
    signed = json.loads(vc_vector("signedJCS.json"))
    public = iv.ed25519_multikey(json.loads(vc_vector("keyPair.json"))["publicKeyMultibase"])
    with pytest.raises(iv.VerificationError, match="does not verify"):
        iv.verify_eddsa_jcs_2022(signed, flip(public, 31))


@pytest.fixture(scope="module")
def tlog() -> dict[str, Any]:
    vector: dict[str, Any] = json.loads((VECTORS / "tlog" / "merkle-rfc6962.json").read_text())
    return vector


def vector_leaf_hashes(tlog: dict[str, Any]) -> list[bytes]:
    return [iv.leaf_hash(bytes.fromhex(leaf)) for leaf in tlog["leaves_hex"]]


def test_merkle_roots_match_the_rfc6962_vectors(tlog: dict[str, Any]) -> None:
    hashes = vector_leaf_hashes(tlog)
    assert iv.merkle_root([]) == bytes.fromhex(tlog["empty_root"])
    for size, root in tlog["roots_by_size"].items():
        assert iv.merkle_root(hashes[: int(size)]) == bytes.fromhex(root)
        iv.verify_root(hashes[: int(size)], bytes.fromhex(root))
        with pytest.raises(iv.VerificationError):
            iv.verify_root(hashes[: int(size)], flip(bytes.fromhex(root)))


def test_inclusion_proofs_match_the_rfc6962_vectors(tlog: dict[str, Any]) -> None:
    hashes = vector_leaf_hashes(tlog)
    for case in tlog["inclusion_proofs"]:
        index, size = case["leaf_index"], case["tree_size"]
        proof = [bytes.fromhex(h) for h in case["proof"]]
        root = iv.merkle_root(hashes[:size])
        iv.verify_inclusion(index, size, hashes[index], proof, root)
        with pytest.raises(iv.VerificationError):
            iv.verify_inclusion(index, size, hashes[index], proof, flip(root))
        with pytest.raises(iv.VerificationError):
            iv.verify_inclusion(index, size, flip(hashes[index]), proof, root)
        with pytest.raises(iv.VerificationError):
            iv.verify_inclusion(size, size, hashes[index], proof, root)
        with pytest.raises(iv.VerificationError):
            iv.verify_inclusion(index, size, hashes[index], [*proof, root], root)
        for position in range(len(proof)):
            forged = [*proof[:position], flip(proof[position]), *proof[position + 1 :]]
            with pytest.raises(iv.VerificationError):
                iv.verify_inclusion(index, size, hashes[index], forged, root)
        if proof:
            with pytest.raises(iv.VerificationError):
                iv.verify_inclusion(index, size, hashes[index], proof[:-1], root)
        if size > 1:
            other = (index + 1) % size
            with pytest.raises(iv.VerificationError):
                iv.verify_inclusion(other, size, hashes[index], proof, root)
    with pytest.raises(iv.VerificationError):
        iv.verify_inclusion(1, 1, hashes[1], [], iv.merkle_root(hashes[:1]))


def test_consistency_proofs_match_the_rfc6962_vectors(tlog: dict[str, Any]) -> None:
    hashes = vector_leaf_hashes(tlog)
    for case in tlog["consistency_proofs"]:
        first, second = case["first"], case["second"]
        proof = [bytes.fromhex(h) for h in case["proof"]]
        old, new = iv.merkle_root(hashes[:first]), iv.merkle_root(hashes[:second])
        iv.verify_consistency(first, second, old, new, proof)
        with pytest.raises(iv.VerificationError):
            iv.verify_consistency(first, second, flip(old), new, proof)
        with pytest.raises(iv.VerificationError):
            iv.verify_consistency(first, second, old, flip(new), proof)
        with pytest.raises(iv.VerificationError):
            iv.verify_consistency(first, second, old, new, [*proof, new])
        for position in range(len(proof)):
            forged = [*proof[:position], flip(proof[position]), *proof[position + 1 :]]
            with pytest.raises(iv.VerificationError):
                iv.verify_consistency(first, second, old, new, forged)
        if proof:
            with pytest.raises(iv.VerificationError):
                iv.verify_consistency(first, second, old, new, proof[:-1])
    with pytest.raises(iv.VerificationError):
        iv.verify_consistency(0, 3, iv.merkle_root([]), iv.merkle_root(hashes[:3]), [])


@pytest.fixture(scope="module")
def signed_note() -> dict[str, str]:
    vector: dict[str, str] = json.loads((VECTORS / "tlog" / "signed-note.json").read_text())
    return vector


def test_signed_note_matches_the_c2sp_vector(signed_note: dict[str, str]) -> None:
    verifier = iv.parse_verifier_key(signed_note["verifier_key"])
    assert verifier.name == "PeterNeumann"
    assert iv.note_key_id(verifier.name, verifier.public_key) == bytes.fromhex("c74f20a3")
    assert iv.verify_note(signed_note["note"].encode(), verifier) == signed_note["text"]


def _swap(old: str, new: str) -> Callable[[str], str]:
    return lambda note: note.replace(old, new, 1)


NOTE_TAMPERINGS = {
    "text-changed": _swap("answer", "solution"),
    "signature-changed": _swap("x08go", "x08gp"),
    "signature-by-unknown-name": _swap("— PeterNeumann", "— PeterPan"),
    "no-blank-line": _swap("is.\n\n", "is.\n"),
    "no-em-dash": _swap("— ", "- "),
    "signature-not-base64": _swap("x08go/", "x08go!"),
}


@pytest.mark.parametrize("tampering", NOTE_TAMPERINGS)
def test_signed_note_rejects_a_tampered_c2sp_vector(
    signed_note: dict[str, str], tampering: str
) -> None:
    verifier = iv.parse_verifier_key(signed_note["verifier_key"])
    note = NOTE_TAMPERINGS[tampering](signed_note["note"])
    assert note != signed_note["note"]
    with pytest.raises(iv.VerificationError):
        iv.verify_note(note.encode(), verifier)


@pytest.mark.parametrize(
    "key",
    [
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong key ID
        "PeterNeumann+c74f20a3+AhpC2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # algorithm 2
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",  # not base64
        "PeterNeumann+c74f20a3",  # no key
    ],
)
def test_verifier_keys_that_do_not_parse(key: str) -> None:
    with pytest.raises(iv.VerificationError):
        iv.parse_verifier_key(key)


ROOT = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="


@pytest.mark.parametrize(
    "text",
    [
        f"example.org/log\n010\n{ROOT}\n",  # leading zero
        f"example.org/log\n-1\n{ROOT}\n",
        f"example.org/log\n10\n{ROOT[:-1]}\n",  # padding missing
        f"example.org/log\n10\n{ROOT}\nextension\n",  # protocol.md §5: no extension lines
        f"example.org/log\n10\n{ROOT}",  # no final newline
        "example.org/log\n10\nAAAA\n",  # not 32 bytes
    ],
)
def test_checkpoints_that_do_not_parse(text: str) -> None:
    with pytest.raises(iv.VerificationError):
        iv.parse_checkpoint(text)


def test_a_well_formed_checkpoint_parses() -> None:
    checkpoint = iv.parse_checkpoint(f"example.org/log\n10\n{ROOT}\n")
    assert checkpoint == iv.Checkpoint("example.org/log", 10, iv.merkle_root([]))


# --- a real node on loopback with a log of 1,000+ entries -----------------------------------


def drafts(start: int, count: int) -> list[dict[str, Any]]:
    """Copies of the examples without id or @context, each named apart so none is unchanged."""
    examples = [json.loads(p.read_text()) for p in sorted((PROJECT / "examples").glob("*.json"))]
    result = []
    for number in range(start, start + count):
        draft = {
            k: v for k, v in examples[number % len(examples)].items() if k not in ("id", "@context")
        }
        draft["nameMap"] = {
            lang: f"{name} (copy {number})" for lang, name in draft["nameMap"].items()
        }
        result.append(draft)
    return result


async def publish(
    session: aiohttp.ClientSession, base: str, token: str, start: int, count: int
) -> None:
    for offset in range(0, count, BATCH):
        batch = drafts(start + offset, min(BATCH, count - offset))
        async with session.post(
            f"{base}/admin/objects",
            json=batch,
            headers={"Authorization": f"Bearer {token}"},
        ) as response:
            body = await response.json()
            assert response.status == 201, body
            assert [r["action"] for r in body["results"]] == ["created"] * len(batch)


@dataclass(frozen=True, slots=True)
class ServedNode:
    base_url: str
    older_note: bytes
    newer_note: bytes


class LoopbackServer:
    """The node's app served from an event loop on its own thread, for synchronous tests."""

    def __init__(self, app: web.Application, port: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner = web.AppRunner(app)
        self.port = port

    def _call(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout=120)

    def start(self) -> None:
        self.thread.start()
        self._call(self.runner.setup())
        self._call(web.TCPSite(self.runner, "127.0.0.1", self.port).start())

    def stop(self) -> None:
        self._call(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedNode]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    home = tmp_path_factory.mktemp("independent-verifier") / "node"
    node = init_node(home, base_url=base, name="Test node", country="NL")
    server = LoopbackServer(create_app(node.settings), port)
    server.start()
    try:

        async def publish_in_two_halves(session: aiohttp.ClientSession) -> ServedNode:
            await publish(session, base, node.token, 0, FIRST)
            older = await iv.fetch_checkpoint(session, base)
            await publish(session, base, node.token, FIRST, SECOND)
            newer = await iv.fetch_checkpoint(session, base)
            return ServedNode(base, older, newer)

        yield run(publish_in_two_halves)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def audited(served: ServedNode) -> iv.AuditedLog:
    return run(lambda session: iv.audit_log(session, served.base_url))


def test_the_node_document_keys_dereference(served: ServedNode, audited: iv.AuditedLog) -> None:
    node = audited.node
    assert node.origin == served.base_url.removeprefix("http://")
    assert len(node.keys) == 1

    async def fetch_keys(session: aiohttp.ClientSession) -> list[bytes]:
        return [await iv.fetch_multikey(session, key_id) for key_id in node.keys]

    assert run(fetch_keys) == [key.public_key for key in node.keys.values()]
    assert node.checkpoint_verifier.public_key == next(iter(node.keys.values())).public_key


def test_every_entry_of_a_log_of_1000_entries_carries_a_valid_proof(
    audited: iv.AuditedLog,
) -> None:
    entries = audited.feed.entries
    assert len(entries) == FIRST + SECOND >= 1000
    assert audited.feed.pages == len(entries) // audited.feed.page_size + 1
    assert [entry["seq"] for entry in entries] == list(range(len(entries)))
    now = datetime.now(UTC)
    for seq, entry in enumerate(entries):  # audit_log did this too; it is the criterion
        iv.verify_entry(entry, seq, audited.node, now)


def test_the_merkle_root_over_all_entries_is_the_signed_checkpoint_root(
    served: ServedNode, audited: iv.AuditedLog
) -> None:
    newer = iv.verify_checkpoint(served.newer_note, audited.node)
    assert newer == audited.checkpoint
    assert newer.size == len(audited.feed.entries) == FIRST + SECOND
    leaves = [iv.leaf_hash(iv.jcs(entry)) for entry in audited.feed.entries]
    assert iv.merkle_root(leaves) == newer.root
    iv.verify_root(leaves, newer.root)


def test_the_older_checkpoint_is_signed_over_the_first_entries(
    served: ServedNode, audited: iv.AuditedLog
) -> None:
    older = iv.verify_checkpoint(served.older_note, audited.node)
    assert older.size == FIRST
    iv.verify_root(audited.leaf_hashes[:FIRST], older.root)


def test_inclusion_proofs_for_random_entries(served: ServedNode, audited: iv.AuditedLog) -> None:
    older = iv.verify_checkpoint(served.older_note, audited.node)
    newer = audited.checkpoint
    rng = random.Random(SEED)
    newer_picks = {
        0,
        newer.size - 1,
        older.size - 1,
        older.size,
        *rng.sample(range(newer.size), 40),
    }
    older_picks = {0, older.size - 1, *rng.sample(range(older.size), 20)}
    checks = [(i, newer) for i in sorted(newer_picks)] + [(i, older) for i in sorted(older_picks)]

    async def fetch_all(session: aiohttp.ClientSession) -> list[list[bytes]]:
        return [
            await iv.fetch_inclusion_proof(session, served.base_url, index, checkpoint.size)
            for index, checkpoint in checks
        ]

    for (index, checkpoint), proof in zip(checks, run(fetch_all), strict=True):
        leaf = iv.entry_leaf_hash(audited.feed.entries[index])
        iv.verify_inclusion(index, checkpoint.size, leaf, proof, checkpoint.root)


def test_a_consistency_proof_between_the_older_and_the_newer_checkpoint(
    served: ServedNode, audited: iv.AuditedLog
) -> None:
    older = iv.verify_checkpoint(served.older_note, audited.node)
    newer = iv.verify_checkpoint(served.newer_note, audited.node)
    proof = run(
        lambda session: iv.fetch_consistency_proof(session, served.base_url, older.size, newer.size)
    )
    iv.verify_consistency(older.size, newer.size, older.root, newer.root, proof)
    with pytest.raises(iv.VerificationError):
        iv.verify_consistency(older.size, newer.size, flip(older.root), newer.root, proof)
    with pytest.raises(iv.VerificationError):
        iv.verify_consistency(older.size, newer.size, older.root, flip(newer.root), proof)


def test_consistency_proofs_between_random_sizes(
    served: ServedNode, audited: iv.AuditedLog
) -> None:
    leaves = audited.leaf_hashes
    size = audited.checkpoint.size
    rng = random.Random(SEED + 1)
    pairs = [(1, size), (512, size), (size, size), (FIRST, FIRST + 1), (size - 1, size)]
    for _ in range(20):
        m, n = sorted(rng.sample(range(1, size + 1), 2))
        pairs.append((m, n))

    async def fetch_all(session: aiohttp.ClientSession) -> list[list[bytes]]:
        return [await iv.fetch_consistency_proof(session, served.base_url, m, n) for m, n in pairs]

    for (m, n), proof in zip(pairs, run(fetch_all), strict=True):
        iv.verify_consistency(m, n, iv.merkle_root(leaves[:m]), iv.merkle_root(leaves[:n]), proof)
    assert run(lambda s: iv.fetch_consistency_proof(s, served.base_url, size, size)) == []


def test_log_entry_iris_serve_the_feed_entries(served: ServedNode, audited: iv.AuditedLog) -> None:
    picks = sorted(random.Random(SEED + 2).sample(range(audited.checkpoint.size), 10))

    async def fetch_all(session: aiohttp.ClientSession) -> list[Any]:
        return [await iv.fetch_log_entry(session, served.base_url, seq) for seq in picks]

    for seq, entry in zip(picks, run(fetch_all), strict=True):
        assert entry == audited.feed.entries[seq]


# --- negative checks on the served data -----------------------------------------------------


def served_entry_bytes(audited: iv.AuditedLog, seq: int) -> bytes:
    return iv.jcs(audited.feed.entries[seq])


def one_second_later(stamp: bytes) -> bytes:
    moment = datetime.fromisoformat(stamp.decode().replace("Z", "+00:00")) + timedelta(seconds=1)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ").encode()


ENTRY_TAMPERINGS: dict[str, Callable[[bytes], bytes]] = {
    "object-name-changed": lambda b: b.replace(b"(copy ", b"(kopie ", 1),
    "published-changed": lambda b: b.replace(b'"published":"20', b'"published":"19', 1),
    "proof-created-one-second-later": lambda b: re.sub(
        rb'"created":"([^"]+)"', lambda m: b'"created":"%s"' % one_second_later(m[1]), b, count=1
    ),
    "version-bumped": lambda b: b.replace(b'"version":1', b'"version":2', 1),
    "member-added": lambda b: (
        b[:-1] + b',"audience":"https://www.w3.org/ns/activitystreams#Public"}'
    ),
    "proof-value-digit-changed": lambda b: re.sub(
        rb'("proofValue":"z.{9})(.)', lambda m: m[1] + (b"3" if m[2] == b"2" else b"2"), b, count=1
    ),
}


@pytest.mark.parametrize("tampering", ENTRY_TAMPERINGS)
def test_a_tampered_entry_fails_its_proof_and_the_checkpoint_root(
    audited: iv.AuditedLog, tampering: str
) -> None:
    seq = 700
    original = served_entry_bytes(audited, seq)
    tampered_bytes = ENTRY_TAMPERINGS[tampering](original)
    assert tampered_bytes != original
    tampered = iv.parse_ijson(tampered_bytes)
    with pytest.raises(iv.VerificationError, match="does not verify"):
        iv.verify_entry(tampered, seq, audited.node, datetime.now(UTC))
    leaves = list(audited.leaf_hashes)
    leaves[seq] = iv.entry_leaf_hash(tampered)
    with pytest.raises(iv.VerificationError, match="Merkle root"):
        iv.verify_root(leaves[: audited.checkpoint.size], audited.checkpoint.root)


def test_a_tampered_entry_fails_its_inclusion_proof(
    served: ServedNode, audited: iv.AuditedLog
) -> None:
    seq, size = 700, audited.checkpoint.size
    proof = run(lambda s: iv.fetch_inclusion_proof(s, served.base_url, seq, size))
    tampered = copy.deepcopy(audited.feed.entries[seq])
    tampered["object"]["nameMap"] = {"en": "A forged name"}
    with pytest.raises(iv.VerificationError):
        iv.verify_inclusion(seq, size, iv.entry_leaf_hash(tampered), proof, audited.checkpoint.root)
    with pytest.raises(iv.VerificationError):  # nor is it entry 701
        iv.verify_inclusion(seq + 1, size, audited.leaf_hashes[seq], proof, audited.checkpoint.root)


def test_a_wrong_root_fails(served: ServedNode, audited: iv.AuditedLog) -> None:
    checkpoint = audited.checkpoint
    wrong = flip(checkpoint.root, 17)
    with pytest.raises(iv.VerificationError, match="Merkle root"):
        iv.verify_root(audited.leaf_hashes[: checkpoint.size], wrong)
    with pytest.raises(iv.VerificationError, match="Merkle root"):  # one entry short
        iv.verify_root(audited.leaf_hashes[: checkpoint.size - 1], checkpoint.root)
    proof = run(lambda s: iv.fetch_inclusion_proof(s, served.base_url, 3, checkpoint.size))
    with pytest.raises(iv.VerificationError):
        iv.verify_inclusion(3, checkpoint.size, audited.leaf_hashes[3], proof, wrong)


CHECKPOINT_TAMPERINGS: dict[str, Callable[[str], str]] = {
    "root-replaced": lambda note: note.replace(
        note.split("\n")[2], "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", 1
    ),
    "size-changed": lambda note: note.replace(
        f"\n{FIRST + SECOND}\n", f"\n{FIRST + SECOND + 1}\n", 1
    ),
    "origin-changed": lambda note: note.replace("127.0.0.1", "127.0.0.2", 1),
    "signature-changed": lambda note: note[:-10] + ("A" if note[-10] != "A" else "B") + note[-9:],
}


@pytest.mark.parametrize("tampering", CHECKPOINT_TAMPERINGS)
def test_a_tampered_checkpoint_fails_its_signature(
    served: ServedNode, audited: iv.AuditedLog, tampering: str
) -> None:
    note = served.newer_note.decode()
    tampered = CHECKPOINT_TAMPERINGS[tampering](note)
    assert tampered != note
    with pytest.raises(iv.VerificationError):
        iv.verify_checkpoint(tampered.encode(), audited.node)


def test_a_checkpoint_under_another_key_fails(served: ServedNode, audited: iv.AuditedLog) -> None:
    verifier = audited.node.checkpoint_verifier
    other = iv.NoteVerifier(verifier.name, verifier.key_id, flip(verifier.public_key, 5))
    with pytest.raises(iv.VerificationError, match="does not verify"):
        iv.verify_note(served.newer_note, other)
    stranger = iv.NoteVerifier("stranger.example", verifier.key_id, verifier.public_key)
    with pytest.raises(iv.VerificationError, match="no signature line"):
        iv.verify_note(served.newer_note, stranger)
