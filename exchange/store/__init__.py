"""Storage: the narrow :class:`~exchange.store.base.Store` interface and its backends,
SQLite (the embedded default) and PostgreSQL (several workers on one database)."""

from __future__ import annotations

from exchange.config import Settings
from exchange.store.base import Append, AppendResult, Store, Transaction
from exchange.store.sqlite import SQLiteStore

__all__ = ["Append", "AppendResult", "SQLiteStore", "Store", "Transaction", "store_for"]


def store_for(settings: Settings) -> Store:
    """The node's store, not yet open: PostgreSQL when the settings name a database URL,
    else the SQLite file in the home."""
    if settings.database_url:
        from exchange.store.postgres import PostgresStore  # only nodes on PostgreSQL need it

        return PostgresStore(settings.database_url, settings.store_schema)
    return SQLiteStore(settings.database)
