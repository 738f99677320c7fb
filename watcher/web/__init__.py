"""`watcher serve`: the stories timeline, story pages, search, sources and rules pages,
Atom and JSON feeds, and a read-only JSON API described at /openapi.json.

Server-rendered (Starlette + Jinja2, autoescaped: a hostile headline is text, never markup),
no front-end build. Read-only: there is no state-changing endpoint. Bound to 127.0.0.1 by
default; bound elsewhere it requires a token (`--token-env VAR`) unless the operator names
the proxy in front of it (`--behind-proxy`).
"""

from __future__ import annotations

from watcher.web.app import Web, create_app, listen, serve

__all__ = ["Web", "create_app", "listen", "serve"]
