"""Whether an http(s) address names a place to fetch from: its port and host, checked alike
when sources.yaml is loaded and before each request (a redirect's too); and a URL's
credentials hidden wherever one is shown (`redact_credentials`: the log, the store's messages).

Usage::

    url_problem("http://127.0.0.1:99999/feed")   # 'port 99999 is out of range (1-65535)'
    url_problem("https://ex_ample..org/feed")    # "host 'ex_ample..org' has an empty label"
    url_problem("https://example.org/feed")      # None
"""

from __future__ import annotations

import re
from ipaddress import ip_address
from urllib.parse import quote, quote_plus, urlsplit

#: What a DNS label may hold when written in ASCII (the underscore: some real hosts have one).
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?")


def url_problem(url: str) -> str | None:
    """Why `url` names no host and port to connect to, as one line; None when it does."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # "http://[::1/feed": Invalid IPv6 URL
        return f"not a valid address: {exc}"
    host_port = parts.netloc.rpartition("@")[2]
    port = host_port.rpartition("]")[2].partition(":")[2] if ":" in host_port else ""
    if port:
        if not port.isascii() or not port.isdigit():
            return f"port {port!r} is not a number"
        if not 1 <= int(port) <= 65535:
            return f"port {int(port)} is out of range (1-65535)"
    host = parts.hostname
    if not host:
        return "no host"
    if host_port.startswith("["):
        try:
            ip_address(host.partition("%")[0])
        except ValueError:
            return f"host [{host}] is not an IP address"
        return None
    return _host_problem(host)


def _host_problem(host: str) -> str | None:
    name = host[:-1] if host.endswith(".") else host
    if len(name) > 253:
        return f"host name longer than 253 characters ({len(name)})"
    for label in name.split("."):
        if not label:
            return f"host {host!r} has an empty label"
        if not label.isascii():
            try:
                label = label.encode("idna").decode("ascii")
            except UnicodeError:
                return f"host {host!r} is not a valid international name"
        if len(label) > 63:
            return f"host {host!r} has a label longer than 63 characters"
        if not _LABEL.fullmatch(label):
            return f"host {host!r} is not a valid name"
    return None


# --------------------------------------------------------------------------- credentials

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<cred>[^/\s@]+@)")
#: A URL's query parameter whose name says it holds a secret, with its value: a database
#: password given as `?password=` (libpq and SQLAlchemy take one there) shows as `password=***`.
_QUERY_SECRET = re.compile(
    r"(?P<key>[?&;](?:[\w.-]*(?:password|passwd|secret|token)"
    r"|(?:[\w.-]*[_.-])?(?:pass|pwd|api[_-]?key|apikey))=)"
    r"[^&;#\s\"'<>]+?(?=[&;#\s\"'<>]|:\s|:?$)",
    re.IGNORECASE,
)


def redact_credentials(text: str) -> str:
    """`text` with each URL's `user:password@` and each secret-named query value as `***`.

    Usage::

        redact_credentials("postgresql://u:pw@db/x?sslpassword=s&sslmode=require")
        # 'postgresql://***@db/x?sslpassword=***&sslmode=require'
    """
    text = _URL_CREDENTIALS.sub(r"\g<scheme>***@", text)
    return _QUERY_SECRET.sub(r"\g<key>***", text) if "=" in text else text


def whole_forms(secret: str) -> set[str]:
    """`secret` itself and percent-encoded as URLs carry it: wholly, as a path, as a form
    value, and as httpx writes a query and a path (it leaves ``!$'()*,;@`` and more as they
    are)."""
    return {
        secret,
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        quote(secret, safe=_QUERY_SAFE),
        quote(secret, safe=_PATH_SAFE),
    }


#: What httpx leaves unencoded in a query and in a path (RFC 3986's sub-delims and more).
_QUERY_SAFE = "!$&'()*+,;=:/?@[]"
_PATH_SAFE = "!$&'()*+,;=:@/"
