"""RFC 3339 timestamps: liberal parsing, conservative formatting (protocol.md §3)."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["format_timestamp", "parse_timestamp"]


def parse_timestamp(text: str) -> datetime:
    """Parse an RFC 3339 date-time with its offset into an aware datetime.

    Raises ``ValueError`` for anything else, including a date-time without an offset.
    """
    if not isinstance(text, str) or len(text) < 20 or text[10] not in "Tt":
        raise ValueError(f"{text!r} is not an RFC 3339 date-time")
    value = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1] in "Zz" else text)
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset")
    return value


def format_timestamp(value: datetime) -> str:
    """UTC to the second, ``2026-11-23T10:00:00Z``: the only form a node signs."""
    if value.tzinfo is None:
        raise ValueError("a naive datetime has no defined instant")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
