"""HTTP: a source's URL → FetchResult, politely. Never raises for network or HTTP faults.

Politeness and safety: one small connection pool per host (`per_host` connections, and as many
requests at once), a global limit, conditional GET, retries with exponential backoff and
jitter on timeouts, connection errors, 429 and 5xx (honouring Retry-After), a time budget per
source, a body cap enforced while streaming, a redirect limit, an identifying User-Agent and
robots.txt for pages scraped.

Usage::

    async with Fetcher(settings) as fetcher:
        result = await fetcher.fetch(FetchRequest(source_id="x", url="https://…", etag=...))
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import random
import ssl
import time
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any
from urllib.parse import urlsplit
from urllib.robotparser import RobotFileParser

import httpx

from watcher import __version__, health
from watcher.types import FetchResult

log = logging.getLogger(__name__)

#: How long a robots.txt answer is trusted.
ROBOTS_TTL = 3600.0
ROBOTS_MAX_BYTES = 512 * 1024


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
        )


class _Retry(Exception):
    """An attempt that may succeed if tried again."""

    def __init__(self, result: FetchResult, retry_after: float | None = None) -> None:
        super().__init__(result.error)
        self.result = result
        self.retry_after = retry_after


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


class Fetcher:
    """Per-host async clients with small pools, shared limits and a robots.txt cache."""

    def __init__(
        self, limits: FetchLimits, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.limits = limits
        self.user_agent = (
            f"watcher/{__version__} (+{limits.contact})"
            if limits.contact
            else f"watcher/{__version__}"
        )
        self._transport = transport
        self._clients: dict[str, httpx.AsyncClient] = {}
        self._host_slots: dict[str, asyncio.Semaphore] = {}
        self._global = asyncio.Semaphore(limits.concurrency)
        self._robots: dict[str, tuple[float, RobotFileParser | str | None]] = {}
        self._robots_locks: dict[str, asyncio.Lock] = {}
        #: Requests made, for tests and metrics.
        self.requests = 0

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()

    def _client(self, host: str) -> httpx.AsyncClient:
        client = self._clients.get(host)
        if client is None:
            lim = self.limits
            client = httpx.AsyncClient(
                transport=self._transport,
                verify=_ssl_context(),
                limits=httpx.Limits(
                    max_connections=lim.per_host, max_keepalive_connections=lim.per_host
                ),
                timeout=httpx.Timeout(
                    connect=lim.connect_timeout,
                    read=lim.read_timeout,
                    write=lim.read_timeout,
                    pool=None,
                ),
                follow_redirects=True,
                max_redirects=lim.max_redirects,
                headers={"User-Agent": self.user_agent},
                trust_env=False,
            )
            self._clients[host] = client
            self._host_slots[host] = asyncio.Semaphore(lim.per_host)
        return client

    async def fetch(self, request: FetchRequest) -> FetchResult:
        """Fetch with retries inside the source's time budget; faults come back as values."""
        started = time.monotonic()
        deadline = asyncio.get_running_loop().time() + self.limits.source_timeout
        attempts = 0
        result: FetchResult
        try:
            async with asyncio.timeout_at(deadline):
                if request.robots:
                    refusal = await self._robots_refusal(request)
                    if refusal:
                        return self._fail(request, refusal, started, 0)
                while True:
                    attempts += 1
                    try:
                        result = await self._attempt(request, started, attempts)
                        break
                    except _Retry as retry:
                        result = retry.result
                        if attempts > self.limits.retries:
                            break
                        delay = self._delay(attempts, retry.retry_after)
                        if asyncio.get_running_loop().time() + delay >= deadline:
                            break
                        log.debug(
                            "retrying %s in %.1fs: %s",
                            request.url,
                            delay,
                            result.error,
                            extra={"source": request.source_id, "action": "fetch_retry"},
                        )
                        await asyncio.sleep(delay)
        except TimeoutError:
            budget = self.limits.source_timeout
            return self._fail(
                request,
                f"no complete response within the source's {budget:g}s budget",
                started,
                attempts,
            )
        if result.error and attempts > 1:
            result = _replace(result, error=f"{result.error} (after {attempts} attempts)")
        return result

    def _delay(self, attempts: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return max(0.0, retry_after)
        base = self.limits.retry_base * 2.0 ** (attempts - 1)
        return base * random.uniform(0.5, 1.5)

    async def _attempt(self, request: FetchRequest, started: float, attempts: int) -> FetchResult:
        host = urlsplit(request.url).netloc.lower()
        client = self._client(host)
        headers = dict(request.headers)
        if request.etag:
            headers["If-None-Match"] = request.etag
        if request.last_modified:
            headers["If-Modified-Since"] = request.last_modified
        async with self._host_slots[host], self._global:
            self.requests += 1
            try:
                return await self._stream(client, request, headers, started, attempts)
            except httpx.TimeoutException as exc:
                raise _Retry(self._fail(request, _timeout_text(exc), started, attempts)) from None
            except (
                httpx.ConnectError,
                httpx.RemoteProtocolError,
                httpx.ReadError,
                httpx.WriteError,
            ) as exc:
                raise _Retry(
                    self._fail(request, f"connection failed: {_exc_text(exc)}", started, attempts)
                ) from None
            except httpx.TooManyRedirects:
                return self._fail(
                    request,
                    f"more than {self.limits.max_redirects} redirects (a redirect loop?)",
                    started,
                    attempts,
                )
            except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
                return self._fail(request, f"bad URL: {_exc_text(exc)}", started, attempts)
            except httpx.HTTPError as exc:
                return self._fail(request, f"HTTP error: {_exc_text(exc)}", started, attempts)
            except (UnicodeError, ValueError) as exc:
                return self._fail(request, f"bad response: {_exc_text(exc)}", started, attempts)

    async def _stream(
        self,
        client: httpx.AsyncClient,
        request: FetchRequest,
        headers: dict[str, str],
        started: float,
        attempts: int,
    ) -> FetchResult:
        kwargs: dict[str, Any] = {"headers": headers}
        if request.params:
            kwargs["params"] = request.params
        if request.json_body is not None:
            kwargs["json"] = request.json_body
        async with client.stream(request.method, request.url, **kwargs) as response:
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
                    elapsed=time.monotonic() - started,
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
                    started,
                    attempts,
                    status=status,
                    final_url=final_url,
                )
                if not blocked and (status == 429 or status >= 500):  # retry, after Retry-After
                    raise _Retry(failed, _retry_after(response.headers.get("retry-after")))
                return failed
            cap = self.limits.max_body
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > cap:
                return self._fail(
                    request,
                    f"response of {int(declared):,} bytes is over the {_mib(cap)} limit",
                    started,
                    attempts,
                    status=status,
                    final_url=final_url,
                )
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > cap:
                    return self._fail(
                        request,
                        f"response over the {_mib(cap)} limit (stopped reading)",
                        started,
                        attempts,
                        status=status,
                        final_url=final_url,
                    )
                chunks.append(chunk)
            content_type = response.headers.get("content-type")
            return FetchResult(
                source_id=request.source_id,
                url=request.url,
                final_url=final_url,
                status=status,
                body=b"".join(chunks),
                encoding=response.charset_encoding,
                content_type=content_type,
                etag=response.headers.get("etag"),
                last_modified=response.headers.get("last-modified"),
                elapsed=time.monotonic() - started,
                attempts=attempts,
                moved_to=moved_to,
            )

    def _fail(
        self,
        request: FetchRequest,
        error: str,
        started: float,
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
            elapsed=time.monotonic() - started,
            attempts=max(attempts, 1),
        )

    # ----------------------------------------------------------------- robots.txt

    async def _robots_refusal(self, request: FetchRequest) -> str | None:
        parts = urlsplit(request.url)
        origin = f"{parts.scheme}://{parts.netloc}"
        lock = self._robots_locks.setdefault(origin, asyncio.Lock())
        async with lock:
            cached = self._robots.get(origin)
            if cached is None or time.monotonic() - cached[0] > ROBOTS_TTL:
                cached = (time.monotonic(), await self._load_robots(request, origin))
                self._robots[origin] = cached
        rules = cached[1]
        if isinstance(rules, str):
            return rules
        if rules is not None and not rules.can_fetch("watcher", request.url):
            return f"disallowed by {origin}/robots.txt (set robots: false to override)"
        return None

    async def _load_robots(
        self, request: FetchRequest, origin: str
    ) -> RobotFileParser | str | None:
        robots_request = FetchRequest(source_id=request.source_id, url=f"{origin}/robots.txt")
        try:
            result = await self._attempt(robots_request, time.monotonic(), 1)
        except _Retry as retry:
            result = retry.result
        if result.status in (0,) or result.status >= 500:
            # RFC 9309: an unreachable robots.txt means the whole site is off limits for now.
            return f"robots.txt unreachable ({result.error}); not fetching"
        if result.status >= 400 or result.body is None:
            return None  # no robots.txt: everything allowed
        parser = RobotFileParser()
        parser.parse(result.body[:ROBOTS_MAX_BYTES].decode("utf-8", "replace").splitlines())
        return parser


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


async def _first_bytes(response: httpx.Response, limit: int) -> bytes:
    """Up to `limit` bytes of the body (an error page's start, to recognise a challenge)."""
    head = b""
    async for chunk in response.aiter_bytes():
        head += chunk
        if len(head) >= limit:
            break
    return head[:limit]


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
