"""The Starlette app: routes, the security middleware, and `serve` (uvicorn)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
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
from watcher.web.base import DEFAULT_BASE_URL, DEFAULT_PROXY_USER_HEADER, Network
from watcher.web.feeds import Feeds
from watcher.web.pages import Pages


class Web(Pages, Feeds, Api):
    """Every handler, over one store and config."""


class _Security(BaseHTTPMiddleware):
    """Read-only; a token or the proxy in front when configured; headers that keep pages
    inert."""

    async def dispatch(self, request: Request, call_next: Any) -> Response:
        web: Web = request.app.state.web
        if request.method not in ("GET", "HEAD"):
            return JSONResponse({"error": "read-only"}, status_code=405)
        refusal = web._refusal(request)
        if refusal is not None:
            return JSONResponse(
                {"error": refusal.error},
                status_code=refusal.status,
                headers={"WWW-Authenticate": "Bearer"} if refusal.bearer else None,
            )
        response: Response = await call_next(request)
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
            "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        # only for the right token: a proxied user who writes ?token=x must not be given it
        if web.token and web._token_valid(request.query_params.get("token", "")):
            response.set_cookie("watcher_token", web.token, httponly=True, samesite="strict")
        return response


def create_app(
    store: Store,
    config: Config,
    *,
    token: str | None = None,
    proxies: Sequence[Network] = (),
    proxy_user_header: str = DEFAULT_PROXY_USER_HEADER,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    base_url: str = DEFAULT_BASE_URL,
) -> Starlette:
    """The app over one store and config. `token`: every request needs it, unless `proxies`
    are given, whose requests get in with `proxy_user_header` instead (see `_refusal`).

    Usage::

        app = create_app(store, config, proxies=parse_proxies("10.0.0.2"))
    """
    web = Web(
        store,
        config,
        token=token,
        proxies=proxies,
        proxy_user_header=proxy_user_header,
        now=now,
        base_url=base_url,
    )
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


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything announces the address: OSError (in use,
    not an address of this machine, no permission) says why it cannot be."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def serve(app: Starlette, sock: socket.socket) -> None:
    """Run the app on a bound socket until interrupted (uvicorn, one process)."""
    import uvicorn

    # proxy_headers=False: the client address stays the socket's peer. uvicorn would otherwise
    # take it from X-Forwarded-For when the peer is 127.0.0.1, and a client could then pass
    # for the proxy (or the proxy for its client).
    config = uvicorn.Config(app, log_level="warning", access_log=False, proxy_headers=False)
    uvicorn.Server(config).run(sockets=[sock])
