"""Shared test fixtures: paths to the standards' vectors in ../shared and to the project,
and a node in a temporary home with an aiohttp test client on its app."""

from __future__ import annotations

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
