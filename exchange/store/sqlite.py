"""The SQLite backend (WAL, synchronous=FULL): the embedded default.

All database work runs on one dedicated thread, so the event loop never waits on disk and
the connection is never shared between threads. The queries, the append and the merge are
shared with the PostgreSQL backend (:mod:`exchange.store.sql`); this module holds the
connection, the migrations and what only SQLite needs.

Erased content must not linger in the files: ``secure_delete`` zeroes what a write frees,
and after a write that redacted or purged content the WAL is checkpointed into the database
and truncated, so that no earlier page image keeps the content either.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import orjson

from exchange.entries import object_id_of
from exchange.errors import StoreError
from exchange.query import updated_micros
from exchange.store.sql import Db, SQLStore, check_schema_version, index_object, purge_received
from exchange.timestamps import format_timestamp

__all__ = ["MIGRATIONS", "SQLiteStore", "StoreError"]

T = TypeVar("T")
_log = logging.getLogger(__name__)

Migration = str | Callable[[sqlite3.Connection], None]


def _migration_3(connection: sqlite3.Connection) -> None:
    """Erasure: the object of every merged entry (backfilled from its JSON), lookups of an
    object's entries, the record of redacted entries, and rule 5 applied to what was merged
    before it: entries of objects deleted since are purged of their content."""
    for statement in (
        "ALTER TABLE received ADD COLUMN object_id TEXT",
        "CREATE TABLE redactions (seq INTEGER PRIMARY KEY, generation INTEGER NOT NULL)",
        "CREATE INDEX redactions_by_generation ON redactions (generation)",
        "CREATE INDEX log_by_object ON log (object_id)",
    ):
        connection.execute(statement)
    after: tuple[str, int] = ("", -1)
    while True:
        rows = connection.execute(
            "SELECT origin, seq, entry FROM received WHERE origin > ? OR (origin = ? AND seq > ?)"
            " ORDER BY origin, seq LIMIT 1000",
            (after[0], after[0], after[1]),
        ).fetchall()
        if not rows:
            break
        connection.executemany(
            "UPDATE received SET object_id = ? WHERE origin = ? AND seq = ?",
            [(object_id_of(entry), origin, seq) for origin, seq, entry in rows],
        )
        after = (str(rows[-1][0]), int(rows[-1][1]))
    connection.execute("CREATE INDEX received_by_object ON received (origin, object_id)")
    for origin, object_id in connection.execute(
        "SELECT origin, id FROM objects WHERE deleted = 1"
    ).fetchall():
        purge_received(connection, origin, [object_id])


def fts5_available(connection: sqlite3.Connection) -> bool:
    """Whether this SQLite has FTS5 (Python's sqlite3 usually does)."""
    try:
        connection.execute("CREATE VIRTUAL TABLE temp.fts5_probe USING fts5(x)")
    except sqlite3.OperationalError:
        return False
    connection.execute("DROP TABLE temp.fts5_probe")
    return True


def _migration_4(connection: sqlite3.Connection) -> None:
    """The query API: when this node stored each object's current version (``received``),
    its place in the store's order (``change``, a number taken by every new version), its
    ``updated`` time, its languages and its searchable text (FTS5 when this SQLite has it,
    else a plain table searched with LIKE). Objects stored before take their ``updated``
    (else ``published``) time as ``received``, or the migration's time."""
    for statement in (
        "ALTER TABLE objects ADD COLUMN received TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE objects ADD COLUMN change INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE objects ADD COLUMN updated INTEGER",
        "CREATE TABLE object_languages (lang TEXT NOT NULL, change INTEGER NOT NULL,"
        " PRIMARY KEY (lang, change))",
    ):
        connection.execute(statement)
    if fts5_available(connection):
        connection.execute(
            "CREATE VIRTUAL TABLE object_text USING fts5(text,"
            " tokenize = 'unicode61 remove_diacritics 2', prefix = '2 3')"
        )
    else:
        connection.execute("CREATE TABLE object_text (rowid INTEGER PRIMARY KEY, text TEXT)")
    now = format_timestamp(datetime.now(UTC))
    rows = connection.execute("SELECT id, type, deleted, body FROM objects").fetchall()
    backfill = []
    for object_id, type_name, deleted, body_text in rows:
        body = orjson.loads(body_text)
        stamp = next(
            (body[m] for m in ("updated", "published") if isinstance(body.get(m), str)), now
        )
        backfill.append((updated_micros(body), object_id, stamp, body, type_name, deleted))
    backfill.sort(key=lambda row: (row[0] or 0, row[1]))
    for change, (updated, object_id, stamp, body, type_name, deleted) in enumerate(backfill, 1):
        connection.execute(
            "UPDATE objects SET received = ?, change = ?, updated = ? WHERE id = ?",
            (stamp, change, updated, object_id),
        )
        if type_name != "Service" and not deleted:
            index_object(connection, change, body)
    for statement in (
        "CREATE UNIQUE INDEX objects_by_change ON objects (change)",
        "CREATE INDEX objects_by_type_change ON objects (type, change)",
        "CREATE INDEX objects_by_origin_change ON objects (origin, change)",
        "CREATE INDEX objects_by_updated ON objects (updated, change)",
    ):
        connection.execute(statement)


#: Versioned schema migrations; a migration is never edited once released. A migration is
#: SQL, or a function for one that must read what it converts.
MIGRATIONS: tuple[Migration, ...] = (
    """
    CREATE TABLE log (
        seq INTEGER PRIMARY KEY,
        object_id TEXT NOT NULL,
        leaf BLOB NOT NULL,
        leaf_hash BLOB NOT NULL
    );
    CREATE TABLE merkle (
        level INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        hash BLOB NOT NULL,
        PRIMARY KEY (level, idx)
    );
    CREATE TABLE checkpoints (
        size INTEGER PRIMARY KEY,
        root BLOB NOT NULL,
        note TEXT NOT NULL
    );
    CREATE TABLE objects (
        id TEXT PRIMARY KEY,
        origin TEXT NOT NULL,
        type TEXT NOT NULL,
        version INTEGER NOT NULL,
        deleted INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX objects_by_origin ON objects (origin, id);
    CREATE INDEX objects_by_type ON objects (type, id);
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
        next_seq INTEGER NOT NULL,
        peaks TEXT NOT NULL,
        checkpoint_size INTEGER NOT NULL,
        checkpoint_root BLOB NOT NULL,
        checkpoint_note TEXT NOT NULL,
        halted INTEGER NOT NULL,
        halt_reason TEXT NOT NULL,
        evidence TEXT NOT NULL
    );
    CREATE TABLE received (
        origin TEXT NOT NULL,
        seq INTEGER NOT NULL,
        leaf_hash BLOB NOT NULL,
        entry TEXT NOT NULL,
        PRIMARY KEY (origin, seq)
    );
    CREATE TABLE rejections (
        id INTEGER PRIMARY KEY,
        origin TEXT NOT NULL,
        seq INTEGER,
        reason TEXT NOT NULL,
        problem TEXT NOT NULL,
        at TEXT NOT NULL
    );
    CREATE TABLE deliveries (
        partner TEXT PRIMARY KEY,
        delivered INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        next_attempt_at TEXT NOT NULL,
        breaker TEXT NOT NULL,
        last_error TEXT NOT NULL
    );
    """,
    _migration_3,
    _migration_4,
    # Deliveries leased by one worker at a time (several workers share a PostgreSQL store;
    # the same code runs here).
    """
    ALTER TABLE deliveries ADD COLUMN lease_owner TEXT NOT NULL DEFAULT '';
    ALTER TABLE deliveries ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0
    """,
)


def _purge_index(connection: sqlite3.Connection) -> None:
    """FTS5 keeps a deleted document's words in its index segments until they are merged:
    after a write that purged content, merge them all ('optimize'), so that secure_delete
    zeroes the old segments and the WAL truncation that follows drops their page images."""
    (sql,) = connection.execute(
        "SELECT sql FROM sqlite_master WHERE name = 'object_text'"
    ).fetchone()
    if "fts5" in str(sql).lower():
        connection.execute("INSERT INTO object_text (object_text) VALUES ('optimize')")


def _scrub(connection: sqlite3.Connection) -> None:
    """Copy every WAL frame into the database file and truncate the WAL to zero bytes, so
    that no page image from before a redaction or purge stays in it. A reader of another
    process can hold the WAL for a moment; the busy handler waits for it, then this retries."""
    for _ in range(20):
        busy, _, _ = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if not busy:
            return
        time.sleep(0.05)
    _log.warning("the WAL could not be truncated after an erasure; the next checkpoint will")


class SQLiteStore(SQLStore):
    _index_hints = True

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._connection: sqlite3.Connection | None = None

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path})"

    # --- plumbing --------------------------------------------------------------------------

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, work)

    def _call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._connection is None:
            raise StoreError("the store is not open")
        try:
            return work(self._connection)
        except sqlite3.DatabaseError as error:
            raise StoreError(f"{self.path}: {error}") from error

    async def _transact(self, work: Callable[[Db], T], *, serialize: bool = True) -> T:
        """BEGIN IMMEDIATE takes SQLite's one write lock at once, whatever ``serialize``
        says: writers of other processes on the same file wait for it (busy timeout)."""

        def transaction(connection: sqlite3.Connection) -> T:
            connection.execute("BEGIN IMMEDIATE")
            try:
                result = work(connection)
                connection.execute("COMMIT")  # synchronous=FULL: durable when this returns
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            return result

        return await self._run(transaction)

    def _after_erasure(self, db: Db) -> None:
        assert isinstance(db, sqlite3.Connection)  # what this store's _run passes
        _purge_index(db)
        _scrub(db)

    def _open(self) -> None:
        connection = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30
        )
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = FULL")
        connection.execute("PRAGMA foreign_keys = ON")
        connection.execute("PRAGMA secure_delete = ON")  # freed content is zeroed
        self._connection = connection
        if self._call(self._migrate):
            self._call(_scrub)
        (sql,) = connection.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'object_text'"
        ).fetchone()
        self._fts = "fts5" in str(sql).lower()

    @staticmethod
    def _migrate(connection: sqlite3.Connection) -> bool:
        """Apply the migrations the store lacks; True when there were any."""
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.execute(
                "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
            )
            current = check_schema_version(
                connection.execute("SELECT MAX(version) FROM schema_version").fetchone()[0],
                len(MIGRATIONS),
            )
            for version in range(current + 1, len(MIGRATIONS) + 1):
                migration = MIGRATIONS[version - 1]
                if callable(migration):
                    migration(connection)
                else:
                    for statement in migration.split(";"):
                        if statement.strip():
                            connection.execute(statement)
                connection.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        return current < len(MIGRATIONS)

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._open)

    async def close(self) -> None:
        def close(connection: sqlite3.Connection) -> None:
            connection.close()

        if self._connection is not None:
            await self._run(close)
            self._connection = None
        self._executor.shutdown(wait=True)

    async def durability(self) -> tuple[int, str]:
        """The settings that make a commit durable: ``(PRAGMA synchronous, journal_mode)``."""

        def work(connection: sqlite3.Connection) -> tuple[int, str]:
            synchronous = connection.execute("PRAGMA synchronous").fetchone()[0]
            journal_mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
            return int(synchronous), str(journal_mode)

        return await self._run(work)
