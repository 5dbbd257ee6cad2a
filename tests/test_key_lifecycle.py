"""The key lifecycle of a node (protocol.md §1, §3, §5): rotation and revocation, on real
nodes over loopback, with partners that follow across them."""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from exchange.checkpoint import NoteVerifier, open_note
from exchange.cli import main
from exchange.entries import build_entry, sign_entry
from exchange.errors import CheckpointError, InvalidKey, KeyChangeRefused, NotFound, UsageError
from exchange.httpsig import sign_request_by_keys, verify_request
from exchange.key_lifecycle import next_key_name, revocation_time
from exchange.keys import KeyPair, PublicKey
from exchange.merge import keyring_from_node_document
from exchange.node import open_node
from exchange.proof import verify_document
from exchange.store.base import Append, Transaction
from exchange.timestamps import format_timestamp, parse_timestamp
from tests.independent_verifier import audit_log
from tests.nodes import RunningNode, eventually, make_node, pin, practice

ACTIVITY_JSON = "application/activity+json"


# --- helpers -------------------------------------------------------------------------------


async def get(url: str, accept: str = ACTIVITY_JSON) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers={"Accept": accept}) as response,
    ):
        return response.status, await response.read()


async def get_json(url: str) -> Any:
    status, body = await get(url)
    assert status == 200, (url, status, body[:300])
    return json.loads(body)


async def checkpoint_of(node: RunningNode) -> str:
    status, body = await get(f"{node.base_url}/checkpoint", "text/plain")
    assert status == 200
    return body.decode()


async def entry(node: RunningNode, seq: int) -> dict[str, Any]:
    document: dict[str, Any] = await get_json(f"{node.base_url}/log/{seq}")
    return document


def verifier(document: dict[str, Any]) -> NoteVerifier:
    return NoteVerifier.parse(str(document["checkpointKey"]))


def signature_lines(note: str) -> list[str]:
    return note.rpartition("\n\n")[2].splitlines()


def without_context(document: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in document.items() if name != "@context"}


async def objects_from(node: RunningNode, origin: str) -> list[str]:
    page = await node.node.store.list_objects(origin=origin, type_name=None, after=None, limit=500)
    return [record.id for record in page.items]


@pytest.fixture
async def dutch(tmp_path: Path) -> AsyncIterator[RunningNode]:
    node = RunningNode(tmp_path / "nl", "Samenwerkende overheid", "NL")
    await node.start()
    yield node
    await node.stop()


@pytest.fixture
async def flemish(tmp_path: Path, dutch: RunningNode) -> AsyncIterator[RunningNode]:
    """A partner of ``dutch`` that pinned its node document before any rotation."""
    node = RunningNode(tmp_path / "be", "Vlaamse overheid", "BE")
    await node.start()
    await pin(node, dutch)
    await pin(dutch, node)
    yield node
    await node.stop()


# --- rotation --------------------------------------------------------------------------------


