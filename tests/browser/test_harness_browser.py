"""The harness itself: the demo's nodes answer a real Chromium, tokens open the operator
API, and screenshots land under the test output."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from playwright.sync_api import Page

from tests.browser.conftest import CHROMIUM, OUTPUT, Screenshots
from tests.browser.harness import Demo, ServedNodes, answers, demo_examples
from tests.browser.ui import load

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_chromium_renders_a_demo_node_as_html(demo: Demo, page: Page, shots: Screenshots) -> None:
    """``GET B`` with Chromium's Accept (text/html first) gives a page for people: the
    node's own page, or the portal it redirects to."""
    response = load(page, demo.urls["nl"])
    assert response.headers["content-type"].startswith("text/html")
    assert page.url.startswith(demo.urls["nl"])
    assert page.locator("body").inner_text().strip()
    shot = shots.take(page, "node-nl")
    assert shot.parent.parent == OUTPUT
    assert shot.read_bytes().startswith(PNG_SIGNATURE)
    assert shot.stat().st_size > 1000
    assert page.context.browser is not None
    assert page.context.browser.version.split(".")[0].isdigit(), CHROMIUM


def _post_json(url: str, token: str, body: object) -> int:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_the_demo_gives_each_node_its_operator_token(demo: Demo) -> None:
    """Each token opens its own node's operator API and no other node's (an empty batch is
    refused as a bad request, after the token was accepted)."""
    assert set(demo.tokens) == {"nl", "be", "eu"}
    for key, url in demo.urls.items():
        assert _post_json(f"{url}/admin/objects", demo.tokens[key], {}) not in (401, 403)
        other = next(token for k, token in demo.tokens.items() if k != key)
        assert _post_json(f"{url}/admin/objects", other, {}) == 401


def _objects(url: str) -> list[str]:
    request = urllib.request.Request(f"{url}/objects", headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return [item["id"] for item in json.load(response)["items"]]


def test_one_served_demo_node_stops_and_comes_back(served_demo: ServedNodes) -> None:
    """The dashboard test's set-up: the demo's nodes, each in its own process; one stops
    while the others go on, and comes back with what it held."""
    urls = served_demo.demo.urls
    held = _objects(urls["be"])
    assert set(held) >= {example.id for example in demo_examples(served_demo.demo)}
    served_demo.stop("be")
    assert not answers(urls["be"])
    assert answers(urls["nl"])
    assert answers(urls["eu"])
    served_demo.start("be")
    assert sorted(_objects(urls["be"])) == sorted(held)
