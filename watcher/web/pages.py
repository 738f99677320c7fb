"""The HTML pages: stories timeline, story page, item page, search, sources, rules.

Handlers are plain functions: Starlette runs them in its thread pool, so a slow query never
holds the event loop (and the requests behind it)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import Response

from watcher import health
from watcher import log as logsetup
from watcher.config import EVENT_TYPES, event_rank
from watcher.store.views import CHART_MONTHS, MAX_CHART_MONTHS, Chart, Filters
from watcher.web.base import WebBase

#: Results per search page.
SEARCH_PAGE = 20


#: Charts kept, counted, per filters and data version (a few filters are used over and over).
CACHED_CHARTS = 32
_CHARTS_LOCK = threading.Lock()


class Pages(WebBase):
    #: (filters, zone, month, data version) → the chart counted for them, oldest first.
    _charts: OrderedDict[tuple[Any, ...], Chart]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._charts = OrderedDict()

    def timeline(self, request: Request) -> Response:
        f = self._filters(request)
        cards = self.views.stories(f)
        chart = self._chart(f, self._tz(request))
        sources = sorted(self.names.items(), key=lambda kv: kv[1].lower())
        return self._page(
            "timeline.html.j2",
            request,
            silent=self._silent_sources(),
            cards=cards,
            chart=chart,
            # the shipped event types, then an operator's own that the chart counted
            chart_events=sorted(
                set(EVENT_TYPES).union(*(c.keys() for _, c in chart.months)), key=event_rank
            ),
            chart_months=CHART_MONTHS,
            max_chart_months=MAX_CHART_MONTHS,
            one_microsecond=timedelta(microseconds=1),
            sources=sources,
            filters=f,
            page=f.offset // f.limit + 1,
            next_query=urlencode(
                [*self._kept(request, "page"), ("page", str(f.offset // f.limit + 2))]
            ),
        )

    def _chart(self, f: Filters, zone: ZoneInfo) -> Chart:
        """The timeline's chart for these filters, counted once per change of the stored
        stories and items (a lookup of each story's dates: tens of milliseconds on a year of
        history), then served from memory to every page of the timeline and every reader."""
        now = self.now()
        key = (
            f.event,
            f.severity,
            f.source,
            f.lang,
            f.since,
            f.until,
            zone.key,
            f"{now.astimezone(zone):%Y-%m}",  # the default period ends with this month
            self.views.version(),
        )
        with _CHARTS_LOCK:
            chart = self._charts.get(key)
        if chart is None:
            chart = self.views.monthly(f, zone, now=now)
            with _CHARTS_LOCK:
                self._charts[key] = chart
                while len(self._charts) > CACHED_CHARTS:
                    self._charts.popitem(last=False)
        return chart

    def _silent_sources(self) -> list[tuple[str, str]]:
        """(name, health) of each enabled source that is not working now (failing, blocked,
        empty, broken, moved, stale): the timeline says so, because a broken source's silence
        looks like no news."""
        states = self.views.store.fetch_states()
        out = []
        for source in self.config.sources:
            if source.enabled:
                shown = health.current(states.get(source.id), enabled=True)
                if shown.problem:
                    out.append((self.names.get(source.id, source.id), shown.status))
        return out

    def story(self, request: Request) -> Response:
        hit = request.query_params.get("hit", "")
        return self._story_page(
            request,
            self._story_id(request),
            hit=int(hit) if hit.isascii() and hit.isdigit() and len(hit) < 19 else None,
        )

    def evidence(self, request: Request) -> Response:
        """The story's first-seen records as a WARC file (`watcher evidence export --story`)."""
        story_id = self._story_id(request)
        data = (
            self.views.evidence_warc(story_id, logsetup.redact_whole)
            if story_id is not None
            else None
        )
        return self._warc(request, data, f"story-{story_id}")

    def item(self, request: Request) -> Response:
        item_id = _item_id(request)
        found = self.views.item(item_id) if item_id is not None else None
        if found is None:
            return self._page("missing.html.j2", request, status=404, what="item")
        return self._page("item.html.j2", request, found=found)

    def item_evidence(self, request: Request) -> Response:
        """The item's first-seen records as a WARC file: the record an advocate cites."""
        item_id = _item_id(request)
        data = (
            self.views.evidence_warc(item_id=item_id, redact=logsetup.redact_whole)
            if item_id is not None
            else None
        )
        return self._warc(request, data, f"item-{item_id}")

    def _warc(self, request: Request, data: bytes | None, name: str) -> Response:
        """A WARC file to download as `name`.warc.gz, or the page saying there is none."""
        if data is None:
            return self._page("missing.html.j2", request, status=404, what="evidence")
        return Response(
            data,
            media_type="application/warc",
            headers={"Content-Disposition": f'attachment; filename="{name}.warc.gz"'},
        )

    async def search(self, request: Request) -> Response:
        return await self._search_in_thread(self._search_page, request)

    def _search_page(self, request: Request) -> Response:
        query = self._query_of(request)
        cursor = self._cursor(request)
        where = self._item_filter(request)
        page = None
        if len(query.text.strip()) >= 2 and query.searchable:
            page = self.views.search(query, where, cursor=cursor, size=SEARCH_PAGE)
        next_query = None
        if page is not None and page.next_cursor is not None:
            next_query = urlencode(
                [*self._kept(request, "cursor"), ("cursor", str(page.next_cursor))]
            )
        feed_query = urlencode(self._kept(request, "cursor"))
        sources = sorted(self.names.items(), key=lambda kv: kv[1].lower())
        return self._page(
            "search.html.j2",
            request,
            q=query.text,
            parsed=query,
            page=page,
            spellings=query.spellings(),
            next_query=next_query,
            feed_query=feed_query,
            sources=sources,
            continued=cursor is not None,
        )

    def sources(self, request: Request) -> Response:
        states = self.views.store.fetch_states()
        counts = self.views.source_counts()
        per_day = self.views.items_per_day()
        rows = []
        for source in self.config.sources:
            st = states.get(source.id)
            rows.append(
                {
                    "source": source,
                    "state": st,
                    "health": health.current(st, enabled=source.enabled),
                    "per_day": per_day.get(source.id, 0.0),
                    "stored": counts.get(source.id, 0),
                }
            )
        return self._page("sources.html.j2", request, rows=rows)

    def rules(self, request: Request) -> Response:
        return self._page(
            "rules.html.j2",
            request,
            rules=self.config.rules,
            recent=self.views.recent_matches(),
            group=_group_text,
        )


def _item_id(request: Request) -> int | None:
    """The path's item id, or None when it is not one (too large for the database too)."""
    text = request.path_params.get("item_id", "")
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


#: At most this many of an inline group's terms are shown on the rules page.
_SHOWN_TERMS = 8


def _group_text(group: Any) -> str:
    """A rule's term group as a reader sees it: a concept by its name, inline terms as a
    list (`[rohingya, myanmar, …]`), per-language terms by language; never Python's repr."""
    if isinstance(group, str):
        return group

    def terms(values: Any) -> str:
        words = [str(v) for v in values]
        more = " …" if len(words) > _SHOWN_TERMS else ""
        return ", ".join(words[:_SHOWN_TERMS]) + more

    if isinstance(group, dict):
        return "[" + "; ".join(f"{lang}: {terms(v)}" for lang, v in group.items()) + "]"
    return f"[{terms(group)}]"
