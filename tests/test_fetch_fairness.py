"""Fairness on one host, against a real local server: a source's budget starts when its
request starts (not while it queues for a slot), and a response that stops making progress
gives its slot back after `read_timeout`, however slowly its server trickles bytes.

Timeouts are short and budgets generous; tests wait on conditions and assert outcomes and
counts, never how fast anything went.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from tests.helpers import config_for, cycle, feed_source, rss
from tests.httpserver import FeedServer
from watcher.fetch import Fetcher, FetchLimits, FetchRequest
from watcher.store import Store

FEED = rss([("Fine", "https://e.org/fine")])
STALLED = "timed out (the body stalled: less than 64 KiB in 1s)"


@pytest.fixture
def stop() -> Iterator[threading.Event]:
    """Set at the end of each test: every trickling or waiting handler returns."""
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture
def server(stop: threading.Event) -> Iterator[FeedServer]:
    with FeedServer() as s:
        yield s
        stop.set()  # before the server shuts down


def trickle(stop: threading.Event, *, status: int = 200, **headers: str) -> Callable[..., None]:
    """A handler that sends its headers, then one byte of a long body every 50 ms."""

    def handler(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        h.send_header("Content-Type", "application/rss+xml")
        h.send_header("Content-Length", "1000000")
        for name, value in headers.items():
            h.send_header(name, value)
        h.end_headers()
        give_up = time.monotonic() + 120
        while not stop.is_set() and time.monotonic() < give_up:
            h.wfile.write(b" ")
            stop.wait(0.05)

    return handler


def trickle_headers(stop: threading.Event) -> Callable[..., None]:
    """A handler that never finishes its headers: one byte of one every 50 ms."""

    def handler(h: BaseHTTPRequestHandler) -> None:
        h.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        give_up = time.monotonic() + 120
        while not stop.is_set() and time.monotonic() < give_up:
            h.wfile.write(b"a")
            stop.wait(0.05)

    return handler


def gate(stop: threading.Event) -> Callable[..., None]:
    """A handler that answers nothing until the test ends."""

    def handler(h: BaseHTTPRequestHandler) -> None:
        stop.wait(120)

    return handler


async def until(condition: Callable[[], bool], what: str, deadline: float = 60) -> None:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > deadline:
            pytest.fail(f"timed out after {deadline}s waiting for {what}")
        await asyncio.sleep(0.02)


def limits(**kw: Any) -> FetchLimits:
    defaults: dict[str, Any] = {
        "per_host": 2,
        "connect_timeout": 5.0,
        "read_timeout": 1.0,
        "source_timeout": 60.0,
        "retries": 0,
        "allow_private": True,  # the server is on loopback
    }
    return FetchLimits(**{**defaults, **kw})


def get(fetcher: Fetcher, server: FeedServer, path: str) -> asyncio.Task[Any]:
    return asyncio.create_task(fetcher.fetch(FetchRequest(source_id=path, url=server.url(path))))


async def test_two_trickling_urls_do_not_starve_the_host(
    server: FeedServer, stop: threading.Event
) -> None:
    for path in ("/slow1", "/slow2"):
        server.route(path, handler=trickle(stop))
    for n in range(3):
        server.route(f"/ok{n}", body=FEED)
    async with Fetcher(limits()) as fetcher:
        slow = [get(fetcher, server, p) for p in ("/slow1", "/slow2")]
        await until(lambda: sum(server.active.values()) == 2, "both trickles to hold a slot")
        healthy = [get(fetcher, server, f"/ok{n}") for n in range(3)]
        results = await asyncio.gather(*slow, *healthy)
    for result in results[2:]:
        assert result.ok and result.body == FEED
    for result in results[:2]:  # cut by the stall rule, long before the 60 s budget
        assert result.error == STALLED
        assert result.final_url == result.url
    assert [len(server.hits(p)) for p in ("/slow1", "/slow2")] == [1, 1]


async def test_the_budget_starts_when_the_request_starts(
    server: FeedServer, stop: threading.Event
) -> None:
    """One slot, two requests ahead that each use their whole 3 s budget: the third waits
    about twice its budget for the slot and still gets all of it."""
    server.route("/hold1", handler=gate(stop))
    server.route("/hold2", handler=gate(stop))
    server.route("/ok", body=FEED)
    async with Fetcher(limits(per_host=1, source_timeout=3.0, read_timeout=30.0)) as fetcher:
        first = get(fetcher, server, "/hold1")
        await until(lambda: len(server.hits("/hold1")) == 1, "the first request")
        second, third = get(fetcher, server, "/hold2"), get(fetcher, server, "/ok")
        results = await asyncio.gather(first, second, third)
    budget = "no complete response within the source's 3s budget"
    assert [r.error for r in results] == [budget, budget, None]
    assert results[2].body == FEED
    assert [s.path for s in server.requests] == ["/hold1", "/hold2", "/ok"]  # in turn


async def test_headers_that_never_finish_give_the_slot_back(
    server: FeedServer, stop: threading.Event
) -> None:
    server.route("/slow", handler=trickle_headers(stop))
    async with Fetcher(limits(connect_timeout=1.0)) as fetcher:
        result = await fetcher.fetch(FetchRequest(source_id="s", url=server.url("/slow")))
    assert result.error == "timed out (no response headers within 2s)"


async def test_a_body_that_keeps_coming_is_not_cut(server: FeedServer) -> None:
    """Slower in all than read_timeout, but 64 KiB at a time well within it."""
    block = b"<!-- " + b"x" * (64 * 1024) + b" -->"

    def steady(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/rss+xml")
        h.send_header("Content-Length", str(len(block) * 12 + len(FEED)))
        h.end_headers()
        for _ in range(12):
            h.wfile.write(block)
            time.sleep(0.25)
        h.wfile.write(FEED)

    server.route("/big", handler=steady)
    async with Fetcher(limits(read_timeout=2.0)) as fetcher:
        result = await fetcher.fetch(FetchRequest(source_id="s", url=server.url("/big")))
    assert result.ok and result.body is not None and result.body.endswith(FEED)


async def test_a_redirects_body_is_never_read(server: FeedServer, stop: threading.Event) -> None:
    server.route("/go", handler=trickle(stop, status=302, Location="/feed"))
    server.route("/feed", body=FEED)
    async with Fetcher(limits()) as fetcher:
        result = await fetcher.fetch(FetchRequest(source_id="s", url=server.url("/go")))
    assert result.ok and result.final_url == server.url("/feed")


def test_healthy_sources_on_a_host_with_two_trickling_feeds_are_polled(
    store: Store, server: FeedServer, stop: threading.Event
) -> None:
    """The reported case, through a cycle: two trickling feeds and three healthy ones on
    one host; the healthy ones are polled, the trickling ones fail with the reason."""
    sources = []
    for n in (1, 2):
        server.route(f"/slow{n}", handler=trickle(stop))
        sources.append(feed_source(server, f"slow{n}", f"/slow{n}"))
    for n in range(3):
        server.route(f"/ok{n}", body=rss([(f"Fine {n}", f"https://e.org/{n}")]))
        sources.append(feed_source(server, f"ok{n}", f"/ok{n}"))
    config = config_for(sources, read_timeout="1s", source_timeout="60s", retries=1, per_host=2)
    reports, _ = cycle(config, store)
    assert {sid: r.outcome for sid, r in reports.items()} == {
        "slow1": "failed",
        "slow2": "failed",
        "ok0": "ok",
        "ok1": "ok",
        "ok2": "ok",
    }
    states = store.source_states()
    for sid in ("slow1", "slow2"):
        assert states[sid].last_error == f"{STALLED} (after 2 attempts)"
        assert len(server.hits(f"/{sid}")) == 2
    assert store.item_count() == 3
