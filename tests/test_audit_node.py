"""Auditing a running node over HTTP, exporting its bundle, and auditing that bundle with
the network switched off; a clean 100,000-entry bundle audits clean offline."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from exchange.auditor import AuditUnavailable, audit_bundle, audit_node
from exchange.cli import main
from tests.nodes import PROJECT, RunningNode, free_port, practice
from tests.synthetic_log import SyntheticLog

NO_NETWORK = textwrap.dedent(
    """
    import socket

    def _refuse(*args, **kwargs):
        raise OSError("network is switched off for this audit")

    socket.socket.connect = _refuse
    socket.socket.connect_ex = _refuse
    socket.getaddrinfo = _refuse
    socket.create_connection = _refuse
    """
)


def run_offline(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`exchange ...` in a fresh interpreter (and its workers) whose sockets cannot connect."""
    guard = tmp_path / "offline"
    guard.mkdir(exist_ok=True)
    (guard / "sitecustomize.py").write_text(NO_NETWORK)
    env = {**os.environ, "PYTHONPATH": f"{guard}{os.pathsep}{PROJECT}"}
    return subprocess.run(
        [sys.executable, "-m", "exchange.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[RunningNode]:
    running = RunningNode(tmp_path / "nl", "Samenwerkende overheid", "NL")
    await running.start()
    try:
        await running.node.publish([practice(n) for n in range(180)])
        await running.node.publish([practice(n) for n in range(180, 250)])
        yield running
    finally:
        await running.stop()


async def test_a_live_node_audits_clean_page_by_page(node: RunningNode) -> None:
    report = await audit_node(node.base_url, workers=1)
    assert report.clean, report.to_json()["findings"]
    assert report.size == 250
    assert report.checkpoint is not None
    assert report.checkpoint.size == 250
    assert report.entries_by_activity == {"Create": 250}


async def test_a_live_node_is_held_to_the_checkpoints_an_auditor_saw(node: RunningNode) -> None:
    """The auditor holds a checkpoint of size 300 that the node signed (a log it later
    rolled back to 250): the audit reports the rollback with both notes."""
    seen = node.node.sign_checkpoint(300, bytes(32))
    report = await audit_node(node.base_url, workers=1, trusted=[seen])
    assert set(report.counts) == {"rollback"}
    (finding,) = report.findings
    assert [c["size"] for c in finding.evidence["checkpoints"]] == [250, 300]


async def test_a_trusted_checkpoint_of_another_key_stops_the_audit(node: RunningNode) -> None:
    other = SyntheticLog(base_url=node.base_url)
    other.publish(practice(1))
    with pytest.raises(AuditUnavailable, match="trusted checkpoint 1"):
        await audit_node(node.base_url, workers=1, trusted=[other.sign_checkpoint()])


async def test_export_then_audit_offline_with_the_network_switched_off(
    node: RunningNode, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tmp_path / "nl.bundle.gz"
    home = str(node.settings.home)
    export = ["export", "--home", home, "--bundle", str(bundle)]
    assert await asyncio.to_thread(main, export) == 0
    assert "250 entries" in capsys.readouterr().out
    assert await asyncio.to_thread(main, export) == 2  # never overwritten
    done = run_offline(tmp_path, "audit", str(bundle), "--json", "--workers", "2")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["clean"] is True
    assert report["entries"] == 250
    assert report["checkpointsChecked"] == 3  # the empty log's, and one per publish
    refused = run_offline(tmp_path, "audit", node.base_url)
    assert refused.returncode == 2
    assert refused.stderr.startswith(f"exchange: error: cannot read {node.base_url}")


def test_a_clean_100000_entry_bundle_audits_clean_offline(tmp_path: Path) -> None:
    log = SyntheticLog()
    log.bulk(50_000)
    log.rotate()
    log.bulk(100_000 - len(log.leaves))
    bundle = log.write_bundle(tmp_path / "large.jsonl.gz")
    done = run_offline(tmp_path, "audit", str(bundle), "--json")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    report = json.loads(done.stdout)
    assert report["clean"] is True
    assert report["entries"] == 100_000
    assert report["keyChanges"] == [50_000]
    assert report["checkpointsChecked"] == 10  # one every 10,000 entries


async def test_a_node_with_a_rotation_and_an_erasure_audits_clean_live_and_offline(
    node: RunningNode, tmp_path: Path
) -> None:
    """Real history: a key rotation and an erasure. Both audits verify the whole tree, show
    the key change and list the erasure with its reason; no erased content is exported."""
    marker = "Persoonsgegevens-7Q2X"
    (created,) = await node.node.publish([{**practice(900), "nameMap": {"nl": marker}}])
    await node.node.publish([{**practice(900), "id": created.id, "nameMap": {"nl": marker + "!"}}])
    change = await node.node.rotate_key()
    await node.node.publish([practice(n) for n in range(901, 905)])
    erased = await node.node.erase(created.id, "a court order of 2026-11-20")
    live = await audit_node(node.base_url, workers=1)
    assert live.clean, live.to_json()["findings"]
    assert live.key_changes == (change.seq,)
    (erasure,) = live.erasures
    assert (erasure.seq, erasure.reason) == (erased.seq, "a court order of 2026-11-20")
    assert erasure.redacted == (250, 251)
    assert live.entries_by_activity["Redacted"] == 2
    bundle = tmp_path / "history.jsonl"
    home = str(node.settings.home)
    assert await asyncio.to_thread(main, ["export", "--home", home, "--bundle", str(bundle)]) == 0
    assert marker.encode() not in bundle.read_bytes()
    offline = await audit_bundle(bundle, workers=1)
    assert offline.clean, offline.to_json()["findings"]
    assert offline.to_json()["erasures"] == live.to_json()["erasures"]
    assert set(offline.entries_by_key) == {
        f"{node.base_url}/keys/{name}" for name in ("2026-1", change.key_id.rsplit("/", 1)[1])
    }


async def test_the_audit_takes_the_checkpoints_partners_gossip(
    node: RunningNode, tmp_path: Path
) -> None:
    partner = RunningNode(tmp_path / "be", "Vlaamse overheid", "BE")
    await partner.start()
    try:
        await partner.federation.add_partner(node.base_url)
        await node.federation.add_partner(partner.base_url)
        await partner.federation.follow(node.base_url)
        await partner.federation.sync(node.base_url)
        report = await audit_node(node.base_url, workers=1, witnesses=[partner.base_url])
    finally:
        await partner.stop()
    assert report.clean, report.to_json()["findings"]
    assert report.checkpoints_checked == 2  # the node's own, and the one its partner verified


async def test_a_witness_holding_a_forked_checkpoint_proves_equivocation(
    node: RunningNode,
) -> None:
    """The node showed one partner another history of its first 100 entries: the witness
    has that signed checkpoint, and the log the node serves does not extend it."""
    forked = node.node.sign_checkpoint(100, bytes(range(32)))
    witness = web.Application()

    async def checkpoints(_request: web.Request) -> web.Response:
        item = {"origin": node.base_url, "size": 100, "note": forked, "evidence": []}
        return web.json_response({"checkpoints": [item]})

    witness.router.add_get("/checkpoints", checkpoints)
    server = TestServer(witness, host="127.0.0.1", port=free_port())
    await server.start_server()
    try:
        url = f"http://127.0.0.1:{server.port}"
        report = await audit_node(node.base_url, workers=1, witnesses=[url])
    finally:
        await server.close()
    assert set(report.counts) == {"equivocation"}
    (finding,) = report.findings
    notes = {c["note"] for c in finding.evidence["checkpoints"]}
    assert forked in notes
    assert len(notes) == 2
