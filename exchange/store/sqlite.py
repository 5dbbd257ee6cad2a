"""The SQLite backend (WAL, synchronous=FULL): the embedded default.

All database work runs on one dedicated thread, so the event loop never waits on disk and
the connection is never shared between threads. SQL is kept portable for the PostgreSQL
backend: plain types, no SQLite-only functions in queries.

Erased content must not linger in the files: ``secure_delete`` zeroes what a write frees,
and after a write that redacted or purged content the WAL is checkpointed into the database
and truncated, so that no earlier page image keeps the content either.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson

from exchange.delivery import DeliveryState
from exchange.entries import ObjectRecord, object_id_of, purged_rows
from exchange.errors import (
    StoreError,
)
from exchange.merkle import leaf_hash, perfect_subtrees_completed_by, root
from exchange.partners import OriginState, Partner, Rejection
from exchange.query import (
    ObjectQuery,
    StoredObject,
    languages,
    search_text,
    updated_micros,
)
from exchange.store.base import (
    Append,
    AppendResult,
    Counts,
    MergeView,
    MergeWrite,
    ObjectPage,
    QueryPage,
    Transaction,
)
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
        _purge_received(connection, origin, [object_id])


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
            _index_object(connection, change, body)
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
)


def _record(row: Sequence[Any]) -> ObjectRecord:
    object_id, origin, type_name, version, deleted, seq, body = row
    return ObjectRecord(object_id, origin, type_name, version, bool(deleted), seq, json.loads(body))


_PUT_OBJECT = (
    "INSERT INTO objects (id, origin, type, version, deleted, seq, body, received, change,"
    " updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET origin = excluded.origin, type = excluded.type,"
    " version = excluded.version, deleted = excluded.deleted, seq = excluded.seq,"
    " body = excluded.body, received = excluded.received, change = excluded.change,"
    " updated = excluded.updated"
)


def _index_object(connection: sqlite3.Connection, change: int, body: Mapping[str, Any]) -> None:
    """Index a listed object's languages and text under its change number."""
    connection.executemany(
        "INSERT INTO object_languages (lang, change) VALUES (?, ?)",
        [(lang, change) for lang in languages(body)],
    )
    connection.execute(
        "INSERT INTO object_text (rowid, text) VALUES (?, ?)", (change, search_text(body))
    )


def _unindex_object(connection: sqlite3.Connection, change: int) -> None:
    connection.execute("DELETE FROM object_languages WHERE change = ?", (change,))
    connection.execute("DELETE FROM object_text WHERE rowid = ?", (change,))


def _put_objects(connection: sqlite3.Connection, records: Sequence[ObjectRecord]) -> bool:
    """Write the objects' new state; each new version takes the next change number and the
    time now as ``received``, and its index rows. Returns True when indexed text was
    dropped for an object now deleted (its old words linger in the FTS segments until they
    are merged: see :func:`_purge_index`)."""
    received = format_timestamp(datetime.now(UTC))
    (change,) = connection.execute("SELECT COALESCE(MAX(change), 0) FROM objects").fetchone()
    dropped = False
    for record in records:
        body = orjson.dumps(record.body).decode()
        old = connection.execute(
            "SELECT change, version, deleted, body, type FROM objects WHERE id = ?", (record.id,)
        ).fetchone()
        if old is not None:
            if (old[1], bool(old[2]), old[3]) == (record.version, record.deleted, body):
                continue  # the same version again (rule 3): it keeps its place
            if old[4] != "Service" and not old[2]:
                _unindex_object(connection, int(old[0]))
                dropped = dropped or record.deleted
        change += 1
        connection.execute(
            _PUT_OBJECT,
            (
                record.id,
                record.origin,
                record.type,
                record.version,
                int(record.deleted),
                record.seq,
                body,
                received,
                change,
                updated_micros(record.body),
            ),
        )
        if record.type != "Service" and not record.deleted:
            _index_object(connection, change, record.body)
    return dropped


def _purge_index(connection: sqlite3.Connection) -> None:
    """FTS5 keeps a deleted document's words in its index segments until they are merged:
    after a write that purged content, merge them all ('optimize'), so that secure_delete
    zeroes the old segments and the WAL truncation that follows drops their page images."""
    (sql,) = connection.execute(
        "SELECT sql FROM sqlite_master WHERE name = 'object_text'"
    ).fetchone()
    if "fts5" in str(sql).lower():
        connection.execute("INSERT INTO object_text (object_text) VALUES ('optimize')")


