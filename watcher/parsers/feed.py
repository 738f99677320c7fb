"""RSS 0.9x/1.0/2.0 and Atom through feedparser."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import feedparser

from watcher.items import canonical_url, make_item
from watcher.parsers import ParseResult, decode_body, each_entry, looks_like_html
from watcher.types import FetchResult, Item

#: At most this many entries are read from one document.
MAX_ENTRIES = 1_000


def parse(source: Any, result: FetchResult, fetched_at: datetime) -> ParseResult:
    body = result.body or b""
    decoded = decode_body(body, result.encoding)
    text = decoded.text
    if looks_like_html(text):
        return ParseResult(
            error=f"got an HTML page, not a feed (content-type {result.content_type or 'unknown'})"
        )
    try:
        doc = _feedparser(text.encode("utf-8"))
    except Exception:  # feedparser's handlers can raise on odd markup (`</width>` → int(None))
        doc = _feedparser(_repaired(text))
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

    def build(pair: tuple[Any, str | None]) -> Item:
        entry, url = pair
        return make_item(
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

    items, skipped = each_entry(zip(entries, links, strict=True), build)
    return ParseResult(items=items, skipped=skipped, replaced=decoded.replaced)


def _feedparser(body: bytes) -> Any:
    # Handing feedparser UTF-8 bytes with an explicit header: it never fetches, never guesses.
    return feedparser.parse(
        body,
        sanitize_html=False,
        resolve_relative_uris=False,
        response_headers={"content-type": "application/xml; charset=utf-8"},
    )


def _repaired(text: str) -> bytes:
    """The document as lxml's recovering parser rebuilds it (unmatched and stray tags dropped),
    with entities unresolved and no network: a second chance for a feed feedparser choked on."""
    from lxml import etree

    parser = etree.XMLParser(
        recover=True, resolve_entities=False, no_network=True, huge_tree=False, remove_pis=True
    )
    root = etree.fromstring(text.encode("utf-8"), parser=parser)
    if root is None:
        return b""
    return bytes(etree.tostring(root, encoding="utf-8"))


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
