"""Outbound HTTP: bounded fetches from configured partners, and signed POSTs to inboxes.

Every fetch has a timeout and a byte cap, follows no redirect, and goes only to a URL the
caller derived from a configured partner's base URL (never to a URL a message names).
Outbound requests to inboxes are signed with RFC 9421 by a client middleware.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import aiohttp

from exchange.canonical import MAX_SEPARATORS, parse
from exchange.errors import (
    FetchError,
    IntegrityError,
)
from exchange.httpsig import sign_request_by_keys
from exchange.keys import KeyPair

__all__ = ["FetchError", "Fetcher", "fetcher"]

ACCEPT_ACTIVITY = "application/activity+json, application/ld+json;q=0.9"


class Fetcher:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        key: KeyPair | None,
        *,
        signing_keys: Callable[[], Sequence[KeyPair]] | None = None,
        max_response_bytes: int = 64 * 1024 * 1024,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.session = session
        self.key = key
        #: The keys outbound messages are signed with, asked for at each POST (a node's
        #: active key first, then its retired unrevoked ones); default: ``key`` alone.
        self.signing_keys = signing_keys
        self.max_response_bytes = max_response_bytes
        #: The time outbound signatures carry as ``created`` (the node's clock).
        self.clock = clock or _utc_now

    def _keys(self) -> Sequence[KeyPair]:
        if self.signing_keys is not None:
            return self.signing_keys()
        return [] if self.key is None else [self.key]

    async def _read(
        self, response: aiohttp.ClientResponse, url: str, max_bytes: int | None = None
    ) -> bytes:
        limit = min(self.max_response_bytes, max_bytes or self.max_response_bytes)
        if response.status >= 400:
            raise FetchError(f"{url}: HTTP {response.status}", status_code=response.status)
        if response.status >= 300:
            raise FetchError(f"{url}: redirect refused (HTTP {response.status})")
        declared = response.content_length
        if declared is not None and declared > limit:
            raise FetchError(f"{url}: {declared} bytes is more than {limit}")
        chunks: list[bytes] = []
        total = 0
        async for chunk in response.content.iter_chunked(65536):
            total += len(chunk)
            if total > limit:
                raise FetchError(f"{url}: response larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def get_bytes(
        self,
        url: str,
        *,
        accept: str = ACCEPT_ACTIVITY,
        etag: str | None = None,
        max_bytes: int | None = None,
    ) -> tuple[int, bytes, str | None]:
        """GET ``url``: (status, body, ETag); 304 gives an empty body. ``max_bytes`` caps
        the body below the fetcher's own cap."""
        headers = {"Accept": accept}
        if etag:
            headers["If-None-Match"] = etag
        try:
            async with self.session.get(url, headers=headers, allow_redirects=False) as response:
                if response.status == 304:
                    return 304, b"", response.headers.get("ETag")
                body = await self._read(response, url, max_bytes)
                return response.status, body, response.headers.get("ETag")
        except (aiohttp.ClientError, TimeoutError) as error:
            raise FetchError(f"{url}: {type(error).__name__}: {error}") from None

    async def get_json(self, url: str) -> Any:
        _, body, _ = await self.get_bytes(url)
        try:
            return parse(body, max_separators=MAX_SEPARATORS)
        except IntegrityError as error:
            raise IntegrityError(f"{url}: {error.detail}") from None

    async def get_text(self, url: str) -> str:
        _, body, _ = await self.get_bytes(url, accept="text/plain")
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            raise IntegrityError(f"{url}: not UTF-8 text") from None

    async def post_signed(
        self, url: str, document: Mapping[str, Any], *, timeout_s: float | None = None
    ) -> int:
        """POST a signed JSON document to an inbox; the status, or FetchError."""
        keys = self._keys()
        if not keys:
            raise FetchError("this fetcher has no key to sign with")
        body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/activity+json"}
        headers.update(
            sign_request_by_keys(
                method="POST",
                target_uri=url,
                headers=headers,
                body=body,
                keys=keys,
                now=self.clock(),
            )
        )
        try:
            timeout = aiohttp.ClientTimeout(total=timeout_s) if timeout_s else None
            async with self.session.post(
                url, data=body, headers=headers, allow_redirects=False, timeout=timeout
            ) as response:
                if response.status >= 300:
                    detail = (await response.text())[:300]
                    raise FetchError(
                        f"{url}: HTTP {response.status}: {detail}", status_code=response.status
                    )
                return response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            raise FetchError(f"{url}: {type(error).__name__}: {error}") from None


@asynccontextmanager
async def fetcher(
    key: KeyPair | None,
    *,
    signing_keys: Callable[[], Sequence[KeyPair]] | None = None,
    timeout_s: float = 30.0,
    max_connections: int = 16,
    clock: Callable[[], datetime] | None = None,
) -> AsyncIterator[Fetcher]:
    timeout = aiohttp.ClientTimeout(total=timeout_s, sock_read=timeout_s)
    connector = aiohttp.TCPConnector(limit=max_connections)
    async with aiohttp.ClientSession(
        timeout=timeout, connector=connector, headers={"User-Agent": "exchange/0.1"}
    ) as session:
        yield Fetcher(session, key, signing_keys=signing_keys, clock=clock)


def _utc_now() -> datetime:
    return datetime.now(UTC)
