"""Node settings: ``exchange.toml`` in the node's home plus ``EXCHANGE_*`` variables.

Loaded once, validated, frozen, and passed explicitly; nothing reads the environment later.
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from exchange.errors import UsageError

__all__ = [
    "CONFIG_FILE",
    "LOG_FORMATS",
    "PERSONAL_DATA_POLICIES",
    "Settings",
    "check_settings",
    "home_from",
    "load_settings",
    "log_origin",
    "render_config",
    "validate_base_url",
]

CONFIG_FILE = "exchange.toml"
#: none: strip every node marked personalData; public-roles: strip contact points marked
#: personalData, keep people named in a public role; all: publish everything.
PERSONAL_DATA_POLICIES = ("none", "public-roles", "all")
#: How ``exchange serve`` writes its log: text for people, json (one object a line) for
#: log collectors.
LOG_FORMATS = ("text", "json")
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def validate_base_url(url: str) -> str:
    """protocol.md §1: https, or http on a loopback address; no trailing slash, no query."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UsageError(f"base URL {url!r} must be an absolute https URL")
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK_HOSTS:
        raise UsageError(f"base URL {url!r}: http is allowed only on loopback addresses")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise UsageError(f"base URL {url!r} must not have a query, fragment or user")
    if url.endswith("/"):
        raise UsageError(f"base URL {url!r} must not end with a slash")
    return url


def log_origin(base_url: str) -> str:
    """protocol.md §1: the base URL without its scheme."""
    return base_url.split("://", 1)[1]


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a node needs to run, resolved to absolute paths."""

    home: Path
    base_url: str
    name: str
    language: str
    country: str
    active_key: str
    token_sha256: str
    database: Path
    #: A PostgreSQL URL (``postgresql://user@host:5432/db``): the store lives there and
    #: several workers may share it. Empty: the SQLite file ``database``.
    database_url: str = ""
    #: The PostgreSQL schema of this node's tables; empty: ``exchange_`` and a digest of
    #: the home's path (see :attr:`store_schema`).
    database_schema: str = ""
    host: str = "127.0.0.1"
    port: int = 8080
    page_size: int = 100
    personal_data: str = "public-roles"
    max_body_bytes: int = 8 * 1024 * 1024
    max_entry_bytes: int = 256 * 1024
    max_clock_skew_s: int = 300
    page_cache_bytes: int = 32 * 1024 * 1024
    sync_interval_s: float = 60.0
    delivery_interval_s: float = 0.25
    push_timeout_s: float = 10.0
    #: One fetch from a partner (a feed page, a checkpoint, a proof, a node document) may
    #: take this long in all, however slowly the partner sends: a partner dripping bytes
    #: ends the pull with a FetchError instead of holding it.
    fetch_timeout_s: float = 30.0
    inbox_requests_per_minute: int = 600
    #: Worker processes that verify pulled pages (0: verify in the node's own process).
    verify_workers: int = 0
    #: How often, at most, one origin's checkpoint is compared with what the other partners
    #: hold of it (protocol.md §5 gossip); 0: at every pull.
    gossip_interval_s: float = 300.0
    #: Let nodes that are not partners ask to follow (the operator approves each one).
    open_follow_requests: bool = False
    #: Also fetch the node documents of strangers on private or loopback addresses
    #: (development and tests only: it opens the inbox to SSRF against the local network).
    unsafe_private_follow_requests: bool = False
    #: SPARQL: a query running longer is answered 503 (problem sparql-timeout).
    sparql_timeout_s: float = 5.0
    #: SPARQL: a query with more solutions (or triples) is refused, 400 (sparql-refused).
    sparql_max_results: int = 10_000
    #: ``GET B/metrics`` needs the operator token (``Authorization: Bearer``); False opens
    #: it to anyone who can reach the node.
    metrics_token_required: bool = True
    #: One of LOG_FORMATS.
    log_format: str = "text"
    #: Seconds added to this node's clock where it signs and checks ``created`` (entries,
    #: HTTP signatures, keys): a wrong clock, simulated. Only the fault campaign
    #: (bench/faults.py) sets it, through ``EXCHANGE_CLOCK_SKEW_S``; never in exchange.toml.
    clock_skew_s: float = 0.0
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def origin(self) -> str:
        return log_origin(self.base_url)

    def now(self) -> datetime:
        """This node's clock: UTC now, shifted by :attr:`clock_skew_s`."""
        return datetime.now(UTC) + timedelta(seconds=self.clock_skew_s)

    @property
    def key_dir(self) -> Path:
        return self.home / "keys"

    @property
    def page_dir(self) -> Path:
        """Where full feed pages are cached on disk (a cache: it may be deleted)."""
        return self.home / "pages"

    @property
    def store_schema(self) -> str:
        """The PostgreSQL schema of the store: ``database_schema``, else one of this home's
        own, so that nodes sharing a database never share tables by accident (the workers
        of one node share its home's configuration, and so its schema)."""
        if self.database_schema:
            return self.database_schema
        digest = hashlib.sha256(str(self.home.resolve()).encode()).hexdigest()[:16]
        return f"exchange_{digest}"

    def key_id(self, name: str) -> str:
        return f"{self.base_url}/keys/{name}"

    @property
    def path_prefix(self) -> str:
        """The path of the base URL, under which every route of the node lives."""
        return urlsplit(self.base_url).path


