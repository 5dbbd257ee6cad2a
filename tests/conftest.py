"""Shared test fixtures: paths to the standards' vectors in ../shared and to the project,
and a node in a temporary home with an aiohttp test client on its app."""

from __future__ import annotations

import contextlib
import os
import tomllib
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, settings

from exchange.http.server import create_app
from exchange.operator import InitResult
from tests.nodes import FRESH_SCHEMAS, make_node

PROJECT = Path(__file__).resolve().parents[1]
SHARED = PROJECT.parent / "shared"
VECTORS = SHARED / "vectors"

settings.register_profile(
    "ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=50, deadline=None)
settings.load_profile("ci")


@pytest.fixture(scope="session")
def vectors() -> Path:
    if not VECTORS.is_dir():
        pytest.fail(f"the standards' test vectors are missing: {VECTORS}")
    return VECTORS


# --- the PostgreSQL pass ------------------------------------------------------------------
# With EXCHANGE_DATABASE_URL set, every node a test creates (init_node, exchange init, the
# demo) keeps its store in that database, each in a new schema of its own (init picks
# one); .ci/run runs the whole suite once so. The database must answer: no skipping.

DATABASE_URL = os.environ.get("EXCHANGE_DATABASE_URL", "")


def pytest_report_header() -> str:
    return f"store backend: {'PostgreSQL' if DATABASE_URL else 'SQLite'}"


@pytest.fixture(scope="session", autouse=True)
def postgres_schemas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """In the PostgreSQL pass: the database must answer; at the end, the schemas of the
    nodes this run created (found through their homes' configs) and of tests.nodes's
    fresh_schema() are dropped. A schema another run is using is never touched."""
    if not DATABASE_URL:
        yield
        return
    import psycopg
    from psycopg import sql

    try:
        psycopg.connect(DATABASE_URL, connect_timeout=10).close()
    except psycopg.OperationalError as error:
        pytest.fail(f"EXCHANGE_DATABASE_URL is set but PostgreSQL does not answer: {error}")
    yield
    schemas = set(FRESH_SCHEMAS)
    for config in tmp_path_factory.getbasetemp().rglob("exchange.toml"):
        with contextlib.suppress(OSError, ValueError):
            store = tomllib.loads(config.read_text(encoding="utf-8")).get("store", {})
            if isinstance(store.get("schema"), str):
                schemas.add(store["schema"])
    with psycopg.connect(DATABASE_URL, autocommit=True) as connection:
        for name in sorted(schemas):
            connection.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
            )


def sqlite_only(reason: str) -> pytest.MarkDecorator:
    """For a test of the SQLite file itself: it runs in the SQLite pass."""
    return pytest.mark.skipif(bool(DATABASE_URL), reason=f"SQLite pass only: {reason}")


@pytest.fixture
def node(tmp_path: Path) -> InitResult:
    """A node created in a temporary home (its operator token in ``.token``)."""
    return make_node(tmp_path / "node")


@pytest.fixture
async def client(
    node: InitResult, aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]]
) -> TestClient[Any, Any]:
    """A test client on the node's app (store opened, background tasks running)."""
    return await aiohttp_client(create_app(node.settings))
