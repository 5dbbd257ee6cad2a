"""The audit: a clean bundle audits clean; each way of tampering with it gives its named
finding (issue: auditors, acceptance)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import orjson
import pytest

from exchange.audit import AuditReport
from exchange.auditor import audit_bundle, read_trusted_checkpoints
from exchange.canonical import canonicalize
from exchange.cli import main
from exchange.proof import sign_document
from tests.synthetic_log import SyntheticLog, practice


def _audit(path: Path, **options: object) -> AuditReport:
    return asyncio.run(audit_bundle(path, workers=1, **options))  # type: ignore[arg-type]


def _clean_log() -> SyntheticLog:
    """A log with history: publishes, updates, a key rotation, an erasure, checkpoints."""
    log = SyntheticLog()
    first = [log.publish(practice(n)) for n in range(12)]
    log.sign_checkpoint()
    object_id = orjson.loads(log.leaves[first[3]])["object"]["id"]
    log.publish({**practice(3), "id": object_id, "nameMap": {"en": "Practice 3, revised"}})
    log.rotate()
    for n in range(12, 20):
        log.publish(practice(n))
    log.sign_checkpoint()
    log.erase(object_id, "request of the person concerned (GDPR art. 17)")
    for n in range(20, 25):
        log.publish(practice(n))
    return log


@pytest.fixture(scope="module")
def clean() -> SyntheticLog:
    return _clean_log()


def test_a_clean_bundle_audits_clean(clean: SyntheticLog, tmp_path: Path) -> None:
    report = _audit(clean.write_bundle(tmp_path / "clean.jsonl"))
    assert report.clean, report.to_json()["findings"]
    assert report.size == len(clean.leaves)
    assert report.entries_by_activity["Redacted"] == 2
    assert report.key_changes == (13,)
    assert set(report.entries_by_key) == {
        f"{clean.base_url}/keys/2026-1",
        f"{clean.base_url}/keys/2026-2",
    }
    (erasure,) = report.erasures
    assert erasure.reason.startswith("request of the person concerned")
    assert erasure.redacted == (3, 12)
    assert report.checkpoints_checked == 3


def _entry_line(lines: list[bytes], clean: SyntheticLog, seq: int) -> int:
    return len(lines) - len(clean.leaves) + seq


def _edit_one(lines: list[bytes], clean: SyntheticLog) -> None:
    at = _entry_line(lines, clean, 5)
    lines[at] = lines[at].replace(b"Practice 5", b"Practice 6")


def _drop_one(lines: list[bytes], clean: SyntheticLog) -> None:
    del lines[_entry_line(lines, clean, 7)]


def _reorder_two(lines: list[bytes], clean: SyntheticLog) -> None:
    a, b = _entry_line(lines, clean, 8), _entry_line(lines, clean, 9)
    lines[a], lines[b] = lines[b], lines[a]


def _replace_key(lines: list[bytes], clean: SyntheticLog) -> None:
    from exchange.keys import generate

    header = orjson.loads(lines[0])
    header["nodeDocument"]["assertionMethod"][0]["publicKeyMultibase"] = generate().public_multibase
    lines[0] = orjson.dumps(header) + b"\n"


def _resign_with_revoked_key(lines: list[bytes], clean: SyntheticLog) -> None:
    """The first key is revoked (logged); entry 20 is then re-signed with it, dated after."""
    log = _clean_log()
    revoked_at = log.tick()
    log.revoke(0, revoked_at)
    log.publish(practice(99))
    seq = len(log.leaves) - 1
    entry = orjson.loads(log.leaves[seq])
    del entry["proof"]
    signed = sign_document(entry, log.keys[0].pair, revoked_at + timedelta(seconds=30))
    log.leaves[seq] = canonicalize(signed)
    lines[:] = log.bundle_lines()


def _truncate(lines: list[bytes], clean: SyntheticLog) -> None:
    del lines[-3:]


TAMPERING: dict[str, tuple[Callable[[list[bytes], SyntheticLog], None], set[str]]] = {
    "edit one entry": (_edit_one, {"invalid-signature", "root-mismatch"}),
    "drop one entry": (_drop_one, {"missing-entry"}),
    "reorder two entries": (_reorder_two, {"reordered-entries", "root-mismatch"}),
    "replace a key in the node document": (_replace_key, {"key-replaced"}),
    "re-sign an entry with a revoked key": (_resign_with_revoked_key, {"revoked-key"}),
    "truncate the log": (_truncate, {"truncated"}),
}


@pytest.mark.parametrize("name", sorted(TAMPERING))
def test_each_tampering_gives_its_named_finding(
    name: str, clean: SyntheticLog, tmp_path: Path
) -> None:
    tamper, expected = TAMPERING[name]
    lines = clean.bundle_lines()
    tamper(lines, clean)
    report = _audit(clean.write_bundle(tmp_path / "tampered.jsonl", lines))
    assert not report.clean
    assert expected <= set(report.counts), report.counts
    for finding in report.findings:
        assert finding.message


def test_a_dropped_entry_is_named_by_its_seq(clean: SyntheticLog, tmp_path: Path) -> None:
    lines = clean.bundle_lines()
    _drop_one(lines, clean)
    report = _audit(clean.write_bundle(tmp_path / "dropped.jsonl", lines))
    missing = [f.seq for f in report.findings if f.kind == "missing-entry"]
    assert missing == [7]


def test_a_fork_served_to_two_partners_is_equivocation(tmp_path: Path) -> None:
    """The node signs one branch for partner 1 and another for partner 2: the audit of
    what it serves, with the other partner's checkpoint, proves the fork."""
    trunk = SyntheticLog()
    for n in range(10):
        trunk.publish(practice(n))
    trunk.sign_checkpoint()
    other = SyntheticLog(keys=trunk.keys, clock=trunk.clock)
    for leaf in trunk.leaves:
        other._append_leaf(leaf)
    other.objects = dict(trunk.objects)
    for n in range(10, 15):
        trunk.publish(practice(n))
    for n in range(10, 14):
        other.publish({**practice(n), "nameMap": {"en": f"Other branch {n}"}})
    for_partner_2 = other.sign_checkpoint()
    trusted = tmp_path / "partner-2.txt"
    trusted.write_text(for_partner_2)
    report = _audit(
        trunk.write_bundle(tmp_path / "fork.jsonl"),
        trusted=read_trusted_checkpoints(trusted),
    )
    assert set(report.counts) == {"equivocation"}
    (finding,) = report.findings
    notes = [c["note"] for c in finding.evidence["checkpoints"]]
    assert for_partner_2 in notes
    assert trunk.checkpoints[-1][1] in notes


