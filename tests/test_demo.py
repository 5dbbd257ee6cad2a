"""The README's main job: three nodes that end up holding each other's content."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path
from typing import Any

import aiohttp

from exchange.config import load_settings
from exchange.demo import DEMO_NODES, TOKEN_FILE, run_demo
from exchange.node import token_digest
from exchange.resources import data_dir
from exchange.sparql import BELGIAN_EVENTS_NEXT_30_DAYS
from tests.nodes import eventually, free_ports


def test_every_example_is_published_by_exactly_one_demo_node() -> None:
    published = [name for spec in DEMO_NODES for name in spec.examples]
    shipped = sorted(
        p.name[: -len(".json")] for p in data_dir("examples").iterdir() if p.name.endswith(".json")
    )
    assert sorted(published) == shipped
    assert {spec.country for spec in DEMO_NODES} == {"NL", "BE", "EU"}


async def test_demo_nodes_get_in_sync_and_stop(tmp_path: Path) -> None:
    lines: list[str] = []
    stop = asyncio.Event()

    def say(line: str) -> None:
        lines.append(line)
        if line.startswith("in sync after"):
            stop.set()

    base_port = free_ports(3)
    await asyncio.wait_for(run_demo(base_port, tmp_path / "demo", say=say, stop=stop), timeout=60)
    assert any(
        line.startswith("in sync after") and "all 9 objects of the 3 nodes" in line
        for line in lines
    )
    assert lines[-1] == "demo stopped"
    assert (tmp_path / "demo" / "nl" / "exchange.toml").is_file()


async def test_demo_nodes_keep_their_operator_tokens(tmp_path: Path) -> None:
    """Each node the demo creates keeps its operator token in its home (mode 0600), the
    token the node accepts; a second run on the same home keeps the same tokens."""
    lines: list[str] = []
    stop = asyncio.Event()

    def say(line: str) -> None:
        lines.append(line)
        if line.startswith("in sync after"):
            stop.set()

    root = tmp_path / "demo"
    base_port = free_ports(3)
    await asyncio.wait_for(run_demo(base_port, root, say=say, stop=stop), timeout=60)
    assert f"operator tokens: {root / '<nl|be|eu>' / TOKEN_FILE}" in lines
    tokens = {}
    for spec in DEMO_NODES:
        path = root / spec.key / TOKEN_FILE
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        tokens[spec.key] = path.read_text("utf-8").strip()
        settings = load_settings(root / spec.key, {})
        assert settings.token_sha256 == token_digest(tokens[spec.key])
    assert len(set(tokens.values())) == len(DEMO_NODES)
    stop.clear()
    lines.clear()
    await asyncio.wait_for(run_demo(base_port, root, say=say, stop=stop), timeout=60)
    assert lines[-1] == "demo stopped"
    assert {s.key: (root / s.key / TOKEN_FILE).read_text("utf-8").strip() for s in DEMO_NODES} == (
        tokens
    )


async def test_sparql_finds_the_demos_belgian_events_of_the_next_30_days(tmp_path: Path) -> None:
    """The issue's acceptance query, on the Dutch demo node: the Flemish node's follow-up
    meeting in 12 days, not its session in 50 days, nor the Dutch event of 2023."""
    stop = asyncio.Event()
    ready = asyncio.Event()

    def say(line: str) -> None:
        if line.startswith("in sync after"):
            ready.set()

    base_port = free_ports(3)
    demo = asyncio.create_task(run_demo(base_port, tmp_path / "demo", say=say, stop=stop))
    try:
        await asyncio.wait_for(ready.wait(), timeout=60)
        dutch, flemish = (f"http://127.0.0.1:{base_port + n}" for n in (0, 1))
        answers: list[dict[str, Any]] = []

        async def answered() -> bool:
            async with (
                aiohttp.ClientSession() as session,
                session.get(
                    f"{dutch}/sparql",
                    params={"query": BELGIAN_EVENTS_NEXT_30_DAYS},
                    headers={"Accept": "application/sparql-results+json"},
                ) as response,
            ):
                if response.status != 200:
                    return False
                answers[:] = (await response.json())["results"]["bindings"]
            return bool(answers)

        await eventually(answered, timeout_s=30)
        assert [a["event"]["value"] for a in answers] == [
            f"{flemish}/objects/event-doetanks-vervolgoverleg"
        ]
        assert answers[0]["node"]["value"] == flemish
    finally:
        stop.set()
        await asyncio.wait_for(demo, timeout=30)
