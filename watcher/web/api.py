"""The read-only JSON API (/api/…) and its OpenAPI description."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from watcher import __version__
from watcher.config import EVENT_TYPES, SEVERITIES
from watcher.log import redact
from watcher.types import Item, StoredReport, StoredStory
from watcher.web.base import WebBase


class Api(WebBase):
    async def api_stories(self, request: Request) -> Response:
        f = self._filters(request, limit=_int(request.query_params.get("limit"), 50))
        return JSONResponse({"stories": [story_json(s) for s in self.views.stories(f)]})

    async def api_story(self, request: Request) -> Response:
        story_id = self._story_id(request)
        story = self.views.story(story_id) if story_id is not None else None
        if story is None:
            return JSONResponse({"error": "no such story"}, status_code=404)
        return JSONResponse(story_json(story, deliveries=True))

    async def api_items(self, request: Request) -> Response:
        q = request.query_params
        results = self.views.search(
            self._search_text(request),
            source=q.get("source") or None,
            limit=_int(q.get("limit"), 50),
        )
        return JSONResponse({"items": [_report_json(r) for r in results]})

    async def api_sources(self, request: Request) -> Response:
        states = self.views.store.source_states()
        out = []
        for s in self.config.sources:
            st = states.get(s.id)
            out.append(
                {
                    "id": s.id,
                    "name": s.display_name,
                    "kind": s.kind,
                    # ${VAR} parts (API keys) and user:password@ never leave the server
                    "url": redact(s.shown_url),
                    "lang": s.lang,
                    "tags": list(s.tags),
                    "enabled": s.enabled,
                    "last_success_at": _iso(st.last_success_at) if st else None,
                    "last_error": redact(st.last_error)
                    if st and st.last_error and st.consecutive_failures
                    else None,
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


def _report_json(r: StoredReport | Item) -> dict[str, Any]:
    return {
        "source": r.source_id,
        "title": r.title,
        "url": r.url,
        "lang": r.lang,
        "published_at": _iso(r.published_at),
        "fetched_at": _iso(r.fetched_at),
    }


def story_json(s: StoredStory, deliveries: bool = False) -> dict[str, Any]:
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
