"""The HTML pages: stories timeline, story page, search, sources, rules."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from watcher import health
from watcher.web.base import WebBase


class Pages(WebBase):
    async def timeline(self, request: Request) -> Response:
        f = self._filters(request)
        stories = self.views.stories(f)
        months = self.views.monthly()
        peak = max((sum(c.values()) for _, c in months), default=0)
        sources = sorted(self.names.items(), key=lambda kv: kv[1].lower())
        return self._page(
            "timeline.html.j2",
            request,
            stories=stories,
            months=months,
            peak=peak,
            sources=sources,
            filters=f,
            page=f.offset // f.limit + 1,
            next_query=urlencode({**request.query_params, "page": f.offset // f.limit + 2}),
        )

    async def story(self, request: Request) -> Response:
        story_id = self._story_id(request)
        story = self.views.story(story_id) if story_id is not None else None
        if story is None:
            return self._page("missing.html.j2", request, status=404, what="story")
        return self._page("story.html.j2", request, story=story)

    async def search(self, request: Request) -> Response:
        text = self._search_text(request)
        results = self.views.search(text, source=request.query_params.get("source") or None)
        return self._page("search.html.j2", request, q=text, results=results)

    async def sources(self, request: Request) -> Response:
        states = self.views.store.source_states()
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
                }
            )
        return self._page("sources.html.j2", request, rows=rows)

    async def rules(self, request: Request) -> Response:
        return self._page(
            "rules.html.j2", request, rules=self.config.rules, recent=self.views.recent_matches()
        )
