"""Server-rendered HTML for the portal and the dashboard: escaping by construction.

Every page is built from :func:`el` calls. A child or attribute value that is a plain
``str`` is always escaped (``html.escape`` with quotes); only :class:`Safe` values, which
only this module's functions make, are copied as they are. Partner text therefore cannot
become markup however it is spelt: a ``<script>`` in a partner's name renders as text.
Links to partner-given URLs go through :func:`safe_url`, which lets only http(s) through.

No JavaScript is needed; the CSS is inline, and the layout works on a phone-sized screen.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from aiohttp import web

__all__ = ["Safe", "el", "join", "page", "render", "safe_url"]


class Safe(str):
    """Markup built by this module: never escaped again."""

    __slots__ = ()


Child = str | Safe | None | Iterable["Child"]
AttributeValue = str | int | bool | None

_VOID = frozenset({"meta", "link", "input", "br", "hr", "img"})


def _render_child(child: Child) -> str:
    if child is None:
        return ""
    if isinstance(child, Safe):
        return child
    if isinstance(child, str):
        return html.escape(child, quote=True)
    return "".join(_render_child(c) for c in child)


def _attributes(attrs: Mapping[str, AttributeValue]) -> str:
    parts = []
    for name, value in attrs.items():
        if value is None or value is False:
            continue
        name = name.rstrip("_").replace("_", "-")
        if value is True:
            parts.append(f" {name}")
        else:
            parts.append(f' {name}="{html.escape(str(value), quote=True)}"')
    return "".join(parts)


def el(tag: str, attrs: Mapping[str, AttributeValue] | None = None, *children: Child) -> Safe:
    """``<tag attrs>children</tag>``, with every plain string escaped."""
    opening = f"<{tag}{_attributes(attrs or {})}>"
    if tag in _VOID:
        return Safe(opening)
    return Safe(f"{opening}{_render_child(children)}</{tag}>")


def join(children: Iterable[Child]) -> Safe:
    return Safe(_render_child(list(children)))


def safe_url(url: object) -> str | None:
    """``url`` when it is an absolute http(s) URL (never ``javascript:`` and the like)."""
    if not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return url if parts.scheme in ("http", "https") and parts.netloc else None


STYLE = """
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1f23;
background:#f6f7f9}
a{color:#0b57a4}
header{background:#12355b;color:#fff;padding:.6rem 1rem}
header a{color:#fff}
header .bar{display:flex;flex-wrap:wrap;gap:.4rem 1rem;align-items:center;max-width:60rem;
margin:0 auto}
header .site{font-weight:700;text-decoration:none;margin-right:auto}
nav ul{list-style:none;display:flex;flex-wrap:wrap;gap:.2rem .9rem;margin:0;padding:0}
.langs a{padding:0 .25rem}
.langs a[aria-current]{font-weight:700;text-decoration:none;border-bottom:2px solid #fff}
main{max-width:60rem;margin:0 auto;padding:1rem}
h1{font-size:1.6rem;line-height:1.25;margin:.5rem 0 1rem}
h2{font-size:1.25rem;margin:1.5rem 0 .5rem}
.items{list-style:none;padding:0;margin:0;display:grid;gap:.75rem}
.item{background:#fff;border:1px solid #d8dde3;border-radius:6px;padding:.75rem 1rem;
overflow-wrap:anywhere}
.item h3{font-size:1.1rem;margin:0 0 .3rem}
.meta{display:flex;flex-wrap:wrap;gap:.2rem .8rem;font-size:.875rem;color:#4a5560;margin:0}
.badge{display:inline-block;border-radius:3px;padding:0 .35rem;font-size:.8rem;
background:#e3f1e6;color:#1d5f2c;border:1px solid #a9d3b3}
.badge.own{background:#e7eef7;color:#12355b;border-color:#b3c6dd}
.badge.past{background:#eee;color:#555;border-color:#ccc}
.item.past{opacity:.8}
.pager{display:flex;gap:1rem;margin:1rem 0}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem}
dl.facts dt{font-weight:600}
dl.facts dd{margin:0;overflow-wrap:anywhere}
table{border-collapse:collapse;width:100%;background:#fff;font-size:.9rem}
th,td{border:1px solid #d8dde3;padding:.3rem .5rem;text-align:left;vertical-align:top;
overflow-wrap:anywhere}
.scroll{overflow-x:auto}
.online{color:#1d5f2c;font-weight:600}.offline{color:#a11;font-weight:600}
form.stack label{display:block;font-weight:600;margin-top:.75rem}
form.stack input,form.stack select,form.stack textarea{width:100%;padding:.4rem;font:inherit}
form.stack textarea{min-height:4rem}
fieldset{border:1px solid #d8dde3;margin:1rem 0;background:#fff}
.error{color:#a11;font-size:.9rem;margin:.2rem 0}
.notice{background:#fff;border-left:4px solid #1d5f2c;padding:.5rem 1rem}
.alert{background:#fff3f3;border-left:4px solid #a11;padding:.5rem 1rem;margin:.5rem 0}
button{font:inherit;padding:.45rem 1rem;margin-top:1rem}
pre{white-space:pre-wrap;overflow-wrap:anywhere;font-size:.8rem}
@media (max-width:40rem){dl.facts{grid-template-columns:1fr}h1{font-size:1.35rem}}
"""


def page(
    *,
    title: str,
    language: str,
    header: Safe,
    body: Child,
    head_extra: Child = None,
) -> Safe:
    """A whole document with the shared head (viewport meta, inline CSS)."""
    return Safe(
        "<!doctype html>"
        + el(
            "html",
            {"lang": language},
            el(
                "head",
                None,
                el("meta", {"charset": "utf-8"}),
                el("meta", {"name": "viewport", "content": "width=device-width, initial-scale=1"}),
                el("title", None, title),
                el("style", None, Safe(STYLE)),
                head_extra,
            ),
            el("body", None, header, el("main", {"id": "main"}, body)),
        )
    )


#: No script runs on these pages, whatever a partner's text holds (defence in depth).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


def render(
    document: Safe, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        text=document,
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers={
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "Referrer-Policy": "same-origin",
            **(headers or {}),
        },
    )
