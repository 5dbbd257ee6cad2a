"""Shared test fixtures: paths to the standards' vectors in ../shared and to the project."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

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
