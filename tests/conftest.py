"""Shared test fixtures: paths to the standards' vectors in ../shared and to the project,
and a node in a temporary home with an aiohttp test client on its app."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, settings

from exchange.http.server import create_app
from exchange.operator import InitResult
from tests.nodes import make_node

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
# demo) keeps its store in that database, each home in a schema of its own; .ci/run runs
# the whole suite once so. The database must answer: a test run never skips it.

DATABASE_URL = os.environ.get("EXCHANGE_DATABASE_URL", "")


def pytest_report_header() -> str:
    return f"store backend: {'PostgreSQL' if DATABASE_URL else 'SQLite'}"


@pytest.fixture(scope="session", autouse=True)
def clean_postgres_schemas() -> None:
    """Drop the node schemas an earlier run left (homes are temporary directories, whose
    names a new run may reuse)."""
    if not DATABASE_URL:
        return
    import psycopg

    try:
        with psycopg.connect(DATABASE_URL, autocommit=True, connect_timeout=10) as connection:
            names = [
                row[0]
                for row in connection.execute(
                    "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'exchange\\_%'"
                )
            ]
            for name in names:
                connection.execute(
                    psycopg.sql.SQL("DROP SCHEMA {} CASCADE").format(psycopg.sql.Identifier(name))
                )
    except psycopg.OperationalError as error:
        pytest.fail(f"EXCHANGE_DATABASE_URL is set but PostgreSQL does not answer: {error}")


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
