"""The operator dashboard in a real browser: a partner going offline and coming back.

The demo runs its three nodes in one process, so one of them cannot stop alone; the
``served_demo`` fixture runs a demo until its nodes are in sync, stops it, and serves each
node from the demo's homes with ``exchange serve`` in its own process, pulling its partners
every second (``EXCHANGE_SYNC_INTERVAL_S``). Stopping the Belgian node's process takes it
off the network; the Dutch node sees it at its next pull.
"""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Page

from tests.browser.conftest import Screenshots
from tests.browser.harness import ServedNodes
from tests.browser.ui import hook, login, reload_until

#: Pulls every second: a change shows within a few pulls (the first ones may still be
#: retrying with back-off); generous for a loaded CI machine.
STATE_TIMEOUT_S = 60.0


def _online_cell(partner: str) -> str:
    return f'{hook("partner-row")}[data-partner="{partner}"] {hook("partner-online")}'


def _state(text: str) -> str:
    """The cell's state word ("online" or "offline"), whatever detail follows it."""
    return (text.split() or [""])[0]


def _partner_is(partner: str, state: str) -> Callable[[Page], bool]:
    def check(page: Page) -> bool:
        cell = page.locator(_online_cell(partner))
        return cell.count() == 1 and _state(cell.inner_text()) == state

    return check


def test_the_dashboard_shows_a_partner_going_offline_and_coming_back(
    served_demo: ServedNodes, page: Page, shots: Screenshots
) -> None:
    demo = served_demo.demo
    nl, be, eu = demo.urls["nl"], demo.urls["be"], demo.urls["eu"]
    dashboard = f"{nl}/admin/dashboard"
    login(page, nl, demo.tokens["nl"])
    rows = page.locator(hook("partner-row"))
    assert {rows.nth(i).get_attribute("data-partner") for i in range(rows.count())} == {be, eu}

    reload_until(page, dashboard, _partner_is(be, "online"), STATE_TIMEOUT_S, "BE online")
    assert _state(page.locator(_online_cell(eu)).inner_text()) == "online"
    shots.take(page, "be-online")

    served_demo.stop("be")
    reload_until(page, dashboard, _partner_is(be, "offline"), STATE_TIMEOUT_S, "BE offline")
    assert _state(page.locator(_online_cell(eu)).inner_text()) == "online"
    shots.take(page, "be-offline")

    served_demo.start("be")
    reload_until(page, dashboard, _partner_is(be, "online"), STATE_TIMEOUT_S, "BE back online")
    shots.take(page, "be-back-online")
