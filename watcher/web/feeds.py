"""The Atom and JSON feeds of stories (same filters as the timeline); with `q`, the stories and
items of a search, so an advocate can subscribe to a saved search."""

from __future__ import annotations

import hashlib
import threading
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from watcher import __version__
from watcher.config import EVENT_NAMES
from watcher.render import clean, cut, safe_url
from watcher.store.views import Card, StoredItem
from watcher.web.api import card_json
from watcher.web.base import SHOWN_TITLE, WebBase, people, report_day, shown_published

#: Entries in a feed.
FEED_SIZE = 100
#: Entries in the feed of a search (each a story with its matches, or an item).
SEARCH_FEED_SIZE = 50
#: Feeds kept, made, per address: feed readers poll the same few addresses over and over.
CACHED_FEEDS = 64
#: A feed's title; a filtered feed or a saved search says what it holds after it.
FEED_TITLE = "watcher: forced repatriation early warning"


class _FeedCache:
    """Feed bodies by (address, data version): a feed is made once per change of the stored
    stories and items, not once per poll. Shared by the handler threads."""

    def __init__(self, size: int = CACHED_FEEDS) -> None:
        self.size = size
        self.lock = threading.Lock()
        self.bodies: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()

    def get(self, key: tuple[Any, ...]) -> bytes | None:
        with self.lock:
            body = self.bodies.get(key)
            if body is not None:
                self.bodies.move_to_end(key)
            return body

    def put(self, key: tuple[Any, ...], body: bytes) -> None:
        with self.lock:
            self.bodies[key] = body
            self.bodies.move_to_end(key)
            while len(self.bodies) > self.size:
                self.bodies.popitem(last=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class _Entry:
    link: str
    title: str
    summary: str
    #: None when no outlet dated it (a reader must not show a fetch time as a publication
    #: date), or gave its day only (no midnight shown as the time it published).
    published: datetime | None
    updated: datetime
    tags: tuple[str, ...]
    card: Card | None = None
    #: Each report: (outlet, its time as shown, its link or None, its headline), first report
    #: first; the time is the publication time, or "undated (fetched …)".
    reports: tuple[tuple[str, str, str | None, str], ...] = ()
    #: The entry's permanent id; default: its link. A search feed's link points at the report
    #: that matched (`?hit=`), which changes as reports join: the id must not, or a reader
    #: shows the story again.
    key: str = ""

    @property
    def id(self) -> str:
        return self.key or self.link

    @property
    def text(self) -> str:
        """The summary, then a line per report with its time and link (plain text)."""
        lines = [
            f"• {outlet}, {at}: {title}" + (f" <{link}>" if link else "")
            for outlet, at, link, title in self.reports
        ]
        return "\n".join([self.summary, *lines])

    @property
    def html(self) -> str:
        """The summary, then each report with its time and link (HTML, escaped)."""
        items = Markup("").join(
            Markup("<li>{} · {} · {}</li>").format(
                outlet,
                at,
                Markup('<a href="{}">{}</a>').format(link, title) if link else title,
            )
            for outlet, at, link, title in self.reports
        )
        return str(Markup("<p>{}</p><ul>{}</ul>").format(self.summary, items))


class Feeds(WebBase):
    _feeds: _FeedCache | None = None

    def _cached(self, request: Request, make: Callable[[Request], bytes]) -> bytes:
        """The feed for this address and the data as stored now (made when either changed)."""
        if self._feeds is None:
            self._feeds = _FeedCache()
        # a reload (SIGHUP) changes names, zone and titles: a new generation of feeds
        key = (request.url.path, self._query(request), self.views.version(), self.generation)
        body = self._feeds.get(key)
        if body is None:
            body = make(request)
            self._feeds.put(key, body)
        return body

    def _summary(self, card: Card) -> str:
        story = card.story
        parts = [", ".join(EVENT_NAMES.get(e, e) for e in story.events), story.severity.upper()]
        if story.people is not None:
            parts.append(people(story.people, story.people_approximate))
        if story.places:
            parts.append(", ".join(story.places))
        outlets = ", ".join(self.names.get(o, o) for o in story.outlets)
        return " · ".join(parts) + (f" — reported by {outlets}" if outlets else "")

    def _title(self, request: Request) -> str:
        """The feed's title, with what it is narrowed to: a reader subscribed to several saved
        searches tells them apart ("… — search “선양” · Detention · from Yonhap")."""
        f = self._filters(request)
        q = request.query_params
        parts = []
        if q.get("q", "").strip():
            # clean: no control character (XML forbids most) reaches the feed's title
            parts.append(f"search “{cut(clean(q['q']), 100)}”")
        if f.event:
            parts.append(EVENT_NAMES.get(f.event, f.event))
        if f.severity:
            parts.append(f"severity ≥ {f.severity}")
        if f.source:
            parts.append(f"from {self.names.get(f.source, f.source)}")
        if f.lang:
            parts.append(f"in {f.lang}")
        if f.since:
            parts.append(f"since {q['since']}")
        if f.until:
            parts.append(f"until {q['until']}")
        return FEED_TITLE + (" — " + " · ".join(parts) if parts else "")

    def _entries(self, request: Request) -> list[_Entry]:
        # An entry's link keeps the feed's `?tz=`: the page it opens shows times in the zone
        # the subscriber chose (its id stays the same in every zone).
        href = self._links(request)
        zone = self._tz(request)
        if not request.query_params.get("q", "").strip():
            stories = self.views.stories(self._filters(request, 100))
            return [self._story_entry(c, href, zone) for c in stories]
        query = self._query_of(request)
        page = self.views.search(
            query, self._item_filter(request), cursor=self._cursor(request), size=SEARCH_FEED_SIZE
        )
        out = []
        for r in page.results:
            if r.card is not None:
                hit = f"?hit={r.card.hits[0]}" if r.card.hits else ""
                out.append(self._story_entry(r.card, href, zone, hit))
            elif r.item is not None:
                out.append(self._item_entry(r.item, href, zone))
        return out

    def _report_lines(
        self, reports: Any, zone: ZoneInfo
    ) -> tuple[tuple[str, str, str | None, str], ...]:
        """(outlet, time, link, headline) of each report: its publication time, or, when its
        outlet gave none, "undated (fetched …)" (never a fetch time as a publication time),
        or its day alone when the outlet gave no time of day (`shown_published`)."""
        out = []
        for r in reports:
            outlet = self.names.get(r.source_id, r.source_id) + (f" ({r.lang})" if r.lang else "")
            at = shown_published(r, zone)
            out.append((outlet, at, safe_url(r.url), cut(clean(r.title), SHOWN_TITLE)))
        return tuple(out)

    def _story_entry(
        self, card: Card, href: Callable[[str], str], zone: ZoneInfo, hit: str = ""
    ) -> _Entry:
        s = card.story
        first = card.first
        # the first report first, then the others by time (as the story page lists them)
        ordered = [first, *(r for r in s.reports if r is not first)] if first else s.reports
        return _Entry(
            reports=self._report_lines(ordered, zone),
            key=self._absolute(f"/stories/{s.id}"),
            link=self._absolute(href(f"/stories/{s.id}{hit}")),
            title=f"[{s.severity.upper()}] {cut(s.title, SHOWN_TITLE)}",
            summary=self._summary(card),
            # Atom and JSON Feed dates carry a clock time: a day an outlet gave without one
            # is left out like an undated report's (the report lines give the day alone)
            published=card.event_at if card.dated and card.day is None else None,
            updated=s.updated_at,
            tags=s.events,
            card=card,
        )

    def _item_entry(self, found: StoredItem, href: Callable[[str], str], zone: ZoneInfo) -> _Entry:
        item = found.item
        return _Entry(
            reports=self._report_lines([item], zone),
            key=self._absolute(f"/items/{found.id}"),
            link=self._absolute(href(f"/items/{found.id}")),
            title=cut(item.title, SHOWN_TITLE),
            summary=f"{self.names.get(item.source_id, item.source_id)}: {item.text[:300]}",
            published=None if report_day(item) else item.published_at,
            updated=item.fetched_at,
            tags=(),
        )

    def atom(self, request: Request) -> Response:
        body = self._cached(request, self._atom)
        return _conditional(request, body, "application/atom+xml; charset=utf-8")

    def _atom(self, request: Request) -> bytes:
        entries = self._entries(request)
        ns = "http://www.w3.org/2005/Atom"
        ET.register_namespace("", ns)
        feed = ET.Element(f"{{{ns}}}feed")
        ET.SubElement(feed, f"{{{ns}}}title").text = self._title(request)
        me = self._absolute(request.url.path, self._query(request))
        ET.SubElement(feed, f"{{{ns}}}id").text = me
        ET.SubElement(feed, f"{{{ns}}}link", rel="self", href=me)
        ET.SubElement(feed, f"{{{ns}}}link", rel="alternate", href=self._absolute("/"))
        updated = max((e.updated for e in entries), default=None) or self.now()
        ET.SubElement(feed, f"{{{ns}}}updated").text = updated.isoformat()
        author = ET.SubElement(feed, f"{{{ns}}}author")
        ET.SubElement(author, f"{{{ns}}}name").text = "watcher"
        ET.SubElement(feed, f"{{{ns}}}generator", version=__version__).text = "watcher"
        for e in entries:
            entry = ET.SubElement(feed, f"{{{ns}}}entry")
            ET.SubElement(entry, f"{{{ns}}}id").text = e.id
            ET.SubElement(entry, f"{{{ns}}}title").text = e.title
            ET.SubElement(entry, f"{{{ns}}}link", rel="alternate", href=e.link)
            ET.SubElement(entry, f"{{{ns}}}updated").text = e.updated.isoformat()
            if e.published is not None:  # <updated> is required and stays
                ET.SubElement(entry, f"{{{ns}}}published").text = e.published.isoformat()
            for _, _, link, title in e.reports:
                if link:  # each report's own address, for readers that list links
                    ET.SubElement(entry, f"{{{ns}}}link", rel="related", href=link, title=title)
            ET.SubElement(entry, f"{{{ns}}}summary").text = e.summary
            ET.SubElement(entry, f"{{{ns}}}content", type="html").text = e.html
            for tag in e.tags:
                ET.SubElement(entry, f"{{{ns}}}category", term=tag)
        body: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
        return body

    def json_feed(self, request: Request) -> Response:
        body = self._cached(request, self._json_feed)
        return _conditional(request, body, "application/feed+json")

    def _json_feed(self, request: Request) -> bytes:
        entries = self._entries(request)
        items: list[dict[str, Any]] = []
        for e in entries:
            item: dict[str, Any] = {
                "id": e.id,
                "url": e.link,
                "title": e.title,
                "summary": e.summary,
                "content_text": e.text,
                "content_html": e.html,
                "date_modified": e.updated.isoformat(),
                "tags": list(e.tags),
            }
            if e.reports and e.reports[0][2]:
                item["external_url"] = e.reports[0][2]  # the first report, at its outlet
            if e.published is not None:
                item["date_published"] = e.published.isoformat()
            if e.card is not None:
                item["_watcher"] = card_json(e.card)
            items.append(item)
        feed = {
            "version": "https://jsonfeed.org/version/1.1",
            "title": self._title(request),
            "home_page_url": self._absolute("/"),
            "feed_url": self._absolute(request.url.path, self._query(request)),
            "items": items,
        }
        return bytes(JSONResponse(feed).body)


def _conditional(request: Request, body: bytes, media_type: str) -> Response:
    """The feed with an ETag (a digest of its bytes); 304 without a body when the reader
    already has these bytes (If-None-Match), as feed readers ask every few minutes."""
    tag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
    headers = {"ETag": tag, "Cache-Control": "no-cache"}
    asked = request.headers.get("if-none-match", "")
    if tag in (t.strip().removeprefix("W/") for t in asked.split(",")) or asked.strip() == "*":
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)
