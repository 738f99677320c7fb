"""The Starlette app: routes, the security middleware, and `serve` (uvicorn)."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from watcher.config import Config
from watcher.store import Store, search
from watcher.web.api import Api
from watcher.web.base import DEFAULT_BASE_URL, DEFAULT_PROXY_USER_HEADER, Network
from watcher.web.corrections import Corrections
from watcher.web.feeds import Feeds
from watcher.web.pages import Pages


class Web(Pages, Feeds, Api, Corrections):
    """Every handler, over one store and config."""


class _Security:
    """Read-only; a token or the proxy in front when configured; headers that keep pages
    inert. Plain ASGI (no per-request task group or body streams): it only adds headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        web: Web = request.app.state.web
        if request.method not in ("GET", "HEAD") and not (
            request.method == "POST" and _CORRECTIONS.fullmatch(request.url.path)
        ):
            await JSONResponse({"error": "read-only"}, status_code=405)(scope, receive, send)
            return
        refusal = web._refusal(request)
        if refusal is not None:
            response = JSONResponse(
                {"error": refusal.error},
                status_code=refusal.status,
                headers={"WWW-Authenticate": "Bearer"} if refusal.bearer else None,
            )
            await response(scope, receive, send)
            return
        # only for the right token: a proxied user who writes ?token=x must not be given it
        cookie = None
        if web.token and web._token_valid(request.query_params.get("token", "")):
            carrier = Response()
            carrier.set_cookie("watcher_token", web.token, httponly=True, samesite="strict")
            cookie = carrier.headers["set-cookie"]

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = _CSP
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "no-referrer"
                if cookie is not None:
                    headers.append("set-cookie", cookie)
            await send(message)

        await self.app(scope, receive, with_headers)


#: The one path that takes a POST: an advocate's correction (behind the token, with CSRF).
_CORRECTIONS = re.compile(r"/stories/[0-9]{1,18}/corrections")

_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


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
            Route("/stories/{story_id}/evidence.warc.gz", web.evidence, name="evidence"),
            Route(
                "/stories/{story_id}/corrections",
                web.correct,
                methods=["POST"],
                name="corrections",
            ),
            Route("/items/{item_id}", web.item, name="item"),
            Route("/items/{item_id}/evidence.warc.gz", web.item_evidence, name="item_evidence"),
            Route("/search", web.search, name="search"),
            Route("/sources", web.sources, name="sources"),
            Route("/rules", web.rules, name="rules"),
            Route("/feed.atom", web.atom, name="atom"),
            Route("/feed.json", web.json_feed, name="json_feed"),
            Route("/api/stories", web.api_stories),
            Route("/api/stories/{story_id}", web.api_story),
            Route("/api/search", web.api_search),
            Route("/api/items", web.api_items),
            Route("/api/sources", web.api_sources),
            Route("/openapi.json", web.openapi),
        ],
        middleware=[Middleware(_Security)],
        # a search that cannot go on (its cursor's item was pruned) is the client's to redo
        exception_handlers={HTTPException: _http_refused, search.QueryError: _query_refused},
    )
    app.state.web = web
    return app


#: Paths whose answers are JSON: their refusals are JSON too (`{"error": "..."}`), as the
#: API's 404 is, so a client reads every answer the same way.
_JSON_PATHS = ("/api/", "/openapi.json")


def _refused(request: Request, status: int, why: str, headers: Any = None) -> Response:
    """The refusal in the path's own format: JSON under /api/, one line of text elsewhere."""
    if status in (204, 304):  # no body by definition
        return Response(status_code=status, headers=headers)
    if request.url.path.startswith(_JSON_PATHS):
        return JSONResponse({"error": why}, status_code=status, headers=headers)
    return PlainTextResponse(why, status_code=status, headers=headers)


async def _http_refused(request: Request, exc: Exception) -> Response:
    """A refused request (a bad parameter, an unknown path): its one line, in its format."""
    assert isinstance(exc, HTTPException)
    return _refused(request, exc.status_code, exc.detail, getattr(exc, "headers", None))


async def _query_refused(request: Request, exc: Exception) -> Response:
    """400 with the one line that says why, as the other refused parameters get."""
    return _refused(request, 400, str(exc))


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything announces the address: OSError (in use,
    not an address of this machine, no permission) says why it cannot be."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit it: a response is not held back waiting for the
        # client's delayed ACK (40 ms on every request of a kept-alive connection).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def serve(app: Starlette, sock: socket.socket) -> None:
    """Run the app on a bound socket until interrupted (uvicorn, one process)."""
    import sys

    import uvicorn

    # Handlers run in threads beside the event loop: a shorter switch interval (5 ms by
    # default) lets the loop take in and answer requests promptly while handlers compute.
    sys.setswitchinterval(0.001)

    # proxy_headers=False: the client address stays the socket's peer. uvicorn would otherwise
    # take it from X-Forwarded-For when the peer is 127.0.0.1, and a client could then pass
    # for the proxy (or the proxy for its client).
    config = uvicorn.Config(app, log_level="warning", access_log=False, proxy_headers=False)
    uvicorn.Server(config).run(sockets=[sock])
