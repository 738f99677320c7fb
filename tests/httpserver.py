"""A real local HTTP server for tests: routes of recorded bodies, faults and request logs.

Usage::

    with FeedServer() as server:
        server.route("/feed", body=b"<rss>…", content_type="application/rss+xml", etag='"v1"')
        url = server.url("/feed")
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    content_type: str | None = "application/rss+xml; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    last_modified: str | None = None
    #: Seconds to wait before answering.
    delay: float = 0.0
    #: Stream this many bytes of filler in chunks instead of `body` (for size caps).
    stream_bytes: int = 0
    #: Answer each request with the next status of this list, then `status`.
    statuses: list[int] = field(default_factory=list)
    #: Custom handler: (handler) -> None, writes its own response.
    handler: Callable[[BaseHTTPRequestHandler], None] | None = None


@dataclass
class Seen:
    path: str
    method: str
    headers: dict[str, str]
    at: float
    body: bytes = b""


class FeedServer:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.routes: dict[str, Route] = {}
        self.requests: list[Seen] = []
        self.active: dict[str, int] = {}
        self.max_active: dict[str, int] = {}
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server._handle(self)

            def do_POST(self) -> None:
                server._handle(self)

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        # A short poll interval: shutdown() waits for the serving loop to look (0.5 s by default,
        # paid at the end of every test that starts a server).
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self) -> FeedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=30)

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def route(self, path: str, **kw: Any) -> Route:
        route = Route(**kw)
        self.routes[path] = route
        return route

    def hits(self, path: str) -> list[Seen]:
        return [r for r in self.requests if r.path.split("?")[0] == path]

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path.split("?")[0]
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        with self._lock:
            self.requests.append(
                Seen(h.path, h.command, dict(h.headers.items()), time.time(), body)
            )
            host = h.headers.get("Host", "")
            self.active[host] = self.active.get(host, 0) + 1
            self.max_active[host] = max(self.max_active.get(host, 0), self.active[host])
        try:
            self._respond(h, path)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with self._lock:
                self.active[host] -= 1

    def _respond(self, h: BaseHTTPRequestHandler, path: str) -> None:
        route = self.routes.get(path)
        if route is None:
            self._send(h, 404, b"not found", "text/plain", {})
            return
        if route.delay:
            time.sleep(route.delay)
        if route.handler is not None:
            route.handler(h)
            return
        status = route.statuses.pop(0) if route.statuses else route.status
        headers = dict(route.headers)
        if route.etag:
            headers["ETag"] = route.etag
            if h.headers.get("If-None-Match") == route.etag:
                self._send(h, 304, b"", None, headers)
                return
        if route.last_modified:
            headers["Last-Modified"] = route.last_modified
            if h.headers.get("If-Modified-Since") == route.last_modified:
                self._send(h, 304, b"", None, headers)
                return
        if route.stream_bytes:
            h.send_response(status)
            h.send_header("Content-Type", route.content_type or "application/octet-stream")
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            chunk = b"<!-- " + b"x" * 65_000 + b" -->"
            sent = 0
            while sent < route.stream_bytes:
                h.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                sent += len(chunk)
            h.wfile.write(b"0\r\n\r\n")
            return
        self._send(h, status, route.body, route.content_type, headers)

    @staticmethod
    def _send(
        h: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        content_type: str | None,
        headers: dict[str, str],
    ) -> None:
        h.send_response(status)
        if content_type:
            h.send_header("Content-Type", content_type)
        for key, value in headers.items():
            h.send_header(key, value)
        h.send_header("Date", formatdate(usegmt=True))
        h.send_header("Content-Length", str(len(body) if status != 304 else 0))
        h.end_headers()
        if status != 304:
            h.wfile.write(body)


def trickle(stop: threading.Event, every: float = 0.5) -> Callable[[BaseHTTPRequestHandler], None]:
    """A route handler that answers 200 and then trickles its body a byte at a time, never
    finishing, until `stop` is set: a client that waits for the whole answer waits for ever.

    Usage::

        stop = threading.Event()
        server.route("/slow", handler=trickle(stop))
        ...
        stop.set()   # the connection ends
    """

    def handler(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", "100000")
        h.end_headers()
        while not stop.wait(every):
            h.wfile.write(b" ")
            h.wfile.flush()
        h.close_connection = True  # the answer is cut short: the client stops waiting

    return handler
