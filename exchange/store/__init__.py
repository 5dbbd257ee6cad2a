"""Storage: the narrow :class:`~exchange.store.base.Store` interface and its backends."""

from exchange.store.base import Append, AppendResult, Store, Transaction
from exchange.store.sqlite import SQLiteStore

__all__ = ["Append", "AppendResult", "SQLiteStore", "Store", "Transaction"]
