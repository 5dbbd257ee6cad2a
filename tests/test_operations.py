"""Operations: ``B/metrics`` (the Prometheus text, read back by prometheus_client's parser),
``B/healthz`` and ``B/readyz``, request ids, the latency histogram's bounded labels, and
JSON log lines that carry the request id."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from exchange.config import load_settings
from exchange.delivery import DeliveryState
from exchange.errors import UsageError
from exchange.http.server import NODE, create_app
from exchange.logs import REQUEST_ID, JsonFormatter, RequestContext, TextFormatter
from exchange.metrics import Family, LatencyHistogram, Sample, Snapshot, render, snapshot_families
from exchange.operator import InitResult
from exchange.partners import OriginState, Partner, Rejection
from exchange.store.base import Counts
from tests.nodes import (
    PROJECT,
    RunningNode,
    eventually,
    free_port,
    get_as_operator,
    make_node,
    pinned_pair,
)
from tests.nodes import practice as draft
from tests.test_node_http import ClientFactory, assert_problem, bearer, publish

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]
GENERATED_ID = re.compile(r"[0-9a-f]{32}")


def parse(text: str) -> Series:
    """Every sample of an exposition, read by prometheus_client's parser."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(series: Series, name: str, **labels: str) -> float:
    return series[(name, frozenset(labels.items()))]


# --- the text format (pure) --------------------------------------------------------------