def home_from(option: str | None, environ: Mapping[str, str]) -> Path:
    """The node's home: ``--home`` first, then ``EXCHANGE_HOME``."""
    value = option or environ.get("EXCHANGE_HOME")
    if not value:
        raise UsageError("no node home: give --home DIR or set EXCHANGE_HOME")
    return Path(value).expanduser().resolve()


def _get(table: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    value = table.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise UsageError(f"{where}: {key} must be a {kind.__name__}")
    return value


def _flag(table: Mapping[str, Any], key: str, default: bool, where: str) -> bool:
    return default if key not in table else bool(_get(table, key, bool, where))


def load_settings(home: Path, environ: Mapping[str, str]) -> Settings:
    """Read ``exchange.toml`` in ``home`` and apply ``EXCHANGE_*`` overrides."""
    path = home / CONFIG_FILE
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: no node here; run 'exchange init' first") from None
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"{path}: {error}") from None
    where = str(path)
    node = data.get("node", {})
    server = data.get("server", {})
    store = data.get("store", {})
    privacy = data.get("privacy", {})
    operations = data.get("operations", {})
    settings = Settings(
        home=home,
        base_url=validate_base_url(_get(node, "base_url", str, where)),
        name=_get(node, "name", str, where),
        language=_get(node, "language", str, where),
        country=_get(node, "country", str, where),
        active_key=_get(data.get("keys", {}), "active", str, where),
        token_sha256=_get(data.get("operator", {}), "token_sha256", str, where),
        database=home / _get(store, "database", str, where),
        database_url=str(store.get("url", "")),
        database_schema=str(store.get("schema", "")),
        host=server.get("host", "127.0.0.1"),
        port=int(server.get("port", 8080)),
        page_size=int(node.get("page_size", 100)),
        personal_data=privacy.get("personal_data", "public-roles"),
        open_follow_requests=bool(data.get("federation", {}).get("open_follow_requests", False)),
        verify_workers=int(data.get("federation", {}).get("verify_workers", os.cpu_count() or 1)),
        gossip_interval_s=_seconds(data.get("federation", {}).get("gossip_interval_s", 300.0)),
        fetch_timeout_s=_seconds(data.get("federation", {}).get("fetch_timeout_s", 30.0)),
        inbox_requests_per_minute=_count(
            data.get("federation", {}).get("inbox_requests_per_minute", 600)
        ),
        sparql_timeout_s=_seconds(data.get("sparql", {}).get("timeout_s", 5.0)),
        sparql_max_results=_count(data.get("sparql", {}).get("max_results", 10_000)),
        metrics_token_required=_flag(operations, "metrics_token_required", True, where),
        log_format=operations.get("log_format", "text"),
    )
    overrides: dict[str, Any] = {}
    overrides.update(database_overrides(environ))
    overrides.update(clock_overrides(environ))
    if "EXCHANGE_HOST" in environ:
        overrides["host"] = environ["EXCHANGE_HOST"]
    if "EXCHANGE_PORT" in environ:
        overrides["port"] = _port(environ["EXCHANGE_PORT"])
    if "EXCHANGE_VERIFY_WORKERS" in environ:
        overrides["verify_workers"] = int(environ["EXCHANGE_VERIFY_WORKERS"])
    if "EXCHANGE_GOSSIP_INTERVAL_S" in environ:
        overrides["gossip_interval_s"] = _seconds(environ["EXCHANGE_GOSSIP_INTERVAL_S"])
    if "EXCHANGE_FETCH_TIMEOUT_S" in environ:
        overrides["fetch_timeout_s"] = _seconds(environ["EXCHANGE_FETCH_TIMEOUT_S"])
    if "EXCHANGE_INBOX_REQUESTS_PER_MINUTE" in environ:
        overrides["inbox_requests_per_minute"] = _count(
            environ["EXCHANGE_INBOX_REQUESTS_PER_MINUTE"]
        )
    if "EXCHANGE_SYNC_INTERVAL_S" in environ:
        overrides["sync_interval_s"] = _seconds(environ["EXCHANGE_SYNC_INTERVAL_S"])
    if "EXCHANGE_SPARQL_TIMEOUT_S" in environ:
        overrides["sparql_timeout_s"] = _seconds(environ["EXCHANGE_SPARQL_TIMEOUT_S"])
    if "EXCHANGE_SPARQL_MAX_RESULTS" in environ:
        overrides["sparql_max_results"] = _count(environ["EXCHANGE_SPARQL_MAX_RESULTS"])
    if "EXCHANGE_PERSONAL_DATA" in environ:
        overrides["personal_data"] = environ["EXCHANGE_PERSONAL_DATA"]
    if "EXCHANGE_LOG_FORMAT" in environ:
        overrides["log_format"] = environ["EXCHANGE_LOG_FORMAT"]
    settings = replace(settings, **overrides)
    check_settings(settings)
    return settings


