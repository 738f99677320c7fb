"""RSS 0.9x/1.0/2.0 and Atom through feedparser.

Ill-formed feeds are read as feedparser reads them (its `bozo` flag set): many real feeds are
invalid XML yet whole. One kind is not: a document cut short (its root element never closed,
as when a server or proxy stops sending mid-feed). Its last entry, if unfinished (a title and
no link or date, whose key would be a hash of that title: a "new" item), is dropped, and the
cut is reported (`ParseResult.truncated`); with no whole entry left the poll fails.
"""

from __future__ import annotations

import re
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
    repaired = False
    try:
        doc = _feedparser(text.encode("utf-8"))
    except Exception:  # feedparser's handlers can raise on odd markup (`</width>` → int(None))
        doc = _feedparser(_repaired(text))
        repaired = True
    entries = doc.entries[:MAX_ENTRIES]
    feedlike = bool(entries) or bool(doc.get("version"))  # else: not a feed (said below)
    cut = _cut_short(text) if (doc.get("bozo") or repaired) and feedlike else None
    truncated = None
    if cut is not None:
        root, unfinished = cut
        truncated = f"feed cut short: the document ends inside <{root}> after {len(body):,} bytes"
        if unfinished and entries and len(doc.entries) <= MAX_ENTRIES:
            entries = entries[:-1]
            if not entries:
                return ParseResult(error=f"{truncated}, before any whole entry")
            truncated += f"; its unfinished last entry was dropped, {len(entries)} kept"
        elif not entries:
            return ParseResult(error=f"{truncated}, before any entry")
        else:
            truncated += " (entries after the cut, if any, are missing)"
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
    return ParseResult(items=items, skipped=skipped, replaced=decoded.replaced, truncated=truncated)


_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)
_ROOT = re.compile(r"<([A-Za-z_][\w.\-]*(?::[\w.\-]+)?)[\s/>]")
#: The start tag of an entry (`<item>`, `<entry>`, `<rss:item …>`): complete, so a cut inside
#: the tag itself (where feedparser made no entry) is not taken for one.
_ENTRY = re.compile(r"<(?:[\w.\-]+:)?(item|entry)(?:\s[^>]*)?>")


def _cut_short(text: str) -> tuple[str, bool] | None:
    """(root element, whether the last entry is unfinished) when the document ends before its
    root element is closed; None when it is closed (an ill-formed but whole document)."""
    bare = _COMMENT.sub("", text)
    root = _ROOT.search(bare)
    if root is None:
        return None
    name = root.group(1)
    # Closed, or its closing tag begun at the very end (`</rss`: nothing was lost); an RSS 2.0
    # document whose channel is closed holds all its items, whatever follows.
    closed = rf"</{re.escape(name)}\s*(?:>|\Z)" + (r"|</channel\s*>" if name == "rss" else "")
    if root.group(0).endswith("/") or re.search(closed, bare):
        return None
    entries = list(_ENTRY.finditer(bare))
    last = entries[-1] if entries else None
    if last is None or last.group(0).endswith("/>"):
        return name, False
    close = re.compile(rf"</(?:[\w.\-]+:)?{last.group(1)}\s*>")
    return name, close.search(bare, last.end()) is None


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
