"""Helpers for tests that run a node: create one in a temporary home, publish through it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from exchange.config import Settings
from exchange.operator import InitResult, init_node

PROJECT = Path(__file__).resolve().parents[1]
EXAMPLES = PROJECT / "examples"


def make_node(home: Path, base_url: str = "http://127.0.0.1:8080", **changes: Any) -> InitResult:
    result = init_node(home, base_url=base_url, name="Testknooppunt", country="NL")
    if changes:
        result = replace(result, settings=replace(result.settings, **changes))
    return result


def example(name: str) -> dict[str, Any]:
    """An example object as a publishable draft: no @context, no id."""
    document: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text())
    document.pop("@context")
    document.pop("id")
    return document


def practice(number: int) -> dict[str, Any]:
    return {
        "type": "BestPractice",
        "nameMap": {"en": f"Practice {number}", "nl": f"Praktijk {number}"},
        "practiceKind": "experience",
    }


def auth(settings: Settings, token: str) -> dict[str, str]:
    del settings
    return {"Authorization": f"Bearer {token}"}
