"""The node's log lines: human text (the default) or one JSON object a line.

Every line written while a request is handled carries that request's id: the HTTP
middleware (:mod:`exchange.http.operations`) sets :data:`REQUEST_ID` for the request's
task, and :class:`RequestContext` copies it onto each record. ``exchange serve`` calls
:func:`configure_logging` with the ``log_format`` of the settings (``[operations]`` of
``exchange.toml``, or ``EXCHANGE_LOG_FORMAT``).
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any

__all__ = [
    "REQUEST_ID",
    "JsonFormatter",
    "RequestContext",
    "TextFormatter",
    "configure_logging",
]

#: The id of the request being handled in this task (None outside requests).
REQUEST_ID: ContextVar[str | None] = ContextVar("exchange_request_id", default=None)

#: Attributes every LogRecord has; anything else on a record came with ``extra``.
_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName", "request_id"}
)
#: The members of a JSON line, in order; ``extra`` cannot overwrite them.
_CORE = ("time", "level", "logger", "message", "request_id")


class RequestContext(logging.Filter):
    """Sets ``record.request_id`` from :data:`REQUEST_ID` (inside a request) unless
    ``extra`` gave one."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = REQUEST_ID.get()
        if request_id is not None and getattr(record, "request_id", None) is None:
            record.request_id = request_id
        return True


def _time(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (RFC 3339, UTC), level, logger, message, request_id
    (when there is one), every ``extra`` member (method, path, status, duration_ms on the
    access lines), and ``exception`` with the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            line["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in _CORE:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``time level logger [request id] message`` (``-`` outside requests)."""

    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s",
            defaults={"request_id": "-"},
        )


def configure_logging(
    log_format: str, *, stream: IO[str] | None = None, level: int = logging.INFO
) -> logging.Handler:
    """Send every log record at ``level`` or above to ``stream`` (stderr) as ``text`` or
    ``json``; replaces the root logger's handlers (``exchange serve`` calls it once)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(RequestContext())
    logging.basicConfig(handlers=[handler], level=level, force=True)
    return handler