def clock_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """``EXCHANGE_CLOCK_SKEW_S`` (seconds, negative: behind), the fault campaign's."""
    value = environ.get("EXCHANGE_CLOCK_SKEW_S")
    if not value:
        return {}
    try:
        skew = float(value)
    except ValueError:
        raise UsageError(f"EXCHANGE_CLOCK_SKEW_S: {value!r} is not a number of seconds") from None
    if not abs(skew) < float("inf"):
        raise UsageError(f"EXCHANGE_CLOCK_SKEW_S: {value!r} is not a number of seconds")
    return {"clock_skew_s": skew}


def database_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """``EXCHANGE_DATABASE_URL`` and ``EXCHANGE_DATABASE_SCHEMA``, over the config file."""
    names = {"database_url": "EXCHANGE_DATABASE_URL", "database_schema": "EXCHANGE_DATABASE_SCHEMA"}
    return {field: environ[name] for field, name in names.items() if environ.get(name)}


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise UsageError(f"port {text!r} is not a TCP port number")
    return int(text)


def _count(value: object) -> int:
    text = str(value)
    if not text.isdigit() or not 0 < int(text) <= 10_000_000:
        raise UsageError(f"{value!r} is not a count between 1 and 10000000")
    return int(text)


def _seconds(value: object) -> float:
    try:
        seconds = float(str(value))
    except ValueError:
        raise UsageError(f"{value!r} is not a number of seconds") from None
    if not 0 <= seconds < float("inf"):
        raise UsageError(f"{value!r} is not a non-negative number of seconds")
    return seconds


