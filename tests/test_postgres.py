"""The PostgreSQL backend's own behaviour: where its settings come from, its migrations,
its errors, and the delivery leases that let several workers share a store. (The whole
suite also runs on it: .ci/run's PostgreSQL pass.)"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from exchange.cli import main
from exchange.config import load_settings
from exchange.delivery import DeliveryState
from exchange.errors import StoreError, UsageError
from exchange.node import open_node
from exchange.operator import create_store, init_node
from exchange.store import store_for
from exchange.store.postgres import MIGRATIONS, PostgresStore, redacted_url
from exchange.store.sqlite import MIGRATIONS as SQLITE_MIGRATIONS
from tests.nodes import fresh_schema, postgres_url


@pytest.fixture
def url() -> str:
    return postgres_url()


def versions(url: str, schema: str) -> list[int]:
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            sql.SQL("SELECT version FROM {}.schema_version ORDER BY version").format(
                sql.Identifier(schema)
            )
        ).fetchall()
    return [int(row[0]) for row in rows]


def test_init_records_the_database_and_a_schema_of_the_home(tmp_path: Path, url: str) -> None:
    result = init_node(
        tmp_path / "node",
        base_url="http://127.0.0.1:8080",
        name="Knoop",
        country="NL",
        environ={"EXCHANGE_DATABASE_URL": url},
    )
    text = (tmp_path / "node" / "exchange.toml").read_text()
    assert f'url = "{url}"' in text
    assert f'schema = "{result.settings.store_schema}"' in text
    assert result.settings.store_schema.startswith("exchange_")
    settings = load_settings(tmp_path / "node", {})
    assert (settings.database_url, settings.store_schema) == (url, result.settings.store_schema)
    assert isinstance(store_for(settings), PostgresStore)
    moved = load_settings(tmp_path / "node", {"EXCHANGE_DATABASE_SCHEMA": "exchange_other"})
    assert moved.store_schema == "exchange_other"
    sqlite = init_node(
        tmp_path / "plain", base_url="http://127.0.0.1:8081", name="K", country="NL", environ={}
    )
    assert sqlite.settings.database_url == ""
    assert "\nurl =" not in (tmp_path / "plain" / "exchange.toml").read_text()
    assert not isinstance(store_for(sqlite.settings), PostgresStore)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("EXCHANGE_DATABASE_URL", "mysql://root@127.0.0.1/test", "postgresql:// URL"),
        ("EXCHANGE_DATABASE_SCHEMA", "Exchange-Prod", "lower-case SQL name"),
        ("EXCHANGE_DATABASE_SCHEMA", "x" * 64, "at most 63"),
    ],
)
def test_bad_database_settings_are_refused_in_one_line(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    init_node(tmp_path / "node", base_url="http://127.0.0.1:8080", name="K", country="NL")
    with pytest.raises(UsageError, match=message):
        load_settings(tmp_path / "node", {variable: value})


def test_migrations_are_numbered_as_sqlites_and_run_once_when_workers_start_together(
    url: str,
) -> None:
    assert len(MIGRATIONS) == len(SQLITE_MIGRATIONS)
    schema = fresh_schema()

    async def run() -> None:
        stores = [PostgresStore(url, schema) for _ in range(3)]
        await asyncio.gather(*(store.open() for store in stores))
        for store in stores:
            await store.close()

    asyncio.run(run())
    assert versions(url, schema) == list(range(1, len(MIGRATIONS) + 1))


def test_a_store_newer_than_this_exchange_is_refused(url: str) -> None:
    schema = fresh_schema()
    asyncio.run(_open_and_close(PostgresStore(url, schema)))
    with psycopg.connect(url) as connection:
        connection.execute(
            sql.SQL("INSERT INTO {}.schema_version VALUES (99)").format(sql.Identifier(schema))
        )
    with pytest.raises(StoreError, match="schema version 99, newer than this exchange"):
        asyncio.run(_open_and_close(PostgresStore(url, schema)))


async def _open_and_close(store: PostgresStore) -> None:
    await store.open()
    await store.close()


def test_an_unreachable_database_is_one_line_without_its_password(tmp_path: Path) -> None:
    dead = "postgresql://exchange:s3cret-pw@127.0.0.1:9/exchange"
    assert "s3cret" not in redacted_url(dead)
    with pytest.raises(StoreError) as raised:
        asyncio.run(_open_and_close(PostgresStore(dead, "exchange_x")))
    assert "s3cret" not in str(raised.value)
    assert "127.0.0.1:9" in str(raised.value)


def test_the_cli_says_so_when_the_database_does_not_answer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    init_node(tmp_path / "node", base_url="http://127.0.0.1:8080", name="K", country="NL")
    monkeypatch.setenv("EXCHANGE_DATABASE_URL", "postgresql://exchange:pw@127.0.0.1:9/x")
    assert main(["objects", "--home", str(tmp_path / "node")]) != 0
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "127.0.0.1:9" in err
    assert ":pw@" not in err


def test_a_schema_holding_another_nodes_log_is_refused(tmp_path: Path, url: str) -> None:
    environ = {"EXCHANGE_DATABASE_URL": url, "EXCHANGE_DATABASE_SCHEMA": fresh_schema()}
    first, second = (
        init_node(
            tmp_path / name,
            base_url=f"http://127.0.0.1:{port}",
            name=name,
            country="NL",
            environ=environ,
        )
        for name, port in (("a", 8080), ("b", 8081))
    )
    asyncio.run(create_store(first.settings))

    async def run() -> None:
        async with open_node(second.settings):
            pass

    with pytest.raises(StoreError, match="holds the log of another node"):
        asyncio.run(run())


def test_one_worker_at_a_time_holds_a_partners_delivery(url: str) -> None:
    partner = "https://partner.example"
    now = datetime(2026, 11, 23, 12, tzinfo=UTC)
    state = DeliveryState(partner, 5, 0, now, "closed", "")

    async def run() -> None:
        first, second = PostgresStore(url, schema := fresh_schema()), PostgresStore(url, schema)
        await first.open()
        await second.open()
        try:
            assert await first.lease_delivery(partner, "w1", now, now) is None  # none yet
            await first.put_delivery(state)
            until = now + timedelta(seconds=30)
            assert await first.lease_delivery(partner, "w1", now, until) == state
            assert await second.lease_delivery(partner, "w2", now, until) is None
            assert await first.lease_delivery(partner, "w1", now, until) == state  # its own
            later = now + timedelta(seconds=31)  # w1 died: its lease runs out
            assert await second.lease_delivery(partner, "w2", later, later + timedelta(30)) == state
            assert await first.lease_delivery(partner, "w1", later, later) is None
            pushed = DeliveryState(partner, 9, 0, later, "closed", "")
            await second.put_delivery(pushed)  # the push is written: the lease ends
            assert await first.lease_delivery(partner, "w1", later, later) == pushed
        finally:
            await first.close()
            await second.close()

    asyncio.run(run())


def test_the_cli_publishes_and_lists_on_postgresql(
    tmp_path: Path, url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EXCHANGE_DATABASE_URL", url)
    home = str(tmp_path / "node")
    init = ["init", "--home", home, "--base-url", "http://127.0.0.1:8080"]
    assert main([*init, "--name", "Knoop", "--country", "NL"]) == 0
    assert not (tmp_path / "node" / "exchange.sqlite3").exists()
    monkeypatch.delenv("EXCHANGE_DATABASE_URL")  # the config holds it now
    example = Path(__file__).resolve().parents[1] / "examples" / "event-reuring-cafe-115.json"
    assert main(["publish", "--home", home, "--rebase-ids", str(example)]) == 0
    capsys.readouterr()
    assert main(["objects", "--home", home, "--json"]) == 0
    assert "reuring" in capsys.readouterr().out.lower()