def _get_object(connection: sqlite3.Connection, object_id: str) -> ObjectRecord | None:
    row = connection.execute(
        "SELECT id, origin, type, version, deleted, seq, body FROM objects WHERE id = ?",
        (object_id,),
    ).fetchone()
    return None if row is None else _record(row)


class _Transaction:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection
        (self._size,) = connection.execute("SELECT COALESCE(MAX(seq) + 1, 0) FROM log").fetchone()

    @property
    def size(self) -> int:
        return int(self._size)

    def get_object(self, object_id: str) -> ObjectRecord | None:
        return _get_object(self._connection, object_id)

    def perfect(self, level: int, index: int) -> bytes:
        row = self._connection.execute(
            "SELECT hash FROM merkle WHERE level = ? AND idx = ?", (level, index)
        ).fetchone()
        if row is None:
            raise StoreError(f"Merkle node ({level}, {index}) is missing: the store is damaged")
        return bytes(row[0])

    def entries_of(self, object_id: str) -> list[tuple[int, bytes, bytes]]:
        rows = self._connection.execute(
            "SELECT seq, leaf, leaf_hash FROM log WHERE object_id = ? ORDER BY seq", (object_id,)
        ).fetchall()
        return [(int(seq), bytes(leaf), bytes(hashed)) for seq, leaf, hashed in rows]


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


_STORED_COLUMNS = "id, type, origin, version, deleted, seq, received, change, body"


def _stored(row: Sequence[Any]) -> StoredObject:
    object_id, type_name, origin, version, deleted, seq, received, change, body = row
    return StoredObject(
        object_id,
        type_name,
        origin,
        version,
        bool(deleted),
        seq,
        received,
        change,
        str(body),
    )


def _marks(values: Sequence[Any]) -> str:
    return ",".join("?" * len(values))


#: Below this many objects updated since the asked time, the ``updated`` index drives the
#: query (and its matches are sorted); above it, the walk in change order finds a page soon.
SPARSE_UPDATES = 5000


def _object_query_sql(
    query: ObjectQuery, fts: bool, sparse_updates: bool = False
) -> tuple[str, list[Any]]:
    """The SELECT of one page, in change order (the cursor). What drives it, so that a page
    costs what it returns and not the size of the store: the FTS5 index (whose rowids are
    change numbers, read in order) when there is free text; else the languages' index
    (lang, change) for ``lang``; else the ``updated`` index when few objects match
    ``updated_since``; else the objects table in change order (or by type, id)."""
    clauses, parameters = ["o.type <> 'Service'"], list[Any]()
    source, order = "objects o", "o.change"
    lang_clause = (
        "EXISTS (SELECT 1 FROM object_languages l WHERE l.lang = ? AND l.change = o.change)"
    )
    if query.terms and fts:
        source, order = (
            "object_text CROSS JOIN objects o ON o.change = object_text.rowid",
            ("object_text.rowid"),
        )
        clauses.append("object_text MATCH ?")
        parameters.append(" AND ".join(f'"{term}"*' for term in query.terms))
        if query.lang is not None:
            clauses.append(lang_clause)
            parameters.append(query.lang)
    elif query.lang is not None:
        source, order = "object_languages l CROSS JOIN objects o ON o.change = l.change", "l.change"
        clauses.append("l.lang = ?")
        parameters.append(query.lang)
    elif query.updated_since_us is not None and sparse_updates:
        source = "objects o INDEXED BY objects_by_updated"
    if query.terms and not fts:
        likes = " AND ".join("(' ' || text) LIKE ? ESCAPE '\\'" for _ in query.terms)
        clauses.append(f"o.change IN (SELECT rowid FROM object_text WHERE {likes})")
        parameters += [f"% {term}%" for term in query.terms]
    if query.after is not None:
        clauses.append(f"{order} > ?")  # the driving index's own order: a range, not a filter
        parameters.append(query.after)
    if not query.include_deleted:
        clauses.append("o.deleted = 0")
    for column, values in (("type", query.types), ("origin", query.origins), ("id", query.ids)):
        if values is not None:
            clauses.append(f"o.{column} IN ({_marks(values) or 'NULL'})")
            parameters += values
    if query.updated_since_us is not None:
        clauses.append("o.updated >= ?")
        parameters.append(query.updated_since_us)
    columns = ", ".join("o." + c for c in _STORED_COLUMNS.split(", "))
    sql = f"SELECT {columns} FROM {source} WHERE {' AND '.join(clauses)} ORDER BY {order} LIMIT ?"
    return sql, [*parameters, query.limit + 1]


class SQLiteStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fts = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._connection: sqlite3.Connection | None = None
        #: Called (on the event loop) after every append or merge: wakes the RDF view.
        self.on_change: Callable[[], None] | None = None

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
            row = connection.execute("SELECT MAX(version) FROM schema_version").fetchone()
            current = row[0] or 0
            if current > len(MIGRATIONS):
                raise StoreError(
                    f"the store has schema version {current}, newer than this exchange "
                    f"({len(MIGRATIONS)}); upgrade exchange"
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

    # --- writes ----------------------------------------------------------------------------

    async def append(
        self,
        plan: Callable[[Transaction], Append],
        sign_checkpoint: Callable[[int, bytes], str],
    ) -> AppendResult:
        def work(connection: sqlite3.Connection) -> AppendResult:
            connection.execute("BEGIN IMMEDIATE")
            try:
                result, _ = self._append(connection, plan, sign_checkpoint)
                connection.execute("COMMIT")  # synchronous=FULL: durable when this returns
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            if result.append.redactions:
                _purge_index(connection)
                _scrub(connection)
            return result

        result = await self._run(work)
        if self.on_change is not None and (result.append.objects or result.append.redactions):
            self.on_change()
        return result

    @staticmethod
    def _append(
        connection: sqlite3.Connection,
        plan: Callable[[Transaction], Append],
        sign_checkpoint: Callable[[int, bytes], str],
    ) -> tuple[AppendResult, bool]:
        transaction = _Transaction(connection)
        append = plan(transaction)
        size = transaction.size
        if append.redactions:
            _redact(connection, append)
        for offset, entry in enumerate(append.entries):
            if entry.seq != size + offset:
                raise StoreError(f"entry seq {entry.seq} does not follow log size {size + offset}")
            hashed = leaf_hash(entry.leaf)
            connection.execute(
                "INSERT INTO log (seq, object_id, leaf, leaf_hash) VALUES (?, ?, ?, ?)",
                (entry.seq, entry.object_id, entry.leaf, hashed),
            )
            connection.executemany(
                "INSERT INTO merkle (level, idx, hash) VALUES (?, ?, ?)",
                perfect_subtrees_completed_by(transaction, entry.seq, hashed),
            )
        dropped = _put_objects(connection, append.objects)
        new_size = size + len(append.entries)
        new_root = root(transaction, new_size)
        row = connection.execute(
            "SELECT note FROM checkpoints WHERE size = ?", (new_size,)
        ).fetchone()
        if row is None:  # a new size (or the empty log's first start): sign its checkpoint
            note = sign_checkpoint(new_size, new_root)
            connection.execute(
                "INSERT INTO checkpoints (size, root, note) VALUES (?, ?, ?)",
                (new_size, new_root, note),
            )
        else:
            note = str(row[0])
        return AppendResult(append, new_size, new_root, note), dropped

    async def durability(self) -> tuple[int, str]:
        """The settings that make a commit durable: ``(PRAGMA synchronous, journal_mode)``."""

        def work(connection: sqlite3.Connection) -> tuple[int, str]:
            synchronous = connection.execute("PRAGMA synchronous").fetchone()[0]
            journal_mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
            return int(synchronous), str(journal_mode)

        return await self._run(work)

    # --- reads -----------------------------------------------------------------------------

    async def log_size(self) -> int:
        def work(connection: sqlite3.Connection) -> int:
            return int(
                connection.execute("SELECT COALESCE(MAX(seq) + 1, 0) FROM log").fetchone()[0]
            )

        return await self._run(work)

    async def entries(self, start: int, end: int) -> list[bytes]:
        def work(connection: sqlite3.Connection) -> list[bytes]:
            rows = connection.execute(
                "SELECT leaf FROM log WHERE seq >= ? AND seq < ? ORDER BY seq", (start, end)
            ).fetchall()
            return [bytes(row[0]) for row in rows]

        return await self._run(work)

    async def page(self, start: int, end: int) -> tuple[list[bytes], list[bytes], list[int]]:
        """The leaves of entries ``[start, end)``, their leaf hashes and the seqs among them
        that an erasure redacted, in one read."""

        def work(connection: sqlite3.Connection) -> tuple[list[bytes], list[bytes], list[int]]:
            rows = connection.execute(
                "SELECT log.leaf, log.leaf_hash, redactions.seq FROM log"
                " LEFT JOIN redactions ON redactions.seq = log.seq"
                " WHERE log.seq >= ? AND log.seq < ? ORDER BY log.seq",
                (start, end),
            ).fetchall()
            redacted = [int(row[2]) for row in rows if row[2] is not None]
            return [row[0] for row in rows], [row[1] for row in rows], redacted

        return await self._run(work)

    async def redactions_since(self, generation: int | None) -> tuple[int, list[int]]:
        def work(connection: sqlite3.Connection) -> tuple[int, list[int]]:
            (current,) = connection.execute(
                "SELECT COALESCE(MAX(generation), 0) FROM redactions"
            ).fetchone()
            if current == generation:
                return int(current), []
            rows = connection.execute(
                "SELECT seq FROM redactions WHERE generation > ? ORDER BY seq",
                (-1 if generation is None else generation,),
            ).fetchall()
            return int(current), [int(row[0]) for row in rows]

        return await self._run(work)

    async def subtrees(
        self, coordinates: Sequence[tuple[int, int]]
    ) -> dict[tuple[int, int], bytes]:
        wanted = sorted(set(coordinates))

        def work(connection: sqlite3.Connection) -> dict[tuple[int, int], bytes]:
            found: dict[tuple[int, int], bytes] = {}
            for level, index in wanted:
                row = connection.execute(
                    "SELECT hash FROM merkle WHERE level = ? AND idx = ?", (level, index)
                ).fetchone()
                if row is None:
                    raise StoreError(f"Merkle node ({level}, {index}) is missing")
                found[(level, index)] = bytes(row[0])
            return found

        return await self._run(work)

    async def latest_checkpoint(self) -> tuple[int, str] | None:
        def work(connection: sqlite3.Connection) -> tuple[int, str] | None:
            row = connection.execute(
                "SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1"
            ).fetchone()
            return None if row is None else (int(row[0]), str(row[1]))

        return await self._run(work)

    async def list_checkpoints(self, up_to: int) -> list[tuple[int, str]]:
        def work(connection: sqlite3.Connection) -> list[tuple[int, str]]:
            rows = connection.execute(
                "SELECT size, note FROM checkpoints WHERE size <= ? ORDER BY size", (up_to,)
            ).fetchall()
            return [(int(size), str(note)) for size, note in rows]

        return await self._run(work)

    async def checkpoint(self, size: int) -> str | None:
        def work(connection: sqlite3.Connection) -> str | None:
            row = connection.execute(
                "SELECT note FROM checkpoints WHERE size = ?", (size,)
            ).fetchone()
            return None if row is None else str(row[0])

        return await self._run(work)

    async def get_object(self, object_id: str) -> ObjectRecord | None:
        def work(connection: sqlite3.Connection) -> ObjectRecord | None:
            return _Transaction(connection).get_object(object_id)

        return await self._run(work)

    async def list_objects(
        self, *, origin: str | None, type_name: str | None, after: str | None, limit: int
    ) -> ObjectPage:
        # The node's own node document (id B, type Service) is key state, not an object.
        clauses, parameters = ["deleted = 0", "type <> 'Service'"], []
        for column, value in (("origin", origin), ("type", type_name)):
            if value is not None:
                clauses.append(f"{column} = ?")
                parameters.append(value)
        if after is not None:
            clauses.append("id > ?")
            parameters.append(after)
        query = (
            "SELECT id, origin, type, version, deleted, seq, body FROM objects WHERE "
            + " AND ".join(clauses)
            + " ORDER BY id LIMIT ?"
        )

        def work(connection: sqlite3.Connection) -> ObjectPage:
            rows = connection.execute(query, (*parameters, limit + 1)).fetchall()
            items = [_record(row) for row in rows[:limit]]
            next_after = items[-1].id if len(rows) > limit else None
            return ObjectPage(items, next_after)

        return await self._run(work)

    async def query_objects(self, query: ObjectQuery) -> QueryPage:
        def work(connection: sqlite3.Connection) -> QueryPage:
            sparse = False
            if query.updated_since_us is not None:
                (matches,) = connection.execute(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM objects INDEXED BY objects_by_updated"
                    " WHERE updated >= ? LIMIT ?)",
                    (query.updated_since_us, SPARSE_UPDATES + 1),
                ).fetchone()
                sparse = matches <= SPARSE_UPDATES
            sql, parameters = _object_query_sql(query, self._fts, sparse)
            rows = connection.execute(sql, parameters).fetchall()
            items = [_stored(row) for row in rows[: query.limit]]
            return QueryPage(items, items[-1].change if len(rows) > query.limit else None)

        return await self._run(work)

    async def get_stored(self, object_id: str) -> StoredObject | None:
        def work(connection: sqlite3.Connection) -> StoredObject | None:
            row = connection.execute(
                f"SELECT {_STORED_COLUMNS} FROM objects WHERE id = ? AND type <> 'Service'",
                (object_id,),
            ).fetchone()
            return None if row is None else _stored(row)

        return await self._run(work)

    async def last_change(self) -> int:
        """The change number of the object row written last (0: none yet)."""

        def work(connection: sqlite3.Connection) -> int:
            row = connection.execute("SELECT COALESCE(MAX(change), 0) FROM objects").fetchone()
            return int(row[0])

        return await self._run(work)

    async def changed_objects(self, after: int, limit: int) -> list[tuple[int, ObjectRecord]]:
        """Object rows (every type, deleted ones too) whose change number is above
        ``after``, in change order, each with its number (the RDF view follows them)."""

        def work(connection: sqlite3.Connection) -> list[tuple[int, ObjectRecord]]:
            rows = connection.execute(
                "SELECT change, id, origin, type, version, deleted, seq, body FROM objects"
                " WHERE change > ? ORDER BY change LIMIT ?",
                (after, limit),
            ).fetchall()
            return [(int(row[0]), _record(row[1:])) for row in rows]

        return await self._run(work)

    # --- federation: partners, origins, merged entries, rejections, deliveries -----------

    async def put_partner(self, partner: Partner) -> None:
        def work(connection: sqlite3.Connection) -> None:
            connection.execute("DELETE FROM partners WHERE base_url = ?", (partner.base_url,))
            connection.execute(
                "INSERT INTO partners (base_url, name, country, document, approved, following,"
                " subscriber, added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    partner.base_url,
                    partner.name,
                    partner.country,
                    _dumps(partner.document),
                    int(partner.approved),
                    partner.following,
                    int(partner.subscriber),
                    partner.added_at,
                ),
            )

        await self._run(work)

    async def remove_partner(self, base_url: str) -> bool:
        def work(connection: sqlite3.Connection) -> bool:
            removed = connection.execute("DELETE FROM partners WHERE base_url = ?", (base_url,))
            connection.execute("DELETE FROM deliveries WHERE partner = ?", (base_url,))
            return removed.rowcount > 0

        return await self._run(work)

    async def get_partner(self, base_url: str) -> Partner | None:
        def work(connection: sqlite3.Connection) -> Partner | None:
            row = connection.execute(
                f"SELECT {_PARTNER_COLUMNS} FROM partners WHERE base_url = ?", (base_url,)
            ).fetchone()
            return None if row is None else _partner(row)

        return await self._run(work)

    async def list_partners(self) -> list[Partner]:
        def work(connection: sqlite3.Connection) -> list[Partner]:
            rows = connection.execute(
                f"SELECT {_PARTNER_COLUMNS} FROM partners ORDER BY base_url"
            ).fetchall()
            return [_partner(row) for row in rows]

        return await self._run(work)

    async def origin_state(self, base_url: str) -> OriginState | None:
        def work(connection: sqlite3.Connection) -> OriginState | None:
            return _MergeView(connection).origin_state(base_url)

        return await self._run(work)

    async def list_origin_states(self) -> list[OriginState]:
        def work(connection: sqlite3.Connection) -> list[OriginState]:
            rows = connection.execute(
                f"SELECT {_ORIGIN_COLUMNS} FROM origins ORDER BY base_url"
            ).fetchall()
            return [_origin(row) for row in rows]

        return await self._run(work)

    async def merge(self, plan: Callable[[MergeView], MergeWrite]) -> MergeWrite:
        """Apply ``plan``'s writes for one origin in one durable transaction."""

        def work(connection: sqlite3.Connection) -> MergeWrite:
            connection.execute("BEGIN IMMEDIATE")
            try:
                write = plan(_MergeView(connection))
                purged = _write_merge(connection, write)
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            if purged:
                _purge_index(connection)
                _scrub(connection)
            return write

        write = await self._run(work)
        if self.on_change is not None and write.objects:
            self.on_change()
        return write

    async def add_rejections(self, rejections: Sequence[Rejection]) -> None:
        def work(connection: sqlite3.Connection) -> None:
            _insert_rejections(connection, rejections)

        await self._run(work)

    async def list_rejections(self, limit: int = 100) -> list[Rejection]:
        def work(connection: sqlite3.Connection) -> list[Rejection]:
            rows = connection.execute(
                "SELECT origin, seq, reason, problem, at FROM rejections ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
            return [Rejection(*row) for row in rows]

        return await self._run(work)

    async def counts(self) -> Counts:
        def work(connection: sqlite3.Connection) -> Counts:
            objects = connection.execute(
                "SELECT origin, type, deleted, COUNT(*) FROM objects WHERE type <> 'Service'"
                " GROUP BY origin, type, deleted"
            ).fetchall()
            rejections = connection.execute(
                "SELECT origin, problem, COUNT(*) FROM rejections GROUP BY origin, problem"
            ).fetchall()
            return Counts(
                {(str(o), str(t), bool(d)): int(n) for o, t, d, n in objects},
                {(str(o), str(p)): int(n) for o, p, n in rejections},
            )

        return await self._run(work)

    async def received_entries(self, origin: str, start: int, end: int) -> list[str]:
        def work(connection: sqlite3.Connection) -> list[str]:
            rows = connection.execute(
                "SELECT entry FROM received WHERE origin = ? AND seq >= ? AND seq < ? ORDER BY seq",
                (origin, start, end),
            ).fetchall()
            return [str(row[0]) for row in rows]

        return await self._run(work)

    async def get_delivery(self, partner: str) -> DeliveryState | None:
        def work(connection: sqlite3.Connection) -> DeliveryState | None:
            row = connection.execute(
                "SELECT partner, delivered, attempts, next_attempt_at, breaker, last_error"
                " FROM deliveries WHERE partner = ?",
                (partner,),
            ).fetchone()
            return None if row is None else _delivery(row)

        return await self._run(work)

    async def list_deliveries(self) -> list[DeliveryState]:
        def work(connection: sqlite3.Connection) -> list[DeliveryState]:
            rows = connection.execute(
                "SELECT partner, delivered, attempts, next_attempt_at, breaker, last_error"
                " FROM deliveries ORDER BY partner"
            ).fetchall()
            return [_delivery(row) for row in rows]

        return await self._run(work)

    async def put_delivery(self, state: DeliveryState) -> None:
        def work(connection: sqlite3.Connection) -> None:
            connection.execute("DELETE FROM deliveries WHERE partner = ?", (state.partner,))
            connection.execute(
                "INSERT INTO deliveries (partner, delivered, attempts, next_attempt_at, breaker,"
                " last_error) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    state.partner,
                    state.delivered,
                    state.attempts,
                    state.next_attempt_at.isoformat(),
                    state.breaker,
                    state.last_error,
                ),
            )

        await self._run(work)