async def test_rotation_adds_a_key_signs_the_update_with_the_old_one_and_cosigns_checkpoints(
    dutch: RunningNode,
) -> None:
    before = await get_json(dutch.base_url)
    (old,) = before["assertionMethod"]
    await dutch.node.publish([practice(1)])

    change = await dutch.node.rotate_key()
    await dutch.node.publish([practice(2)])

    # The node document lists every key, the new one active.
    document = await get_json(dutch.base_url)
    first, second = document["assertionMethod"]
    assert first == old
    assert first["revoked"] is None
    name = next_key_name([dutch.settings.active_key], parse_timestamp(second["created"]).year)
    assert second["id"] == change.key_id == f"{dutch.base_url}/keys/{name}"
    assert second["revoked"] is None
    assert document["checkpointKey"] != before["checkpointKey"]
    new_verifier, old_verifier = verifier(document), verifier(before)
    assert new_verifier.public.multibase == second["publicKeyMultibase"]

    # The Update at seq 1 is the full node document, signed by the old key (§3).
    update = await entry(dutch, 1)
    assert change.seq == 1
    assert update["type"] == "Update"
    assert update["object"] == without_context(document)
    assert update["proof"]["verificationMethod"] == old["id"]
    old_only = keyring_from_node_document(before)
    now = datetime.now(UTC)
    (proof,) = verify_document(update, old_only.resolve, now)
    assert proof.verification_method == old["id"]
    # Entries after it are signed by the new key, and verify with the new document.
    later = await entry(dutch, 2)
    assert later["proof"]["verificationMethod"] == second["id"]
    verify_document(later, keyring_from_node_document(document).resolve, now)
    with pytest.raises(InvalidKey):
        verify_document(later, old_only.resolve, now)

    # The checkpoint carries two lines: the new key's and the old key's.
    note = await checkpoint_of(dutch)
    assert len(signature_lines(note)) == 2
    _, verified = open_note(note, [old_verifier, new_verifier])
    assert {v.key_id for v in verified} == {old_verifier.key_id, new_verifier.key_id}
    assert open_note(note, [old_verifier])[1] == (old_verifier,)
    assert open_note(note, [new_verifier])[1] == (new_verifier,)

    # Every key ever had dereferences, with its window; the key file is like init's.
    for method in document["assertionMethod"]:
        served = await get_json(method["id"])
        assert without_context(served) == method
    new_file = dutch.settings.key_dir / f"{second['id'].rsplit('/', 1)[1]}.json"
    old_file = dutch.settings.key_dir / f"{dutch.settings.active_key}.json"
    assert new_file == change.key_path
    assert stat.S_IMODE(new_file.stat().st_mode) == 0o600
    assert json.loads(new_file.read_text()).keys() == json.loads(old_file.read_text()).keys()
    assert json.loads(new_file.read_text())["created"] == second["created"]


async def test_the_node_document_is_never_listed_or_deleted_as_an_object(
    dutch: RunningNode,
) -> None:
    (outcome,) = await dutch.node.publish([practice(1)])
    await dutch.node.rotate_key()
    listing = await get_json(f"{dutch.base_url}/objects")
    assert [item["id"] for item in listing["items"]] == [outcome.id]
    assert await objects_from(dutch, dutch.base_url) == [outcome.id]
    with pytest.raises(NotFound):
        await dutch.node.delete(dutch.base_url)
    status, _ = await get(f"{dutch.base_url}/objects/")
    assert status == 404


async def test_a_follower_keeps_receiving_pushes_across_a_rotation(
    dutch: RunningNode, flemish: RunningNode
) -> None:
    """Pushes are signed by the new key and co-signed by the old one: the follower, still
    pinning the old document, verifies them, merges the Update and re-pins; no pull runs
    (the sync interval is an hour) and nobody acts."""
    await flemish.federation.follow(dutch.base_url)
    (one,) = await dutch.node.publish([practice(1)])
    await eventually(lambda: _holds(flemish, dutch, 1))

    change = await dutch.node.rotate_key()
    (two,) = await dutch.node.publish([practice(2)])
    await eventually(lambda: _holds(flemish, dutch, 2))
    pinned = (await flemish.node.store.get_partner(dutch.base_url)).document
    assert pinned == without_context(dutch.node.node_document())
    assert pinned["assertionMethod"][-1]["id"] == change.key_id

    (three,) = await dutch.node.publish([practice(3)])
    await eventually(lambda: _holds(flemish, dutch, 3), timeout_s=5)
    assert set(await objects_from(flemish, dutch.base_url)) == {one.id, two.id, three.id}
    assert await flemish.node.store.list_rejections() == []
    state = await flemish.node.store.origin_state(dutch.base_url)
    assert (state.next_seq, state.checkpoint_size) == (4, 4)
    delivery = await dutch.node.store.get_delivery(flemish.base_url)
    assert (delivery.delivered, delivery.last_error, delivery.breaker) == (4, "", "closed")


