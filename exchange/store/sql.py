"""What the SQL backends share: the queries, the append and merge transactions, and the
reads, written once over a small :class:`Db` interface.

A backend (:mod:`exchange.store.sqlite`, :mod:`exchange.store.postgres`) supplies the
connection plumbing: where work runs (:meth:`SQLStore._run`), how a write transaction is
begun so that writers are serialized (:meth:`SQLStore._transact`), its migrations, and what
it does after an erasure so that the content leaves its files. Statements are written with
``?`` placeholders and plain types; a backend whose driver uses another style translates
them (see :class:`Db`).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import orjson

from exchange.delivery import DeliveryState
from exchange.entries import ObjectRecord, purged_rows
from exchange.errors import StoreError
from exchange.faults import fault_point
from exchange.merkle import leaf_hash, perfect_subtrees_completed_by, root
from exchange.partners import OriginState, Partner, Rejection
from exchange.query import ObjectQuery, StoredObject, languages, search_text, updated_micros
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

__all__ = [
    "SPARSE_UPDATES",
    "Cursor",
    "Db",
    "SQLStore",
    "check_schema_version",
    "index_object",
    "purge_received",
    "put_objects",
]

T = TypeVar("T")


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Db(Protocol):
    """A connection as the shared code uses it: ``?`` placeholders, rows as sequences."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Any: ...


def check_schema_version(current: int | None, known: int) -> int:
    """The store's schema version (0: new); refuses a store newer than this exchange."""
    version = int(current or 0)
    if version > known:
        raise StoreError(
            f"the store has schema version {version}, newer than this exchange "
            f"({known}); upgrade exchange"
        )
    return version


# --- rows ----------------------------------------------------------------------------------

_OBJECT_COLUMNS = "id, origin, type, version, deleted, seq, body"
_STORED_COLUMNS = "id, type, origin, version, deleted, seq, received, change, body"
_PARTNER_COLUMNS = "base_url, name, country, document, approved, following, subscriber, added_at"
_ORIGIN_COLUMNS = (
    "base_url, next_seq, peaks, checkpoint_size, checkpoint_root, checkpoint_note, halted,"
    " halt_reason, evidence"
)
_DELIVERY_COLUMNS = "partner, delivered, attempts, next_attempt_at, breaker, last_error"


def _record(row: Sequence[Any]) -> ObjectRecord:
    object_id, origin, type_name, version, deleted, seq, body = row
    return ObjectRecord(
        object_id, origin, type_name, int(version), bool(deleted), int(seq), json.loads(body)
    )


