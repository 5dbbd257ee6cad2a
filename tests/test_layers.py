"""The pure core never imports the shell (style.md principle 13)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "exchange"
CORE = [
    "audit",
    "audit_entries",
    "bundle",
    "canonical",
    "checkpoint",
    "delivery",
    "entries",
    "errors",
    "feed",
    "gossip",
    "httpsig",
    "ingest",
    "key_lifecycle",
    "keys",
    "merge",
    "merkle",
    "metrics",
    "origins",
    "proof",
    "query",
    "rdf",
    "schema",
    "sparql",
    "timestamps",
]
SHELL_MODULES = {
    "exchange.auditor",
    "exchange.cli",
    "exchange.cli_audit",
    "exchange.cli_node",
    "exchange.cli_federation",
    "exchange.demo",
    "exchange.faults",
    "exchange.documents",
    "exchange.federation",
    "exchange.node",
    "exchange.operator",
    "exchange.rdf_view",
    "exchange.http",
    "exchange.store.sql",
    "exchange.store.sqlite",
    "exchange.store.postgres",
}
FORBIDDEN_IN_CORE = {"asyncio", "aiohttp", "sqlite3", "asyncpg", "psycopg", "socket", "subprocess"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", CORE)
def test_core_module_does_no_shell_imports(module: str) -> None:
    path = PACKAGE / f"{module}.py"
    assert path.is_file(), f"core module {module} is missing"
    imports = imported_modules(path)
    shell = {
        name
        for name in imports
        if any(name == m or name.startswith(m + ".") for m in SHELL_MODULES)
    }
    assert not shell
    assert not {name.split(".")[0] for name in imports} & FORBIDDEN_IN_CORE
    assert "os" not in {name.split(".")[0] for name in imports}, "the core reads no environment"


def test_the_check_itself_sees_imports(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import asyncio\nfrom exchange.cli import main\n")
    assert imported_modules(sample) == {"asyncio", "exchange.cli"}