async def _holds(subscriber: RunningNode, publisher: RunningNode, count: int) -> bool:
    return len(await objects_from(subscriber, publisher.base_url)) == count


async def test_a_partner_pinned_before_the_rotation_pulls_across_it(
    dutch: RunningNode, flemish: RunningNode
) -> None:
    """Pull: the newest checkpoint verifies with the old checkpointKey (its co-signature),
    the old entries with the old key, the Update re-pins, the new entries verify."""
    await dutch.node.publish([practice(1)])
    await flemish.federation.sync(dutch.base_url)
    await dutch.node.rotate_key()
    await dutch.node.publish([practice(2)])
    await dutch.node.rotate_key()
    await dutch.node.publish([practice(3)])

    report = await flemish.federation.sync(dutch.base_url)
    assert (report.merged_to, report.checkpoint_size, report.rejected, report.error) == (
        5,
        5,
        0,
        "",
    )
    pinned = (await flemish.node.store.get_partner(dutch.base_url)).document
    assert pinned == without_context(dutch.node.node_document())
    assert len(pinned["assertionMethod"]) == 3
    assert len(await objects_from(flemish, dutch.base_url)) == 3
    assert await flemish.node.store.list_rejections() == []


async def test_a_partner_that_starts_after_rotations_verifies_the_whole_log(
    dutch: RunningNode, tmp_path: Path
) -> None:
    await dutch.node.publish([practice(1)])
    await dutch.node.rotate_key()
    await dutch.node.publish([practice(2)])
    await dutch.node.rotate_key()
    await dutch.node.publish([practice(3)])
    assert len(signature_lines(await checkpoint_of(dutch))) == 3

    newcomer = RunningNode(tmp_path / "eu", "Europese Commissie", "BE")
    await newcomer.start()
    try:
        await pin(newcomer, dutch)
        report = await newcomer.federation.sync(dutch.base_url)
        assert (report.merged_to, report.rejected, report.error) == (5, 0, "")
        assert len(await objects_from(newcomer, dutch.base_url)) == 3
        assert await newcomer.node.store.list_rejections() == []
    finally:
        await newcomer.stop()
    # An auditor written apart from the node agrees: every proof, the root, the checkpoint.
    async with aiohttp.ClientSession() as session:
        audited = await audit_log(session, dutch.base_url)
    assert audited.checkpoint.size == 5
    assert len(audited.node.keys) == 3


# --- revocation ------------------------------------------------------------------------------


async def test_revocation_refuses_the_active_an_unknown_and_an_already_revoked_key(
    dutch: RunningNode,
) -> None:
    node = dutch.node
    first = node.key.id
    now = datetime.now(UTC)
    with pytest.raises(KeyChangeRefused, match="rotate first"):
        await node.revoke_key(first, now)
    second = (await node.rotate_key()).key_id
    for reference in (second, second.rsplit("/", 1)[1]):
        with pytest.raises(KeyChangeRefused, match="rotate first"):
            await node.revoke_key(reference, now)
    with pytest.raises(KeyChangeRefused, match="has no key '1999-1'"):
        await node.revoke_key("1999-1", now)
    with pytest.raises(KeyChangeRefused, match="has no key"):
        await node.revoke_key("http://elsewhere.example/keys/2026-1", now)
    with pytest.raises(KeyChangeRefused, match="cannot be revoked before"):
        await node.revoke_key(first, now - timedelta(days=365))
    size = await node.store.log_size()
    revoked = await node.revoke_key(first.rsplit("/", 1)[1], now)
    assert (revoked.key_id, revoked.seq, revoked.signed_by) == (first, size, second)
    with pytest.raises(KeyChangeRefused, match="already revoked"):
        await node.revoke_key(first, now)
    assert await node.store.log_size() == size + 1  # the refusals appended nothing


