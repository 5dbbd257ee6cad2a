"""Operator sessions for the dashboard: a signed cookie, and a CSRF token per session.

``POST B/admin/login`` takes the operator token and sets ``exchange_session`` (HttpOnly,
SameSite=Strict, Secure under https, path ``B/admin``), valid for
:data:`SESSION_TTL_S`. The cookie is ``v1.<expires>.<nonce>.<mac>`` with the MAC an
HMAC-SHA256 under a key derived from the node's stored token digest, which only the node
has (its config file): a new operator token ends every session. Logging out forgets the
session's nonce until it would have expired (in memory: a restart keeps sessions that
were logged out valid until their expiry; documented in docs/decisions.md).

Forms posted with a session carry ``csrf``, an HMAC of the session's nonce; requests with
``Authorization: Bearer <token>`` need none (a browser never adds that header by itself).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field

__all__ = ["SESSION_COOKIE", "SESSION_TTL_S", "Session", "Sessions"]

SESSION_COOKIE = "exchange_session"
SESSION_TTL_S = 8 * 3600
_VERSION = "v1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class Session:
    nonce: str
    expires: int  # Unix time
    csrf: str


@dataclass
class Sessions:
    """Issues and checks session cookies for one node (``token_sha256`` from its settings)."""

    token_sha256: str
    _revoked: dict[str, int] = field(default_factory=dict)

    @property
    def _key(self) -> bytes:
        return hmac.new(
            bytes.fromhex(self.token_sha256), b"exchange admin session key v1", hashlib.sha256
        ).digest()

    def _mac(self, message: str) -> str:
        return _b64(hmac.new(self._key, message.encode(), hashlib.sha256).digest())

    def _session(self, nonce: str, expires: int) -> Session:
        return Session(nonce, expires, self._mac(f"csrf.{nonce}"))

    def issue(self, now: float | None = None) -> tuple[str, Session]:
        """A new session: the cookie value and the session it stands for."""
        expires = int(now if now is not None else time.time()) + SESSION_TTL_S
        nonce = secrets.token_urlsafe(18)
        payload = f"{_VERSION}.{expires}.{nonce}"
        return f"{payload}.{self._mac(payload)}", self._session(nonce, expires)

    def check(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session a cookie stands for, or None when it is forged, expired or ended."""
        if not cookie or len(cookie) > 200:
            return None
        parts = cookie.split(".")
        if len(parts) != 4 or parts[0] != _VERSION or not parts[1].isdigit():
            return None
        payload = ".".join(parts[:3])
        if not hmac.compare_digest(self._mac(payload), parts[3]):
            return None
        expires, nonce = int(parts[1]), parts[2]
        moment = now if now is not None else time.time()
        if expires <= moment or nonce in self._revoked:
            return None
        return self._session(nonce, expires)

    def end(self, session: Session, now: float | None = None) -> None:
        """Log out: the cookie no longer opens a session, even if a copy of it survives."""
        moment = now if now is not None else time.time()
        self._revoked = {n: e for n, e in self._revoked.items() if e > moment}
        self._revoked[session.nonce] = session.expires

    @staticmethod
    def csrf_ok(session: Session, sent: str | None) -> bool:
        return sent is not None and hmac.compare_digest(session.csrf, sent)
