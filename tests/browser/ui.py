"""What a visitor or an operator does in the browser, through the portal's stable hooks
(``data-testid`` attributes, /work/notes/issue6-contract.md and docs/decisions.md)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from playwright.sync_api import Locator, Page, Response

#: A country as the portal may show it: its code, or its name in the page's language.
COUNTRY_NAMES = {
    "NL": {"nl": "Nederland", "en": "Netherlands", "fr": "Pays-Bas"},
    "BE": {"nl": "België", "en": "Belgium", "fr": "Belgique"},
    "EU": {"nl": "Europese Unie", "en": "European Union", "fr": "Union européenne"},
}


def hook(name: str) -> str:
    return f'[data-testid="{name}"]'


def load(page: Page, url: str) -> Response:
    """Open ``url`` in the page; it must answer 2xx (after redirects)."""
    response = page.goto(url)
    if response is None or not response.ok:
        raise AssertionError(f"GET {url}: {response.status if response else 'no response'}")
    return response


def country_shown(text: str, code: str, language: str) -> bool:
    """Whether ``text`` names the country ``code``: by its code or its name in ``language``."""
    words = text.split()
    return code in words or COUNTRY_NAMES[code][language].casefold() in text.casefold()


@dataclass(frozen=True)
class ListedItem:
    id: str
    title: str
    country: str
    verified: bool  # it carries the "verified" mark


def listed_items(page: Page) -> dict[str, ListedItem]:
    """The objects a portal page lists, by IRI (``data-id``)."""
    items: dict[str, ListedItem] = {}
    for item in page.locator(hook("item")).all():
        iri = item.get_attribute("data-id")
        assert iri, "a listed item has no data-id"
        title = " ".join(item.locator(hook("item-title")).first.inner_text().split())
        country = " ".join(item.locator(hook("origin-country")).first.inner_text().split())
        verified = item.locator(hook("verified")).count() > 0
        items[iri] = ListedItem(iri, title, country, verified)
    return items


def switch_language(page: Page, language: str) -> None:
    """Follow the language switch's link to ``language`` (``hreflang``)."""
    link = page.locator(
        f'{hook("lang-switch")}[hreflang="{language}"], '
        f'{hook("lang-switch")} [hreflang="{language}"]'
    ).first
    with page.expect_navigation():
        link.click()


def reload_until(
    page: Page, url: str, condition: Callable[[Page], bool], timeout_s: float, what: str
) -> None:
    """Load ``url`` again and again (as an operator presses F5) until ``condition``."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = page.goto(url)
        if response is not None and not response.ok:
            raise AssertionError(f"GET {url}: {response.status}")
        # None: the dashboard's own refresh (meta refresh) took over this navigation, as
        # on a slow machine it may; the next round loads it again.
        if response is not None and condition(page):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{url}: not {what} after {timeout_s:.0f} s")
        page.wait_for_timeout(500)


def login(page: Page, base_url: str, token: str) -> None:
    """Log in to a node's dashboard with its operator token (the login form's only text or
    password field, named ``token``), and land on the dashboard."""
    load(page, f"{base_url}/admin/login")
    field = page.locator('form input[name="token"], form input[type="password"]').first
    field.fill(token)
    with page.expect_navigation():
        field.press("Enter")
    load(page, f"{base_url}/admin/dashboard")
    assert page.url.startswith(f"{base_url}/admin/dashboard"), f"sent to {page.url}"


def set_field(form: Locator, name: str, value: str) -> None:
    """Set a form field, whatever control the form uses for it (text, textarea, select,
    radio buttons, or a hidden field of a form made for one value)."""
    fields = form.locator(f'[name="{name}"]')
    assert fields.count() > 0, f"the form has no field named {name!r}"
    field = fields.first
    tag = field.evaluate("element => element.tagName.toLowerCase()")
    kind = (field.get_attribute("type") or "").lower()
    if tag == "select":
        field.select_option(value)
    elif kind in ("radio", "checkbox"):
        form.locator(f'[name="{name}"][value="{value}"]').check()
    elif kind == "hidden":
        assert field.input_value() == value, f"{name} is fixed to {field.input_value()!r}"
    else:
        field.fill(value)


def submit(page: Page, form: Locator) -> None:
    button = form.locator('[type="submit"], button:not([type])').first
    with page.expect_navigation():
        button.click()
