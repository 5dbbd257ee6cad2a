"""RFC 9457 problem details: the one place where errors become HTTP responses."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from exchange.errors import PROBLEM_BASE, ExchangeError, InvalidParameter

__all__ = ["PROBLEM_JSON", "Handler", "problem_middleware", "problem_response"]

PROBLEM_JSON = "application/problem+json"
_log = logging.getLogger(__name__)

#: aiohttp's own HTTP errors, as problem types of ours.
_HTTP_PROBLEMS = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    411: ("length-required", "Length required"),
    413: ("too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    429: ("too-many-requests", "Too many requests"),
}


def problem_response(
    status: int,
    kind: str,
    title: str,
    detail: str,
    *,
    extra: dict[str, object] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    body: dict[str, object] = {
        "type": PROBLEM_BASE + kind,
        "title": title,
        "status": status,
        "detail": detail,
    }
    body.update(extra or {})
    return web.Response(
        status=status,
        body=json.dumps(body, ensure_ascii=False).encode(),
        content_type=PROBLEM_JSON,
        headers=headers,
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _check_query(request: web.Request) -> None:
    """No query parameter of any route may hold a NUL character: no stored text has one
    (PostgreSQL's cannot), so it is refused here once rather than deep in a store."""
    for name, value in request.query.items():
        if "\x00" in name or "\x00" in value:
            raise InvalidParameter(name.replace("\x00", ""), "a query parameter holds a NUL")


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        _check_query(request)
        return await handler(request)
    except ExchangeError as error:
        problem = error.to_problem()
        standard = ("type", "title", "status", "detail")
        extra = {key: value for key, value in problem.items() if key not in standard}
        return problem_response(error.status, error.problem, error.title, error.detail, extra=extra)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        kind, title = _HTTP_PROBLEMS.get(error.status, ("http-error", error.reason))
        headers = {
            name: value
            for name, value in error.headers.items()
            if name in ("Accept-Encoding", "Allow", "Retry-After", "WWW-Authenticate")
        }
        detail = (
            error.text if error.text and not error.text.startswith(str(error.status)) else title
        )
        return problem_response(error.status, kind, title, detail, headers=headers)
    except Exception:
        _log.exception("unhandled error on %s %s", request.method, request.path)
        return problem_response(500, "internal", "Internal error", "the node failed; see its log")
