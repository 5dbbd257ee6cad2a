"""The exchange command as a user runs it: exit codes, one-line messages, key files."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from exchange.cli import main

SIGNED_VECTOR = "vc-di-eddsa/signedJCS.json"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed console script, as a user would."""
    script = Path(sys.executable).with_name("exchange")
    if not script.is_file():
        pytest.fail(f"the console script is not installed next to {sys.executable}")
    return subprocess.run(
        [str(script), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_acceptance_verify_w3c_vector_then_one_changed_character(
    vectors: Path, tmp_path: Path
) -> None:
    good = vectors / SIGNED_VECTOR
    result = run_cli("verify", str(good))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("valid: ")

    changed = tmp_path / "changed.json"
    changed.write_text(good.read_text().replace('"Alumni Credential"', '"Alumni Credentiak"'))
    result = run_cli("verify", str(changed))
    assert result.returncode == 1
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("invalid: ")
    assert "signature" in lines[0]


def test_keys_generate_sign_verify_round_trip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "key.json"
    assert main(["keys", "generate", "--out", str(key)]) == 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    key_file = json.loads(key.read_text())
    assert key_file["publicKeyMultibase"].startswith("z6Mk")
    assert (
        key_file["id"]
        == f"did:key:{key_file['publicKeyMultibase']}#{key_file['publicKeyMultibase']}"
    )

    document = tmp_path / "doc.json"
    document.write_text(
        json.dumps({"@context": ["https://www.w3.org/ns/activitystreams"], "name": "x"})
    )
    signed = tmp_path / "signed.json"
    assert main(["sign", str(document), "--key", str(key), "--out", str(signed)]) == 0
    assert main(["verify", str(signed)]) == 0
    assert "valid:" in capsys.readouterr().out


def test_keys_generate_never_overwrites_a_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "key.json"
    key.write_text("precious")
    assert main(["keys", "generate", "--out", str(key)]) == 2
    assert key.read_text() == "precious"
    assert "refusing to overwrite" in capsys.readouterr().err


def test_verify_with_an_explicit_key_for_a_non_did_key_method(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "node-key.json"
    assert main(["keys", "generate", "--out", str(key), "--id", "https://node.example/keys/1"]) == 0
    document = tmp_path / "doc.json"
    document.write_text('{"id": "https://node.example/x", "type": "Note"}')
    signed = tmp_path / "signed.json"
    assert main(["sign", str(document), "--key", str(key), "--out", str(signed)]) == 0
    capsys.readouterr()
    assert main(["verify", str(signed)]) == 1
    assert "not a did:key" in capsys.readouterr().out
    assert main(["verify", str(signed), "--key", str(key)]) == 0
    other = tmp_path / "other.json"
    assert main(["keys", "generate", "--out", str(other)]) == 0
    capsys.readouterr()
    assert main(["verify", str(signed), "--key", str(other)]) == 1
    assert "signature" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b'{"a": 1, "a": 2}', "duplicate member name"),
        (b'{"a": NaN}', "NaN"),
        (b'{"a": "\\ud800"}', "lone surrogate"),
        (b'{"n": 90071992547409930}', "2^53"),
        (b"[1, 2]", "must be a JSON object"),
    ],
    ids=["duplicate", "nan", "surrogate", "big integer", "not an object"],
)
def test_verify_rejects_non_ijson_before_any_crypto(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, reason: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    assert main(["verify", str(path)]) == 1
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert reason in out


def test_missing_file_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "/nonexistent/file.json"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_validate_reports_pointers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    event = {
        "id": "https://node.example/objects/e1",
        "type": "Event",
        "nameMap": {"en_US": "Debate"},
        "version": 1,
        "attributedTo": "https://node.example",
        "location": {"type": "Place", "nameMap": {"nl": "De Glazen Zaal"}},
        "organizer": [{"type": "Organization", "nameMap": {"nl": "VOM"}}],
    }
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"{path}: /startTime: startTime is required" in out
    assert f"{path}: /nameMap/en_US: 'en_US' is not a valid BCP 47 language tag" in out


def test_validate_reads_yaml_and_rejects_duplicate_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "event.yaml"
    path.write_text("type: Event\ntype: Case\n")
    assert main(["validate", str(path)]) == 1
    assert "duplicate key 'type'" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["keys", "generate", "--help"],
        ["sign", "--help"],
        ["verify", "--help"],
        ["validate", "--help"],
    ],
    ids=lambda argv: " ".join(argv),
)
def test_every_command_has_help_with_an_example(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    assert "Example:" in capsys.readouterr().out


def test_secret_never_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "key.json"
    assert main(["keys", "generate", "--out", str(key)]) == 0
    secret = json.loads(key.read_text())["secretKeyMultibase"]
    assert secret not in capsys.readouterr().out
    assert os.access(key, os.R_OK)
