"""Operator commands on a node's home: init, publish, delete, erase, objects (the CLI's
shell)."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from exchange.config import (
    CONFIG_FILE,
    Settings,
    check_settings,
    clock_overrides,
    database_overrides,
    render_config,
    validate_base_url,
)
from exchange.delivery import DeliveryState
from exchange.documents import read_document, write_secret_json
from exchange.entries import object_iri
from exchange.errors import IntegrityError, UsageError
from exchange.federation import Federation, verifier_pool
from exchange.http.client import fetcher
from exchange.http.pages import page_numbers, remove_page_files
from exchange.key_lifecycle import key_file, revocation_time
from exchange.keys import generate
from exchange.node import ErasureOutcome, KeyChange, PublishOutcome, open_node, token_digest
from exchange.partners import OriginState, Partner
from exchange.query import MAX_LIMIT, parse_query

T = TypeVar("T")

__all__ = [
    "InitResult",
    "PartnerStatus",
    "create_store",
    "delete_object",
    "erase_object",
    "init_node",
    "list_objects",
    "open_federation",
    "partner_statuses",
    "publish_files",
    "rebase_id",
    "revoke_key",
    "rotate_key",
    "run_federation",
]


@dataclass(frozen=True, slots=True)
class InitResult:
    settings: Settings
    token: str
    key_path: Path


def init_node(
    home: Path,
    *,
    base_url: str,
    name: str,
    country: str,
    language: str = "en",
    now: datetime | None = None,
    environ: Mapping[str, str] | None = None,
) -> InitResult:
    """Create a node in ``home``: config, Ed25519 key (mode 0600) and operator token.

    The store is created by :func:`create_store` (``exchange init`` runs both), or on the
    node's first start: the SQLite file in ``home``, or PostgreSQL when
    ``EXCHANGE_DATABASE_URL`` is set in ``environ`` (the process's environment by default).
    """
    validate_base_url(base_url)
    if (home / CONFIG_FILE).exists():
        raise UsageError(f"{home / CONFIG_FILE} exists: a node is already set up there")
    if not name.strip():
        raise UsageError("the node needs a name")
    environ = os.environ if environ is None else environ
    clock = clock_overrides(environ)  # the key's created time is on the node's clock
    moment = now or datetime.now(UTC) + timedelta(seconds=clock.get("clock_skew_s", 0.0))
    key_name = f"{moment.year}-1"
    parts = urlsplit(base_url)
    loopback = parts.scheme == "http"
    token = secrets.token_urlsafe(32)
    settings = Settings(
        home=home,
        base_url=base_url,
        name=name.strip(),
        language=language,
        country=country.upper(),
        active_key=key_name,
        token_sha256=token_digest(token),
        database=home / "exchange.sqlite3",
        host=(parts.hostname or "127.0.0.1") if loopback else "127.0.0.1",
        port=(parts.port or 80) if loopback else 8080,
    )
    # A store in PostgreSQL is recorded in the config (with its schema) from the start.
    settings = replace(settings, **database_overrides(environ), **clock)
    if settings.database_url and not settings.database_schema:
        # A new node takes a new schema, recorded in the config (never another's by chance).
        settings = replace(settings, database_schema=f"exchange_{secrets.token_hex(8)}")
    check_settings(settings)
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    settings.key_dir.mkdir(exist_ok=True, mode=0o700)
    pair = generate(settings.key_id(key_name))
    key_path = settings.key_dir / f"{key_name}.json"
    write_secret_json(key_path, key_file(pair, base_url, moment))
    (home / CONFIG_FILE).write_text(render_config(settings), encoding="utf-8")
    return InitResult(settings, token, key_path)


async def create_store(settings: Settings) -> None:
    """Create (or migrate) the node's store and sign the empty log's checkpoint."""
    async with open_node(settings):
        pass


def _drafts_from(paths: list[Path]) -> list[Mapping[str, Any]]:
    drafts: list[Mapping[str, Any]] = []
    for path in paths:
        document = read_document(path)
        items = document if isinstance(document, list) else [document]
        for item in items:
            if not isinstance(item, dict):
                raise IntegrityError(f"{path}: expected an object or a list of objects")
            drafts.append(item)
    if not drafts:
        raise UsageError("nothing to publish")
    return drafts


def rebase_id(draft: Mapping[str, Any], base_url: str) -> dict[str, Any]:
    """The draft with its id moved under ``base_url/objects/`` (same last part)."""
    result = dict(draft)
    object_id = result.get("id")
    if isinstance(object_id, str) and "/objects/" in object_id:
        result["id"] = f"{base_url}/objects/{object_id.split('/objects/', 1)[1]}"
    return result


def publish_files(
    settings: Settings, paths: list[Path], *, rebase_ids: bool = False
) -> list[PublishOutcome]:
    """Publish every object of every file in one atomic append: all or nothing."""
    drafts = _drafts_from(paths)
    if rebase_ids:
        drafts = [rebase_id(draft, settings.base_url) for draft in drafts]

    async def run() -> list[PublishOutcome]:
        async with open_node(settings) as node:
            return await node.publish(drafts)

    return asyncio.run(run())


def delete_object(settings: Settings, reference: str) -> PublishOutcome:
    object_id = object_iri(reference, settings.base_url)

    async def run() -> PublishOutcome:
        async with open_node(settings) as node:
            return await node.delete(object_id)

    return asyncio.run(run())


def rotate_key(settings: Settings) -> KeyChange:
    """``exchange keys rotate``: a new active key, announced by a node-document Update."""

    async def run() -> KeyChange:
        async with open_node(settings) as node:
            return await node.rotate_key()

    return asyncio.run(run())


def revoke_key(settings: Settings, reference: str, at: str) -> KeyChange:
    """``exchange keys revoke``: revoke a retired key from ``at`` (RFC 3339 or ``now``)."""
    moment = revocation_time(at, datetime.now(UTC))

    async def run() -> KeyChange:
        async with open_node(settings) as node:
            return await node.revoke_key(reference, moment)

    return asyncio.run(run())


def erase_object(settings: Settings, reference: str, reason: str | None) -> ErasureOutcome:
    """Erase an object's content from the node's log (``exchange erase``), and drop the
    cached pages that held it. A server running on the same home notices the erasure by
    the store's erasure generation and drops those pages from its memory too."""
    object_id = object_iri(reference, settings.base_url)

    async def run() -> ErasureOutcome:
        async with open_node(settings) as node:
            return await node.erase(object_id, reason or "")

    outcome = asyncio.run(run())
    remove_page_files(settings.page_dir, page_numbers(outcome.redacted, settings.page_size))
    return outcome


def list_objects(
    settings: Settings,
    *,
    origin: str | None,
    type_name: str | None,
    country: str | None = None,
    lang: str | None = None,
    text: str | None = None,
) -> list[dict[str, Any]]:
    """Every current object of the store that matches, own and merged, in the order of
    ``GET B/objects``; the filters are those of the query API (and checked as there)."""
    params = [
        (name, value)
        for name, value in (
            ("origin", origin),
            ("type", type_name),
            ("country", country),
            ("lang", lang),
            ("q", text),
        )
        if value is not None
    ]
    query = replace(parse_query(params), limit=MAX_LIMIT)

    async def run() -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        async with open_node(settings) as node:
            after = None
            while True:
                page, countries = await node.query_objects(replace(query, after=after))
                rows += [
                    {
                        "id": s.id,
                        "type": s.type,
                        "origin": s.origin,
                        "country": countries.get(s.origin),
                        "version": s.version,
                        "received": s.received,
                        "name": _first_name(s.body),
                    }
                    for s in page.items
                ]
                if page.next_after is None:
                    return rows
                after = page.next_after

    return asyncio.run(run())


def _first_name(body: Mapping[str, Any]) -> str:
    names = body.get("nameMap")
    if isinstance(names, Mapping) and names:
        for language in ("en", "nl", "fr"):
            if language in names:
                return str(names[language])
        return str(next(iter(names.values())))
    return ""


@asynccontextmanager
async def open_federation(settings: Settings) -> AsyncIterator[Federation]:
    """The node's federation with an HTTP client, for one CLI command."""
    async with (
        open_node(settings) as node,
        fetcher(
            node.key,
            signing_keys=node.signing_keys,
            timeout_s=settings.fetch_timeout_s,
            clock=settings.now,
        ) as client,
    ):
        with verifier_pool(settings.verify_workers) as executor:
            yield Federation(node, client, executor=executor)


def run_federation(settings: Settings, work: Callable[[Federation], Awaitable[T]]) -> T:
    async def run() -> T:
        async with open_federation(settings) as federation:
            return await work(federation)

    return asyncio.run(run())


@dataclass(frozen=True, slots=True)
class PartnerStatus:
    partner: Partner
    origin: OriginState | None
    delivery: DeliveryState | None
    log_size: int


async def partner_statuses(federation: Federation) -> list[PartnerStatus]:
    store = federation.store
    size = await store.log_size()
    statuses = []
    for partner in await store.list_partners():
        statuses.append(
            PartnerStatus(
                partner,
                await store.origin_state(partner.base_url),
                await store.get_delivery(partner.base_url),
                size,
            )
        )
    return statuses
