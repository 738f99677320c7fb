"""The fetcher against respx routes (no sockets): conditional requests, 304 and the body cap,
as unit tests that need no local server."""

from __future__ import annotations

import httpx
import respx

from watcher.fetch import Fetcher, FetchLimits, FetchRequest

FEED = "https://outlet.example/rss"


@respx.mock
async def test_conditional_get_sends_validators_and_a_304_is_not_modified() -> None:
    route = respx.get(FEED).mock(return_value=httpx.Response(304))
    async with Fetcher(FetchLimits(retries=0)) as fetcher:
        result = await fetcher.fetch(
            FetchRequest(source_id="s", url=FEED, etag='"v1"', last_modified="Mon, 01 Dec 2026")
        )
    assert route.call_count == 1
    sent = route.calls.last.request
    assert sent.headers["If-None-Match"] == '"v1"'
    assert sent.headers["If-Modified-Since"] == "Mon, 01 Dec 2026"
    assert result.not_modified and result.body is None and result.error is None


@respx.mock
async def test_a_body_over_the_cap_is_an_error_naming_the_limit() -> None:
    respx.get(FEED).mock(return_value=httpx.Response(200, content=b"x" * 5000))
    async with Fetcher(FetchLimits(retries=0, max_body=1000)) as fetcher:
        result = await fetcher.fetch(FetchRequest(source_id="s", url=FEED))
    assert result.body is None
    assert result.error == "response of 5,000 bytes is over the 1,000 bytes limit"
