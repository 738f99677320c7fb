"""The read-only JSON API (/api/…) and its OpenAPI description."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from watcher import __version__
from watcher.config import EVENT_TYPES, SEVERITIES
from watcher.items import published_fields
from watcher.log import redact
from watcher.render import safe_url
from watcher.store.views import Card
from watcher.types import Item, StoredReport, StoredStory
from watcher.web.base import WebBase, report_day


class Api(WebBase):
    def api_stories(self, request: Request) -> Response:
        f = self._filters(request, limit=_int(request.query_params.get("limit"), 50))
        return JSONResponse({"stories": [card_json(c) for c in self.views.stories(f)]})

    def api_story(self, request: Request) -> Response:
        story_id = self._story_id(request)
        card = self.views.story(story_id) if story_id is not None else None
        if card is None:
            return JSONResponse({"error": "no such story"}, status_code=404)
        return JSONResponse(card_json(card, deliveries=True))

    async def api_items(self, request: Request) -> Response:
        return await self._search_in_thread(self._api_items, request)

    def _api_items(self, request: Request) -> Response:
        """Matching items, newest first (the flat view of a search), with their stories."""
        query = self._query_of(request)
        where, cursor = self._item_filter(request), self._cursor(request)
        found, next_cursor = self.views.search_items(
            query, where, cursor=cursor, limit=_int(request.query_params.get("limit"), 50)
        )
        out: dict[str, Any] = {
            "items": [
                {**_report_json(i.item), "id": i.id, "story_id": story_id} for i, story_id in found
            ]
        }
        if next_cursor is not None:  # absent on the last page
            out["next_cursor"] = next_cursor
        return JSONResponse(out)

    async def api_search(self, request: Request) -> Response:
        return await self._search_in_thread(self._api_search, request)

    def _api_search(self, request: Request) -> Response:
        """Story-centred results: each story once, with the ids of its matching reports."""
        query = self._query_of(request)
        where, cursor = self._item_filter(request), self._cursor(request)
        page = self.views.search(
            query, where, cursor=cursor, size=_int(request.query_params.get("limit"), 20)
        )
        return JSONResponse(
            {
                "results": [
                    {
                        "story": card_json(r.card) if r.card else None,
                        "item": {**_report_json(r.item.item), "id": r.item.id} if r.item else None,
                        "hits": list(r.hits),
                    }
                    for r in page.results
                ],
            }
            | ({"next_cursor": page.next_cursor} if page.next_cursor is not None else {})
        )

    def api_sources(self, request: Request) -> Response:
        states = self.views.store.fetch_states()
        counts = self.views.source_counts()
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
                    # as `watcher sources list` and the sources page give it: "ok", or what
                    # is wrong (failing, blocked, moved, broken, stale, empty), why and since
                    "health": (st.health if st and st.health else "ok") if s.enabled else None,
                    "health_reason": redact(st.health_reason)
                    if s.enabled and st and st.health and st.health_reason
                    else None,
                    "health_since": _iso(st.health_since)
                    if s.enabled and st and st.health
                    else None,
                    "items_stored": counts.get(s.id, 0),
                }
            )
        return JSONResponse({"sources": out})

    def openapi(self, request: Request) -> Response:
        return JSONResponse(OPENAPI)


def _int(value: str | None, default: int) -> int:
    """`limit`: at most 500 (more is served as 500); 400 when it is not a number from 1."""
    if not value:
        return default
    if not value.isascii() or not value.isdigit() or not value.lstrip("0"):
        raise HTTPException(400, f"limit: expected a number from 1 to 500, got {value[:100]!r}")
    return min(int(value), 500) if len(value) <= 4 else 500


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _report_json(r: StoredReport | Item) -> dict[str, Any]:
    return {
        "source": r.source_id,
        "title": r.title,
        # the one link check every output makes (`render.safe_url`): a link with credentials
        # ("https://news.example@evil.example/") or another scheme is given as null
        "url": safe_url(r.url),
        "lang": r.lang,
        # with its precision: "day" (published_at is then that day's midnight in the source's
        # zone, no time it gave), "time", or null (no date); and a "day" one's day as written
        **published_fields(r.published_at, report_day(r)),
        "fetched_at": _iso(r.fetched_at),
    }


def story_json(s: StoredStory, deliveries: bool = False) -> dict[str, Any]:
    out = {
        "id": s.id,
        "events": list(s.events),
        "severity": s.severity,
        "title": s.title,
        "people": s.people,
        "people_approximate": s.people_approximate,
        "places": list(s.places),
        "first_seen_at": _iso(s.first_seen_at),
        "updated_at": _iso(s.updated_at),
        "revision": s.revision,
        "reports": [_report_json(r) for r in s.reports],
    }
    if deliveries:
        out["deliveries"] = [{**d, "sent_at": _iso(d.get("sent_at"))} for d in s.deliveries]
    return out


def card_json(card: Card, deliveries: bool = False) -> dict[str, Any]:
    """A story with its event time, main event and first outlet."""
    first = card.first
    return {
        **story_json(card.story, deliveries),
        "event_at": _iso(card.event_at),
        # False: no outlet dated it, and event_at is when watcher first fetched a report
        "event_dated": card.dated,
        # "day": event_at is the midnight of a day an outlet gave without a time of day
        # (event_day is that day as written); "time": an outlet gave the time; null: undated
        "event_precision": ("day" if card.day else "time") if card.dated else None,
        "event_day": card.day.isoformat() if card.day else None,
        "main_event": card.main_event,
        "first_source": first.source_id if first else None,
    }


_FILTER_PARAMS = [
    {"name": name, "in": "query", "required": False, "schema": schema, "description": text}
    for name, schema, text in [
        ("event", {"type": "string", "enum": list(EVENT_TYPES)}, "event type"),
        ("severity", {"type": "string", "enum": list(SEVERITIES)}, "minimum severity"),
        ("source", {"type": "string"}, "a source id that reported the story"),
        ("lang", {"type": "string"}, "a language of its reports"),
        ("since", {"type": "string", "format": "date"}, "event time on or after this day (in tz)"),
        ("until", {"type": "string", "format": "date"}, "event time on or before this day (in tz)"),
        ("tz", {"type": "string"}, "IANA time zone of since and until (default: the configured)"),
        ("page", {"type": "integer", "minimum": 1}, "page of 50"),
    ]
]
_REPORT = {
    "type": "object",
    "properties": {
        **{
            k: {"type": ["string", "null"]}
            for k in ("source", "title", "url", "lang", "published_at", "fetched_at")
        },
        "published_precision": {"type": ["string", "null"], "enum": ["day", "time", None]},
        "published_day": {"type": ["string", "null"], "format": "date"},
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
        "people_approximate": {"type": "boolean"},
        "places": {"type": "array", "items": {"type": "string"}},
        "first_seen_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
        "revision": {"type": "integer"},
        "reports": {"type": "array", "items": _REPORT},
        "event_at": {"type": "string", "format": "date-time"},
        "event_dated": {"type": "boolean"},
        "event_precision": {"type": ["string", "null"], "enum": ["day", "time", None]},
        "event_day": {"type": ["string", "null"], "format": "date"},
        "main_event": {"type": "string"},
        "first_source": {"type": ["string", "null"]},
    },
}
_SEARCH_PARAMS = [
    {
        "name": "q",
        "in": "query",
        "required": True,
        "schema": {"type": "string", "maxLength": 500},
        "description": 'words, "quoted phrases", prefix*, -exclusions; places and bodies '
        "match their spellings in other languages",
    },
    *(p for p in _FILTER_PARAMS if p["name"] != "page"),
    {
        "name": "cursor",
        "in": "query",
        "required": False,
        "schema": {"type": "integer"},
        "description": "next_cursor of the previous page",
    },
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": 500},
    },
]


def _ok(schema: dict[str, Any]) -> dict[str, Any]:
    return {"200": {"description": "OK", "content": {"application/json": {"schema": schema}}}}


_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string", "description": "what was refused, in one line"}},
}
#: A refused parameter (a source or event not known, a limit or cursor that is not one).
_REFUSED = {
    "400": {
        "description": "A parameter is not one; `error` names it",
        "content": {"application/json": {"schema": _ERROR}},
    }
}


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
                "responses": {
                    **_ok(_STORY),
                    "404": {
                        "description": "No such story",
                        "content": {"application/json": {"schema": _ERROR}},
                    },
                },
            }
        },
        "/api/search": {
            "get": {
                "summary": "Search: stories (each once, with its matching reports) and items in "
                "no story, newest matching report first",
                "parameters": _SEARCH_PARAMS,
                "responses": _ok(
                    {
                        "type": "object",
                        "properties": {
                            "results": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "story": {"oneOf": [_STORY, {"type": "null"}]},
                                        "item": {"oneOf": [_REPORT, {"type": "null"}]},
                                        "hits": {"type": "array", "items": {"type": "integer"}},
                                    },
                                },
                            },
                            "next_cursor": {
                                "type": "integer",
                                "description": "absent on the last page",
                            },
                        },
                    }
                ),
            }
        },
        "/api/items": {
            "get": {
                "summary": "Items that match q, newest first, with their story ids",
                "parameters": _SEARCH_PARAMS,
                "responses": _ok(
                    {
                        "type": "object",
                        "properties": {
                            "items": {"type": "array", "items": _REPORT},
                            "next_cursor": {
                                "type": "integer",
                                "description": "absent on the last page",
                            },
                        },
                    }
                ),
            }
        },
        "/api/sources": {
            "get": {"summary": "Sources and their health", "responses": _ok({"type": "object"})}
        },
        "/feed.atom": {
            "get": {
                "summary": "Atom feed of stories (same filters; q: a saved search)",
                "parameters": [*_FILTER_PARAMS, {**_SEARCH_PARAMS[0], "required": False}],
                "responses": {"200": {"description": "Atom 1.0"}},
            }
        },
        "/feed.json": {
            "get": {
                "summary": "JSON Feed 1.1 of stories (same filters; q: a saved search)",
                "parameters": [*_FILTER_PARAMS, {**_SEARCH_PARAMS[0], "required": False}],
                "responses": {"200": {"description": "JSON Feed 1.1"}},
            }
        },
    },
}
for _path, _spec in OPENAPI["paths"].items():
    if any(p["in"] == "query" for p in _spec["get"].get("parameters", ())):
        _spec["get"]["responses"].update(_REFUSED)
