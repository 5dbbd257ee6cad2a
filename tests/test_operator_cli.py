"""Operator commands: init, publish, delete, objects, serve; settings from file and env."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from exchange.cli import main
from exchange.config import load_settings
from exchange.errors import UsageError
from tests.nodes import EXAMPLES, free_port, store_created


def init(home: Path, capsys: pytest.CaptureFixture[str], port: int = 8080) -> str:
    code = main(
        [
            "init",
            "--home",
            str(home),
            "--base-url",
            f"http://127.0.0.1:{port}",
            "--name",
            "Vlaamse overheid",
            "--country",
            "BE",
            "--language",
            "nl",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    token_line = [line for line in out.splitlines() if line.startswith("operator token")]
    assert len(token_line) == 1
    return token_line[0].rsplit(" ", 1)[1]


def test_init_creates_config_key_store_and_prints_the_token_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "node"
    token = init(home, capsys)
    assert len(token) >= 40
    settings = load_settings(home, {})
    assert settings.base_url == "http://127.0.0.1:8080"
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    key = settings.key_dir / f"{settings.active_key}.json"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert token not in (home / "exchange.toml").read_text()
    assert store_created(settings)
    assert (
        main(
            [
                "init",
                "--home",
                str(home),
                "--base-url",
                "http://127.0.0.1:8080",
                "--name",
                "x",
                "--country",
                "BE",
            ]
        )
        == 2
    )
    assert "already set up" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("base_url", "reason"),
    [
        ("http://node.example.org", "http is allowed only on loopback"),
        ("https://node.example.org/", "must not end with a slash"),
        ("ftp://node.example.org", "absolute https URL"),
        ("https://node.example.org?x=1", "query"),
    ],
)
def test_init_refuses_bad_base_urls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], base_url: str, reason: str
) -> None:
    code = main(
        [
            "init",
            "--home",
            str(tmp_path / "n"),
            "--base-url",
            base_url,
            "--name",
            "x",
            "--country",
            "NL",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert reason in err
    assert err.count("\n") == 1


def test_publish_update_delete_and_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "node"
    init(home, capsys)
    assert (
        main(
            [
                "publish",
                "--home",
                str(home),
                "--rebase-ids",
                *map(str, sorted(EXAMPLES.glob("*.json"))),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 7
    assert all(line.startswith("created: http://127.0.0.1:8080/objects/") for line in out)

    draft = tmp_path / "case.yaml"
    draft.write_text(
        "type: Case\nid: http://127.0.0.1:8080/objects/case-doetank-milieu-initiatieven\n"
        "nameMap: {nl: Milieu, en: Environment}\n"
        'centralQuestionMap: {en: "Which initiatives exist?"}\n'
        "participatingCountry: [BE, NL]\nstatus: completed\n"
        "participant:\n  - {type: Organization, nameMap: {nl: ANB}, country: BE}\n"
    )
    assert main(["publish", "--home", str(home), str(draft)]) == 0
    assert (
        "updated: http://127.0.0.1:8080/objects/case-doetank-milieu-initiatieven (version 2, seq 7)"
        in capsys.readouterr().out
    )

    assert main(["delete", "--home", str(home), "case-doetank-milieu-initiatieven"]) == 0
    assert "deleted:" in capsys.readouterr().out
    assert main(["publish", "--home", str(home), str(draft)]) == 1
    assert "never revived" in capsys.readouterr().err

    assert main(["objects", "--home", str(home), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 6
    assert all(row["origin"] == "http://127.0.0.1:8080" for row in rows)
    assert main(["objects", "--home", str(home), "--type", "Event"]) == 0
    assert "1 object(s)" in capsys.readouterr().out


def test_a_bad_file_in_a_batch_publishes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "node"
    init(home, capsys)
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "Event", "nameMap": {"en": "No time, no place"}}')
    code = main(
        [
            "publish",
            "--home",
            str(home),
            "--rebase-ids",
            str(EXAMPLES / "event-reuring-cafe-115.json"),
            str(bad),
        ]
    )
    assert code == 1
    assert "/startTime: startTime is required" in capsys.readouterr().err
    assert main(["objects", "--home", str(home)]) == 0
    assert "0 object(s)" in capsys.readouterr().out


def test_foreign_ids_are_refused_without_rebase(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "node"
    init(home, capsys)
    assert (
        main(["publish", "--home", str(home), str(EXAMPLES / "event-reuring-cafe-115.json")]) == 2
    )
    assert "leave id out to mint a new one" in capsys.readouterr().err


def test_node_commands_need_a_home(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EXCHANGE_HOME", raising=False)
    assert main(["objects"]) == 2
    assert "EXCHANGE_HOME" in capsys.readouterr().err


def test_environment_overrides_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "node"
    init(home, capsys)
    settings = load_settings(home, {"EXCHANGE_PORT": "9999", "EXCHANGE_PERSONAL_DATA": "none"})
    assert settings.port == 9999
    assert settings.personal_data == "none"
    with pytest.raises(UsageError, match="personal_data must be one of"):
        load_settings(home, {"EXCHANGE_PERSONAL_DATA": "some"})
    with pytest.raises(UsageError, match="not a TCP port"):
        load_settings(home, {"EXCHANGE_PORT": "http"})
    assert load_settings(home, {}).sync_interval_s == 60.0
    assert load_settings(home, {"EXCHANGE_SYNC_INTERVAL_S": "0.5"}).sync_interval_s == 0.5
    for wrong in ("0", "-1", "soon", "inf"):
        with pytest.raises(UsageError, match="number of seconds"):
            load_settings(home, {"EXCHANGE_SYNC_INTERVAL_S": wrong})
    (home / "exchange.toml").write_text("[node\n")
    with pytest.raises(UsageError, match=r"exchange\.toml"):
        load_settings(home, {})


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_runs_and_stops_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], stop: signal.Signals
) -> None:
    port = free_port()
    home = tmp_path / "node"
    init(home, capsys, port)
    script = Path(sys.executable).with_name("exchange")
    process = subprocess.Popen(
        [str(script), "serve", "--home", str(home)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/feed", timeout=1) as response:
                    assert json.load(response)["totalItems"] == 0
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    pytest.fail(
                        f"serve did not come up: {process.stderr.read() if process.stderr else ''}"
                    )
                time.sleep(0.1)
        process.send_signal(stop)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    assert "serving http://127.0.0.1:" in out
    assert "exchange node stopped" in out
