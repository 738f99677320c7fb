"""What the fetcher keeps per host is bounded: against real local servers (one per port, so
one fetcher host each), the clients and keep-alive connections of at most `max_hosts` hosts
stay open, an idle host's client is closed after `idle_timeout` (an injected clock), expired
robots.txt answers are dropped, and a host in use keeps its slots (its politeness holds).

Tests wait on conditions (the servers count the connections open to them) and assert counts,
never how fast anything went.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from watcher.fetch import ROBOTS_TTL, SWEEP_EVERY, Fetcher, FetchLimits, FetchRequest

FEED = b"<rss><channel><title>t</title></channel></rss>"


class Host:
    """A keep-alive HTTP server on a port of its own, counting the connections open to it and
    the requests in progress at once."""

    def __init__(self, delay: float = 0.0) -> None:
        self.open = 0
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with host.lock:
                    host.open += 1

            def finish(self) -> None:
                with host.lock:
                    host.open -= 1
                super().finish()

            def do_GET(self) -> None:
                with host.lock:
                    host.active += 1
                    host.max_active = max(host.max_active, host.active)
                try:
                    time.sleep(delay)
                    body = b"User-agent: *\nAllow: /\n" if self.path == "/robots.txt" else FEED
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                finally:
                    with host.lock:
                        host.active -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def url(self, path: str = "/feed") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def hosts() -> Iterator[list[Host]]:
    servers = [Host() for _ in range(12)]
    yield servers
    for server in servers:
        server.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limits() -> FetchLimits:
    return FetchLimits(per_host=1, retries=0, allow_private=True)  # the servers are on loopback


async def until(condition: Callable[[], bool], what: str, deadline: float = 60) -> None:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > deadline:
            pytest.fail(f"timed out after {deadline}s waiting for {what}")
        await asyncio.sleep(0.02)


def open_connections(servers: list[Host]) -> int:
    return sum(s.open for s in servers)


async def test_clients_and_connections_of_at_most_max_hosts_stay_open(
    hosts: list[Host],
) -> None:
    async with Fetcher(limits(), max_hosts=4) as fetcher:
        for n, server in enumerate(hosts):
            result = await fetcher.fetch(FetchRequest(source_id=f"s{n}", url=server.url()))
            assert result.ok and result.body == FEED
        assert fetcher.hosts == 4
        # the servers see the closed connections go: no more than the kept hosts' stay open
        await until(lambda: open_connections(hosts) <= 4, "the evicted connections to close")
        assert [s.open for s in hosts[-4:]] == [1, 1, 1, 1]  # the most recently used kept
        again = await fetcher.fetch(FetchRequest(source_id="s0", url=hosts[0].url()))
        assert again.ok and fetcher.hosts == 4
    await until(lambda: open_connections(hosts) == 0, "every connection to close at the end")


async def test_an_idle_host_is_closed_and_expired_robots_answers_dropped(
    hosts: list[Host],
) -> None:
    clock = Clock()
    async with Fetcher(limits(), idle_timeout=300, clock=clock) as fetcher:
        for server in hosts[:3]:
            request = FetchRequest(source_id="s", url=server.url(), robots=True)
            assert (await fetcher.fetch(request)).ok
        assert fetcher.hosts == 3 and len(fetcher._robots) == 3
        clock.now += 299
        await fetcher.sweep()
        assert fetcher.hosts == 3  # not idle long enough yet
        clock.now += SWEEP_EVERY  # idle long enough, and the next sweep due
        assert (await fetcher.fetch(FetchRequest(source_id="s", url=hosts[3].url()))).ok
        assert fetcher.hosts == 1  # the three idle ones closed by the sweep as it ended
        await until(lambda: open_connections(hosts) == 1, "the idle connections to close")
        assert len(fetcher._robots) == 3  # answers live for ROBOTS_TTL
        clock.now += ROBOTS_TTL
        await fetcher.sweep()
        assert fetcher._robots == {} and fetcher.hosts == 0


async def test_a_host_in_use_keeps_its_slots_however_many_hosts_come_and_go() -> None:
    """One slot per host and room for one host: requests to two hosts at once still go one
    at a time to each (the host in use is never evicted, so its slot is never replaced)."""
    servers = [Host(delay=0.05) for _ in range(2)]
    try:
        async with Fetcher(limits(), max_hosts=1) as fetcher:
            results = await asyncio.gather(
                *(
                    fetcher.fetch(FetchRequest(source_id=f"s{n}", url=servers[n % 2].url()))
                    for n in range(8)
                )
            )
        assert all(r.ok for r in results)
        assert [s.max_active for s in servers] == [1, 1]
    finally:
        for server in servers:
            server.close()