_PARTNER_COLUMNS = "base_url, name, country, document, approved, following, subscriber, added_at"
_ORIGIN_COLUMNS = (
    "base_url, next_seq, peaks, checkpoint_size, checkpoint_root, checkpoint_note, halted,"
    " halt_reason, evidence"
)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _partner(row: Sequence[Any]) -> Partner:
    base_url, name, country, document, approved, following, subscriber, added_at = row
    return Partner(
        base_url,
        name,
        country,
        json.loads(document),
        bool(approved),
        following,
        bool(subscriber),
        added_at,
    )


def _origin(row: Sequence[Any]) -> OriginState:
    base_url, next_seq, peaks, size, root_hash, note, halted, reason, evidence = row
    return OriginState(
        base_url,
        int(next_seq),
        tuple(bytes.fromhex(p) for p in json.loads(peaks)),
        int(size),
        bytes(root_hash),
        str(note),
        bool(halted),
        str(reason),
        tuple(json.loads(evidence)),
    )


def _delivery(row: Sequence[Any]) -> DeliveryState:
    partner, delivered, attempts, next_attempt_at, breaker, last_error = row
    return DeliveryState(
        partner,
        int(delivered),
        int(attempts),
        datetime.fromisoformat(next_attempt_at),
        breaker,
        last_error,
    )


