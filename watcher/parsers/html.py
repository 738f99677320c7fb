"""A listing page scraped with the CSS selectors given in sources.yaml (BeautifulSoup)."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime
from typing import Any

from bs4 import BeautifulSoup, Tag

from watcher.items import canonical_url, make_item
from watcher.parsers import ParseResult, decode_body, each_entry
from watcher.types import FetchResult, Item

#: At most this many items are read from one page.
MAX_ITEMS = 500
#: A page longer than this (in characters, after scripts and styles are dropped) is read in
#: its first part only: a listing puts its newest items first, and a parsed tree costs some
#: 20 times the page's size in memory. 2 MiB holds thousands of listing entries.
MAX_PARSED = 2 * 1024 * 1024

log = logging.getLogger(__name__)


def parse(source: Any, result: FetchResult, fetched_at: datetime) -> ParseResult:
    decoded = decode_body(result.body or b"", result.encoding)
    text = decoded.text
    if len(text) > MAX_PARSED:
        text = without_blocks(text)
        if len(text) > MAX_PARSED:
            log.info(
                "%s: the page is %d characters long; its first %d are read",
                source.id,
                len(text),
                MAX_PARSED,
                extra={"source": source.id, "action": "parse"},
            )
            text = text[:MAX_PARSED]
    soup = BeautifulSoup(text, "lxml")
    sel = source.selectors
    base = result.final_url or result.url
    base_tag = soup.find("base", href=True)
    if isinstance(base_tag, Tag):
        base = canonical_url(str(base_tag["href"]), base) or base
    rows = []
    for node in soup.select(sel.item)[:MAX_ITEMS]:
        link_el = node if node.name == "a" and node.get("href") else node.select_one(sel.link)
        href = str(link_el.get("href")) if link_el is not None and link_el.get("href") else None
        title_el = node.select_one(sel.title) if sel.title else link_el
        title = title_el.get_text(" ", strip=True) if title_el is not None else ""
        if not title and not href:
            continue
        rows.append((node, canonical_url(href, base), title))
    counts = Counter(url for _, url, _ in rows)

    def build(row: tuple[Tag, str | None, str]) -> Item:
        node, url, title = row
        return make_item(
            source_id=source.id,
            title=title,
            link=url,
            summary=_text(node, sel.summary),
            date_raw=_date(node, sel.date, sel.date_attr),
            lang=source.lang,
            zone=source.zone,
            fetched_at=fetched_at,
            shared_url=url is None or counts[url] > 1,
            canonical=True,
        )

    items, skipped = each_entry(rows, build)
    return ParseResult(items=items, skipped=skipped, replaced=decoded.replaced)


_BLOCKS = ("script", "style", "svg", "noscript", "template")


def without_blocks(text: str) -> str:
    """`text` without the content of its script, style, svg, noscript and template elements
    (which no listing selector reads), in one linear pass: a block left open is kept as is.

    Usage::

        without_blocks("<p>a</p><script>x()</script><p>b</p>")   # "<p>a</p><p>b</p>"
    """
    lower = text.lower()
    out: list[str] = []
    at = 0
    ahead = {name: _opening(lower, name, 0) for name in _BLOCKS}  # each found once per pass
    while True:
        for name, i in ahead.items():
            if 0 <= i < at:
                ahead[name] = _opening(lower, name, at)
        starts = [(i, name) for name, i in ahead.items() if i >= 0]
        if not starts:
            break
        start, name = min(starts)
        close = lower.find(f"</{name}", start)
        if close < 0:
            break
        end = lower.find(">", close)
        end = len(text) if end < 0 else end + 1
        out.append(text[at:start])
        at = end
    out.append(text[at:])
    return "".join(out)


def _opening(lower: str, name: str, at: int) -> int:
    """Where the next `<name` tag opens (not `<names…`), or -1."""
    i = lower.find(f"<{name}", at)
    while i >= 0:
        after = lower[i + len(name) + 1 : i + len(name) + 2]
        if after in ("", ">", "/") or after.isspace():
            return i
        i = lower.find(f"<{name}", i + 1)
    return -1


def _text(node: Tag, selector: str | None) -> str | None:
    if not selector:
        return None
    found = node.select_one(selector)
    return found.get_text(" ", strip=True) if found is not None else None


def _date(node: Tag, selector: str | None, attr: str | None) -> str | None:
    if not selector:
        return None
    for found in node.select(selector):
        value = found.get(attr) if attr else None
        if value:
            return str(value)
        text = found.get_text(" ", strip=True)
        if text:
            return text
    return None
