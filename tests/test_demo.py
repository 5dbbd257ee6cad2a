"""The README's main job: three nodes that end up holding each other's content."""

from __future__ import annotations

import asyncio
from pathlib import Path

from exchange.demo import DEMO_NODES, run_demo
from exchange.resources import data_dir
from tests.nodes import free_ports


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
        line.startswith("in sync after") and "all 7 objects of the 3 nodes" in line
        for line in lines
    )
    assert lines[-1] == "demo stopped"
    assert (tmp_path / "demo" / "nl" / "exchange.toml").is_file()