async def test_after_a_revocation_the_checkpoint_drops_the_revoked_key(
    dutch: RunningNode,
) -> None:
    genesis = await get_json(dutch.base_url)
    first = dutch.node.key.id
    await dutch.node.rotate_key()
    rotated = await get_json(dutch.base_url)
    assert len(signature_lines(await checkpoint_of(dutch))) == 2

    at = datetime.now(UTC).replace(microsecond=0)
    change = await dutch.node.revoke_key(first, at)
    document = await get_json(dutch.base_url)
    assert document["checkpointKey"] == rotated["checkpointKey"]
    assert document["assertionMethod"][0]["revoked"] == format_timestamp(at)
    assert document["assertionMethod"][1]["revoked"] is None
    served = await get_json(first)
    assert served["revoked"] == format_timestamp(at)
    update = await entry(dutch, change.seq)
    assert update["object"] == without_context(document)
    assert update["proof"]["verificationMethod"] == change.signed_by != first

    note = await checkpoint_of(dutch)
    assert len(signature_lines(note)) == 1
    open_note(note, [verifier(rotated)])
    with pytest.raises(CheckpointError, match="no signature on the note is by a known key"):
        open_note(note, [verifier(genesis)])
    await dutch.node.publish([practice(1)])
    assert len(signature_lines(await checkpoint_of(dutch))) == 1


def _crafted(node: RunningNode, key: KeyPair, at: datetime, label: str) -> Callable[..., Append]:
    """An entry signed by ``key`` at ``at``, appended to the node's log as is."""

    def plan(transaction: Transaction) -> Append:
        obj = {
            **practice(0),
            "nameMap": {"en": label},
            "id": f"{node.base_url}/objects/{label}",
            "attributedTo": node.base_url,
            "version": 1,
            "published": format_timestamp(at),
            "updated": format_timestamp(at),
        }
        unsigned = build_entry(transaction.size, "Create", obj, node.base_url, at)
        return Append([sign_entry(unsigned, key, at, 256 * 1024)], [])

    return plan


# Signed by the revoked key: accepted before its revocation time, rejected from it on.
SIGNED_AT = {
    "a second before the revocation": (-1, True),
    "at the revocation": (0, False),
    "after the revocation": (1, False),
}


async def test_a_partner_rejects_entries_signed_by_a_revoked_key_from_its_revocation_on(
    dutch: RunningNode, flemish: RunningNode
) -> None:
    first = dutch.node.key
    await dutch.node.publish([practice(1)])
    await dutch.node.rotate_key()
    await flemish.federation.sync(dutch.base_url)  # it follows the rotation, then the revocation
    revoked_at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=5)
    await dutch.node.revoke_key(first.id, revoked_at)
    expected: dict[int, bool] = {}
    for label, (offset, accepted) in SIGNED_AT.items():
        seq = await dutch.node.store.log_size()
        at = revoked_at + timedelta(seconds=offset)
        slug = label.replace(" ", "-")
        await dutch.node.store.append(_crafted(dutch, first, at, slug), dutch.node.sign_checkpoint)
        expected[seq] = accepted
    (last,) = await dutch.node.publish([practice(2)])

    report = await flemish.federation.sync(dutch.base_url)
    assert report.error == ""
    assert report.merged_to == await dutch.node.store.log_size()
    rejections = {r.seq: r for r in await flemish.node.store.list_rejections()}
    assert set(rejections) == {seq for seq, accepted in expected.items() if not accepted}
    for rejection in rejections.values():
        assert rejection.problem == "key"
        assert "was revoked" in rejection.reason
    merged = set(await objects_from(flemish, dutch.base_url))
    for label, (_, accepted) in SIGNED_AT.items():
        assert (f"{dutch.base_url}/objects/{label.replace(' ', '-')}" in merged) == accepted
    assert last.id in merged


