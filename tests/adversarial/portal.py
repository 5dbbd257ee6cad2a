"""Corpus layer: the portal. A partner pushes objects whose text tries to become markup in
the node's public portal. Text with anything that could open a tag is refused at ingest by
the schemas (plain text only, decisions.md "Content objects") and shows nowhere; plain text
that merely looks dangerous (quotes, entities, a lone ``<``) merges, and every portal page
that shows it shows it escaped (exchange/http/html.py: escaping by construction).
"""

from __future__ import annotations

from tests.adversarial.corpus import Case, Portal

__all__ = ["PORTAL"]

PORTAL = [
    Case(
        "portal-script-tag",
        "portal",
        "schema",
        202,
        Portal('<script>alert("partner")</script>'),
    ),
    Case(
        "portal-img-onerror",
        "portal",
        "schema",
        202,
        Portal("Practice <img src=x onerror=alert(1)>"),
    ),
    Case(
        "portal-closing-title-then-script",
        "portal",
        "schema",
        202,
        Portal("</title><script>alert(1)</script>"),
    ),
    Case(
        "portal-svg-onload-in-summary",
        "portal",
        "schema",
        202,
        Portal({"en": "<svg/onload=alert(1)>"}, member="summaryMap"),
    ),
    Case(
        "portal-html-comment",
        "portal",
        "schema",
        202,
        Portal("Practice <!-- --><script>alert(1)</script>"),
    ),
    Case(
        "portal-javascript-url",
        "portal",
        "schema",
        202,
        Portal("javascript:alert(document.domain)", member="url"),
        "the schemas take http(s) URLs only; the portal links nothing else either",
    ),
    Case(
        "portal-url-breaking-out-of-href",
        "portal",
        "schema",
        202,
        Portal('https://evil.example/"><script>alert(1)</script>', member="url"),
    ),
    Case(
        "portal-attribute-breakout-text",
        "portal",
        None,
        202,
        Portal('Practice" autofocus onfocus="alert(1)" x="', merges=True),
        "plain text with quotes: merged, and escaped wherever it is shown",
    ),
    Case(
        "portal-entity-encoded-script",
        "portal",
        None,
        202,
        Portal("&lt;script&gt;alert(1)&lt;/script&gt;", merges=True),
        "entities are text: shown as written, never decoded into markup",
    ),
    Case(
        "portal-lone-less-than",
        "portal",
        None,
        202,
        Portal("Costs < 5 & benefits > 6 <3 'quoted'", merges=True),
    ),
]
