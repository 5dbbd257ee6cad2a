"""Browser tests: Playwright driving Debian's Chromium (/usr/bin/chromium) headless against
a running ``exchange demo``.

Nothing downloads a browser: Playwright only starts the executable given here (``.ci/run``
installs Debian's ``chromium`` package when it is missing). Every test leaves screenshots
under ``test-output/browser/<test>/`` (``$EXCHANGE_TEST_OUTPUT/browser`` if set), the last
one taken when the test ends, passed or failed; the demo's and the nodes' output go there
too.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from tests.browser.harness import PROJECT, Demo, ServedNodes, start_demo

CHROMIUM = Path(os.environ.get("EXCHANGE_CHROMIUM", "/usr/bin/chromium"))
#: As Debian's Chromium is known to run here, as root, on a machine without network or GPU
#: (the background-networking flags keep it from calling Google's services at every start).
#: Playwright adds --headless and, for a browser without a sandbox, --no-sandbox; each
#: launch gets a fresh, empty user-data-dir of Playwright's making, deleted on close.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
OUTPUT = Path(os.environ.get("EXCHANGE_TEST_OUTPUT", PROJECT / "test-output")) / "browser"
#: How long a page action or wait may take by default.
ACTION_TIMEOUT_MS = 15_000


def pytest_configure(config: pytest.Config) -> None:
    OUTPUT.mkdir(parents=True, exist_ok=True)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if any(OUTPUT.glob("*/*.png")):
        terminalreporter.write_line(f"browser screenshots and node logs: {OUTPUT}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the test item, so that the last screenshot knows whether
    the test passed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _test_dir(node: pytest.Item) -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", node.nodeid.split("::", 1)[-1]).strip("-")
    return OUTPUT / name


class Screenshots:
    """Numbered full-page screenshots of one test: ``01-portal-nl.png``, ..."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.taken: list[Path] = []
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)

    def take(self, page: Page, label: str) -> Path:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-")
        path = self.folder / f"{len(self.taken) + 1:02d}-{slug}.png"
        page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        return path


# Module scope, not session: while Playwright's sync API is started it keeps an event loop
# running in the main thread, and asyncio.run() in the suite's other tests would fail.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"no Chromium at {CHROMIUM}: install Debian's package "
            "(apt-get install chromium; .ci/run does) or set EXCHANGE_CHROMIUM"
        )
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=list(CHROMIUM_ARGS)
    )
    yield browser
    browser.close()


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Screenshots:
    return Screenshots(_test_dir(request.node))


@pytest.fixture
def page(browser: Browser, shots: Screenshots, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh browser context (no cookies) and page; when the test ends, pass or fail, the
    page's last state is saved as a screenshot."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    page = context.new_page()
    yield page
    report = getattr(request.node, "report_call", None)
    outcome = "passed" if report is not None and report.passed else "failed"
    try:
        shots.take(page, f"end-{outcome}")
    finally:
        context.close()


def _demo_folder(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=tmp_path_factory.getbasetemp()))


@pytest.fixture(scope="module")
def demo(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Demo]:
    """One ``exchange demo`` (NL, BE, EU in sync) for the tests of a module that do not stop
    a node."""
    log = OUTPUT / f"demo-{request.module.__name__.rsplit('.', 1)[-1]}.log"
    log.unlink(missing_ok=True)
    running = start_demo(_demo_folder(tmp_path_factory, "demo"), log)
    yield running
    running.stop()


@pytest.fixture
def served_demo(
    tmp_path_factory: pytest.TempPathFactory, shots: Screenshots
) -> Iterator[ServedNodes]:
    """The demo's three nodes, each served on its own by ``exchange serve`` (from the
    homes a demo run set up and left in sync), so that a test can stop and restart one."""
    setup = start_demo(_demo_folder(tmp_path_factory, "served-demo"), shots.folder / "demo.log")
    setup.stop()
    served = ServedNodes(setup, shots.folder)
    try:
        for key in setup.urls:
            served.start(key)
        yield served
    finally:
        served.stop_all()