def test_label_values_and_help_are_escaped_and_read_back_as_they_were() -> None:
    awkward = 'C:\\path "quoted"\nnext line'
    family = Family(
        "exchange_test_total",
        "counter",
        "Help with a backslash \\ and\na newline.",
        (Sample((("partner", awkward), ("kind", "plain")), 3),),
    )
    text = render([family])
    assert text == (
        "# HELP exchange_test_total Help with a backslash \\\\ and\\na newline.\n"
        "# TYPE exchange_test_total counter\n"
        'exchange_test_total{partner="C:\\\\path \\"quoted\\"\\nnext line",kind="plain"} 3\n'
    )
    (parsed,) = text_string_to_metric_families(text)
    assert parsed.documentation == "Help with a backslash \\ and\na newline."
    assert parsed.type == "counter"
    (sample,) = parsed.samples
    assert sample.labels == {"partner": awkward, "kind": "plain"}
    assert sample.value == 3


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (0, "0"),
        (42, "42"),
        (0.25, "0.25"),
        (1e-9, "1e-09"),
        (float("inf"), "+Inf"),
        (float("-inf"), "-Inf"),
        (float("nan"), "NaN"),
    ],
)
def test_sample_values(number: float, text: str) -> None:
    assert render([Family("x", "gauge", "x", (Sample((), number),))]).endswith(f"\nx {text}\n")


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Family("exchange-objects", "gauge", "h"), "metric name"),
        (lambda: Family("x", "summary", "h"), "metric type"),
        (lambda: Sample((("1st", "v"),), 1), "label name"),
        (lambda: Sample((("__name__", "v"),), 1), "label name"),
        (lambda: LatencyHistogram((1.0, 0.5)), "ascending"),
    ],
    ids=["dash in name", "unknown type", "digit first", "reserved label", "unordered buckets"],
)
def test_malformed_metrics_are_refused(build: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_histogram_buckets_are_cumulative_per_label_set() -> None:
    histogram = LatencyHistogram((0.01, 0.1, 1.0))
    fast = (("route", "/feed"), ("method", "GET"), ("status", "2xx"))
    slow = (("route", "/inbox"), ("method", "POST"), ("status", "4xx"))
    for seconds in (0.001, 0.01, 0.05, 3.0):
        histogram.observe(fast, seconds)
    histogram.observe(slow, 0.5)
    series = parse(render([histogram.family("exchange_http_request_duration_seconds", "h")]))
    name = "exchange_http_request_duration_seconds"
    fast_labels = dict(fast)
    assert [
        value(series, f"{name}_bucket", **fast_labels, le=le) for le in ("0.01", "0.1", "1", "+Inf")
    ] == [2, 3, 3, 4]
    assert value(series, f"{name}_count", **fast_labels) == 4
    assert value(series, f"{name}_sum", **fast_labels) == pytest.approx(3.061)
    assert value(series, f"{name}_bucket", **dict(slow), le="0.1") == 0
    assert value(series, f"{name}_bucket", **dict(slow), le="1") == 1


def _partner(base_url: str, *, approved: bool = True) -> Partner:
    return Partner(base_url, base_url, "BE", {"id": base_url}, approved=approved)


def test_snapshot_lag_backlog_breaker_and_only_approved_partners() -> None:
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    a, b, stranger = "https://a.example", "https://b.example", "https://stranger.example"
    snapshot = Snapshot(
        log_size=10,
        counts=Counts(
            objects={(a, "Event", False): 4, (a, "Event", True): 1},
            rejections={(b, "proof"): 2},
        ),
        partners=[_partner(a), _partner(b), _partner(stranger, approved=False)],
        origins=[
            OriginState(a, next_seq=7, checkpoint_size=12),
            OriginState(b, next_seq=5, checkpoint_size=5, halted=True),
            OriginState(stranger, next_seq=0, checkpoint_size=9),
        ],
        deliveries=[
            DeliveryState(a, 10, 0, moment, "closed"),
            DeliveryState(b, 6, 5, moment, "open", "timed out"),
            DeliveryState(stranger, 0, 0, moment, "closed"),
        ],
        up={a: True, b: False, stranger: True},
        pushes={(a, "sent"): 3, (b, "failed"): 5, (stranger, "sent"): 1},
    )
    series = parse(render(snapshot_families(snapshot)))
    assert value(series, "exchange_log_entries") == 10
    assert value(series, "exchange_objects", origin=a, type="Event", state="current") == 4
    assert value(series, "exchange_objects", origin=a, type="Event", state="deleted") == 1
    assert value(series, "exchange_rejections_total", origin=b, problem="proof") == 2
    assert value(series, "exchange_origin_lag_entries", partner=a) == 5
    assert value(series, "exchange_origin_lag_entries", partner=b) == 0
    assert value(series, "exchange_origin_halted", partner=b) == 1
    assert value(series, "exchange_delivery_backlog_entries", partner=a) == 0
    assert value(series, "exchange_delivery_backlog_entries", partner=b) == 4
    assert value(series, "exchange_delivery_consecutive_failures", partner=b) == 5
    assert value(series, "exchange_delivery_breaker", partner=b, state="open") == 1
    assert value(series, "exchange_delivery_breaker", partner=b, state="closed") == 0
    assert value(series, "exchange_delivery_pushes_total", partner=b, outcome="failed") == 5
    assert value(series, "exchange_partner_up", partner=a) == 1
    assert value(series, "exchange_partner_up", partner=b) == 0
    assert value(series, "exchange_follow_requests_pending") == 1
    # A node that only asked to follow gets no series of its own.
    assert not [key for key in series if ("partner", stranger) in key[1]]


# --- one node over HTTP --------------------------------------------------------------------


async def scrape(client: TestClient[Any, Any], node: InitResult) -> Series:
    response = await client.get("/metrics", headers=bearer(node))
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-store"
    return parse(await response.text())


async def test_metrics_need_the_operator_token_by_default(
    client: TestClient[Any, Any], node: InitResult
) -> None:
    missing = await client.get("/metrics")
    await assert_problem(missing, 401, "unauthorized")
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = await client.get("/metrics", headers={"Authorization": "Bearer not-the-token"})
    await assert_problem(wrong, 401, "unauthorized")
    assert "invalid_token" in wrong.headers["WWW-Authenticate"]
    assert value(await scrape(client, node), "exchange_log_entries") == 0


async def test_metrics_are_open_when_the_config_says_so(
    node: InitResult, aiohttp_client: ClientFactory
) -> None:
    client = await aiohttp_client(create_app(replace(node.settings, metrics_token_required=False)))
    response = await client.get("/metrics")
    assert response.status == 200
    assert value(parse(await response.text()), "exchange_log_entries") == 0


async def test_entries_objects_and_rejections_are_counted_from_the_store(
    client: TestClient[Any, Any], node: InitResult
) -> None:
    results = await publish(client, node, [draft(1), draft(2), draft(3)])
    slug = results[0]["id"].rsplit("/", 1)[1]
    assert (await client.delete(f"/admin/objects/{slug}", headers=bearer(node))).status == 200
    store = client.server.app[NODE].store
    partner = "https://partner.example"
    await store.add_rejections(
        [
            Rejection(partner, 4, "bad proof", "proof", "2026-01-01T00:00:00Z"),
            Rejection(partner, 5, "bad proof", "proof", "2026-01-01T00:00:00Z"),
            Rejection(partner, None, "no schema", "schema", "2026-01-01T00:00:00Z"),
        ]
    )
    series = await scrape(client, node)
    origin = node.settings.base_url
    assert value(series, "exchange_log_entries") == 4
    assert (
        value(series, "exchange_objects", origin=origin, type="BestPractice", state="current") == 2
    )
    assert (
        value(series, "exchange_objects", origin=origin, type="BestPractice", state="deleted") == 1
    )
    assert value(series, "exchange_rejections_total", origin=partner, problem="proof") == 2
    assert value(series, "exchange_rejections_total", origin=partner, problem="schema") == 1


async def test_the_latency_histogram_labels_routes_not_urls(
    client: TestClient[Any, Any], node: InitResult
) -> None:
    for slug in ("one", "two", "three"):
        assert (await client.get(f"/objects/{slug}")).status == 404
    assert (await client.get("/no/such/path")).status == 404
    assert (await client.request("PROPFIND", "/feed")).status == 405
    assert (await client.get("/feed")).status == 200
    series = await scrape(client, node)
    routes = {
        dict(labels)["route"]
        for name, labels in series
        if name == "exchange_http_request_duration_seconds_count"
    }
    assert routes == {"/objects/{slug}", "unmatched", "/feed"}
    count = "exchange_http_request_duration_seconds_count"
    assert value(series, count, route="/objects/{slug}", method="GET", status="4xx") == 3
    assert value(series, count, route="unmatched", method="GET", status="4xx") == 1
    assert value(series, count, route="unmatched", method="other", status="4xx") == 1
    assert value(series, count, route="/feed", method="GET", status="2xx") == 1


async def test_healthz_and_readyz_then_not_ready_when_the_store_is_closed(
    client: TestClient[Any, Any],
) -> None:
    health = await client.get("/healthz")
    assert health.status == 200
    assert await health.json() == {"status": "ok"}
    assert health.headers["Cache-Control"] == "no-store"
    ready = await client.get("/readyz")
    assert ready.status == 200
    assert await ready.json() == {"status": "ready"}
    assert ready.headers["Cache-Control"] == "no-store"
    await client.server.app[NODE].store.close()
    body = await assert_problem(await client.get("/readyz"), 503, "not-ready")
    assert body["detail"] == "the store does not answer"
    assert (await client.get("/healthz")).status == 200  # alive, only not ready


async def test_request_ids_are_echoed_or_generated_on_every_answer(
    client: TestClient[Any, Any],
) -> None:
    echoed = await client.get("/healthz", headers={"X-Request-Id": "edge-7f3a.42:b"})
    assert echoed.headers["X-Request-Id"] == "edge-7f3a.42:b"
    for sent in (None, "has spaces in it", "x" * 129, "new\\nline"):
        headers = {} if sent is None else {"X-Request-Id": sent}
        response = await client.get("/healthz", headers=headers)
        assert GENERATED_ID.fullmatch(response.headers["X-Request-Id"]), sent
    first, second = [(await client.get("/healthz")).headers["X-Request-Id"] for _ in range(2)]
    assert first != second
    # problem+json answers, and redirects raised past the problem middleware, carry it too
    missing = await client.get("/objects/nope", headers={"X-Request-Id": "r-404"})
    assert missing.headers["X-Request-Id"] == "r-404"
    redirect = await client.get(
        "/", headers={"Accept": "text/html", "X-Request-Id": "r-303"}, allow_redirects=False
    )
    assert redirect.status == 303
    assert redirect.headers["X-Request-Id"] == "r-303"


# --- log lines ---------------------------------------------------------------------------


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """Every record of the loggers the node uses, as JSON lines (as configure_logging does
    for the root logger; pytest keeps the root for its own capture)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestContext())
    loggers = [logging.getLogger(name) for name in ("exchange.access", "exchange.http")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    yield stream
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(handler)
        logger.setLevel(level)


def lines_of(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_access_lines_and_lines_logged_while_handling_carry_the_request_id(
    client: TestClient[Any, Any], json_lines: io.StringIO
) -> None:
    assert (await client.get("/feed", headers={"X-Request-Id": "access-1"})).status == 200
    await client.server.app[NODE].store.close()
    assert (await client.get("/readyz", headers={"X-Request-Id": "ready-1"})).status == 503
    lines = lines_of(json_lines)
    (feed,) = [line for line in lines if line.get("request_id") == "access-1"]
    assert feed["logger"] == "exchange.access"
    assert feed["level"] == "INFO"
    assert (feed["method"], feed["path"], feed["status"]) == ("GET", "/feed", 200)
    assert isinstance(feed["duration_ms"], float)
    assert feed["message"].startswith("GET /feed 200 ")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", feed["time"])
    warning, access = [line for line in lines if line.get("request_id") == "ready-1"]
    assert (warning["logger"], warning["level"]) == ("exchange.http.operations", "WARNING")
    assert "the store does not answer" in warning["message"]
    assert (access["level"], access["status"]) == ("DEBUG", 503)  # probes are quiet


def test_json_lines_keep_extra_members_and_the_exception() -> None:
    formatter = JsonFormatter()
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.getLogger("exchange.test").makeRecord(
            "exchange.test",
            logging.ERROR,
            __file__,
            1,
            "failed %s",
            ("here",),
            sys.exc_info(),
            extra={"partner": "https://a.example", "attempts": 3, "level": "not the level"},
        )
    token = REQUEST_ID.set("ctx-1")
    try:
        RequestContext().filter(record)
    finally:
        REQUEST_ID.reset(token)
    line = json.loads(formatter.format(record))
    assert line["message"] == "failed here"
    assert line["level"] == "ERROR"  # extra never overwrites the core members
    assert line["request_id"] == "ctx-1"
    assert (line["partner"], line["attempts"]) == ("https://a.example", 3)
    assert "RuntimeError: boom" in line["exception"]
    outside = logging.makeLogRecord({"name": "exchange", "msg": "no request"})
    RequestContext().filter(outside)
    assert "request_id" not in json.loads(formatter.format(outside))
    assert "[-] no request" in TextFormatter().format(outside)


# --- settings ----------------------------------------------------------------------------


def test_operations_settings_are_rendered_loaded_and_checked(node: InitResult) -> None:
    home = node.settings.home
    settings = load_settings(home, {})
    assert (settings.metrics_token_required, settings.log_format) == (True, "text")
    assert load_settings(home, {"EXCHANGE_LOG_FORMAT": "json"}).log_format == "json"
    with pytest.raises(UsageError, match="log_format"):
        load_settings(home, {"EXCHANGE_LOG_FORMAT": "xml"})
    config = home / "exchange.toml"
    text = config.read_text()
    assert "metrics_token_required = true" in text
    config.write_text(
        text.replace("metrics_token_required = true", "metrics_token_required = false")
    )
    assert load_settings(home, {}).metrics_token_required is False
    config.write_text(
        text.replace("metrics_token_required = true", 'metrics_token_required = "no"')
    )
    with pytest.raises(UsageError, match="metrics_token_required must be a bool"):
        load_settings(home, {})


# --- partners ----------------------------------------------------------------------------


async def _scrape_running(node: RunningNode) -> Series:
    return parse(await get_as_operator(node, "/metrics"))


async def test_a_scrape_after_a_partner_sync_shows_merged_entries_lag_and_deliveries(
    tmp_path: Path,
) -> None:
    async with pinned_pair(tmp_path) as (dutch, flemish):
        await dutch.node.publish([draft(i) for i in range(3)])
        await flemish.federation.follow(dutch.base_url)
        await flemish.federation.sync(dutch.base_url)
        theirs = await _scrape_running(flemish)
        origin = dutch.base_url
        assert value(theirs, "exchange_log_entries") == 0
        assert value(theirs, "exchange_origin_merged_entries", partner=origin) == 3
        assert value(theirs, "exchange_origin_checkpoint_entries", partner=origin) == 3
        assert value(theirs, "exchange_origin_lag_entries", partner=origin) == 0
        assert value(theirs, "exchange_origin_halted", partner=origin) == 0
        assert value(theirs, "exchange_partner_up", partner=origin) == 1
        assert (
            value(theirs, "exchange_objects", origin=origin, type="BestPractice", state="current")
            == 3
        )
        ours = await _scrape_running(dutch)
        subscriber = flemish.base_url
        assert value(ours, "exchange_log_entries") == 3
        assert value(ours, "exchange_delivery_delivered_entries", partner=subscriber) == 3
        assert value(ours, "exchange_delivery_backlog_entries", partner=subscriber) == 0
        assert value(ours, "exchange_delivery_breaker", partner=subscriber, state="closed") == 1

        # The subscriber goes away: pushes fail, the backlog grows, the partner is down.
        await flemish.stop()
        await dutch.node.publish([draft(3), draft(4)])

        async def failed() -> bool:
            state = await dutch.node.store.get_delivery(subscriber)
            return state is not None and state.attempts >= 1

        await eventually(failed)
        ours = await _scrape_running(dutch)
        assert value(ours, "exchange_log_entries") == 5
        assert value(ours, "exchange_delivery_backlog_entries", partner=subscriber) == 2
        assert value(ours, "exchange_delivery_consecutive_failures", partner=subscriber) >= 1
        pushes = "exchange_delivery_pushes_total"
        assert value(ours, pushes, partner=subscriber, outcome="failed") >= 1
        assert value(ours, "exchange_partner_up", partner=subscriber) == 0


# --- exchange serve ----------------------------------------------------------------------


def test_serve_writes_json_log_lines_with_the_request_id(tmp_path: Path) -> None:
    port = free_port()
    result = make_node(tmp_path / "node", base_url=f"http://127.0.0.1:{port}")
    process = subprocess.Popen(
        [sys.executable, "-m", "exchange.cli", "serve", "--home", str(result.settings.home)],
        cwd=PROJECT,  # this checkout's package, whatever is installed
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "EXCHANGE_LOG_FORMAT": "json", "EXCHANGE_VERIFY_WORKERS": "0"},
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/readyz", headers={"X-Request-Id": "probe-1"}
            )
            try:
                with urllib.request.urlopen(request, timeout=1) as response:
                    assert response.headers["X-Request-Id"] == "probe-1"
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    pytest.fail("serve did not come up")
                time.sleep(0.1)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/feed", headers={"X-Request-Id": "feed-1"}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    lines = [json.loads(line) for line in err.splitlines()]  # every line is one JSON object
    (access,) = [line for line in lines if line.get("request_id") == "feed-1"]
    assert access["logger"] == "exchange.access"
    assert (access["method"], access["path"], access["status"]) == ("GET", "/feed", 200)
    # the probe is logged at DEBUG, below the INFO level serve logs at
    assert not [line for line in lines if line.get("request_id") == "probe-1"]
