"""HTTP: a source's URL → FetchResult, politely and safely. Never raises for network or HTTP faults.

Politeness: one small connection pool per host (`per_host` connections, and as many requests
at once), a global limit, conditional GET, retries with exponential backoff and jitter on
timeouts, connection errors, 429 and 5xx (honouring Retry-After: a wait beyond the budget ends
the fetch with `retry_after` set, which the pipeline carries to the source's next poll), an
identifying User-Agent and robots.txt for pages scraped.

Bounded state: article links, redirects and re-checks reach new hosts for as long as the daemon
runs, so what is kept per host is bounded. The clients (each with its keep-alive connections)
of at most `MAX_HOSTS` hosts are kept, the least recently used closed beyond that, and a host
unused for `HOST_IDLE` seconds has its client closed (its connections with it, including any
its server already closed, which httpcore would otherwise keep until the pool is used again);
a host in use (a request running or waiting for its slot) is never closed, so its slots, and
with them its politeness, hold. A robots.txt answer is dropped when it expires (`ROBOTS_TTL`),
and at most `ROBOTS_MAX_ORIGINS` are kept. The sweep runs as requests end (`Fetcher.sweep`).

Fairness: a source's time budget (`source_timeout`, retries included) runs while its own
requests run and while it waits to retry, never while it waits its turn for a host's slot;
and a response that stops making progress gives its slot back after `read_timeout` (a server
that trickles bytes cannot hold a host's slots for the whole budget):

    per hop      the response headers within connect_timeout + read_timeout
    the body     at least PROGRESS_BYTES (or the rest of it) every read_timeout

Safety: a body cap enforced while streaming (on the decoded bytes, inflated in bounded steps: a
gzip bomb is refused at the cap, never inflated whole), a redirect limit (redirects are followed
here, one hop at a time, and a redirect's own body is never read; a hop to another origin
carries none of the source's own headers and no request body), and the address policy: every
connection, to a configured URL, a redirect's target, an article page or robots.txt, is made
by `_GuardedBackend`, which resolves the name once, refuses the connection when any address is
loopback, private, link-local, a cloud metadata service or otherwise not public (unless
`allow_private_addresses`), and connects to the address it checked, so a name that resolves
elsewhere the second time (DNS rebinding) cannot slip through.

Usage::

    async with Fetcher(FetchLimits.from_settings(settings)) as fetcher:
        result = await fetcher.fetch(FetchRequest(source_id="x", url="https://…", etag=...))
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import os
import random
import socket
import ssl
import time
import zlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from itertools import pairwise
from typing import Any
from urllib.parse import urlsplit
from urllib.robotparser import RobotFileParser

import httpcore
import httpx

from watcher import __version__, health
from watcher.types import FetchResult
from watcher.urls import url_problem

log = logging.getLogger(__name__)

#: How long a robots.txt answer is trusted.
ROBOTS_TTL = 3600.0
ROBOTS_MAX_BYTES = 512 * 1024

#: Hosts whose clients (and keep-alive connections) are kept; the least recently used beyond.
MAX_HOSTS = 64
#: Seconds a host's client is kept unused before it is closed.
HOST_IDLE = 300.0
#: Origins whose robots.txt answer is kept (the oldest unused ones dropped beyond it).
ROBOTS_MAX_ORIGINS = 1024
#: Seconds between sweeps for idle hosts and expired robots.txt answers (sooner when over a bound).
SWEEP_EVERY = 30.0

#: A body must bring at least this much (or its end) every `read_timeout`, or it has stalled.
PROGRESS_BYTES = 64 * 1024

IPAddress = IPv4Address | IPv6Address


@dataclass(frozen=True, kw_only=True)
class FetchRequest:
    source_id: str
    url: str
    method: str = "GET"
    params: dict[str, Any] = field(default_factory=dict)
    json_body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    last_modified: str | None = None
    #: Check robots.txt first (pages scraped, not feeds or APIs).
    robots: bool = False


@dataclass(frozen=True)
class FetchLimits:
    concurrency: int = 100
    per_host: int = 2
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    source_timeout: float = 45.0
    retries: int = 2
    max_body: int = 10 * 1024 * 1024
    max_redirects: int = 5
    #: First retry delay in seconds; doubled per retry, ±50 % jitter.
    retry_base: float = 0.5
    contact: str = ""
    #: Connect to loopback, private, link-local and metadata addresses too.
    allow_private: bool = False

    @classmethod
    def from_settings(cls, settings: Any) -> FetchLimits:
        return cls(
            concurrency=settings.concurrency,
            per_host=settings.per_host,
            connect_timeout=settings.connect_timeout.total_seconds(),
            read_timeout=settings.read_timeout.total_seconds(),
            source_timeout=settings.source_timeout.total_seconds(),
            retries=settings.retries,
            max_body=settings.max_body,
            max_redirects=settings.max_redirects,
            contact=settings.contact,
            allow_private=settings.allow_private_addresses,
        )


class _Retry(Exception):
    """An attempt that may succeed if tried again."""

    def __init__(self, result: FetchResult, retry_after: float | None = None) -> None:
        super().__init__(result.error)
        self.result = result
        self.retry_after = retry_after


class _Run:
    """One fetch's budget and whereabouts.

    The budget (`left`, seconds) is spent while the source's requests run and while it waits
    to retry, never while it queues for a host's slot: the budget of a source starts when its
    request starts.
    """

    def __init__(self, budget: float) -> None:
        self.left = budget
        #: Where the last redirect of the request in progress led (None: no redirect), so
        #: that a failure after a redirect is recorded with the address it happened at.
        self.redirect: str | None = None
        #: time.monotonic() when the first request started (None: none started yet).
        self.first: float | None = None

    def elapsed(self) -> float:
        return 0.0 if self.first is None else time.monotonic() - self.first


_SSL_CONTEXT: ssl.SSLContext | None = None


def _ssl_context() -> ssl.SSLContext:
    """One context for all clients (building one costs milliseconds of CPU each), trusting
    the CA bundle in SSL_CERT_FILE when set (a corporate proxy's CA), else certifi's, as
    httpx does by default."""
    global _SSL_CONTEXT
    if _SSL_CONTEXT is None:
        cafile = os.environ.get("SSL_CERT_FILE")
        if not cafile:
            import certifi

            cafile = certifi.where()
        _SSL_CONTEXT = ssl.create_default_context(cafile=cafile)
    return _SSL_CONTEXT


class _Host:
    """One host's client and slots, and how many requests use them (running or waiting)."""

    __slots__ = ("client", "last_used", "slots", "users")

    def __init__(self, client: httpx.AsyncClient, per_host: int, now: float) -> None:
        self.client = client
        self.slots = asyncio.Semaphore(per_host)
        self.users = 0
        self.last_used = now


class _Robots:
    """One origin's robots.txt answer (None until loaded) and the lock its loaders share."""

    __slots__ = ("loaded_at", "lock", "rules", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0
        self.loaded_at: float | None = None
        self.rules: RobotFileParser | str | None = None


class Fetcher:
    """Per-host async clients with small pools, shared limits and a robots.txt cache, each
    bounded (`max_hosts` clients, closed after `idle_timeout` unused; see the module's doc).

    `transport` replaces the network (tests pass `httpx.MockTransport`); the address policy
    lives in the default transport, which is the only one that opens connections. `clock`
    (monotonic seconds) times idleness and robots.txt answers."""

    def __init__(
        self,
        limits: FetchLimits,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        max_hosts: int = MAX_HOSTS,
        idle_timeout: float = HOST_IDLE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self.user_agent = (
            f"watcher/{__version__} (+{limits.contact})"
            if limits.contact
            else f"watcher/{__version__}"
        )
        self._transport = transport
        self.max_hosts = max_hosts
        self.idle_timeout = idle_timeout
        self._clock = clock
        #: By host, the least recently used first.
        self._hosts: OrderedDict[str, _Host] = OrderedDict()
        self._global = asyncio.Semaphore(limits.concurrency)
        self._robots: dict[str, _Robots] = {}
        self._next_sweep = clock() + SWEEP_EVERY
        #: Clients being closed after a sweep (awaited by `aclose`).
        self._closing: set[asyncio.Task[None]] = set()
        #: Requests made, for tests and metrics.
        self.requests = 0

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        hosts, self._hosts = list(self._hosts.values()), OrderedDict()
        for entry in hosts:
            await entry.client.aclose()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    @property
    def hosts(self) -> int:
        """Hosts whose client is kept (for tests and the operator's questions)."""
        return len(self._hosts)

    async def sweep(self) -> None:
        """Close the clients of idle hosts (and of the least recently used beyond
        `max_hosts`), and drop expired robots.txt answers, now."""
        await _close_all(self._evict(force=True))

    def _evict(self, *, force: bool = False) -> list[httpx.AsyncClient]:
        """Take the hosts not in use that are idle or over the bound out of the fetcher (their
        clients are returned, to close), and the expired robots.txt answers not in use."""
        now = self._clock()
        over = len(self._hosts) > self.max_hosts or len(self._robots) > ROBOTS_MAX_ORIGINS
        if not (force or over or now >= self._next_sweep):
            return []
        self._next_sweep = now + SWEEP_EVERY
        gone = []
        for host, entry in list(self._hosts.items()):  # the least recently used first
            if entry.users:
                continue
            if len(self._hosts) > self.max_hosts or now - entry.last_used >= self.idle_timeout:
                del self._hosts[host]
                gone.append(entry.client)
        for origin, robots in list(self._robots.items()):  # the oldest first
            if robots.users:
                continue
            expired = robots.loaded_at is None or now - robots.loaded_at > ROBOTS_TTL
            if expired or len(self._robots) > ROBOTS_MAX_ORIGINS:
                del self._robots[origin]
        return gone

    def _close_later(self, clients: list[httpx.AsyncClient]) -> None:
        """Close in a task of its own: a request cancelled as it ends cannot cut it short."""
        if clients:
            task = asyncio.ensure_future(_close_all(clients))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def _new_client(self) -> httpx.AsyncClient:
        lim = self.limits
        pool = httpx.Limits(max_connections=lim.per_host, max_keepalive_connections=lim.per_host)
        return httpx.AsyncClient(
            transport=self._transport or _GuardedTransport(pool, allow_private=lim.allow_private),
            timeout=httpx.Timeout(
                connect=lim.connect_timeout,
                read=lim.read_timeout,
                write=lim.read_timeout,
                pool=None,
            ),
            follow_redirects=False,  # _open follows them, one checked hop at a time
            headers={"User-Agent": self.user_agent, "Accept-Encoding": ACCEPT_ENCODING},
            trust_env=False,
        )

    @contextlib.asynccontextmanager
    async def _host(self, host: str) -> AsyncIterator[_Host]:
        """The host's client and slots, kept while in use (counted from before its slot is
        waited for), closed by a later sweep once unused."""
        entry = self._hosts.get(host)
        if entry is None:
            entry = _Host(self._new_client(), self.limits.per_host, self._clock())
            self._hosts[host] = entry
        else:
            self._hosts.move_to_end(host)
        entry.users += 1
        try:
            yield entry
        finally:
            entry.users -= 1
            entry.last_used = self._clock()
            self._close_later(self._evict())

    async def fetch(self, request: FetchRequest) -> FetchResult:
        """Fetch with retries inside the source's time budget; faults come back as values."""
        run = _Run(self.limits.source_timeout)
        attempts = 0
        result: FetchResult
        if problem := url_problem(request.url):  # no connection could use it
            return self._fail(request, f"bad URL: {problem}", run, 0)
        try:
            if request.robots:
                refusal = await self._robots_refusal(request, run)
                if refusal:
                    return self._fail(request, refusal, run, 0)
            while True:
                attempts += 1
                wait = None
                try:
                    result = await self._attempt(request, run, attempts)
                    break
                except _Retry as retry:
                    result = retry.result
                    wait = retry.retry_after
                    if attempts > self.limits.retries:
                        break
                    delay = self._delay(attempts, retry.retry_after)
                    if delay >= run.left:
                        break
                    log.debug(
                        "retrying %s in %.1fs: %s",
                        request.url,
                        delay,
                        result.error,
                        extra={"source": request.source_id, "action": "fetch_retry"},
                    )
                    await asyncio.sleep(delay)
                    run.left -= delay
        except TimeoutError:
            budget = self.limits.source_timeout
            return self._fail(
                request,
                f"no complete response within the source's {budget:g}s budget",
                run,
                attempts,
                final_url=run.redirect,
            )
        if result.error and wait is not None and wait >= 1:
            # Asked to wait longer than this poll could: the next poll waits (pipeline).
            asked = _duration(wait)
            result = _replace(
                result, error=f"{result.error}; asked to wait {asked}", retry_after=wait
            )
        if result.error and attempts > 1:
            result = _replace(result, error=f"{result.error} (after {attempts} attempts)")
        return result

    def _delay(self, attempts: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return max(0.0, retry_after)
        base = self.limits.retry_base * 2.0 ** (attempts - 1)
        return base * random.uniform(0.5, 1.5)

    async def _attempt(self, request: FetchRequest, run: _Run, attempts: int) -> FetchResult:
        """One request, once the host and the global limit grant a slot; its time is taken
        from the budget (TimeoutError when the budget runs out)."""
        host = urlsplit(request.url).netloc.lower()
        headers = dict(request.headers)
        if request.etag:
            headers["If-None-Match"] = request.etag
        if request.last_modified:
            headers["If-Modified-Since"] = request.last_modified
        async with self._host(host) as entry, entry.slots, self._global:
            self.requests += 1
            began = time.monotonic()
            if run.first is None:
                run.first = began
            try:
                async with asyncio.timeout(run.left):
                    return await self._exchange(entry.client, request, headers, run, attempts)
            finally:
                run.left -= time.monotonic() - began

    async def _exchange(
        self,
        client: httpx.AsyncClient,
        request: FetchRequest,
        headers: dict[str, str],
        run: _Run,
        attempts: int,
    ) -> FetchResult:
        """The request and its response, with faults turned into results (or `_Retry`)."""

        def failed(error: str) -> FetchResult:
            return self._fail(request, error, run, attempts, final_url=run.redirect)

        try:
            return await self._stream(client, request, headers, run, attempts)
        except _Refused as refused:
            return failed(refused.line(redirected=run.redirect is not None))
        except _BodyElsewhere as refused:
            return failed(str(refused))
        except httpx.TimeoutException as exc:
            raise _Retry(failed(_timeout_text(exc))) from None
        except (
            httpx.ConnectError,
            httpx.RemoteProtocolError,
            httpx.ReadError,
            httpx.WriteError,
        ) as exc:
            raise _Retry(failed(f"connection failed: {_exc_text(exc)}")) from None
        except httpx.TooManyRedirects:
            return failed(f"more than {self.limits.max_redirects} redirects (a redirect loop?)")
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            return failed(f"bad URL: {_exc_text(exc)}")
        except httpx.HTTPError as exc:
            return failed(f"HTTP error: {_exc_text(exc)}")
        except (UnicodeError, ValueError) as exc:
            return failed(f"bad response: {_exc_text(exc)}")

    @contextlib.asynccontextmanager
    async def _open(
        self,
        client: httpx.AsyncClient,
        request: FetchRequest,
        headers: dict[str, str],
        run: _Run,
        watchdog: asyncio.Timeout,
    ) -> AsyncIterator[httpx.Response]:
        """The response at the end of the redirects, body unread. Each hop gets
        connect_timeout + read_timeout for its headers; a redirect's body is never read."""
        lim = self.limits
        loop = asyncio.get_running_loop()
        kwargs: dict[str, Any] = {"headers": headers}
        if request.params:
            kwargs["params"] = request.params
        if request.json_body is not None:
            kwargs["json"] = request.json_body
        hop = client.build_request(request.method, request.url, **kwargs)
        history: list[httpx.Response] = []
        run.redirect = None
        while True:
            watchdog.reschedule(loop.time() + lim.connect_timeout + lim.read_timeout)
            response = await client.send(hop, stream=True)
            if response.next_request is None:
                break
            await response.aclose()
            history.append(response)
            if len(history) > lim.max_redirects:
                raise httpx.TooManyRedirects("too many redirects", request=hop)
            hop = _next_hop(response, hop, dict(request.headers), self.user_agent)
            run.redirect = str(hop.url)
            if problem := url_problem(run.redirect):  # a Location to port 99999
                raise httpx.InvalidURL(problem)
            log.debug(
                "%s: %s redirects to %s",
                request.source_id,
                response.url,
                hop.url,
                extra={"source": request.source_id, "action": "fetch_redirect"},
            )
        response.history = history
        try:
            yield response
        finally:
            await response.aclose()

    async def _stream(
        self,
        client: httpx.AsyncClient,
        request: FetchRequest,
        headers: dict[str, str],
        run: _Run,
        attempts: int,
    ) -> FetchResult:
        lim = self.limits
        loop = asyncio.get_running_loop()
        reading = False
        try:
            async with asyncio.timeout(None) as watchdog:
                async with self._open(client, request, headers, run, watchdog) as response:
                    reading = True
                    watchdog.reschedule(loop.time() + lim.read_timeout)
                    return await self._read(response, request, run, attempts, watchdog)
        except TimeoutError:
            if not watchdog.expired():
                raise
            if reading:
                error = (
                    f"timed out (the body stalled: less than {_mib(PROGRESS_BYTES)} "
                    f"in {lim.read_timeout:g}s)"
                )
            else:
                answer = lim.connect_timeout + lim.read_timeout
                error = f"timed out (no response headers within {answer:g}s)"
            raise _Retry(
                self._fail(request, error, run, attempts, final_url=run.redirect)
            ) from None

    async def _read(
        self,
        response: httpx.Response,
        request: FetchRequest,
        run: _Run,
        attempts: int,
        watchdog: asyncio.Timeout,
    ) -> FetchResult:
        """The response as a result: the body read within the cap, while it makes progress."""
        status = response.status_code
        final_url = str(response.url)
        moved_to = _permanent_target(response)
        if status == 304:
            return FetchResult(
                source_id=request.source_id,
                url=request.url,
                final_url=final_url,
                status=304,
                not_modified=True,
                etag=request.etag,
                last_modified=request.last_modified,
                elapsed=run.elapsed(),
                attempts=attempts,
                moved_to=moved_to,
            )
        if status >= 400:
            blocked = None
            if status in (403, 429, 503):  # a bot challenge answers with one of these
                head = await _first_bytes(response, 16384)
                blocked = health.blocked_page(status, response.headers, head)
            failed = self._fail(
                request,
                blocked or f"HTTP {status} {response.reason_phrase}".strip(),
                run,
                attempts,
                status=status,
                final_url=final_url,
            )
            if not blocked and (status == 429 or status >= 500):  # retry, after Retry-After
                raise _Retry(failed, _retry_after(response.headers.get("retry-after")))
            return failed
        try:
            decoded = _Decoded(response)
        except httpx.DecodingError as exc:  # an answer, but a body not worth undoing
            return self._fail(request, str(exc), run, attempts, status=status, final_url=final_url)
        cap = self.limits.max_body
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > cap:
            return self._fail(
                request,
                f"response of {int(declared):,} bytes is over the {_mib(cap)} limit",
                run,
                attempts,
                status=status,
                final_url=final_url,
            )
        loop = asyncio.get_running_loop()
        chunks: list[bytes] = []
        size = 0
        progress = 0
        async for received, pieces in _body(response, decoded):
            for piece in pieces:
                size += len(piece)
                if size > cap:  # checked per bounded piece: a gzip bomb never inflates whole
                    return self._fail(
                        request,
                        f"response over the {_mib(cap)} limit (stopped reading)",
                        run,
                        attempts,
                        status=status,
                        final_url=final_url,
                    )
                chunks.append(piece)
            progress += received
            if progress >= PROGRESS_BYTES:  # still moving: another read_timeout to go on
                progress = 0
                watchdog.reschedule(loop.time() + self.limits.read_timeout)
        return FetchResult(
            source_id=request.source_id,
            url=request.url,
            final_url=final_url,
            status=status,
            body=b"".join(chunks),
            encoding=response.charset_encoding,
            content_type=response.headers.get("content-type"),
            etag=response.headers.get("etag"),
            last_modified=response.headers.get("last-modified"),
            elapsed=run.elapsed(),
            attempts=attempts,
            moved_to=moved_to,
            headers=tuple(
                (k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers.raw
            ),
        )

    def _fail(
        self,
        request: FetchRequest,
        error: str,
        run: _Run,
        attempts: int,
        *,
        status: int = 0,
        final_url: str | None = None,
    ) -> FetchResult:
        return FetchResult(
            source_id=request.source_id,
            url=request.url,
            final_url=final_url or request.url,
            status=status,
            error=error,
            elapsed=run.elapsed(),
            attempts=max(attempts, 1),
        )

    # ----------------------------------------------------------------- robots.txt

    async def _robots_refusal(self, request: FetchRequest, run: _Run) -> str | None:
        parts = urlsplit(request.url)
        origin = f"{parts.scheme}://{parts.netloc}"
        entry = self._robots.get(origin)
        if entry is None:
            entry = self._robots[origin] = _Robots()
        entry.users += 1  # kept by the sweep while in use
        try:
            async with entry.lock:
                if entry.loaded_at is None or self._clock() - entry.loaded_at > ROBOTS_TTL:
                    entry.rules = await self._load_robots(request, origin, run)
                    entry.loaded_at = self._clock()
                rules = entry.rules
        finally:
            entry.users -= 1
        if isinstance(rules, str):
            return rules
        if rules is not None and not rules.can_fetch("watcher", request.url):
            return f"disallowed by {origin}/robots.txt (set robots: false to override)"
        return None

    async def _load_robots(
        self, request: FetchRequest, origin: str, run: _Run
    ) -> RobotFileParser | str | None:
        robots_request = FetchRequest(source_id=request.source_id, url=f"{origin}/robots.txt")
        try:
            result = await self._attempt(robots_request, run, 1)
        except _Retry as retry:
            result = retry.result
        if result.error and result.error.startswith("refused:"):
            return result.error
        if result.status in (0,) or result.status >= 500:
            # RFC 9309: an unreachable robots.txt means the whole site is off limits for now.
            return f"robots.txt unreachable ({result.error}); not fetching"
        if result.status >= 400 or result.body is None:
            return None  # no robots.txt: everything allowed
        parser = RobotFileParser()
        parser.parse(result.body[:ROBOTS_MAX_BYTES].decode("utf-8", "replace").splitlines())
        return parser


async def _close_all(clients: list[httpx.AsyncClient]) -> None:
    for client in clients:
        with contextlib.suppress(Exception):  # a connection already gone
            await client.aclose()


# --------------------------------------------------------------------- the address policy

#: Cloud metadata services, where instance credentials live (AWS and GCP and OpenStack,
#: AWS ECS, AWS over IPv6, Azure's wireserver, Oracle, Alibaba).
METADATA = frozenset(
    ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.170.2",
        "fd00:ec2::254",
        "168.63.129.16",
        "192.0.0.192",
        "100.100.100.200",
    )
)
_THIS_NETWORK = ip_network("0.0.0.0/8")
_SHARED = ip_network("100.64.0.0/10")  # carrier-grade NAT
_NAT64 = ip_network("64:ff9b::/96")
_PRIVATE = tuple(
    ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)
#: Kinds no setting allows: no HTTP server answers there.
NEVER = frozenset({"an unspecified address", "a multicast address"})


def address_kind(address: IPAddress) -> str | None:
    """What `address` is, when it is not a public unicast address ("a loopback address"),
    else None. IPv6 forms that carry an IPv4 address (mapped ::ffff:a.b.c.d, 6to4 2002::/16,
    NAT64 64:ff9b::/96) are judged by the IPv4 address they carry.

    Usage::

        address_kind(ip_address("10.0.0.3"))  # "a private address"
        address_kind(ip_address("::ffff:127.0.0.1"))  # "a loopback address"
    """
    if isinstance(address, IPv6Address):
        carried = address.ipv4_mapped or address.sixtofour
        if carried is None and address in _NAT64:
            carried = IPv4Address(int(address) & 0xFFFFFFFF)
        if carried is not None:
            return address_kind(carried)
    if address in METADATA:
        return "a cloud metadata address"
    if address.is_unspecified or address in _THIS_NETWORK:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address in _SHARED:
        return "a shared (carrier-grade NAT) address"
    if any(address in network for network in _PRIVATE) or (
        isinstance(address, IPv6Address) and address.is_site_local  # fec0::/10, deprecated
    ):
        return "a private address"
    if not address.is_global or address.is_reserved:  # documentation, benchmarking, broadcast…
        return "a reserved address"
    return None


class _Refused(Exception):
    """A connection the address policy refuses; the fetch fails at once (never retried)."""

    def __init__(self, host: str, address: IPAddress, kind: str) -> None:
        self.host = host
        self.address = address
        self.kind = kind
        super().__init__(self.line())

    def line(self, *, redirected: bool = False) -> str:
        """One line naming the host and the address, and what to do about it."""
        if _literal(self.host) is not None:
            where = f"{self.host}, {self.kind}" if redirected else f"{self.host} is {self.kind}"
        else:
            where = f"{self.host} resolves to {self.address}, {self.kind}"
            if redirected:
                where = f"{self.host}, which resolves to {self.address}, {self.kind}"
        if redirected:
            where = f"redirected to {where}"
        if self.kind in NEVER:
            return f"refused: {where} (never fetched, whatever the settings)"
        return f"refused: {where}; set settings.allow_private_addresses to allow it"


def _literal(host: str) -> IPAddress | None:
    try:
        return ip_address(host.strip("[]"))
    except ValueError:
        return None


async def _resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to, in the resolver's order (an IP literal: itself)."""
    literal = _literal(host)
    if literal is not None:
        return [literal]
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[IPAddress] = []
    for info in infos:
        address = ip_address(str(info[4][0]))
        if address not in addresses:
            addresses.append(address)
    return addresses


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, behind the address policy: resolve the name once, check
    every address, then connect to a checked address (never to the name again)."""

    def __init__(
        self, *, allow_private: bool, inner: httpcore.AsyncNetworkBackend | None = None
    ) -> None:
        self.allow_private = allow_private
        self._inner = inner or httpcore.AnyIOBackend()

    def check(self, host: str, addresses: Iterable[IPAddress]) -> None:
        """Raise _Refused for the first address the policy refuses."""
        for address in addresses:
            kind = address_kind(address)
            if kind is not None and (kind in NEVER or not self.allow_private):
                raise _Refused(host, address, kind)

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        try:
            async with asyncio.timeout_at(deadline):
                addresses = await _resolve(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"{host}: {exc}") from exc
        if not addresses:
            raise httpcore.ConnectError(f"{host} resolves to no address")
        self.check(host, addresses)
        failure: Exception | None = None
        for n, address in enumerate(addresses):
            left = None if deadline is None else deadline - loop.time()
            if left is not None:
                if left <= 0:
                    break
                if n < len(addresses) - 1:  # an unreachable address leaves time for the rest
                    left /= 2
            try:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=left,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure or httpcore.ConnectTimeout(f"connecting to {host} timed out")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("watcher fetches over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with its connection pool built on `_GuardedBackend` (httpx offers
    no parameter for the network backend; the pool it builds is replaced, unused)."""

    def __init__(self, limits: httpx.Limits, *, allow_private: bool) -> None:
        super().__init__(verify=_ssl_context(), limits=limits, trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_GuardedBackend(allow_private=allow_private),
        )


class _BodyElsewhere(Exception):
    """A 307/308 redirect that would send a request's body to another origin (never sent)."""


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port or _DEFAULT_PORTS.get(url.scheme)


def _next_hop(
    response: httpx.Response, sent: httpx.Request, own: dict[str, str], user_agent: str
) -> httpx.Request:
    """The request a redirect asks for. To another origin (scheme, host or port) it carries
    none of the source's own headers (`own`: an API key in `headers:`): httpx strips only
    Authorization and Cookie. The conditional validators go on (they came from where the
    redirect leads: an http→https move must still get its 304). A body is never sent there: a
    307/308 that keeps the method and body is refused (`_BodyElsewhere`)."""
    hop = response.next_request
    assert hop is not None
    if _origin(hop.url) == _origin(sent.url):
        return hop
    if "content-length" in hop.headers or "transfer-encoding" in hop.headers:
        target = f"{hop.url.scheme}://{hop.url.netloc.decode('ascii')}"
        raise _BodyElsewhere(
            f"refused: a {response.status_code} redirect to another site ({target}) would "
            f"send the {hop.method} body there; set the source's url to where it leads if "
            "that site should get it"
        )
    for name in own:
        hop.headers.pop(name, None)
    hop.headers.setdefault("User-Agent", user_agent)
    return hop


def _replace(result: FetchResult, **changes: Any) -> FetchResult:
    from dataclasses import replace

    return replace(result, **changes)


def _permanent_target(response: httpx.Response) -> str | None:
    """Where the last permanent redirect (301/308) on the way led, if there was one."""
    hops = [*response.history, response]
    target = None
    for hop, after in pairwise(hops):
        if hop.status_code in (301, 308):
            target = str(after.url)
    return target


async def _body(
    response: httpx.Response, decoded: _Decoded | None = None
) -> AsyncIterator[tuple[int, Iterator[bytes]]]:
    """The body as it arrives: (bytes received, the decoded pieces they make, each at most
    INFLATE_STEP, made as they are taken), through `decoded` (the response's own decoder when
    None). A response made in memory (`httpx.Response(content=...)`, as a mock transport or
    respx answers) was read and decoded when it was made: its content is the one piece."""
    try:
        content = response.content
    except httpx.ResponseNotRead:
        pass
    else:
        yield len(content), iter((content,))
        return
    decoded = decoded or _Decoded(response)
    async for raw in response.aiter_raw():
        yield len(raw), decoded.feed(raw)


async def _first_bytes(response: httpx.Response, limit: int) -> bytes:
    """Up to `limit` bytes of the body (an error page's start, to recognise a challenge)."""
    head = b""
    async for _received, pieces in _body(response):
        for piece in pieces:
            head += piece
            if len(head) >= limit:
                return head[:limit]
    return head[:limit]


#: What the client says it can decode (httpx would add br and zstd when their packages happen
#: to be installed; `_Decoded` inflates these two only).
ACCEPT_ENCODING = "gzip, deflate"
#: The most bytes one step of inflating yields: all a compressed chunk grows to at once.
INFLATE_STEP = 256 * 1024


class _Inflate:
    """One gzip or deflate layer, inflated in steps of at most INFLATE_STEP bytes."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        # gzip: its header required; deflate: zlib-wrapped, or raw as some servers send it
        # (tried when the first bytes are not zlib's), as httpx decodes them.
        wbits = zlib.MAX_WBITS | 16 if encoding in ("gzip", "x-gzip") else zlib.MAX_WBITS
        self._inflater = zlib.decompressobj(wbits)
        self._first = True

    def feed(self, data: bytes) -> Iterator[bytes]:
        while True:
            try:
                out = self._inflater.decompress(data, INFLATE_STEP)
            except zlib.error as exc:
                if self._first and self.encoding == "deflate":
                    self._first = False
                    self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                raise httpx.DecodingError(f"{self.encoding}: {exc}") from None
            self._first = False
            data = self._inflater.unconsumed_tail
            if out:
                yield out
            # a full step may leave output inside zlib: ask again until a short one
            if not data and len(out) < INFLATE_STEP:
                return


#: The most content encodings one response may stack (`gzip, gzip`): a server has no need of
#: more, and thousands (a kilobyte each way) only cost work.
MAX_ENCODINGS = 3


class _Decoded:
    """A response's body decoded from its raw bytes by its Content-Encoding (gzip, deflate;
    several in the order applied, at most MAX_ENCODINGS; identity and unknown ones as they
    are, as httpx does), each raw chunk yielded in bounded pieces: httpx's own decoding
    inflates a whole network chunk at once, 64 MB from 64 KB of a gzip bomb, before any cap
    can look at it."""

    def __init__(self, response: httpx.Response) -> None:
        encodings = [
            value.strip().lower()
            for value in response.headers.get_list("content-encoding", split_commas=True)
        ]
        stacked = [e for e in encodings if e and e != "identity"]
        if len(stacked) > MAX_ENCODINGS:
            raise httpx.DecodingError(
                f"too many content encodings ({len(stacked)}; at most {MAX_ENCODINGS} are decoded)"
            )
        # applied in the order listed: undone last first
        self._layers = [
            _Inflate(e) for e in reversed(encodings) if e in ("gzip", "x-gzip", "deflate")
        ]

    def feed(self, raw: bytes) -> Iterator[bytes]:
        pieces: Iterator[bytes] = iter((raw,))
        for layer in self._layers:  # each layer reads the pieces of the one before, lazily
            pieces = _inflated(layer, pieces)
        return (piece for piece in pieces if piece)


def _inflated(layer: _Inflate, pieces: Iterator[bytes]) -> Iterator[bytes]:
    for piece in pieces:
        yield from layer.feed(piece)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _duration(seconds: float) -> str:
    """3600 → `1h`, 5400 → `1h30m`, 90 → `1m30s`: a wait as sources.yaml writes durations."""
    left = round(seconds)
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, left = divmod(left, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out) or "0s"


def _timeout_text(exc: httpx.TimeoutException) -> str:
    kind = {
        httpx.ConnectTimeout: "connect",
        httpx.ReadTimeout: "read",
        httpx.WriteTimeout: "write",
        httpx.PoolTimeout: "pool",
    }.get(type(exc), "")
    return f"timed out ({kind})" if kind else "timed out"


def _exc_text(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _mib(size: int) -> str:
    """A limit as operators write it: 10 MiB, 512 KiB, or 1,000 bytes."""
    if size >= 1024 * 1024:
        return f"{size / 1024 / 1024:g} MiB"
    if size >= 1024:
        return f"{size / 1024:g} KiB"
    return f"{size:,} bytes"
