"""HTTP content negotiation (RFC 9110 §12.5.1), just enough for the node's resources."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["preferred", "weighted"]


def weighted(accept: str) -> list[tuple[str, float]]:
    """The values of an Accept-style header (Accept, Accept-Language), lower-cased, each
    with its q weight (1 when absent, 0 when malformed), in the header's order."""
    ranges: list[tuple[str, float]] = []
    for part in accept.split(","):
        media, *params = (piece.strip() for piece in part.split(";"))
        if not media:
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        ranges.append((media.lower(), quality))
    return ranges


def _matches(media_range: str, offer: str) -> int:
    """Specificity of the match: 3 exact, 2 type/*, 1 */*, 0 none."""
    if media_range == offer:
        return 3
    kind, _, subtype = media_range.partition("/")
    if subtype == "*" and offer.startswith(kind + "/"):
        return 2
    return 1 if media_range == "*/*" else 0


def preferred(accept: str | None, offers: Sequence[str]) -> str | None:
    """The offer the client prefers; the first offer when it states no preference."""
    if not accept:
        return offers[0]
    best: tuple[float, int, int] | None = None
    choice: str | None = None
    ranges = weighted(accept)
    for position, offer in enumerate(offers):
        quality, specificity = 0.0, 0
        for media_range, q in ranges:
            match = _matches(media_range, offer)
            if match > specificity:
                quality, specificity = q, match
        if specificity and quality > 0:
            rank = (quality, specificity, -position)
            if best is None or rank > best:
                best, choice = rank, offer
    return choice
