"""What every web handler shares: the store's read models, the config, templates, filters,
the token check."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape
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


class WebBase:
    """The state of the web app: `Web` adds the pages, feeds and API handlers."""

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
