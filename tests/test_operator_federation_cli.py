"""An operator federates two real `exchange serve` processes with the CLI alone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.nodes import EXAMPLES, free_port

EXCHANGE = str(Path(sys.executable).with_name("exchange"))


def cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [EXCHANGE, *args, "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def two_nodes(tmp_path: Path) -> Iterator[tuple[Path, str, Path, str]]:
    homes, urls, processes = [], [], []
    for name, country in (("nl", "NL"), ("be", "BE")):
        port = free_port()
        home, url = tmp_path / name, f"http://127.0.0.1:{port}"
        done = subprocess.run(
            [
                EXCHANGE,
                "init",
                "--home",
                str(home),
                "--base-url",
                url,
                "--name",
                name,
                "--country",
                country,
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert "operator token" in done.stdout
        environment = {**os.environ, "EXCHANGE_VERIFY_WORKERS": "1"}
        processes.append(
            subprocess.Popen(
                [EXCHANGE, "serve", "--home", str(home)],
                env=environment,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        )
        homes.append(home)
        urls.append(url)
    try:
        for url in urls:
            _wait_up(url)
        yield homes[0], urls[0], homes[1], urls[1]
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=30)
            assert process.returncode == 0


def _wait_up(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/feed", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"{url} did not come up")


def test_partner_follow_publish_sync_and_status(two_nodes: tuple[Path, str, Path, str]) -> None:
    dutch, dutch_url, flemish, flemish_url = two_nodes
    added = cli("partner", "add", dutch_url, "--yes", home=flemish)
    assert added.returncode == 0, added.stderr
    assert "key " in added.stdout
    assert "checkpoint key:" in added.stdout
    assert cli("partner", "add", flemish_url, "--yes", home=dutch).returncode == 0
    unconfirmed = cli("partner", "add", flemish_url, home=dutch)
    assert unconfirmed.returncode == 2
    assert "--yes" in unconfirmed.stderr

    published = cli(
        "publish", "--rebase-ids", str(EXAMPLES / "event-reuring-cafe-115.json"), home=dutch
    )
    assert published.returncode == 0, published.stderr
    followed = cli("follow", dutch_url, home=flemish)
    assert followed.returncode == 0, followed.stderr
    assert "following: accepted" in followed.stdout
    synced = cli("sync", "--quiet", home=flemish)
    assert synced.returncode == 0, synced.stdout + synced.stderr

    objects = json.loads(cli("objects", "--json", home=flemish).stdout)
    assert [(o["origin"], o["type"]) for o in objects] == [(dutch_url, "Event")]
    statuses = json.loads(cli("partner", "list", "--json", home=dutch).stdout)
    (status,) = statuses
    assert status["subscriber"] is True
    assert status["breaker"] == "closed"
    flemish_view = json.loads(cli("partner", "list", "--json", home=flemish).stdout)
    assert flemish_view[0]["following"] == "accepted"
    assert flemish_view[0]["merged"] == 1
    assert cli("rejections", home=flemish).stdout == ""
    removed = cli("partner", "remove", dutch_url, home=flemish)
    assert removed.returncode == 0
    assert cli("partner", "remove", dutch_url, home=flemish).returncode == 2
