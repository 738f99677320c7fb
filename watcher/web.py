"""`watcher serve`: the stories timeline, story pages, search, sources and rules pages,
Atom and JSON feeds, and a read-only JSON API described at /openapi.json.

Server-rendered (Starlette + Jinja2, autoescaped: a hostile headline is text, never markup),
no front-end build. Read-only: there is no state-changing endpoint. Bound to 127.0.0.1 by
default; bound elsewhere it requires a token (`--token-env VAR`) unless the operator names
the proxy in front of it (`--behind-proxy`).
"""

from __future__ import annotations

import hmac
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from watcher import __version__
from watcher.browse import Browse, Filters, ReportRow, StoryRow
from watcher.config import EVENT_NAMES, EVENT_TYPES, SEVERITIES, Config
from watcher.items import parse_date
from watcher.render import safe_url
from watcher.store import Store
from watcher.types import source_health

TEMPLATES = Path(__file__).parent / "templates" / "web"

EVENT_COLOURS = {
    "forced_repatriation": "#b3261e",
    "detention": "#e8710a",
    "border_reopening": "#1a73e8",
    "un_action": "#188038",
    "china_position": "#9334e6",
    "policy_change": "#5f6368",
}


class Web:
    def __init__(
        self,
        store: Store,
        config: Config,
        *,
        token: str | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        #: The clock: an empty feed is up to date as of now.
        self.now = now
        self.browse = Browse(store)
        self.config = config
        self.token = token
        self.names = {s.id: s.display_name for s in config.sources}
        self.env = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(["html", "j2"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.globals.update(
            event_names=EVENT_NAMES,
            event_colours=EVENT_COLOURS,
            severities=SEVERITIES,
            events=EVENT_TYPES,
            safe_url=safe_url,
            version=__version__,
        )

    # ------------------------------------------------------------------ helpers

    def _tz(self, request: Request) -> ZoneInfo:
        name = request.query_params.get("tz") or self.config.settings.timezone
        try:
            return ZoneInfo(name)
        except (ValueError, KeyError, OSError):
            return ZoneInfo(self.config.settings.timezone)

    def _filters(self, request: Request, limit: int = 50) -> Filters:
        q = request.query_params
        since = parse_date(q["since"], "UTC") if q.get("since") else None
        until = parse_date(q["until"], "UTC") if q.get("until") else None
        try:
            page = max(1, int(q.get("page", "1")))
        except ValueError:
            page = 1
        return Filters(
            event=q.get("event") or None,
            severity=q.get("severity") or None,
            source=q.get("source") or None,
            lang=q.get("lang") or None,
            since=since,
            until=until,
            limit=limit,
            offset=(page - 1) * limit,
        )

    def _page(self, name: str, request: Request, status: int = 200, **context: Any) -> Response:
        tz = self._tz(request)

        def when(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
            return f"{value.astimezone(tz):{fmt}} {value.astimezone(tz).tzname()}" if value else ""

        html = self.env.get_template(name).render(
            request=request,
            when=when,
            tz=tz.key,
            names=self.names,
            query=dict(request.query_params),
            **context,
        )
        return HTMLResponse(html, status_code=status)

    def _authorised(self, request: Request) -> bool:
        if not self.token:
            return True
        offered = (
            request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            or request.query_params.get("token", "")
            or request.cookies.get("watcher_token", "")
        )
        return hmac.compare_digest(offered.encode(), self.token.encode())

    # ------------------------------------------------------------------ pages

    async def timeline(self, request: Request) -> Response:
        f = self._filters(request)
        stories = self.browse.stories(f)
        months = self.browse.monthly()
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
        try:
            story = self.browse.story(int(request.path_params["story_id"]))
        except ValueError:
            story = None
        if story is None:
            return self._page("missing.html.j2", request, status=404, what="story")
        return self._page("story.html.j2", request, story=story)

    async def search(self, request: Request) -> Response:
        text = request.query_params.get("q", "")
        results = self.browse.search(text, source=request.query_params.get("source") or None)
        return self._page("search.html.j2", request, q=text, results=results)

    async def sources(self, request: Request) -> Response:
        states = self.browse.store.source_states()
        per_day = self.browse.items_per_day()
        threshold = self.config.settings.failure_threshold
        rows = []
        for source in self.config.sources:
            st = states.get(source.id)
            health = source_health(source.enabled, st, threshold)
            rows.append(
                {
                    "source": source,
                    "state": st,
                    "health": health,
                    "per_day": per_day.get(source.id, 0.0),
                }
            )
        return self._page("sources.html.j2", request, rows=rows)

    async def rules(self, request: Request) -> Response:
        return self._page(
            "rules.html.j2", request, rules=self.config.rules, recent=self.browse.recent_matches()
        )

    # ------------------------------------------------------------------ feeds

    def _story_link(self, request: Request, story: StoryRow) -> str:
        return str(request.url_for("story", story_id=story.id))

    def _summary(self, story: StoryRow) -> str:
        parts = [", ".join(EVENT_NAMES.get(e, e) for e in story.events), story.severity.upper()]
        if story.people is not None:
            parts.append(f"{story.people} people")
        if story.places:
            parts.append(", ".join(story.places))
        outlets = ", ".join(self.names.get(o, o) for o in story.outlets)
        return " · ".join(parts) + (f" — reported by {outlets}" if outlets else "")

    async def atom(self, request: Request) -> Response:
        stories = self.browse.stories(self._filters(request, limit=100))
        ns = "http://www.w3.org/2005/Atom"
        ET.register_namespace("", ns)
        feed = ET.Element(f"{{{ns}}}feed")
        ET.SubElement(feed, f"{{{ns}}}title").text = "watcher: forced repatriation early warning"
        ET.SubElement(feed, f"{{{ns}}}id").text = str(request.url)
        ET.SubElement(feed, f"{{{ns}}}link", rel="self", href=str(request.url))
        ET.SubElement(feed, f"{{{ns}}}link", rel="alternate", href=str(request.url_for("timeline")))
        updated = max((s.updated_at for s in stories), default=None) or self.now()
        ET.SubElement(feed, f"{{{ns}}}updated").text = updated.isoformat()
        author = ET.SubElement(feed, f"{{{ns}}}author")
        ET.SubElement(author, f"{{{ns}}}name").text = "watcher"
        ET.SubElement(feed, f"{{{ns}}}generator", version=__version__).text = "watcher"
        for story in stories:
            entry = ET.SubElement(feed, f"{{{ns}}}entry")
            link = self._story_link(request, story)
            ET.SubElement(entry, f"{{{ns}}}id").text = link
            ET.SubElement(
                entry, f"{{{ns}}}title"
            ).text = f"[{story.severity.upper()}] {story.title}"
            ET.SubElement(entry, f"{{{ns}}}link", rel="alternate", href=link)
            ET.SubElement(entry, f"{{{ns}}}updated").text = story.updated_at.isoformat()
            ET.SubElement(entry, f"{{{ns}}}published").text = story.first_seen_at.isoformat()
            ET.SubElement(entry, f"{{{ns}}}summary").text = self._summary(story)
            for event in story.events:
                ET.SubElement(entry, f"{{{ns}}}category", term=event)
        body = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
        return Response(body, media_type="application/atom+xml; charset=utf-8")

    async def json_feed(self, request: Request) -> Response:
        stories = self.browse.stories(self._filters(request, limit=100))
        feed = {
            "version": "https://jsonfeed.org/version/1.1",
            "title": "watcher: forced repatriation early warning",
            "home_page_url": str(request.url_for("timeline")),
            "feed_url": str(request.url),
            "items": [
                {
                    "id": self._story_link(request, s),
                    "url": self._story_link(request, s),
                    "title": f"[{s.severity.upper()}] {s.title}",
                    "content_text": self._summary(s),
                    "date_published": s.first_seen_at.isoformat(),
                    "date_modified": s.updated_at.isoformat(),
                    "tags": list(s.events),
                    "_watcher": _story_json(s),
                }
                for s in stories
            ],
        }
        return JSONResponse(feed, media_type="application/feed+json")

    # ------------------------------------------------------------------ API

    async def api_stories(self, request: Request) -> Response:
        f = self._filters(request, limit=_int(request.query_params.get("limit"), 50))
        return JSONResponse({"stories": [_story_json(s) for s in self.browse.stories(f)]})

    async def api_story(self, request: Request) -> Response:
        try:
            story = self.browse.story(int(request.path_params["story_id"]))
        except ValueError:
            story = None
        if story is None:
            return JSONResponse({"error": "no such story"}, status_code=404)
        return JSONResponse(_story_json(story, deliveries=True))

    async def api_items(self, request: Request) -> Response:
        q = request.query_params
        results = self.browse.search(
            q.get("q", ""), source=q.get("source") or None, limit=_int(q.get("limit"), 50)
        )
        return JSONResponse({"items": [_report_json(r) for r in results]})

    async def api_sources(self, request: Request) -> Response:
        states = self.browse.store.source_states()
        out = []
        for s in self.config.sources:
            st = states.get(s.id)
            out.append(
                {
                    "id": s.id,
                    "name": s.display_name,
                    "kind": s.kind,
                    "url": s.url,
                    "lang": s.lang,
                    "tags": list(s.tags),
                    "enabled": s.enabled,
                    "last_success_at": _iso(st.last_success_at) if st else None,
                    "last_error": st.last_error if st and st.consecutive_failures else None,
                    "consecutive_failures": st.consecutive_failures if st else 0,
                    "items_stored": st.items_stored if st else 0,
                }
            )
        return JSONResponse({"sources": out})

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(OPENAPI)


def _int(value: str | None, default: int) -> int:
    try:
        return max(1, min(int(value), 500)) if value else default
    except ValueError:
        return default


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _report_json(r: ReportRow) -> dict[str, Any]:
    return {
        "source": r.source_id,
        "title": r.title,
        "url": r.url,
        "lang": r.lang,
        "published_at": _iso(r.published_at),
        "fetched_at": _iso(r.fetched_at),
    }


def _story_json(s: StoryRow, deliveries: bool = False) -> dict[str, Any]:
    out = {
        "id": s.id,
        "events": list(s.events),
        "severity": s.severity,
        "title": s.title,
        "people": s.people,
        "places": list(s.places),
        "first_seen_at": _iso(s.first_seen_at),
        "updated_at": _iso(s.updated_at),
        "revision": s.revision,
        "reports": [_report_json(r) for r in s.reports],
    }
    if deliveries:
        out["deliveries"] = [{**d, "sent_at": _iso(d.get("sent_at"))} for d in s.deliveries]
    return out


_FILTER_PARAMS = [
    {"name": name, "in": "query", "required": False, "schema": schema, "description": text}
    for name, schema, text in [
        ("event", {"type": "string", "enum": list(EVENT_TYPES)}, "event type"),
        ("severity", {"type": "string", "enum": list(SEVERITIES)}, "minimum severity"),
        ("source", {"type": "string"}, "a source id that reported the story"),
        ("lang", {"type": "string"}, "a language of its reports"),
        ("since", {"type": "string", "format": "date"}, "first seen at or after"),
        ("until", {"type": "string", "format": "date"}, "first seen before"),
        ("page", {"type": "integer", "minimum": 1}, "page of 50"),
    ]
]
_REPORT = {
    "type": "object",
    "properties": {
        k: {"type": ["string", "null"]}
        for k in ("source", "title", "url", "lang", "published_at", "fetched_at")
    },
}
_STORY = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "events": {"type": "array", "items": {"type": "string"}},
        "severity": {"type": "string", "enum": list(SEVERITIES)},
        "title": {"type": "string"},
        "people": {"type": ["integer", "null"]},
        "places": {"type": "array", "items": {"type": "string"}},
        "first_seen_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
        "revision": {"type": "integer"},
        "reports": {"type": "array", "items": _REPORT},
    },
}


def _ok(schema: dict[str, Any]) -> dict[str, Any]:
    return {"200": {"description": "OK", "content": {"application/json": {"schema": schema}}}}


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "watcher",
        "version": __version__,
        "description": "Read-only API: stories of forced repatriation, detention and "
        "related events, the items behind them, and the sources.",
    },
    "paths": {
        "/api/stories": {
            "get": {
                "summary": "Stories, newest first",
                "parameters": _FILTER_PARAMS,
                "responses": _ok(
                    {
                        "type": "object",
                        "properties": {"stories": {"type": "array", "items": _STORY}},
                    }
                ),
            }
        },
        "/api/stories/{story_id}": {
            "get": {
                "summary": "One story with its reports and deliveries",
                "parameters": [
                    {
                        "name": "story_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "integer"},
                    }
                ],
                "responses": {**_ok(_STORY), "404": {"description": "No such story"}},
            }
        },
        "/api/items": {
            "get": {
                "summary": "Items whose title or text contains q (2+ characters)",
                "parameters": [
                    {"name": "q", "in": "query", "required": True, "schema": {"type": "string"}},
                    {
                        "name": "source",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 500},
                    },
                ],
                "responses": _ok(
                    {"type": "object", "properties": {"items": {"type": "array", "items": _REPORT}}}
                ),
            }
        },
        "/api/sources": {
            "get": {"summary": "Sources and their health", "responses": _ok({"type": "object"})}
        },
        "/feed.atom": {
            "get": {
                "summary": "Atom feed of stories (same filters)",
                "parameters": _FILTER_PARAMS,
                "responses": {"200": {"description": "Atom 1.0"}},
            }
        },
        "/feed.json": {
            "get": {
                "summary": "JSON Feed 1.1 of stories (same filters)",
                "parameters": _FILTER_PARAMS,
                "responses": {"200": {"description": "JSON Feed 1.1"}},
            }
        },
    },
}


