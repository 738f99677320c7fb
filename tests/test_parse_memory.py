"""Large pages within a memory budget: a listing far over the parse limit is read in its
first part (scripts and styles dropped first), and a parse worker that would outgrow
`settings.parse_memory` fails that one parse with a clear error and goes on with the next."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from tests.helpers import python
from watcher.config import load_config_text
from watcher.parsers import html
from watcher.types import FetchResult

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

CONFIG = """
sources:
  - id: big
    kind: html
    url: https://example.org/list
    lang: en
    selectors: {item: "li.item", link: "a", date: ".date"}
  - id: feed
    kind: feed
    url: https://example.org/feed
    lang: en
"""


def listing(entries: int, *, script: int = 0) -> bytes:
    filler = "<script>var x = '" + "y" * script + "';</script>" if script else ""
    rows = "".join(
        f'<li class="item"><a href="/news/{i}">Report {i} from the border</a>'
        f'<span class="date">2026-11-{i % 28 + 1:02d}</span><p>{"words " * 40}</p></li>'
        for i in range(entries)
    )
    return f"<html><head>{filler}</head><body><ul>{rows}</ul></body></html>".encode()


def fetched(source_id: str, body: bytes, content_type: str) -> FetchResult:
    url = f"https://example.org/{source_id}"
    return FetchResult(
        source_id=source_id,
        url=url,
        final_url=url,
        status=200,
        body=body,
        encoding="utf-8",
        content_type=content_type,
    )


SOURCES = {s.id: s for s in load_config_text(CONFIG, "t.yaml", {}).config.sources}


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("<p>a</p><script>x()</script><p>b</p>", "<p>a</p><p>b</p>"),
        ("<STYLE a=1>p{}</style ><svg><g/></svg>c", "c"),
        ("<scripts>k</scripts>", "<scripts>k</scripts>"),  # not a script element
        ("a<script>never closed", "a<script>never closed"),  # kept as it is
        ("<noscript><img></noscript><template><li></template>z", "z"),
    ],
)
def test_blocks_no_selector_reads_are_dropped(text: str, kept: str) -> None:
    assert html.without_blocks(text) == kept


def test_scripts_before_the_list_do_not_push_it_past_the_parse_limit() -> None:
    body = listing(50, script=html.MAX_PARSED + 1000)
    assert len(body) > html.MAX_PARSED
    parsed = html.parse(SOURCES["big"], fetched("big", body, "text/html"), NOW)
    assert parsed.error is None and len(parsed.items) == 50


def test_a_page_over_the_limit_is_read_in_its_first_part() -> None:
    body = listing(20_000)
    assert len(body) > 3 * html.MAX_PARSED
    parsed = html.parse(SOURCES["big"], fetched("big", body, "text/html"), NOW)
    assert parsed.error is None and len(parsed.items) == html.MAX_ITEMS
    assert parsed.items[0].title == "Report 0 from the border"


def test_a_worker_over_its_memory_budget_fails_that_parse_and_goes_on() -> None:
    """In a fresh process: a forked worker's budget counts from its parent's heap, and the
    test process's heap holds the free space of earlier tests."""
    script = """
import asyncio, json
from tests.test_parse_memory import NOW, SOURCES, fetched, listing
from watcher.pipeline import Parsing

FEED = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><item><title>'
        b'North Korean defectors detained</title><link>https://e.org/1</link></item>'
        b'</channel></rss>')

async def go():
    parsing = Parsing(processes=2, memory=24 * 1024 * 1024)
    try:
        big = await parsing(SOURCES["big"], fetched("big", listing(20_000), "text/html"), NOW)
        small = await parsing(SOURCES["feed"], fetched("feed", FEED, "application/rss+xml"), NOW)
    finally:
        parsing.close()
    print(json.dumps([[big.error, len(big.items)], [small.error, [i.title for i in small.items]]]))

asyncio.run(go())
"""
    done = python(script)
    assert done.returncode == 0, done.stderr
    (big_error, big_items), (small_error, small_titles) = json.loads(done.stdout)
    assert big_error is not None and big_error.endswith(
        "needs more memory than allowed (settings.parse_memory: 24 MiB)"
    )
    assert big_items == 0
    assert small_error is None and small_titles == ["North Korean defectors detained"]


def test_one_parse_process_is_a_worker_off_the_event_loop_under_the_cap() -> None:
    """`parse_processes: 1` (the default on a one-CPU host) parses in one worker process, as
    more do: the event loop runs on meanwhile and the body meets `parse_memory`, rather than
    growing the daemon itself and blocking /healthz for a minute."""
    script = """
import asyncio, json
from tests.test_parse_memory import NOW, SOURCES, fetched, listing
from watcher.config.models import Settings
from watcher.pipeline import Parsing

async def go():
    parsing = Parsing.from_settings(Settings(parse_processes=1, parse_memory=24 * 1024 * 1024))
    turns = 0

    async def beat():
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    beating = asyncio.create_task(beat())
    await asyncio.sleep(0)
    try:
        before = turns
        big = await parsing(SOURCES["big"], fetched("big", listing(20_000), "text/html"), NOW)
        during = turns - before
    finally:
        beating.cancel()
        parsing.close()
    print(json.dumps([parsing.processes, big.error, during > 0]))

asyncio.run(go())
"""
    done = python(script)
    assert done.returncode == 0, done.stderr
    processes, error, loop_ran = json.loads(done.stdout)
    assert processes == 1
    assert error is not None and error.endswith(
        "needs more memory than allowed (settings.parse_memory: 24 MiB)"
    )
    assert loop_ran, "the event loop ran while the body was parsed"
