"""The store backends a benchmark measures in one run: SQLite and PostgreSQL, side by side.

A benchmark adds the options with :func:`add_options` (``--backend sqlite|postgresql|both``,
default both, and ``--database-url``, default ``EXCHANGE_DATABASE_URL``, else the machine's
test database), runs its workload once per backend of :func:`chosen` and ends with
:func:`comparison`: each figure per backend and the PostgreSQL / SQLite ratio.

On PostgreSQL every node a run creates keeps its tables in a schema of its own,
``bench_<pid>_<role>``, new for the run and dropped at its end (also after a failure or
Ctrl-C), so runs never see each other's rows. A node's store is the one its
``exchange.toml`` names: the ``EXCHANGE_DATABASE_*`` variables of the benchmark's own
environment never reach the nodes it creates or starts.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

LOCAL_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
SQLITE, POSTGRESQL = "sqlite", "postgresql"
_STORE_VARIABLES = ("EXCHANGE_DATABASE_URL", "EXCHANGE_DATABASE_SCHEMA")
_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend",
        choices=(SQLITE, POSTGRESQL, "both"),
        default="both",
        help="the store backend(s) to measure, the same workload on each (default: both)",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("EXCHANGE_DATABASE_URL") or LOCAL_DATABASE_URL,
        help="PostgreSQL to measure (default: EXCHANGE_DATABASE_URL, else %(default)s);"
        " each node of the run gets a fresh schema bench_<pid>_<role>, dropped at the end",
    )


@dataclass
class Backend:
    name: str  # SQLITE or POSTGRESQL
    database_url: str = ""
    schemas: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return "PostgreSQL" if self.name == POSTGRESQL else "SQLite"

    def schema(self, role: str) -> str:
        """A fresh PostgreSQL schema for the node of this run playing ``role``, dropped when
        the run ends."""
        schema = f"bench_{os.getpid()}_{role}"
        if not _SCHEMA.fullmatch(schema):
            raise SystemExit(f"{schema!r} is not a schema name ([a-z_][a-z0-9_]{{0,62}})")
        self.schemas.append(schema)
        return schema

    def environ(self, role: str) -> dict[str, str]:
        """The environment ``init_node`` reads to create a node of this backend; ``role``
        names its schema on PostgreSQL."""
        if self.name != POSTGRESQL:
            return {}
        schema = self.schema(role)
        return {"EXCHANGE_DATABASE_URL": self.database_url, "EXCHANGE_DATABASE_SCHEMA": schema}

    def describe(self) -> str:
        if self.name != POSTGRESQL:
            return "SQLite (WAL, synchronous=FULL), a file in the node's home"
        import psycopg

        from exchange.store.postgres import redacted_url

        try:
            with psycopg.connect(self.database_url, connect_timeout=10) as connection:
                row = connection.execute("SHOW server_version").fetchone()
        except psycopg.OperationalError as error:
            where = redacted_url(self.database_url)
            raise SystemExit(f"PostgreSQL does not answer at {where}: {error}") from error
        return f"PostgreSQL {row[0] if row else '?'} at {redacted_url(self.database_url)}"


def child_environ(**extra: str) -> dict[str, str]:
    """This process's environment for a node's subprocess, without the store variables."""
    environ = {k: v for k, v in os.environ.items() if k not in _STORE_VARIABLES}
    return {**environ, **extra}


@contextlib.contextmanager
def chosen(options: argparse.Namespace) -> Iterator[list[Backend]]:
    """The backends ``--backend`` names; PostgreSQL must answer. Drops every schema the run
    made when it ends."""
    names = [SQLITE, POSTGRESQL] if options.backend == "both" else [options.backend]
    backends = [Backend(name, options.database_url if name == POSTGRESQL else "") for name in names]
    try:
        for backend in backends:
            print(f"backend: {backend.describe()}", flush=True)
        yield backends
    finally:
        for backend in backends:
            _drop(backend)


def _drop(backend: Backend) -> None:
    if not backend.schemas:
        return
    import psycopg
    from psycopg import sql

    with psycopg.connect(backend.database_url, autocommit=True, connect_timeout=10) as connection:
        for schema in backend.schemas:
            connection.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )
    backend.schemas.clear()


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured figure of every backend: ``values`` by backend label."""

    name: str
    unit: str
    values: dict[str, float]
    better: str  # "higher" or "lower"
    digits: int = 0


def comparison(figures: Sequence[Figure]) -> str:
    """A table of each figure per backend and the PostgreSQL / SQLite ratio."""
    labels = ["SQLite", "PostgreSQL"]
    width = max(len(f"{figure.name} ({figure.unit})") for figure in figures)
    lines = [
        f"{'figure':<{width}}  {'SQLite':>10}  {'PostgreSQL':>10}  PostgreSQL / SQLite",
        f"{'-' * width}  {'-' * 10}  {'-' * 10}  {'-' * 19}",
    ]
    for figure in figures:
        cells = [
            f"{figure.values[label]:>10,.{figure.digits}f}"
            if label in figure.values
            else f"{'-':>10}"
            for label in labels
        ]
        ratio = "-"
        if all(figure.values.get(label) for label in labels):
            ratio = f"{figure.values['PostgreSQL'] / figure.values['SQLite']:.2f}"
            ratio += f" ({figure.better} is better)"
        lines.append(
            f"{figure.name + ' (' + figure.unit + ')':<{width}}  {'  '.join(cells)}  {ratio}"
        )
    return "\n".join(lines)
