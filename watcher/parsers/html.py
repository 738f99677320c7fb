"""A listing page scraped with the CSS selectors given in sources.yaml (BeautifulSoup)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from bs4 import BeautifulSoup, Tag

from watcher.items import canonical_url, make_item
from watcher.parsers import ParseResult, decode_body, each_entry
from watcher.types import FetchResult, Item

#: At most this many items are read from one page.
MAX_ITEMS = 500


def parse(source: Any, result: FetchResult, fetched_at: datetime) -> ParseResult:
    decoded = decode_body(result.body or b"", result.encoding)
    soup = BeautifulSoup(decoded.text, "lxml")
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
