"""The PostgreSQL backend: the same store on a database that several workers share.

Driver: psycopg 3 with its connection pool, used synchronously on a few threads. The
store's plans (:meth:`Store.append`, :meth:`Store.merge`) are synchronous functions that
read inside the transaction they write in; a blocking connection on a worker thread runs
them as they are, as the SQLite backend does, and the event loop never waits on the
database.

Each node keeps its tables in its own schema (``Settings.store_schema``), so one database
can hold several nodes. Writers are serialized per schema by a transaction-scoped advisory
lock taken first in every append and merge: whatever the number of worker processes, one
log with no gap and no duplicate seq, one order of change numbers, and a merge that reads
an origin's state that stays true until it commits (so an inbox page merged on two
workers has its effect once). A delivery is leased by one worker at a time with
``SELECT ... FOR UPDATE SKIP LOCKED``.

Durability: a commit returns once PostgreSQL has flushed its WAL (``synchronous_commit``
is set on for the store's sessions).

Erasure: rows are rewritten at once; PostgreSQL keeps the old row versions in the table
files until VACUUM reuses their space, and in its WAL until it recycles the segments.
After an erasure the store runs VACUUM on the tables concerned; docs/operations.md says
what an operator does about the WAL archive and backups.
"""

from __future__ import annotations

import asyncio
import functools
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from exchange.errors import StoreError
from exchange.store.sql import Cursor, Db, SQLStore, check_schema_version

__all__ = ["MIGRATIONS", "PostgresStore", "redacted_url"]

T = TypeVar("T")

