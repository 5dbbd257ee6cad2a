"""Web origins (RFC 6454): the one place where two URLs are compared for authority.

Origins are (scheme, host, port) triples after normalisation, never strings
(protocol.md §7 rule 1): the scheme and host are lower-cased, a trailing dot is dropped,
an internationalised host is converted to its IDNA A-label, an IPv6 literal is written in
its compressed form, and the default port is made explicit (an empty port is the default
one, RFC 3986 §3.2.3). A URL with user information, an empty host or label, a host with
any character but letters, digits, ``-``, ``_`` and dots (an encoded slash, a backslash, a
space, a zone id), or an IPv4 address in any form but four decimal parts (``127.1``,
``2130706433``, ``0x7f.0.0.1``, ``0177.0.0.1``, which resolvers read as 127.0.0.1) is
refused: such URLs only ever serve to confuse a comparison.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import SplitResult, urlsplit

import idna

from exchange.errors import (
    OriginError,
)

__all__ = ["Origin", "OriginError", "is_under", "origin", "same_origin"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        default = _DEFAULT_PORTS.get(self.scheme)
        port = "" if self.port == default else f":{self.port}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}{port}"


_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")
#: A last label that a resolver reads as (part of) an IPv4 address: decimal, octal or hex.
_NUMERIC_LABEL = re.compile(r"(0x[0-9a-f]*|[0-9]+)")


def _host(raw: str, url: str) -> str:
    host = raw.lower()
    if any(char in host for char in "%\\/@") or not host:
        raise OriginError(f"{url!r} has a host that cannot be compared safely")
    if host.startswith("["):
        try:
            if not host.endswith("]"):
                raise ValueError("no closing bracket")
            return ipaddress.IPv6Address(host[1:-1]).compressed
        except ValueError:
            raise OriginError(f"{url!r} has a host that is no IPv6 address") from None
    if host.endswith("."):
        host = host[:-1]
    if not host or ".." in host:
        raise OriginError(f"{url!r} has an empty host label")
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError as error:
            raise OriginError(f"{url!r} has an invalid internationalised host: {error}") from None
    if not _NAME.fullmatch(host):
        raise OriginError(f"{url!r} has a host that cannot be compared safely")
    if _NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]):
        try:
            canonical = str(ipaddress.IPv4Address(host)) == host
        except ValueError:
            canonical = False
        if not canonical:
            raise OriginError(f"{url!r} writes an IPv4 address in an ambiguous form")
    return host


@lru_cache(maxsize=4096)
def origin(url: str) -> Origin:
    """The RFC 6454 origin of an http(s) URL, normalised; raise OriginError otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise OriginError(f"{url!r} is not a URL: {error}") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise OriginError(f"{url!r} is not an http(s) URL")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise OriginError(f"{url!r} carries user information")
    netloc = parts.netloc.removesuffix(":")  # an empty port is the default port
    hostname = netloc.rsplit(":", 1)[0] if port is not None else netloc
    host = _host(hostname, url)
    return Origin(scheme, host, port if port is not None else _DEFAULT_PORTS[scheme])


def same_origin(first: str, second: str) -> bool:
    return origin(first) == origin(second)


def _plain_remainder(path: str) -> bool:
    """A path below a base with nothing that a comparison must normalise or distrust."""
    if any(char in path for char in "?#%\\@"):
        return False
    return not any(segment in (".", "..") for segment in path.split("/"))


@lru_cache(maxsize=4096)
def _split(url: str) -> SplitResult:
    return urlsplit(url)


@lru_cache(maxsize=4096)
def _path(url: str) -> str:
    path = _split(url).path
    lowered = path.lower()
    if "%2f" in lowered or "%5c" in lowered or "\\" in path:
        raise OriginError(f"{url!r} has an encoded slash in its path")
    if any(segment in (".", "..") for segment in path.split("/")):
        raise OriginError(f"{url!r} has a dot segment in its path")
    return path


def is_under(url: str, base_url: str) -> bool:
    """True when ``url`` is ``base_url`` itself or lies below it (protocol.md §7 rule 1).

    The inbox asks it of a keyid and every partner's base URL at each request: the parts
    of each URL are split once (``_split``, ``_path`` and ``origin`` are cached)."""
    if url.startswith(base_url + "/") and _plain_remainder(url[len(base_url) :]):
        origin(base_url)  # the base itself must be a comparable URL
        return True  # the same characters up to the path: the same origin, below the base
    if origin(url) != origin(base_url):
        return False
    parts = _split(url)
    if parts.query or parts.fragment:
        return False
    path, base_path = _path(url), _path(base_url).rstrip("/")
    return path == base_path or path.startswith(base_path + "/")
