"""A wheel installed elsewhere finds its schemas, contexts, vocabulary and examples."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]

SHIPPED = [
    "exchange/py.typed",
    "exchange/schemas/case.schema.json",
    "exchange/schemas/event.schema.json",
    "exchange/schemas/best-practice.schema.json",
    "exchange/schemas/entry.schema.json",
    "exchange/vocab/contexts/exchange-v1.jsonld",
    "exchange/vocab/contexts/activitystreams.jsonld",
    "exchange/vocab/contexts/data-integrity-v2.jsonld",
    "exchange/vocab/exchange.ttl",
    "exchange/vocab/shapes.ttl",
]

PROBE = """
import sys
from pathlib import Path
import exchange, exchange.resources as resources, exchange.schema as schema
site = Path(sys.argv[1]).resolve()
assert Path(exchange.__file__).resolve().is_relative_to(site), exchange.__file__
assert Path(str(resources.data_dir("schemas"))).resolve().is_relative_to(site)
assert resources.context_document("https://w3id.org/exchange/v1")["@context"]
examples = sorted(p for p in resources.data_dir("examples").iterdir() if p.name.endswith(".json"))
assert examples, "no examples in the wheel"
import json
for example in examples:
    schema.check(json.loads(example.read_text()), "object")
print(len(examples))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(PROJECT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("exchange-*.whl")
    return built


def test_wheel_ships_the_data_files(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [name for name in SHIPPED if name not in names]
    assert not missing
    assert any(name.startswith("exchange/examples/") for name in names)


def test_installed_wheel_finds_its_resources_outside_the_checkout(
    wheel: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(site)],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) >= 5
