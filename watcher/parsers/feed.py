"""RSS 0.9x/1.0/2.0 and Atom through feedparser."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import feedparser

from watcher.items import canonical_url, make_item
from watcher.parsers import ParseResult, decode, looks_like_html
from watcher.types import FetchResult

#: At most this many entries are read from one document.
MAX_ENTRIES = 1_000


def parse(source: Any, result: FetchResult, fetched_at: datetime) -> ParseResult:
    body = result.body or b""
    text, _codec = decode(body, result.encoding)
    if looks_like_html(text):
        return ParseResult(
            error=f"got an HTML page, not a feed (content-type {result.content_type or 'unknown'})"
        )
    # Handing feedparser UTF-8 bytes with an explicit header: it never fetches, never guesses.
    doc = feedparser.parse(
        text.encode("utf-8"),
        sanitize_html=False,
        resolve_relative_uris=False,
        response_headers={"content-type": "application/xml; charset=utf-8"},
    )
    entries = doc.entries[:MAX_ENTRIES]
    if not entries:
        if not doc.get("version"):
            reason = doc.get("bozo_exception")
            detail = f": {str(reason).splitlines()[0][:200]}" if reason else ""
            return ParseResult(error=f"not an RSS or Atom feed{detail}")
        return ParseResult(items=())
    base = result.final_url or result.url
    channel_link = canonical_url(doc.feed.get("link"), base)
    links = [canonical_url(e.get("link"), base) for e in entries]
    repeated = {url for url, n in Counter(links).items() if n > 1 or url == channel_link}
    lang = source.lang or _feed_lang(doc)
    items = []
    for entry, url in zip(entries, links, strict=True):
        items.append(
            make_item(
                source_id=source.id,
                title=entry.get("title"),
                link=url,
                guid=entry.get("id"),
                summary=_body(entry),
                date_raw=entry.get("published") or entry.get("updated") or entry.get("created"),
                published_at=_parsed_date(entry),
                lang=lang,
                zone=source.zone,
                fetched_at=fetched_at,
                shared_url=url in repeated or url is None,
                canonical=True,
            )
        )
    return ParseResult(items=tuple(items))


def _body(entry: Any) -> str | None:
    content = entry.get("content")
    if content:
        longest = max(content, key=lambda c: len(c.get("value") or ""))
        if longest.get("value"):
            return str(longest["value"])
    summary = entry.get("summary")
    return str(summary) if summary is not None else None


def _parsed_date(entry: Any) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = entry.get(key)
        if value:
            try:
                year, month, day, hour, minute, second = value[:6]
                return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
            except (TypeError, ValueError):
                continue
    return None


def _feed_lang(doc: Any) -> str | None:
    lang = (doc.feed.get("language") or "").strip().lower()
    return lang.split("-")[0][:3] or None