async def test_a_partner_verifies_a_checkpoint_by_any_line_its_pinned_key_signed(
    dutch: RunningNode, flemish: RunningNode
) -> None:
    partner = await flemish.node.store.get_partner(dutch.base_url)
    await dutch.node.rotate_key()
    cosigned = await checkpoint_of(dutch)
    claim = flemish.federation._verify_note(partner, cosigned)
    assert claim.size == 1
    await dutch.node.revoke_key(partner.document["assertionMethod"][0]["id"], datetime.now(UTC))
    with pytest.raises(CheckpointError):
        flemish.federation._verify_note(partner, await checkpoint_of(dutch))


def test_messages_signed_by_several_keys_verify_with_whichever_the_receiver_knows() -> None:
    now = datetime.now(UTC)
    new = KeyPair("https://n.example/keys/2026-2", bytes(range(32)))
    old = KeyPair("https://n.example/keys/2026-1", bytes(range(1, 33)))
    body = b'{"type":"OrderedCollectionPage"}'
    target = "https://p.example/inbox"
    headers = {"Content-Type": ACTIVITY_JSON}
    headers |= sign_request_by_keys(
        method="POST", target_uri=target, headers=headers, body=body, keys=[new, old], now=now
    )

    def knowing(*keys: PublicKey) -> Callable[[str], PublicKey]:
        def resolve(key_id: str) -> PublicKey:
            for key in keys:
                if key.id == key_id:
                    return key
            raise InvalidKey(f"{key_id} is unknown")

        return resolve

    for known, chosen in (((old.public,), old.id), ((new.public, old.public), new.id)):
        verified = verify_request(
            method="POST",
            target_uri=target,
            headers=headers,
            body=body,
            resolve_key=knowing(*known),
            now=now,
        )
        assert verified.key_id == chosen


# --- a server and the CLI on one home ----------------------------------------------------


async def test_a_running_server_picks_up_a_rotation_and_a_revocation_by_the_cli(
    dutch: RunningNode, capsys: pytest.CaptureFixture[str]
) -> None:
    home = str(dutch.settings.home)
    first = dutch.node.key.id
    assert await asyncio.to_thread(main, ["keys", "rotate", "--home", home]) == 0
    out = capsys.readouterr().out
    assert out.startswith("rotated: ")
    document = await get_json(dutch.base_url)
    assert len(document["assertionMethod"]) == 2
    status, linked_data = await get(dutch.base_url, "application/ld+json")
    assert status == 200
    assert json.loads(linked_data) == document
    second = document["assertionMethod"][1]["id"]
    assert second in out
    assert (await get_json(second))["revoked"] is None

    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{dutch.base_url}/admin/objects",
            json=practice(1),
            headers={"Authorization": f"Bearer {dutch.token}"},
        ) as response,
    ):
        assert response.status == 201
        (result,) = (await response.json())["results"]
    published = await entry(dutch, result["seq"])
    assert published["proof"]["verificationMethod"] == second
    assert len(signature_lines(await checkpoint_of(dutch))) == 2

    revoke = ["keys", "revoke", first.rsplit("/", 1)[1], "--at", "now", "--home", home]
    assert await asyncio.to_thread(main, revoke) == 0
    assert (await get_json(first))["revoked"] is not None
    status, page = await get(f"{dutch.base_url}/portal/about", "text/html")
    assert status == 200
    assert b"revoked at" in page
    await dutch.node.publish([practice(2)])
    assert len(signature_lines(await checkpoint_of(dutch))) == 1


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_rotate_then_revoke_and_its_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "node"
    settings = make_node(home).settings
    h = ["--home", str(home)]
    genesis = settings.active_key
    errors = {
        "the active key": (["keys", "revoke", genesis, "--at", "now", *h], "rotate first"),
        "an unknown key": (["keys", "revoke", "1999-7", "--at", "now", *h], "has no key"),
        "a bad time": (["keys", "revoke", genesis, "--at", "yesterday", *h], "RFC 3339"),
        "a fraction": (
            ["keys", "revoke", genesis, "--at", "2026-01-01T00:00:00.5Z", *h],
            "to the second",
        ),
        "no home": (["keys", "rotate", "--home", str(tmp_path / "none")], "no node here"),
    }
    for name, (args, reason) in errors.items():
        code, out, err = _run(args, capsys)
        assert code != 0, name
        assert out == "", name
        assert err.count("\n") == 1, (name, err)
        assert err.startswith("exchange: error: "), (name, err)
        assert reason in err, (name, err)

    code, out, _ = _run(["keys", "rotate", *h], capsys)
    assert code == 0
    code, out, _ = _run(["keys", "revoke", genesis, "--at", "now", *h], capsys)
    assert code == 0
    assert out.startswith(f"revoked: {settings.key_id(genesis)} from ")
    code, out, err = _run(["keys", "revoke", settings.key_id(genesis), "--at", "now", *h], capsys)
    assert code != 0
    assert err.count("\n") == 1
    assert "already revoked" in err

    async def state() -> dict[str, Any]:
        async with open_node(settings) as node:
            assert await node.store.log_size() == 2
            return node.node_document()

    document = asyncio.run(state())
    assert [m["revoked"] is None for m in document["assertionMethod"]] == [False, True]


