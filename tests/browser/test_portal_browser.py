"""The public portal in a real browser: partners' content in two languages, and an object
published through the dashboard's form reaching a partner's portal."""

from __future__ import annotations

from playwright.sync_api import Page

from tests.browser.conftest import Screenshots
from tests.browser.harness import Demo, Example, demo_examples
from tests.browser.ui import (
    country_shown,
    hook,
    listed_items,
    load,
    login,
    reload_until,
    set_field,
    submit,
    switch_language,
)

#: The portal's list pages and the type each lists.
LISTINGS = {"practices": "BestPractice", "cases": "Case"}


def _check_listing(page: Page, examples: list[Example], language: str) -> None:
    """Every example of the listing is there, titled in ``language``, with its origin
    country; the page's items are what the portal shows, read through its hooks."""
    items = listed_items(page)
    for example in examples:
        assert example.id in items, f"{example.id} is not listed on {page.url}: {sorted(items)}"
        item = items[example.id]
        assert item.title == example.names[language], (language, item)
        assert country_shown(item.country, example.country, language), (language, item)
        if example.node != "nl":
            assert item.verified, f"a partner's object without the verified mark: {item}"


def test_the_portal_lists_the_partners_content_in_two_languages(
    demo: Demo, page: Page, shots: Screenshots
) -> None:
    """On the Dutch node's portal, in Dutch and then (through the language switch) in
    English: every object of the three nodes, the Belgian and European ones marked with
    their origin country and as verified, each title in the chosen language."""
    examples = demo_examples(demo)
    assert {e.country for e in examples if e.node != "nl"} == {"BE", "EU"}
    seen_partners = set()
    for listing, type_name in LISTINGS.items():
        wanted = [e for e in examples if e.type == type_name]
        seen_partners |= {e.country for e in wanted if e.node != "nl"}
        load(page, f"{demo.urls['nl']}/portal/{listing}?lang=nl")
        _check_listing(page, wanted, "nl")
        dutch = {item.id: item.title for item in listed_items(page).values()}
        shots.take(page, f"{listing}-nl")

        switch_language(page, "en")
        assert page.url.startswith(f"{demo.urls['nl']}/portal/{listing}"), page.url
        _check_listing(page, wanted, "en")
        english = {item.id: item.title for item in listed_items(page).values()}
        assert all(english[e.id] != dutch[e.id] for e in wanted), "no title changed language"
        shots.take(page, f"{listing}-en")
    assert seen_partners == {"BE", "EU"}

    # The choice is kept (the lang cookie): the next page comes in English too.
    load(page, f"{demo.urls['nl']}/portal/cases")
    _check_listing(page, [e for e in examples if e.type == "Case"], "en")


def test_a_publish_through_the_form_appears_on_a_partners_portal(
    demo: Demo, page: Page, shots: Screenshots
) -> None:
    """The Dutch operator publishes a best practice through the dashboard's form; the
    Belgian node's portal lists it, marked as coming from the Netherlands."""
    nl, be = demo.urls["nl"], demo.urls["be"]
    names = {
        "nl": "Samen publiceren vanuit de browser",
        "en": "Publishing together from the browser",
    }
    login(page, nl, demo.tokens["nl"])
    load(page, f"{nl}/admin/publish?type=BestPractice")
    form = page.locator(hook("publish-form"))
    set_field(form, "type", "BestPractice")
    set_field(form, "name-nl", names["nl"])
    set_field(form, "name-en", names["en"])
    set_field(form, "summary-nl", "Een werkwijze, gepubliceerd via het formulier.")
    set_field(form, "summary-en", "A practice, published through the form.")
    set_field(form, "practiceKind", "experience")
    shots.take(page, "publish-form-filled")
    submit(page, form)
    result = page.locator(hook("publish-result"))
    result.wait_for()
    published = result.get_attribute("data-id")
    assert published is not None
    assert published.startswith(f"{nl}/objects/"), published
    assert page.locator(hook("field-error")).count() == 0
    shots.take(page, "publish-result")

    def listed_on_be(page: Page) -> bool:
        return published in listed_items(page)

    reload_until(page, f"{be}/portal/practices?lang=en", listed_on_be, 60, f"listing {published}")
    item = listed_items(page)[published]
    assert item.title == names["en"]
    assert country_shown(item.country, "NL", "en"), item
    assert item.verified, item
    shots.take(page, "on-be-portal")
