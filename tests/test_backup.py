"""deploy/backup-node: an online backup of a node, restored into a new home.

The backup is taken while the node serves and keeps publishing; the restored node must hold
one consistent state of it: a prefix of the node's log with the very checkpoint the node
signed at that size, every key file, the configuration, and a log an offline audit finds
clean. A backup that changed, and a home that already holds a node, are refused.

With EXCHANGE_DATABASE_URL set (the PostgreSQL pass of the suite) the same test backs up
and restores the node's PostgreSQL schema with pg_dump and pg_restore.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from exchange.cli import main
from exchange.config import load_settings
from exchange.node import open_node
from exchange.operator import publish_files
from tests.nodes import EXAMPLES, PROJECT, RunningNode, make_node, practice

BACKUP_NODE = PROJECT / "deploy" / "backup-node"


def backup_node(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, BACKUP_NODE, *map(str, args)], capture_output=True, text=True
    )


def manifest(backup: Path) -> dict[str, Any]:
    found: dict[str, Any] = json.loads((backup / "MANIFEST.json").read_text())
    return found


def drop_schema(schema: str) -> None:
    """The PostgreSQL pass: lose the node's tables, as a disaster would."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(os.environ["EXCHANGE_DATABASE_URL"], autocommit=True) as connection:
        connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_an_online_backup_restores_a_consistent_node(tmp_path: Path) -> None:
    running = RunningNode(tmp_path / "node", "Samenwerkende overheid", "NL", page_size=4)
    await running.start()
    try:
        node = running.node
        outcomes = await node.publish([practice(number) for number in range(6)])
        await node.rotate_key()  # two key files, both needed: the old one still co-signs
        await node.erase(outcomes[2].id, "Published without consent")
        published = asyncio.Event()
        stop = asyncio.Event()

        async def keep_publishing() -> None:
            number = 100
            while not stop.is_set():
                await node.publish([practice(number)])
                published.set()
                number += 1
                await asyncio.sleep(0)

        publisher = asyncio.create_task(keep_publishing())
        await published.wait()
        done = await asyncio.to_thread(
            backup_node, "--home", running.settings.home, tmp_path / "backup"
        )
        stop.set()
        await publisher
        assert done.returncode == 0, done.stderr
        original_size = await node.store.log_size()
        original = await node.store.entries(0, original_size)
        checkpoints = {n: await node.store.checkpoint(n) for n in range(original_size + 1)}
    finally:
        await running.stop()
    database = manifest(tmp_path / "backup")["database"]
    if database["kind"] == "postgresql":
        drop_schema(database["schema"])

    home = tmp_path / "restored"
    done = backup_node("--home", home, "--restore", tmp_path / "backup")
    assert done.returncode == 0, done.stderr

    source = running.settings.home
    assert (home / "exchange.toml").read_bytes() == (source / "exchange.toml").read_bytes()
    keys = sorted(path.name for path in (source / "keys").iterdir())
    assert len(keys) == 2
    assert sorted(path.name for path in (home / "keys").iterdir()) == keys
    assert {mode(home / "keys" / name) for name in keys} == {0o600}
    assert (mode(home), mode(home / "keys")) == (0o700, 0o700)
    assert not (home / "pages").exists()  # a cache, rebuilt on demand

    async with open_node(load_settings(home, os.environ)) as restored:
        restored_size = await restored.store.log_size()
        assert 7 < restored_size <= original_size  # 6 objects, a rotation, an erasure, ...
        if database["kind"] == "sqlite":
            assert database["log_size"] == restored_size
        assert await restored.store.entries(0, restored_size) == original[:restored_size]
        assert await restored.store.latest_checkpoint() == (
            restored_size,
            checkpoints[restored_size],
        )
    bundle = tmp_path / "restored.bundle"
    assert (
        await asyncio.to_thread(main, ["export", "--home", str(home), "--bundle", str(bundle)]) == 0
    )
    assert await asyncio.to_thread(main, ["audit", str(bundle)]) == 0


@pytest.fixture
def backed_up(tmp_path: Path) -> Path:
    """A backup of a node that published the examples."""
    settings = make_node(tmp_path / "node").settings
    publish_files(settings, sorted(EXAMPLES.glob("*.json")), rebase_ids=True)
    done = backup_node("--home", settings.home, tmp_path / "backup")
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "backup.partial").exists()
    return tmp_path / "backup"


def test_a_changed_backup_is_refused(backed_up: Path, tmp_path: Path) -> None:
    key = next((backed_up / "keys").iterdir())
    key.write_text(key.read_text().replace("2", "3", 1))
    done = backup_node("--home", tmp_path / "restored", "--restore", backed_up)
    assert done.returncode == 1
    assert "changed since the backup" in done.stderr
    assert not (tmp_path / "restored").exists()


def test_a_restore_never_overwrites_a_node(backed_up: Path, tmp_path: Path) -> None:
    config = tmp_path / "node" / "exchange.toml"
    before = config.read_bytes()
    done = backup_node("--home", tmp_path / "node", "--restore", backed_up)
    assert done.returncode == 1
    assert "exchange.toml exists" in done.stderr
    assert config.read_bytes() == before


def test_a_backup_never_overwrites_a_backup(backed_up: Path, tmp_path: Path) -> None:
    before = manifest(backed_up)
    done = backup_node("--home", tmp_path / "node", backed_up)
    assert done.returncode == 1
    assert "exists" in done.stderr
    assert manifest(backed_up) == before