def check_settings(settings: Settings) -> None:
    if settings.personal_data not in PERSONAL_DATA_POLICIES:
        raise UsageError(
            f"personal_data must be one of {', '.join(PERSONAL_DATA_POLICIES)}, "
            f"not {settings.personal_data!r}"
        )
    if settings.log_format not in LOG_FORMATS:
        raise UsageError(
            f"log_format must be one of {', '.join(LOG_FORMATS)}, not {settings.log_format!r}"
        )
    if not 0 <= settings.gossip_interval_s < float("inf"):
        raise UsageError("gossip_interval_s must be a non-negative number of seconds")
    if not 0 < settings.sync_interval_s < float("inf"):
        raise UsageError("sync_interval_s must be a positive number of seconds")
    if not 0 < settings.fetch_timeout_s < float("inf"):
        raise UsageError("fetch_timeout_s must be a positive number of seconds")
    if not 0 < settings.sparql_timeout_s < float("inf"):
        raise UsageError("sparql_timeout_s must be a positive number of seconds")
    if not 1 <= settings.page_size <= 1000:
        raise UsageError("page_size must lie between 1 and 1000")
    if len(settings.country) != 2 or not settings.country.isupper():
        raise UsageError(f"country {settings.country!r} is not an ISO 3166-1 alpha-2 code")
    if settings.database_url and urlsplit(settings.database_url).scheme not in (
        "postgresql",
        "postgres",
    ):
        raise UsageError("the database URL must be a postgresql:// URL")
    if not _SCHEMA_NAME.fullmatch(settings.store_schema):
        raise UsageError(
            f"database schema {settings.store_schema!r} must be a lower-case SQL name"
            " (letters, digits and _, at most 63)"
        )


_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def _toml_string(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def render_config(settings: Settings) -> str:
    """The ``exchange.toml`` text for ``settings`` (written once by ``exchange init``)."""
    s = _toml_string
    return (
        "# exchange node configuration; EXCHANGE_* environment variables override it.\n"
        "[node]\n"
        f"base_url = {s(settings.base_url)}\n"
        f"name = {s(settings.name)}\n"
        f"language = {s(settings.language)}\n"
        f"country = {s(settings.country)}\n"
        f"page_size = {settings.page_size}\n\n"
        "[server]\n"
        f"host = {s(settings.host)}\n"
        f"port = {settings.port}\n\n"
        "[store]\n"
        "# The SQLite file in this home; with url (or EXCHANGE_DATABASE_URL) the store is\n"
        "# in PostgreSQL instead, in the tables of schema (several workers may share it).\n"
        f"database = {s(settings.database.name)}\n"
        + (
            f"url = {s(settings.database_url)}\nschema = {s(settings.store_schema)}\n"
            if settings.database_url
            else ""
        )
        + "\n"
        "[keys]\n"
        f"active = {s(settings.active_key)}\n\n"
        "[operator]\n"
        "# SHA-256 of the operator token; the token itself was printed once by init.\n"
        f"token_sha256 = {s(settings.token_sha256)}\n\n"
        "[privacy]\n"
        "# none | public-roles | all: which data marked personalData is published.\n"
        f"personal_data = {s(settings.personal_data)}\n\n"
        "[operations]\n"
        "# GET B/metrics (Prometheus text) needs the operator token as a bearer token;\n"
        "# false opens it to anyone who can reach the node. B/healthz and B/readyz are open.\n"
        f"metrics_token_required = {'true' if settings.metrics_token_required else 'false'}\n"
        "# text | json (one JSON object a line): the log 'exchange serve' writes to stderr;\n"
        "# EXCHANGE_LOG_FORMAT overrides it.\n"
        f"log_format = {s(settings.log_format)}\n"
    )