def test_key_names_count_up_within_a_year() -> None:
    assert next_key_name([], 2026) == "2026-1"
    assert next_key_name(["2026-1"], 2026) == "2026-2"
    assert next_key_name(["2026-1", "2026-3", "2025-9"], 2026) == "2026-4"
    assert next_key_name(["2026-1", "2026-2"], 2027) == "2027-1"
    assert next_key_name(["2026-1", "2026-2.json.tmp", "notes"], 2026) == "2026-2"


def test_revocation_times_are_rfc3339_to_the_second() -> None:
    now = datetime(2026, 11, 23, 10, 0, 0, 123456, tzinfo=UTC)
    assert revocation_time("now", now) == now.replace(microsecond=0)
    assert revocation_time("2026-11-23T11:00:00+01:00", now) == now.replace(microsecond=0)
    assert revocation_time("2026-11-23T10:00:00Z", now).tzinfo == UTC
    for bad in ("2026-11-23", "2026-11-23T10:00:00", "2026-11-23T10:00:00.25Z", ""):
        with pytest.raises(UsageError):
            revocation_time(bad, now)


def test_a_rotation_keeps_the_genesis_settings_key_as_history(tmp_path: Path) -> None:
    """``[keys] active`` in exchange.toml names the genesis key only: after a rotation the
    store decides which key signs, and a restarted node keeps signing with the new one."""
    settings = make_node(tmp_path / "node").settings

    async def scenario() -> tuple[str, str]:
        async with open_node(settings) as node:
            rotated = (await node.rotate_key()).key_id
        async with open_node(replace(settings)) as node:
            (outcome,) = await node.publish([practice(1)])
            leaf = (await node.store.entries(outcome.seq, outcome.seq + 1))[0]
            return rotated, json.loads(leaf)["proof"]["verificationMethod"]

    rotated, signer = asyncio.run(scenario())
    assert signer == rotated != settings.key_id(settings.active_key)


def test_a_lost_retired_key_stops_publishing_until_it_is_revoked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A retired key that is not revoked co-signs every checkpoint: losing its file is an
    error the operator sees at once, and revoking the key is the way out."""
    home = tmp_path / "node"
    settings = make_node(home).settings
    draft = tmp_path / "practice.json"
    draft.write_text(json.dumps(practice(1)))
    h = ["--home", str(home)]
    assert _run(["keys", "rotate", *h], capsys)[0] == 0
    (settings.key_dir / f"{settings.active_key}.json").unlink()

    code, out, err = _run(["publish", str(draft), *h], capsys)
    assert code != 0
    assert out == ""
    assert err.count("\n") == 1
    assert "key file" in err
    assert "missing" in err

    assert _run(["keys", "revoke", settings.active_key, "--at", "now", *h], capsys)[0] == 0
    code, out, _ = _run(["publish", str(draft), *h], capsys)
    assert code == 0
    assert out.startswith("created: ")