def _stored(row: Sequence[Any]) -> StoredObject:
    object_id, type_name, origin, version, deleted, seq, received, change, body = row
    return StoredObject(
        object_id,
        type_name,
        origin,
        int(version),
        bool(deleted),
        int(seq),
        received,
        int(change),
        str(body),
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


def _micros(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


# --- objects and their index ------------------------------------------------------------

_PUT_OBJECT = (
    "INSERT INTO objects (id, origin, type, version, deleted, seq, body, received, change,"
    " updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET origin = excluded.origin, type = excluded.type,"
    " version = excluded.version, deleted = excluded.deleted, seq = excluded.seq,"
    " body = excluded.body, received = excluded.received, change = excluded.change,"
    " updated = excluded.updated"
)


def _index_rows(
    indexed: Mapping[int, Mapping[str, Any]],
) -> tuple[list[tuple[str, int]], list[tuple[int, str]]]:
    """The language and text index rows of listed objects, by change number."""
    languages_rows = [
        (lang, change) for change, body in indexed.items() for lang in sorted(languages(body))
    ]
    text_rows = [(change, search_text(body)) for change, body in indexed.items()]
    return languages_rows, text_rows


def index_object(db: Db, change: int, body: Mapping[str, Any]) -> None:
    """Index a listed object's languages and text under its change number."""
    languages_rows, text_rows = _index_rows({change: body})
    db.executemany("INSERT INTO object_languages (lang, change) VALUES (?, ?)", languages_rows)
    db.executemany("INSERT INTO object_text (rowid, text) VALUES (?, ?)", text_rows)


def _objects_rows(db: Db, columns: str, object_ids: Sequence[str]) -> list[Any]:
    """``columns`` of the stored objects among ``object_ids`` (the first column must be
    ``id``), in one read per 500 of them."""
    found: list[Any] = []
    unique = sorted(set(object_ids))
    for offset in range(0, len(unique), 500):
        chunk = unique[offset : offset + 500]
        found += db.execute(
            f"SELECT {columns} FROM objects WHERE id IN ({_marks(chunk)})", chunk
        ).fetchall()
    return found


def _marks(values: Sequence[Any]) -> str:
    return ",".join("?" * len(values))


def put_objects(db: Db, records: Sequence[ObjectRecord]) -> bool:
    """Write the objects' new state; each new version takes the next change number and the
    time now as ``received``, and its index rows. Returns True when indexed text was
    dropped for an object now deleted (a backend may keep its words in free space until it
    cleans up: see :meth:`SQLStore._after_erasure`). Runs in a serialized write.

    The records are applied in order, each over the state the ones before it left, as if
    written one at a time; the rows are written in a few batched statements (one read of
    the stored versions, then deletes of replaced index rows, object rows, index rows), so
    that a backend reached over the network pays a few round trips per batch, not per
    object."""
    received = format_timestamp(datetime.now(UTC))
    (change,) = db.execute("SELECT COALESCE(MAX(change), 0) FROM objects").fetchone()
    change = int(change)
    current = {
        str(object_id): (int(stored), int(version), int(deleted), str(body), str(type_name))
        for object_id, stored, version, deleted, body, type_name in _objects_rows(
            db, "id, change, version, deleted, body, type", [record.id for record in records]
        )
    }
    object_rows: list[tuple[Any, ...]] = []
    indexed: dict[int, Mapping[str, Any]] = {}  # the listed versions written here, by change
    unindexed: list[tuple[int]] = []  # the stored versions whose index rows go
    dropped = False
    for record in records:
        body = orjson.dumps(record.body).decode()
        old = current.get(record.id)
        if old is not None:
            old_change, old_version, old_deleted, old_body, old_type = old
            if (old_version, bool(old_deleted), old_body) == (record.version, record.deleted, body):
                continue  # the same version again (rule 3): it keeps its place
            if old_type != "Service" and not old_deleted:
                if old_change in indexed:  # written by an earlier record of this batch
                    del indexed[old_change]
                else:
                    unindexed.append((old_change,))
                dropped = dropped or record.deleted
        change += 1
        current[record.id] = (change, record.version, int(record.deleted), body, record.type)
        object_rows.append(
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
            )
        )
        if record.type != "Service" and not record.deleted:
            indexed[change] = record.body
    db.executemany("DELETE FROM object_languages WHERE change = ?", unindexed)
    db.executemany("DELETE FROM object_text WHERE rowid = ?", unindexed)
    db.executemany(_PUT_OBJECT, object_rows)
    languages_rows, text_rows = _index_rows(indexed)
    db.executemany("INSERT INTO object_languages (lang, change) VALUES (?, ?)", languages_rows)
    db.executemany("INSERT INTO object_text (rowid, text) VALUES (?, ?)", text_rows)
    return dropped


def _get_object(db: Db, object_id: str) -> ObjectRecord | None:
    row = db.execute(f"SELECT {_OBJECT_COLUMNS} FROM objects WHERE id = ?", (object_id,)).fetchone()
    return None if row is None else _record(row)


def _log_size(db: Db) -> int:
    return int(db.execute("SELECT COALESCE(MAX(seq) + 1, 0) FROM log").fetchone()[0])


class _Transaction:
    def __init__(self, db: Db) -> None:
        self._db = db
        self._size = _log_size(db)
        #: The Merkle nodes this append completed (written with its entries, in one batch).
        self._completed: dict[tuple[int, int], bytes] = {}

    @property
    def size(self) -> int:
        return self._size

    def get_object(self, object_id: str) -> ObjectRecord | None:
        return _get_object(self._db, object_id)

    def perfect(self, level: int, index: int) -> bytes:
        completed = self._completed.get((level, index))
        if completed is not None:
            return completed
        row = self._db.execute(
            "SELECT hash FROM merkle WHERE level = ? AND idx = ?", (level, index)
        ).fetchone()
        if row is None:
            raise StoreError(f"Merkle node ({level}, {index}) is missing: the store is damaged")
        return bytes(row[0])

    def complete(self, subtrees: Sequence[tuple[int, int, bytes]]) -> None:
        """Record the Merkle nodes the entry being appended completes."""
        for level, index, value in subtrees:
            self._completed[(level, index)] = value

    def entries_of(self, object_id: str) -> list[tuple[int, bytes, bytes]]:
        rows = self._db.execute(
            "SELECT seq, leaf, leaf_hash FROM log WHERE object_id = ? ORDER BY seq", (object_id,)
        ).fetchall()
        return [(int(seq), bytes(leaf), bytes(hashed)) for seq, leaf, hashed in rows]


class _MergeView:
    def __init__(self, db: Db) -> None:
        self._db = db

    def origin_state(self, base_url: str) -> OriginState | None:
        row = self._db.execute(
            f"SELECT {_ORIGIN_COLUMNS} FROM origins WHERE base_url = ?", (base_url,)
        ).fetchone()
        return None if row is None else _origin(row)

    def get_object(self, object_id: str) -> ObjectRecord | None:
        return _get_object(self._db, object_id)

    def get_objects(self, object_ids: Sequence[str]) -> dict[str, ObjectRecord]:
        records = map(_record, _objects_rows(self._db, _OBJECT_COLUMNS, object_ids))
        return {record.id: record for record in records}


# --- the append and merge transactions --------------------------------------------------


def _append(
    db: Db, plan: Callable[[Transaction], Append], sign_checkpoint: Callable[[int, bytes], str]
) -> AppendResult:
    transaction = _Transaction(db)
    append = plan(transaction)
    size = transaction.size
    if append.redactions:
        _redact(db, append)
    # The entries and the Merkle nodes they complete are written in one batch each: a
    # node completed by this append is read back from the transaction, not the database.
    log_rows: list[tuple[int, str, bytes, bytes]] = []
    merkle_rows: list[tuple[int, int, bytes]] = []
    for offset, entry in enumerate(append.entries):
        if entry.seq != size + offset:
            raise StoreError(f"entry seq {entry.seq} does not follow log size {size + offset}")
        hashed = leaf_hash(entry.leaf)
        log_rows.append((entry.seq, entry.object_id, entry.leaf, hashed))
        completed = perfect_subtrees_completed_by(transaction, entry.seq, hashed)
        transaction.complete(completed)
        merkle_rows += completed
    db.executemany(
        "INSERT INTO log (seq, object_id, leaf, leaf_hash) VALUES (?, ?, ?, ?)", log_rows
    )
    db.executemany("INSERT INTO merkle (level, idx, hash) VALUES (?, ?, ?)", merkle_rows)
    put_objects(db, append.objects)
    new_size = size + len(append.entries)
    new_root = root(transaction, new_size)
    row = db.execute("SELECT note FROM checkpoints WHERE size = ?", (new_size,)).fetchone()
    if row is None:  # a new size (or the empty log's first start): sign its checkpoint
        note = sign_checkpoint(new_size, new_root)
        db.execute(
            "INSERT INTO checkpoints (size, root, note) VALUES (?, ?, ?)",
            (new_size, new_root, note),
        )
    else:
        note = str(row[0])
    return AppendResult(append, new_size, new_root, note)


def _redact(db: Db, append: Append) -> None:
    """Replace entries of the log by their Redacted form; their leaf hashes (and so every
    Merkle node and checkpoint) stay. Each erasure that redacts is a new generation, which
    tells page caches (in this process or another) what to drop."""
    (generation,) = db.execute("SELECT COALESCE(MAX(generation), 0) + 1 FROM redactions").fetchone()
    for redaction in append.redactions:
        cursor = db.execute(
            "UPDATE log SET leaf = ? WHERE seq = ? AND leaf_hash = ?",
            (redaction.leaf, redaction.seq, redaction.leaf_hash),
        )
        if cursor.rowcount != 1:
            raise StoreError(f"the log has no entry {redaction.seq} with that leaf hash")
    db.executemany(
        "INSERT INTO redactions (seq, generation) VALUES (?, ?)",
        [(redaction.seq, int(generation)) for redaction in append.redactions],
    )


def purge_received(db: Db, origin: str, object_ids: Sequence[str]) -> int:
    """protocol.md §7 rule 5: the merged entries of deleted objects keep no content. Returns
    how many entries were purged."""
    purged = 0
    for object_id in object_ids:
        rows = db.execute(
            "SELECT seq, leaf_hash, entry FROM received WHERE origin = ? AND object_id = ?",
            (origin, object_id),
        ).fetchall()
        replacements = purged_rows(origin, [(int(s), bytes(h), str(e)) for s, h, e in rows])
        db.executemany(
            "UPDATE received SET entry = ? WHERE origin = ? AND seq = ?",
            [(text, origin, seq) for seq, text in replacements],
        )
        purged += len(replacements)
    return purged


def _insert_rejections(db: Db, rejections: Sequence[Rejection]) -> None:
    db.executemany(
        "INSERT INTO rejections (origin, seq, reason, problem, at) VALUES (?, ?, ?, ?, ?)",
        [(r.origin, r.seq, r.reason, r.problem, r.at) for r in rejections],
    )


def _write_merge(db: Db, write: MergeWrite) -> int:
    """Write a merge; returns how many earlier entries were purged of their content."""
    state = write.origin
    db.execute("DELETE FROM origins WHERE base_url = ?", (state.base_url,))
    db.execute(
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
    db.executemany(
        "INSERT INTO received (origin, seq, leaf_hash, entry, object_id) VALUES (?, ?, ?, ?, ?)",
        [(state.base_url, *row) for row in write.received],
    )
    dropped = put_objects(db, write.objects)
    _insert_rejections(db, write.rejections)
    if write.partner_document is not None:
        db.execute(
            "UPDATE partners SET document = ? WHERE base_url = ?",
            (_dumps(write.partner_document), state.base_url),
        )
    return purge_received(db, state.base_url, write.purge) + int(dropped)


# --- the object query ---------------------------------------------------------------------

#: Below this many objects updated since the asked time, the ``updated`` index drives the
#: query (and its matches are sorted); above it, the walk in change order finds a page soon.
SPARSE_UPDATES = 5000


def object_query_sql(
    query: ObjectQuery, *, fts: bool, index_hints: bool, sparse_updates: bool = False
) -> tuple[str, list[Any]]:
    """The SELECT of one page, in change order (the cursor). What drives it, so that a page
    costs what it returns and not the size of the store: the full-text index (SQLite FTS5,
    whose rowids are change numbers, read in order) when there is free text; else the
    languages' index (lang, change) for ``lang``; else the ``updated`` index when few
    objects match ``updated_since`` (with ``index_hints``, SQLite's INDEXED BY and CROSS
    JOIN name the index and the join order; PostgreSQL's planner chooses them); else
    the objects table in change order. Without FTS5 the folded text is searched with LIKE,
    which gives the same answers."""
    clauses, parameters = ["o.type <> 'Service'"], list[Any]()
    source, order = "objects o", "o.change"
    join = "CROSS JOIN" if index_hints else "JOIN"  # SQLite: CROSS JOIN fixes the join order
    lang_clause = (
        "EXISTS (SELECT 1 FROM object_languages l WHERE l.lang = ? AND l.change = o.change)"
    )
    if query.terms and fts:
        source, order = (
            f"object_text {join} objects o ON o.change = object_text.rowid",
            ("object_text.rowid"),
        )
        clauses.append("object_text MATCH ?")
        parameters.append(" AND ".join(f'"{term}"*' for term in query.terms))
        if query.lang is not None:
            clauses.append(lang_clause)
            parameters.append(query.lang)
    elif query.lang is not None:
        source, order = f"object_languages l {join} objects o ON o.change = l.change", "l.change"
        clauses.append("l.lang = ?")
        parameters.append(query.lang)
    elif query.updated_since_us is not None and sparse_updates and index_hints:
        source = "objects o INDEXED BY objects_by_updated"
    if query.terms and not fts:
        likes = " AND ".join("(' ' || t.text) LIKE ? ESCAPE '\\'" for _ in query.terms)
        clauses.append(f"o.change IN (SELECT t.rowid FROM object_text t WHERE {likes})")
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


# --- the store ------------------------------------------------------------------------------


class SQLStore(ABC):
    """The :class:`~exchange.store.base.Store` over SQL; a backend supplies the plumbing."""

    #: SQLite FTS5 drives free-text queries (else the LIKE search over the folded text).
    _fts = False
    #: The backend understands SQLite's ``INDEXED BY``.
    _index_hints = False
    #: What a backend appends to a SELECT that claims a row another worker may be claiming.
    _skip_locked = ""

    def __init__(self) -> None:
        #: Called (on the event loop) after every append or merge: wakes the RDF view.
        self.on_change: Callable[[], None] | None = None

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def _run(self, work: Callable[[Db], T]) -> T:
        """Run ``work`` off the event loop, each statement on its own (reads)."""

    @abstractmethod
    async def _transact(self, work: Callable[[Db], T], *, serialize: bool = True) -> T:
        """Run ``work`` in one durable transaction. With ``serialize`` it is the only
        writer of the store while it runs, in this process or any other: what it read
        stays true until it commits (log size, change numbers, origin states)."""

    def _after_erasure(self, db: Db) -> None:  # noqa: B027 - a backend may need nothing
        """After a committed write that redacted or purged content: make the backend drop
        its copies of the old content (free pages, journal) where it can."""

    async def _erasing(self, work: Callable[[Db], T], erased: Callable[[T], bool]) -> T:
        result = await self._transact(work)
        if erased(result):
            await self._run(self._after_erasure)
        return result

    # --- writes ----------------------------------------------------------------------------

    async def append(
        self,
        plan: Callable[[Transaction], Append],
        sign_checkpoint: Callable[[int, bytes], str],
    ) -> AppendResult:
        def work(db: Db) -> AppendResult:
            result = _append(db, plan, sign_checkpoint)
            fault_point("append.in_transaction")
            return result

        result = await self._erasing(work, lambda done: bool(done.append.redactions))
        if self.on_change is not None and (result.append.objects or result.append.redactions):
            self.on_change()
        return result

    async def merge(self, plan: Callable[[MergeView], MergeWrite]) -> MergeWrite:
        """Apply ``plan``'s writes for one origin in one durable transaction."""

        def work(db: Db) -> tuple[MergeWrite, int]:
            write = plan(_MergeView(db))
            purged = _write_merge(db, write)
            fault_point("merge.in_transaction")
            return write, purged

        write, _ = await self._erasing(work, lambda done: done[1] > 0)
        if self.on_change is not None and write.objects:
            self.on_change()
        return write

    # --- reads -----------------------------------------------------------------------------

    async def _one(self, sql: str, parameters: Sequence[Any] = ()) -> Any:
        def work(db: Db) -> Any:
            return db.execute(sql, parameters).fetchone()

        return await self._run(work)

    async def _all(self, sql: str, parameters: Sequence[Any] = ()) -> list[Any]:
        def work(db: Db) -> list[Any]:
            return list(db.execute(sql, parameters).fetchall())

        return await self._run(work)

    async def log_size(self) -> int:
        return await self._run(_log_size)

    async def entries(self, start: int, end: int) -> list[bytes]:
        rows = await self._all(
            "SELECT leaf FROM log WHERE seq >= ? AND seq < ? ORDER BY seq", (start, end)
        )
        return [bytes(row[0]) for row in rows]

    async def page(self, start: int, end: int) -> tuple[list[bytes], list[bytes], list[int]]:
        """The leaves of entries ``[start, end)``, their leaf hashes and the seqs among them
        that an erasure redacted, in one read."""
        rows = await self._all(
            "SELECT log.leaf, log.leaf_hash, redactions.seq FROM log"
            " LEFT JOIN redactions ON redactions.seq = log.seq"
            " WHERE log.seq >= ? AND log.seq < ? ORDER BY log.seq",
            (start, end),
        )
        redacted = [int(row[2]) for row in rows if row[2] is not None]
        return [bytes(row[0]) for row in rows], [bytes(row[1]) for row in rows], redacted

    async def redactions_since(self, generation: int | None) -> tuple[int, list[int]]:
        def work(db: Db) -> tuple[int, list[int]]:
            (current,) = db.execute(
                "SELECT COALESCE(MAX(generation), 0) FROM redactions"
            ).fetchone()
            if current == generation:
                return int(current), []
            rows = db.execute(
                "SELECT seq FROM redactions WHERE generation > ? ORDER BY seq",
                (-1 if generation is None else generation,),
            ).fetchall()
            return int(current), [int(row[0]) for row in rows]

        return await self._run(work)

    async def subtrees(
        self, coordinates: Sequence[tuple[int, int]]
    ) -> dict[tuple[int, int], bytes]:
        wanted = sorted(set(coordinates))

        def work(db: Db) -> dict[tuple[int, int], bytes]:
            found: dict[tuple[int, int], bytes] = {}
            for level, index in wanted:
                row = db.execute(
                    "SELECT hash FROM merkle WHERE level = ? AND idx = ?", (level, index)
                ).fetchone()
                if row is None:
                    raise StoreError(f"Merkle node ({level}, {index}) is missing")
                found[(level, index)] = bytes(row[0])
            return found

        return await self._run(work)

    async def latest_checkpoint(self) -> tuple[int, str] | None:
        row = await self._one("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1")
        return None if row is None else (int(row[0]), str(row[1]))

    async def list_checkpoints(self, up_to: int) -> list[tuple[int, str]]:
        rows = await self._all(
            "SELECT size, note FROM checkpoints WHERE size <= ? ORDER BY size", (up_to,)
        )
        return [(int(size), str(note)) for size, note in rows]

    async def checkpoint(self, size: int) -> str | None:
        row = await self._one("SELECT note FROM checkpoints WHERE size = ?", (size,))
        return None if row is None else str(row[0])

    async def get_object(self, object_id: str) -> ObjectRecord | None:
        def work(db: Db) -> ObjectRecord | None:
            return _get_object(db, object_id)

        return await self._run(work)

    async def list_objects(
        self, *, origin: str | None, type_name: str | None, after: str | None, limit: int
    ) -> ObjectPage:
        # The node's own node document (id B, type Service) is key state, not an object.
        clauses, parameters = ["deleted = 0", "type <> 'Service'"], list[Any]()
        for column, value in (("origin", origin), ("type", type_name)):
            if value is not None:
                clauses.append(f"{column} = ?")
                parameters.append(value)
        if after is not None:
            clauses.append("id > ?")
            parameters.append(after)
        rows = await self._all(
            f"SELECT {_OBJECT_COLUMNS} FROM objects WHERE {' AND '.join(clauses)}"
            " ORDER BY id LIMIT ?",
            (*parameters, limit + 1),
        )
        items = [_record(row) for row in rows[:limit]]
        return ObjectPage(items, items[-1].id if len(rows) > limit else None)

    async def query_objects(self, query: ObjectQuery) -> QueryPage:
        hint = " INDEXED BY objects_by_updated" if self._index_hints else ""

        def work(db: Db) -> QueryPage:
            sparse = False
            if query.updated_since_us is not None:
                (matches,) = db.execute(
                    f"SELECT COUNT(*) FROM (SELECT 1 FROM objects{hint}"
                    " WHERE updated >= ? LIMIT ?) AS recent",
                    (query.updated_since_us, SPARSE_UPDATES + 1),
                ).fetchone()
                sparse = matches <= SPARSE_UPDATES
            sql, parameters = object_query_sql(
                query, fts=self._fts, index_hints=self._index_hints, sparse_updates=sparse
            )
            rows = db.execute(sql, parameters).fetchall()
            items = [_stored(row) for row in rows[: query.limit]]
            return QueryPage(items, items[-1].change if len(rows) > query.limit else None)

        return await self._run(work)

    async def get_stored(self, object_id: str) -> StoredObject | None:
        row = await self._one(
            f"SELECT {_STORED_COLUMNS} FROM objects WHERE id = ? AND type <> 'Service'",
            (object_id,),
        )
        return None if row is None else _stored(row)

    async def last_change(self) -> int:
        """The change number of the object row written last (0: none yet)."""
        row = await self._one("SELECT COALESCE(MAX(change), 0) FROM objects")
        return int(row[0])

    async def changed_objects(self, after: int, limit: int) -> list[tuple[int, ObjectRecord]]:
        """Object rows (every type, deleted ones too) whose change number is above
        ``after``, in change order, each with its number (the RDF view follows them)."""
        rows = await self._all(
            f"SELECT change, {_OBJECT_COLUMNS} FROM objects WHERE change > ?"
            " ORDER BY change LIMIT ?",
            (after, limit),
        )
        return [(int(row[0]), _record(row[1:])) for row in rows]

    # --- federation: partners, origins, merged entries, rejections, deliveries -----------

    async def put_partner(self, partner: Partner) -> None:
        def work(db: Db) -> None:
            db.execute(
                f"INSERT INTO partners ({_PARTNER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (base_url) DO UPDATE SET name = excluded.name,"
                " country = excluded.country, document = excluded.document,"
                " approved = excluded.approved, following = excluded.following,"
                " subscriber = excluded.subscriber, added_at = excluded.added_at",
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

        await self._transact(work, serialize=False)

    async def remove_partner(self, base_url: str) -> bool:
        def work(db: Db) -> bool:
            removed = db.execute("DELETE FROM partners WHERE base_url = ?", (base_url,))
            db.execute("DELETE FROM deliveries WHERE partner = ?", (base_url,))
            return removed.rowcount > 0

        return await self._transact(work, serialize=False)

    async def get_partner(self, base_url: str) -> Partner | None:
        row = await self._one(
            f"SELECT {_PARTNER_COLUMNS} FROM partners WHERE base_url = ?", (base_url,)
        )
        return None if row is None else _partner(row)

    async def list_partners(self) -> list[Partner]:
        rows = await self._all(f"SELECT {_PARTNER_COLUMNS} FROM partners ORDER BY base_url")
        return [_partner(row) for row in rows]

    async def partner_urls(self) -> list[str]:
        rows = await self._all("SELECT base_url FROM partners ORDER BY base_url")
        return [str(row[0]) for row in rows]

    async def origin_state(self, base_url: str) -> OriginState | None:
        def work(db: Db) -> OriginState | None:
            return _MergeView(db).origin_state(base_url)

        return await self._run(work)

    async def list_origin_states(self) -> list[OriginState]:
        rows = await self._all(f"SELECT {_ORIGIN_COLUMNS} FROM origins ORDER BY base_url")
        return [_origin(row) for row in rows]

    async def add_rejections(self, rejections: Sequence[Rejection]) -> None:
        def work(db: Db) -> None:
            _insert_rejections(db, rejections)

        await self._transact(work, serialize=False)

    async def list_rejections(self, limit: int = 100) -> list[Rejection]:
        rows = await self._all(
            "SELECT origin, seq, reason, problem, at FROM rejections ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [Rejection(*row) for row in rows]

    async def counts(self) -> Counts:
        def work(db: Db) -> Counts:
            objects = db.execute(
                "SELECT origin, type, deleted, COUNT(*) FROM objects WHERE type <> 'Service'"
                " GROUP BY origin, type, deleted"
            ).fetchall()
            rejections = db.execute(
                "SELECT origin, problem, COUNT(*) FROM rejections GROUP BY origin, problem"
            ).fetchall()
            return Counts(
                {(str(o), str(t), bool(d)): int(n) for o, t, d, n in objects},
                {(str(o), str(p)): int(n) for o, p, n in rejections},
            )

        return await self._run(work)

    async def received_entries(self, origin: str, start: int, end: int) -> list[str]:
        rows = await self._all(
            "SELECT entry FROM received WHERE origin = ? AND seq >= ? AND seq < ? ORDER BY seq",
            (origin, start, end),
        )
        return [str(row[0]) for row in rows]

    async def get_delivery(self, partner: str) -> DeliveryState | None:
        row = await self._one(
            f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE partner = ?", (partner,)
        )
        return None if row is None else _delivery(row)

    async def list_deliveries(self) -> list[DeliveryState]:
        rows = await self._all(f"SELECT {_DELIVERY_COLUMNS} FROM deliveries ORDER BY partner")
        return [_delivery(row) for row in rows]

    async def put_delivery(self, state: DeliveryState) -> None:
        """Write the delivery state; this ends any lease on it (see :meth:`lease_delivery`)."""

        def work(db: Db) -> None:
            db.execute(
                f"INSERT INTO deliveries ({_DELIVERY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (partner) DO UPDATE SET delivered = excluded.delivered,"
                " attempts = excluded.attempts, next_attempt_at = excluded.next_attempt_at,"
                " breaker = excluded.breaker, last_error = excluded.last_error,"
                " lease_owner = '', lease_until = 0",
                (
                    state.partner,
                    state.delivered,
                    state.attempts,
                    state.next_attempt_at.isoformat(),
                    state.breaker,
                    state.last_error,
                ),
            )

        await self._transact(work, serialize=False)

    async def lease_delivery(
        self,
        partner: str,
        owner: str,
        now: datetime,
        until: datetime,
        abandoned: Callable[[str], bool] | None = None,
    ) -> DeliveryState | None:
        """Take the push to ``partner`` for ``owner`` until ``until``, unless another worker
        holds an unexpired lease on it that ``abandoned`` does not say was abandoned (or is
        taking one this instant: that row is skipped, not waited for). None when it is not
        ``owner``'s to push now."""

        def work(db: Db) -> DeliveryState | None:
            row = db.execute(
                f"SELECT {_DELIVERY_COLUMNS}, lease_owner, lease_until FROM deliveries"
                " WHERE partner = ?" + self._skip_locked,
                (partner,),
            ).fetchone()
            if row is None:
                return None
            *columns, holder, lease_until = row
            held = int(lease_until) > _micros(now) and holder != owner
            if held and (abandoned is None or not abandoned(str(holder))):
                return None
            db.execute(
                "UPDATE deliveries SET lease_owner = ?, lease_until = ? WHERE partner = ?",
                (owner, _micros(until), partner),
            )
            return _delivery(columns)

        return await self._transact(work, serialize=False)
