"""What every web handler shares: the store's read models, the config, templates, filters,
the token check."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from watcher import __version__
from watcher.config import EVENT_NAMES, EVENT_TYPES, SEVERITIES, Config
from watcher.items import parse_date
from watcher.render import safe_url
from watcher.store import Store
from watcher.store.views import Filters, Views

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "web"

EVENT_COLOURS = {
    "forced_repatriation": "#b3261e",
    "detention": "#e8710a",
    "border_reopening": "#1a73e8",
    "un_action": "#188038",
    "china_position": "#9334e6",
    "policy_change": "#5f6368",
}


#: The deepest page a listing goes to, and the longest search text (longer: 400).
MAX_PAGE = 10_000
#: Where links point when neither `settings.public_url` nor the served address is known.
DEFAULT_BASE_URL = "http://127.0.0.1:8080"
MAX_QUERY = 500


class WebBase:
    """The state of the web app: `Web` adds the pages, feeds and API handlers."""

    def __init__(
        self,
        store: Store,
        config: Config,
        *,
        token: str | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        base_url: str = DEFAULT_BASE_URL,
    ) -> None:
        #: The clock: an empty feed is up to date as of now.
        self.now = now
        #: Absolute links in feeds start with this (settings.public_url wins).
        self.base_url = (config.settings.public_url or base_url).rstrip("/")
        self.views = Views(store)
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

    def _absolute(self, path: str, query: str = "") -> str:
        """An absolute link for feeds: from `settings.public_url`, else the address served
        on; never from the request's Host header (which a client chooses)."""
        return f"{self.base_url}{path}" + (f"?{query}" if query else "")

    def _query(self, request: Request) -> str:
        """The request's query without the token (a link must never carry a secret)."""
        return urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "token"])

    @staticmethod
    def _story_id(request: Request) -> int | None:
        """The path's story id, or None when it is not one (too large for the database too)."""
        text = request.path_params.get("story_id", "")
        if not text.isascii() or not text.isdigit() or len(text) > 18:
            return None
        return int(text)

    @staticmethod
    def _search_text(request: Request) -> str:
        text = request.query_params.get("q", "")
        if len(text) > MAX_QUERY:
            raise HTTPException(400, f"a search may be at most {MAX_QUERY} characters")
        return text

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
        if page > MAX_PAGE:
            raise HTTPException(400, f"page must be at most {MAX_PAGE:,}")
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