def test_a_checkpoint_larger_than_the_log_is_a_rollback(tmp_path: Path) -> None:
    log = SyntheticLog()
    for n in range(6):
        log.publish(practice(n))
    lines = log.bundle_lines()
    log.publish(practice(6))
    later = log.sign_checkpoint()
    report = _audit(log.write_bundle(tmp_path / "old.jsonl", lines), trusted=[later])
    assert set(report.counts) == {"rollback"}


def test_a_consistent_trusted_checkpoint_keeps_the_audit_clean(tmp_path: Path) -> None:
    log = SyntheticLog()
    for n in range(6):
        log.publish(practice(n))
    earlier = log.sign_checkpoint()
    log.publish(practice(6))
    report = _audit(log.write_bundle(tmp_path / "b.jsonl"), trusted=[earlier])
    assert report.clean


def test_a_redacted_entry_without_a_signed_erasure_is_silent_erasure(tmp_path: Path) -> None:
    from tests.synthetic_log import redacted_form

    log = SyntheticLog()
    for n in range(5):
        log.publish(practice(n))
    log.leaves[2] = redacted_form(log.base_url, 2, log.hashes[2])
    report = _audit(log.write_bundle(tmp_path / "silent.jsonl"))
    assert set(report.counts) == {"silent-erasure"}
    assert report.findings[0].seq == 2


def test_a_key_change_outside_the_log_is_a_mismatch(tmp_path: Path) -> None:
    """The served document revokes a key that no logged Update revokes."""
    log = SyntheticLog()
    log.publish(practice(1))
    log.rotate()
    log.publish(practice(2))
    document = log.node_document()
    document["assertionMethod"][0]["revoked"] = "2027-01-01T00:00:00Z"
    report = _audit(log.write_bundle(tmp_path / "b.jsonl", log.bundle_lines(document)))
    assert set(report.counts) == {"node-document-mismatch"}


def test_trusted_checkpoints_read_as_text_or_json(tmp_path: Path) -> None:
    log = SyntheticLog()
    log.publish(practice(1))
    first = log.sign_checkpoint()
    log.publish(practice(2))
    second = log.sign_checkpoint()
    text = tmp_path / "notes.txt"
    text.write_text(first + "\n" + second)
    assert read_trusted_checkpoints(text) == [first, second]
    as_json = tmp_path / "notes.json"
    as_json.write_text(json.dumps({"checkpoints": [{"note": first}, {"note": second}]}))
    assert read_trusted_checkpoints(as_json) == [first, second]


def test_the_cli_exit_status_is_0_clean_1_findings_2_cannot_run(
    clean: SyntheticLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = clean.write_bundle(tmp_path / "clean.jsonl.gz")
    assert main(["audit", str(bundle), "--workers", "1"]) == 0
    assert "CLEAN" in capsys.readouterr().out
    lines = clean.bundle_lines()
    _truncate(lines, clean)
    tampered = clean.write_bundle(tmp_path / "truncated.jsonl", lines)
    assert main(["audit", str(tampered), "--json", "--workers", "1"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["clean"] is False
    assert report["findingCounts"] == {"truncated": 1}
    (finding,) = report["findings"]
    assert finding["evidence"]["checkpoint"]["size"] == len(clean.leaves)
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("not a bundle\n")
    assert main(["audit", str(garbage)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("exchange: error: not an audit bundle")
    assert error.count("\n") == 1
    assert main(["audit", str(tmp_path / "missing.jsonl")]) == 2
