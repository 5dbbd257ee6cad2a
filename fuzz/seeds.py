"""The seed inputs of every fuzz target, made at run time from the project's own examples and
test helpers (the simulated partner of fuzz/harness.py), the adversarial corpus
(tests/adversarial: its inbox messages and hostile feed pages, built without a node), and a
few hand-made shapes (duplicate members, NaN, lone surrogates, a byte order mark, integers
beyond 2^53, deep nesting, trailing data, astral characters, every JSON escape).

    python fuzz/seeds.py DIR        # writes DIR/<target>/<n>, one folder per target
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exchange.httpsig import sign_request_by_keys
from exchange.keys import KeyPair
from fuzz.harness import ACTIVITY_JSON, INBOX, NOW, header_block, partner, signed_request
from tests.feed_simulator import FeedSimulator
from tests.nodes import EXAMPLES

__all__ = ["TARGETS", "CorpusInputs", "corpus_inputs", "seeds", "write_seeds"]

TARGETS = ("ijson", "jcs", "proof", "httpsig", "feed_page")

HOSTILE_JSON = (
    b'{"a":1,"a":2}',
    b'{"a":{"b":[1,{"c":1,"c":1}]}}',
    b'{"a":NaN}',
    b"[Infinity,-Infinity]",
    b'{"s":"\\ud800"}',
    b'{"\\udfff":1}',
    b"\xef\xbb\xbf{}",
    b'{"a":"\xff\xfe"}',
    b"[9007199254740991,9007199254740992,-9007199254740993]",
    b"[" * 80 + b"]" * 80,
    b'{"a":' * 70 + b"1" + b"}" * 70,
    b"{} trailing",
    b'"just a string"',
    b"[1.5e3,-0.0,1e400,5e-324,1e21,1e16]",
    b'{"seq":12,"at":"10:30.","n":-0}',
    b'{"k\xf0\x9f\x98\x80":"\xf0\x9f\x98\x80","\xef\xbf\xbd":1}',
    b'{"\\u0000\\u001f\\"\\\\/\\b\\f\\n\\r\\t":"\\u007f\\u2028\\u2029"}',
    b"1" * 40,
)


#: Larger inputs are left out: they slow every mutation down and test nothing new here.
MAX_SEED_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class CorpusInputs:
    """What the adversarial corpus sends: inbox requests (headers, body) and feed pages."""

    requests: tuple[tuple[tuple[tuple[str, str], ...], bytes], ...]
    pages: tuple[bytes, ...]


@cache
def corpus_inputs() -> CorpusInputs:
    """The inbox messages and hostile feed pages of tests/adversarial, built without a node.

    A stand-in for the corpus' live world gives what its generators read (the inbox URL,
    the node's base URL, a bystander partner); a case that needs the live node (most
    setups do) is left out, and so are streamed and oversized bodies.
    """
    from tests.adversarial.cases import CASES
    from tests.adversarial.corpus import Inbox, Message, Pull, Stage

    base_url = INBOX.removesuffix("/inbox")
    world = SimpleNamespace(
        inbox=INBOX,
        base_url=base_url,
        bystander=FeedSimulator(port=8000, prefix="/bystander", now=NOW),
        victim_id=f"{base_url}/objects/victim",
    )
    requests, pages = [], []
    for case in CASES:
        sim = FeedSimulator(port=8000, prefix=f"/{case.name}", now=NOW)
        stage = Stage(world, sim)  # type: ignore[arg-type]
        attack = case.attack
        try:
            if isinstance(attack, Inbox):
                if attack.setup is not None:
                    asyncio.run(attack.setup(stage))
                message = asyncio.run(attack.build(stage))
                if isinstance(message, Message) and len(message.body) <= MAX_SEED_BYTES:
                    requests.append((tuple(message.headers.items()), message.body))
            elif isinstance(attack, Pull):
                for number in range(attack.honest):
                    sim.create(f"honest-{number}")
                attack.plant(stage)
                for number in range(sim.size // sim.page_size + 1):
                    page = sim._page(number)
                    if page is not None and len(page) <= MAX_SEED_BYTES:
                        pages.append(page)
        except Exception:  # the case needs the live node: not a seed
            continue
    return CorpusInputs(tuple(requests), tuple(pages))


def _examples() -> Iterator[bytes]:
    for path in sorted(EXAMPLES.glob("*.json")):
        yield path.read_bytes()


def _json_texts() -> Iterator[bytes]:
    source = partner()
    yield from _examples()
    yield from source.leaves
    yield from (page for _, page in source.pages)
    yield json.dumps(source.simulator.node_document(), separators=(",", ":")).encode()
    yield signed_request().body
    yield from HOSTILE_JSON
    yield from (body for _, body in corpus_inputs().requests)
    yield from corpus_inputs().pages


def _requests() -> Iterator[bytes]:
    """Signed pushes as header blocks: as signed, with a stranger's signature first (the
    receiver skips it), and the hostile shapes RFC 9421 parsing meets."""
    request = signed_request()
    yield header_block(request.headers, request.body)
    stranger = KeyPair("https://other.example/keys/1", hashlib.sha256(b"stranger").digest())
    headers = {"Content-Type": ACTIVITY_JSON}
    headers.update(
        sign_request_by_keys(
            method="POST",
            target_uri=INBOX,
            headers=headers,
            body=request.body,
            keys=[stranger, partner().simulator.key],
            now=NOW,
        )
    )
    yield header_block(headers.items(), request.body)
    fields = dict(request.headers)
    for name, value in (
        (
            "Signature-Input",
            fields["Signature-Input"].replace('alg="ed25519"', 'alg="hmac-sha256"'),
        ),
        ("Signature-Input", fields["Signature-Input"] + ", " + fields["Signature-Input"]),
        ("Signature-Input", fields["Signature-Input"].replace('"@method" ', '"@method";sf ')),
        ("Content-Digest", "sha-512=:AAAA:, sha-256=:AAAA:"),
        ("Signature", "sig1=:Zm9v:, sig1=:YmFy:"),
        ("Signature-Input", 'sig1=("@method");keyid="http://127.0.0.1/keys/1";created=1'),
    ):
        changed = {**fields, name: value}
        yield header_block(changed.items(), request.body)
    for headers, body in corpus_inputs().requests:
        yield header_block(headers, body)


def seeds(target: str) -> Iterator[bytes]:
    """The seed inputs of ``target``, in the framing its test_one_input reads."""
    source = partner()
    if target == "ijson":
        yield from _json_texts()
    elif target == "jcs":
        yield from (b"t" + text for text in _json_texts())
        yield from (b"s" + hashlib.sha256(bytes([n])).digest() * 4 for n in range(8))
    elif target == "proof":
        yield from (b"t" + leaf for leaf in source.leaves)
        for _, body in corpus_inputs().requests:  # the corpus' entries, one by one
            try:
                items = json.loads(body).get("orderedItems", [])
            except (ValueError, AttributeError, RecursionError):
                continue
            yield from (
                b"t" + json.dumps(item).encode() for item in items if isinstance(item, dict)
            )
        yield from (b"e" + hashlib.sha256(bytes([n])).digest() for n in range(8))
    elif target == "httpsig":
        yield from (b"t\x00" + block for block in _requests())
        yield from (b"e" + hashlib.sha256(bytes([n])).digest() for n in range(8))
    elif target == "feed_page":
        for start, page in source.pages:
            yield b"t" + bytes([start]) + page
        yield b"t\x00" + signed_request().body
        for seq, leaf in enumerate(source.leaves):  # one-entry pages: quick to mutate
            header = {"type": "OrderedCollectionPage", "startIndex": seq}
            head = json.dumps(header, separators=(",", ":")).encode()[:-1]
            yield b"t" + bytes([seq]) + head + b',"orderedItems":[' + leaf + b"]}"
        yield from (b"t\x00" + text for text in HOSTILE_JSON)
        yield from (b"t\x00" + page for page in corpus_inputs().pages)
        yield from (b"t\x00" + body for _, body in corpus_inputs().requests)
        yield from (b"e" + bytes([n]) + hashlib.sha256(bytes([n])).digest() for n in range(8))
    else:
        raise ValueError(f"no fuzz target {target!r}")


def write_seeds(folder: Path, targets: Iterable[str] = TARGETS) -> dict[str, int]:
    """Write each target's seeds under ``folder/<target>/`` (emptied first); their counts."""
    counts = {}
    for target in targets:
        where = folder / target
        where.mkdir(parents=True, exist_ok=True)
        for old in where.iterdir():
            old.unlink()
        made = list(seeds(target))
        for number, data in enumerate(made):
            (where / f"seed-{number:03d}").write_bytes(data)
        counts[target] = len(made)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--target", action="append", choices=TARGETS)
    options = parser.parse_args()
    for target, count in write_seeds(options.folder, options.target or TARGETS).items():
        print(f"{target}: {count} seeds")


if __name__ == "__main__":
    main()