class _MergeView:
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def origin_state(self, base_url: str) -> OriginState | None:
        row = self._connection.execute(
            f"SELECT {_ORIGIN_COLUMNS} FROM origins WHERE base_url = ?", (base_url,)
        ).fetchone()
        return None if row is None else _origin(row)

    def get_object(self, object_id: str) -> ObjectRecord | None:
        return _get_object(self._connection, object_id)

    def get_objects(self, object_ids: Sequence[str]) -> dict[str, ObjectRecord]:
        found: dict[str, ObjectRecord] = {}
        unique = sorted(set(object_ids))
        for offset in range(0, len(unique), 500):
            chunk = unique[offset : offset + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._connection.execute(
                f"SELECT id, origin, type, version, deleted, seq, body FROM objects"
                f" WHERE id IN ({marks})",
                chunk,
            ).fetchall()
            for row in rows:
                record = _record(row)
                found[record.id] = record
        return found


def _insert_rejections(connection: sqlite3.Connection, rejections: Sequence[Rejection]) -> None:
    connection.executemany(
        "INSERT INTO rejections (origin, seq, reason, problem, at) VALUES (?, ?, ?, ?, ?)",
        [(r.origin, r.seq, r.reason, r.problem, r.at) for r in rejections],
    )


def _redact(connection: sqlite3.Connection, append: Append) -> None:
    """Replace entries of the log by their Redacted form; their leaf hashes (and so every
    Merkle node and checkpoint) stay. Each erasure that redacts is a new generation, which
    tells page caches (in this process or another) what to drop."""
    (generation,) = connection.execute(
        "SELECT COALESCE(MAX(generation), 0) + 1 FROM redactions"
    ).fetchone()
    for redaction in append.redactions:
        cursor = connection.execute(
            "UPDATE log SET leaf = ? WHERE seq = ? AND leaf_hash = ?",
            (redaction.leaf, redaction.seq, redaction.leaf_hash),
        )
        if cursor.rowcount != 1:
            raise StoreError(f"the log has no entry {redaction.seq} with that leaf hash")
    connection.executemany(
        "INSERT INTO redactions (seq, generation) VALUES (?, ?)",
        [(redaction.seq, generation) for redaction in append.redactions],
    )


def _purge_received(connection: sqlite3.Connection, origin: str, object_ids: Sequence[str]) -> int:
    """protocol.md §7 rule 5: the merged entries of deleted objects keep no content. Returns
    how many entries were purged."""
    purged = 0
    for object_id in object_ids:
        rows = connection.execute(
            "SELECT seq, leaf_hash, entry FROM received WHERE origin = ? AND object_id = ?",
            (origin, object_id),
        ).fetchall()
        replacements = purged_rows(origin, [(int(s), bytes(h), str(e)) for s, h, e in rows])
        connection.executemany(
            "UPDATE received SET entry = ? WHERE origin = ? AND seq = ?",
            [(text, origin, seq) for seq, text in replacements],
        )
        purged += len(replacements)
    return purged


def _write_merge(connection: sqlite3.Connection, write: MergeWrite) -> int:
    """Write a merge; returns how many earlier entries were purged of their content."""
    state = write.origin
    connection.execute("DELETE FROM origins WHERE base_url = ?", (state.base_url,))
    connection.execute(
        f"INSERT INTO origins ({_ORIGIN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            state.base_url,
            state.next_seq,
            json.dumps([p.hex() for p in state.peaks]),
            state.checkpoint_size,
            state.checkpoint_root,
            state.checkpoint_note,
            int(state.halted),
            state.halt_reason,
            json.dumps(list(state.evidence)),
        ),
    )
    connection.executemany(
        "INSERT INTO received (origin, seq, leaf_hash, entry, object_id) VALUES (?, ?, ?, ?, ?)",
        [(state.base_url, *row) for row in write.received],
    )
    dropped = _put_objects(connection, write.objects)
    _insert_rejections(connection, write.rejections)
    if write.partner_document is not None:
        connection.execute(
            "UPDATE partners SET document = ? WHERE base_url = ?",
            (_dumps(write.partner_document), state.base_url),
        )
    return _purge_received(connection, state.base_url, write.purge) + int(dropped)