#: Versioned schema migrations, numbered as the SQLite backend's (the same tables, in
#: PostgreSQL's types); a migration is never edited once released. A new database takes
#: them all in one transaction.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE log (
        seq BIGINT PRIMARY KEY,
        object_id TEXT NOT NULL,
        leaf BYTEA NOT NULL,
        leaf_hash BYTEA NOT NULL
    );
    CREATE TABLE merkle (
        level INTEGER NOT NULL,
        idx BIGINT NOT NULL,
        hash BYTEA NOT NULL,
        PRIMARY KEY (level, idx)
    );
    CREATE TABLE checkpoints (
        size BIGINT PRIMARY KEY,
        root BYTEA NOT NULL,
        note TEXT NOT NULL
    );
    CREATE TABLE objects (
        id TEXT PRIMARY KEY,
        origin TEXT NOT NULL,
        type TEXT NOT NULL,
        version BIGINT NOT NULL,
        deleted INTEGER NOT NULL,
        seq BIGINT NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX objects_by_origin ON objects (origin, id);
    CREATE INDEX objects_by_type ON objects (type, id)
    """,
    """
    CREATE TABLE partners (
        base_url TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        country TEXT NOT NULL,
        document TEXT NOT NULL,
        approved INTEGER NOT NULL,
        following TEXT NOT NULL,
        subscriber INTEGER NOT NULL,
        added_at TEXT NOT NULL
    );
    CREATE TABLE origins (
        base_url TEXT PRIMARY KEY,
        next_seq BIGINT NOT NULL,
        peaks TEXT NOT NULL,
        checkpoint_size BIGINT NOT NULL,
        checkpoint_root BYTEA NOT NULL,
        checkpoint_note TEXT NOT NULL,
        halted INTEGER NOT NULL,
        halt_reason TEXT NOT NULL,
        evidence TEXT NOT NULL
    );
    CREATE TABLE received (
        origin TEXT NOT NULL,
        seq BIGINT NOT NULL,
        leaf_hash BYTEA NOT NULL,
        entry TEXT NOT NULL,
        PRIMARY KEY (origin, seq)
    );
    CREATE TABLE rejections (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        origin TEXT NOT NULL,
        seq BIGINT,
        reason TEXT NOT NULL,
        problem TEXT NOT NULL,
        at TEXT NOT NULL
    );
    CREATE TABLE deliveries (
        partner TEXT PRIMARY KEY,
        delivered BIGINT NOT NULL,
        attempts INTEGER NOT NULL,
        next_attempt_at TEXT NOT NULL,
        breaker TEXT NOT NULL,
        last_error TEXT NOT NULL
    )
    """,
    """
    ALTER TABLE received ADD COLUMN object_id TEXT;
    CREATE TABLE redactions (seq BIGINT PRIMARY KEY, generation BIGINT NOT NULL);
    CREATE INDEX redactions_by_generation ON redactions (generation);
    CREATE INDEX log_by_object ON log (object_id);
    CREATE INDEX received_by_object ON received (origin, object_id)
    """,
    """
    ALTER TABLE objects ADD COLUMN received TEXT NOT NULL DEFAULT '';
    ALTER TABLE objects ADD COLUMN change BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE objects ADD COLUMN updated BIGINT;
    CREATE TABLE object_languages (
        lang TEXT NOT NULL, change BIGINT NOT NULL, PRIMARY KEY (lang, change)
    );
    CREATE TABLE object_text (rowid BIGINT PRIMARY KEY, text TEXT NOT NULL);
    CREATE UNIQUE INDEX objects_by_change ON objects (change);
    CREATE INDEX objects_by_type_change ON objects (type, change);
    CREATE INDEX objects_by_origin_change ON objects (origin, change);
    CREATE INDEX objects_by_updated ON objects (updated, change)
    """,
    """
    ALTER TABLE deliveries ADD COLUMN lease_owner TEXT NOT NULL DEFAULT '';
    ALTER TABLE deliveries ADD COLUMN lease_until BIGINT NOT NULL DEFAULT 0
    """,
)

#: What erasure rewrites: VACUUM makes the space of their old row versions reusable.
_ERASED_TABLES = ("log", "received", "objects", "object_text", "object_languages")


@functools.lru_cache(maxsize=512)
def _placeholders(statement: str) -> str:
    """The shared SQL's ``?`` placeholders in psycopg's style (no statement of the shared
    SQL has a ``?`` or ``%`` of its own)."""
    return statement.replace("%", "%%").replace("?", "%s")


def redacted_url(url: str) -> str:
    """The database URL without its password, for messages and logs."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "the database URL"
    info.pop("password", None)
    host, dbname = info.get("host", "localhost"), info.get("dbname", "")
    return f"postgresql://{info.get('user', '')}@{host}:{info.get('port', 5432)}/{dbname}"


class _Connection:
    """A psycopg connection as :class:`~exchange.store.sql.Db`."""

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self.connection = connection

    def execute(self, statement: str, parameters: Sequence[Any] = (), /) -> Cursor:
        # Results in binary: the same Python values, and a page of entries (BYTEA) comes
        # back at half the cost of text, where every byte is sent and parsed as two hex
        # digits.
        return self.connection.execute(_placeholders(statement), parameters, binary=True)

    def executemany(self, statement: str, rows: Iterable[Sequence[Any]], /) -> None:
        batch = list(rows)
        if batch:
            with self.connection.cursor() as cursor:
                cursor.executemany(_placeholders(statement), batch)


class PostgresStore(SQLStore):
    _skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str, schema: str, *, connections: int = 4) -> None:
        super().__init__()
        self.url = url
        self.schema = schema
        self._connections = connections
        # The advisory lock that serializes this schema's writers (a 32-bit key: a
        # collision between two schemas' keys only makes their writers take turns).
        self._lock_key = zlib.crc32(schema.encode())
        self._executor = ThreadPoolExecutor(max_workers=connections, thread_name_prefix="pg")
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None

    def __repr__(self) -> str:
        return f"PostgresStore({redacted_url(self.url)}, schema={self.schema})"

    def _message(self, error: object) -> str:
        """One line naming the database without its password (libpq's are several)."""
        return f"{redacted_url(self.url)}: {' '.join(str(error).split())}"

    # --- plumbing --------------------------------------------------------------------------

    async def _run(self, work: Callable[[Db], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, work)

    def _call(self, work: Callable[[Db], T]) -> T:
        if self._pool is None:
            raise StoreError("the store is not open")
        try:
            with self._pool.connection() as connection:
                return work(_Connection(connection))
        except PoolTimeout as error:
            raise StoreError(self._message(f"no connection: {error}")) from error
        except psycopg.Error as error:
            raise StoreError(self._message(error)) from error

    async def _transact(self, work: Callable[[Db], T], *, serialize: bool = True) -> T:
        def transaction(db: Db) -> T:
            assert isinstance(db, _Connection)  # what _call passes
            with db.connection.transaction():
                if serialize:
                    db.execute("SELECT pg_advisory_xact_lock(?)", (self._lock_key,))
                return work(db)

        return await self._run(transaction)

    def _after_erasure(self, db: Db) -> None:
        for table in _ERASED_TABLES:
            db.execute(f"VACUUM {table}")  # outside a transaction: the pool's autocommit

    def _configure(self, connection: psycopg.Connection[Any]) -> None:
        connection.execute(
            sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)),
        )
        connection.execute("SET synchronous_commit TO on")

    def _open(self) -> None:
        try:
            with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as connection:
                self._migrate(connection)
        except psycopg.Error as error:
            raise StoreError(self._message(error)) from error
        pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            self.url,
            min_size=1,
            max_size=self._connections,
            kwargs={"autocommit": True},
            configure=self._configure,
            open=False,
            name=f"exchange-{self.schema}",
        )
        try:
            pool.open(wait=True, timeout=30)
        except PoolTimeout as error:
            pool.close()
            raise StoreError(self._message(error)) from error
        self._pool = pool

    def _migrate(self, connection: psycopg.Connection[Any]) -> None:
        """Create the schema and apply the migrations it lacks, under an advisory lock, so
        that workers starting together migrate once."""
        schema = sql.Identifier(self.schema)
        with connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,))
            connection.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
            connection.execute(sql.SQL("SET LOCAL search_path TO {}").format(schema))
            connection.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
            )
            row = connection.execute("SELECT MAX(version) FROM schema_version").fetchone()
            current = check_schema_version(None if row is None else row[0], len(MIGRATIONS))
            for version in range(current + 1, len(MIGRATIONS) + 1):
                for statement in MIGRATIONS[version - 1].split(";"):
                    if statement.strip():
                        connection.execute(statement.encode())
                connection.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._open)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor, pool.close)
        self._executor.shutdown(wait=True)