class _Security(BaseHTTPMiddleware):
    """Read-only, token when configured, and headers that keep pages inert."""

    async def dispatch(self, request: Request, call_next: Any) -> Response:
        web: Web = request.app.state.web
        if request.method not in ("GET", "HEAD"):
            return JSONResponse({"error": "read-only"}, status_code=405)
        if not web._authorised(request):
            return JSONResponse(
                {"error": "a token is required"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
            "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        if web.token and request.query_params.get("token"):
            response.set_cookie("watcher_token", web.token, httponly=True, samesite="strict")
        return response


def create_app(
    store: Store,
    config: Config,
    *,
    token: str | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Starlette:
    web = Web(store, config, token=token, now=now)
    app = Starlette(
        routes=[
            Route("/", web.timeline, name="timeline"),
            Route("/stories/{story_id}", web.story, name="story"),
            Route("/search", web.search, name="search"),
            Route("/sources", web.sources, name="sources"),
            Route("/rules", web.rules, name="rules"),
            Route("/feed.atom", web.atom, name="atom"),
            Route("/feed.json", web.json_feed, name="json_feed"),
            Route("/api/stories", web.api_stories),
            Route("/api/stories/{story_id}", web.api_story),
            Route("/api/items", web.api_items),
            Route("/api/sources", web.api_sources),
            Route("/openapi.json", web.openapi),
        ],
        middleware=[Middleware(_Security)],
    )
    app.state.web = web
    return app
