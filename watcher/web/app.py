"""The Starlette app: routes, the security middleware, and `serve` (uvicorn)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from watcher.config import Config
from watcher.store import Store
from watcher.web.api import Api
from watcher.web.base import DEFAULT_BASE_URL
from watcher.web.feeds import Feeds
from watcher.web.pages import Pages


class Web(Pages, Feeds, Api):
    """Every handler, over one store and config."""


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
        response: Response = await call_next(request)
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
    base_url: str = DEFAULT_BASE_URL,
) -> Starlette:
    web = Web(store, config, token=token, now=now, base_url=base_url)
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


def serve(app: Starlette, host: str, port: int) -> None:
    """Run the app until interrupted (uvicorn, one process)."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
