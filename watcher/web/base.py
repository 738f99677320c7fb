"""What every web handler shares: the store's read models, the config, templates, filters,
and who may see them (the token, the proxy in front)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import anyio.to_thread
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from watcher import __version__
from watcher.config import EVENT_NAMES, EVENT_TYPES, SEVERITIES, Config
from watcher.config.loading import Names
from watcher.items import future_date, published_day
from watcher.log import redact
from watcher.recheck import diff as word_diff
from watcher.render import WORDS, cut, day_alone, safe_url
from watcher.store import Store, search
from watcher.store.views import Filters, Views
from watcher.types import Item, StoredReport

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
#: Headlines are shown cut to this many characters (as in the alerts); the item page, which is
#: the record, shows them whole.
SHOWN_TITLE = 300
#: Searches run at once (more wait their turn): about the processors of a small server.
SEARCH_SLOTS = 2

#: The header in which the authenticating proxy names the signed-in user (oauth2-proxy with
#: --pass-user-headers, Apache and nginx set it with one line).
DEFAULT_PROXY_USER_HEADER = "X-Forwarded-User"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Headers that say where a request came from, never who sent it.
_NOT_IDENTITY = {
    "forwarded",
    "host",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-proto",
    "x-real-ip",
}
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def parse_proxies(text: str) -> tuple[Network, ...]:
    """`--behind-proxy`: comma-separated IP addresses or networks of the proxy in front.

    Usage::

        parse_proxies("10.0.0.2, fd00::/64")  # (IPv4Network('10.0.0.2/32'), IPv6Network(...))
        parse_proxies("oauth2-proxy")         # ValueError: not an IP address or network …
    """
    networks = []
    for part in (p.strip() for p in text.split(",")):
        try:
            network = ipaddress.ip_network(part, strict=False)
        except ValueError:
            raise ValueError(
                f"{part!r} is not an IP address or network: give the proxy's address "
                "(e.g. 10.0.0.2, or 10.0.0.0/24 for several), not its name"
            ) from None
        if network.prefixlen == 0:
            raise ValueError(f"{part} would trust every address: give the proxy's own")
        networks.append(network)
    return tuple(networks)


def check_user_header(name: str) -> str:
    """`--proxy-user-header`: a header name that can carry the user."""
    if not _HEADER_NAME.match(name):
        raise ValueError(f"{name!r} is not a header name")
    if name.lower() in _NOT_IDENTITY:
        raise ValueError(
            f"{name} says where a request came from, not who sent it: name the header the "
            f"proxy puts the user in (e.g. {DEFAULT_PROXY_USER_HEADER})"
        )
    return name


@dataclass(frozen=True, kw_only=True, slots=True)
class Refusal:
    """Why a request is not served."""

    #: 401 (credentials would help) or 403 (this client may not connect at all).
    status: int
    error: str
    #: Answer with `WWW-Authenticate: Bearer` (a token is configured).
    bearer: bool = False


class WebBase:
    """The state of the web app: `Web` adds the pages, feeds and API handlers."""

    def __init__(
        self,
        store: Store,
        config: Config,
        *,
        token: str | None = None,
        proxies: Sequence[Network] = (),
        proxy_user_header: str = DEFAULT_PROXY_USER_HEADER,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        base_url: str = DEFAULT_BASE_URL,
    ) -> None:
        #: The clock: an empty feed is up to date as of now.
        self.now = now
        #: The address served on: absolute links start with it when no public_url is set.
        self._served_url = base_url
        #: Absolute links in feeds start with this (settings.public_url wins).
        self.base_url = (config.settings.public_url or base_url).rstrip("/")
        self.views = Views(store)
        self.config = config
        self.token = token
        #: The authenticating proxy's addresses: when set, only it (or a token) gets in.
        self.proxies = tuple(proxies)
        #: The header in which the proxy names the user; a proxied request without it is 401.
        self.proxy_user_header = proxy_user_header
        self.names = {s.id: s.display_name for s in config.sources}
        #: Raised by each reload: what was made from the old configuration is made again.
        self.generation = 0
        #: What the filters may name (events, sources, languages), with the CLI's hints.
        self.known = Names.of(config)
        self.env = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(["html", "j2"]),
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,  # the templates are part of the release: no stat per page
            # the last guard: an environment value (an API key in a redirect target quoted by
            # a source's health) or a URL password is never rendered into a page
            finalize=_redacted,
        )
        self.env.globals.update(
            event_names=EVENT_NAMES,
            event_colours=EVENT_COLOURS,
            severities=SEVERITIES,
            events=EVENT_TYPES,
            safe_url=safe_url,
            version=__version__,
            word_diff=word_diff,
        )
        self.env.filters["mark"] = mark
        self.env.filters["excerpt"] = excerpt
        self.env.filters["cut"] = lambda text, limit=SHOWN_TITLE: cut(text, limit)
        self.env.filters["people"] = people
        self.env.filters["count"] = count
        #: Searches that may run at once (made on first use, inside the event loop).
        self._search_limiter: anyio.CapacityLimiter | None = None

    def reload(self, config: Config) -> None:
        """Serve with a re-read sources.yaml (SIGHUP to `watcher serve`): outlets' names, the
        sources and rules pages, the zone, `public_url`. A request being answered finishes
        with what it started with; each value is swapped whole."""
        self.names = {s.id: s.display_name for s in config.sources}
        self.known = Names.of(config)
        self.base_url = (config.settings.public_url or self._served_url).rstrip("/")
        self.config = config
        self.generation += 1

    # ------------------------------------------------------------------ helpers

    async def _search_in_thread(
        self, handler: Callable[[Request], Response], request: Request
    ) -> Response:
        """Run a search handler in a worker thread, at most `SEARCH_SLOTS` at once: the others
        wait in the event loop, holding no thread, so that however many searches come in, the
        feeds and pages (plain handlers, in Starlette's own pool) still get a thread and the
        processor."""
        if self._search_limiter is None:
            self._search_limiter = anyio.CapacityLimiter(SEARCH_SLOTS)
        return await anyio.to_thread.run_sync(handler, request, limiter=self._search_limiter)

    def _absolute(self, path: str, query: str = "") -> str:
        """An absolute link for feeds: from `settings.public_url`, else the address served
        on; never from the request's Host header (which a client chooses)."""
        return f"{self.base_url}{path}" + (f"?{query}" if query else "")

    def _query(self, request: Request) -> str:
        """The request's query without the token (a link must never carry a secret)."""
        return urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "token"])

    def _kept(self, request: Request, *dropped: str) -> list[tuple[str, str]]:
        """The request's parameters for a link to the next page: without the token (a link
        must never carry a secret), nor `dropped`, nor a `tz` that names no zone."""
        bad_tz = self._given_tz(request) is None
        return [
            (k, v)
            for k, v in request.query_params.multi_items()
            if k != "token" and k not in dropped and not (k == "tz" and bad_tz)
        ]

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

    def _query_of(self, request: Request) -> search.Query:
        """The parsed `q` (400 when too long or too complex)."""
        try:
            return search.parse(self._search_text(request))
        except search.QueryError as exc:
            raise HTTPException(400, str(exc)) from None

    @staticmethod
    def _cursor(request: Request) -> int | None:
        """`cursor`: the id a results page continues below (400 when it is not one)."""
        text = request.query_params.get("cursor", "")
        if not text:
            return None
        if not text.isascii() or not text.isdigit() or len(text) > 18:
            raise HTTPException(400, "cursor must be the number a previous page gave")
        return int(text)

    def _item_filter(self, request: Request) -> search.ItemFilter:
        """The timeline's filters, as they narrow search hits."""
        f = self._filters(request)
        severities = None
        if f.severity in SEVERITIES:
            severities = tuple(SEVERITIES[SEVERITIES.index(f.severity) :])
        return search.ItemFilter(
            event=f.event,
            severities=severities,
            source=f.source,
            lang=f.lang,
            since=f.since,
            until=f.until,
            zone=f.zone,
        )

    def _tz(self, request: Request) -> ZoneInfo:
        return self._given_tz(request) or ZoneInfo(self.config.settings.timezone)

    @staticmethod
    def _given_tz(request: Request) -> ZoneInfo | None:
        """`?tz=`, when it names a zone (an unknown one is ignored)."""
        name = request.query_params.get("tz")
        if not name:
            return None
        try:
            return ZoneInfo(name)
        except (ValueError, KeyError, OSError):
            return None

    def _filters(self, request: Request, limit: int = 50) -> Filters:
        """The timeline's filters (also the feeds', the API's and, but for `page`, the
        search's); one that is not one is refused with 400 naming it, never ignored.
        Dates are days in the page's zone, both included; a report its outlet gave the day
        of only is in them when that day is (`store.search.within`)."""
        q = request.query_params
        tz = self._tz(request)
        text = q.get("page", "1")
        if not text.isascii() or not text.isdigit() or not text.lstrip("0"):
            raise HTTPException(400, f"page: expected a number from 1, got {text[:100]!r}")
        page = int(text) if len(text) <= len(str(MAX_PAGE)) else MAX_PAGE + 1
        if page > MAX_PAGE:
            raise HTTPException(400, f"page must be at most {MAX_PAGE:,}")
        return Filters(
            event=self._known("event", q.get("event"), (*EVENT_TYPES, *self.known.events)),
            severity=self._known("severity", q.get("severity"), SEVERITIES),
            source=self._source(q.get("source")),
            lang=self._known("lang", q.get("lang"), self.known.langs),
            since=_day_or_time("since", q.get("since"), tz),
            until=_day_or_time("until", q.get("until"), tz, end=True),
            zone=tz,
            limit=limit,
            offset=(page - 1) * limit,
        )

    def _known(self, kind: str, value: str | None, known: Sequence[str]) -> str | None:
        """`value` when it is one of `known` (None when not given); else 400 with the CLI's
        hint: "event: unknown event 'forced_repatriaton' (did you mean …?)"."""
        if not value:
            return None
        if value not in known:
            raise HTTPException(400, f"{kind}: {self.known.problem(kind, value[:100])}")
        return value

    def _source(self, value: str | None) -> str | None:
        """A configured source, or one taken out of sources.yaml since whose items are still
        stored (a feed subscribed to it goes on); else 400 with the CLI's hint."""
        if value and value not in self.known.sources and self.views.stored_source(value[:100]):
            return value
        return self._known("source", value, self.known.sources)

    def _story_page(
        self,
        request: Request,
        story_id: int | None,
        *,
        hit: int | None = None,
        status: int = 200,
        correction_error: str | None = None,
    ) -> Response:
        """A story's page (the not-found page when there is no such story), with the
        corrections form when this request may correct, and why a correction was refused."""
        card = self.views.story(story_id) if story_id is not None else None
        if card is None:
            return self._page("missing.html.j2", request, status=404, what="story")
        return self._page(
            "story.html.j2",
            request,
            status=status,
            card=card,
            corrections=self.views.corrections(card.story.id),
            csrf=self.csrf() if self.may_correct(request) else None,
            hit=hit,
            correction_error=correction_error,
        )

    def _links(self, request: Request) -> Callable[[str], str]:
        """`href(path)` in templates: the address of another page, with this page's `?tz=`
        when it names a zone, so that a link followed keeps the zone the reader chose."""
        if self._given_tz(request) is None:
            return lambda path: path
        kept = urlencode({"tz": request.query_params["tz"]})

        def link(path: str) -> str:
            path, hash_, fragment = path.partition("#")
            return f"{path}{'&' if '?' in path else '?'}{kept}{hash_}{fragment}"

        return link

    def _page(self, name: str, request: Request, status: int = 200, **context: Any) -> Response:
        tz = self._tz(request)

        def when(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
            return f"{value.astimezone(tz):{fmt}} {value.astimezone(tz).tzname()}" if value else ""

        def published(value: datetime | None, fetched: datetime, day: date | None = None) -> str:
            """A report's publication time; a report its outlet gave none is "undated": its
            fetch time is never shown as if the outlet had given it. One its outlet gave the
            `day` of but no time of day shows that day as written, and no clock time."""
            if value and day:
                return day_alone(day, WORDS["en"])
            return when(value) if value else f"undated (fetched {when(fetched)})"

        given = self._given_tz(request)
        html = self.env.get_template(name).render(
            request=request,
            when=when,
            published=published,
            published_day=published_day,
            future_date=future_date,
            href=self._links(request),
            tz=tz.key,
            #: The zone the reader chose (`?tz=`), which forms carry on.
            given_tz=given.key if given else None,
            names=self.names,
            captured=self.captured,
            query=dict(request.query_params),
            **context,
        )
        return HTMLResponse(html, status_code=status)

    def captured(self, kind: str, source_id: str) -> str:
        """What a first-seen record holds, as its SHA-256 is labelled: the response the item
        came in (the whole feed, listing page or API answer, not the article) or its page."""
        if kind == "article":
            return "the article page"
        kinds = {s.id: s.kind for s in self.config.sources}
        return {
            "feed": "the feed it came in",
            "html": "the listing page it came in",
            "json": "the API response it came in",
        }.get(kinds.get(source_id, ""), "the feed or listing it came in")

    def csrf(self) -> str | None:
        """The CSRF value forms carry: derived from the token, so it is valid exactly as long
        as the token is, and reveals nothing of it."""
        if not self.token:
            return None
        return hmac.new(self.token.encode(), b"watcher-csrf", hashlib.sha256).hexdigest()

    def may_correct(self, request: Request) -> bool:
        """A token is configured and this request carries it."""
        return bool(self.token) and self._token_valid(self._offered_token(request))

    def _refusal(self, request: Request) -> Refusal | None:
        """None when the request may be served. A valid token always gets in. Behind a proxy,
        only a client whose own TCP address (the socket peer: forwarded headers, which any
        client can write, are never read) is the proxy's gets in, and only with the user
        header the proxy sets."""
        if self._token_valid(self._offered_token(request)):
            return None
        if self.proxies:
            if not self._from_proxy(request):
                if self.token:
                    return Refusal(status=401, error="a token is required", bearer=True)
                return Refusal(status=403, error="only the proxy in front may connect")
            if not request.headers.get(self.proxy_user_header, "").strip():
                return Refusal(
                    status=401,
                    error=f"the proxy named no user ({self.proxy_user_header})",
                    bearer=bool(self.token),
                )
            return None
        if self.token:
            return Refusal(status=401, error="a token is required", bearer=True)
        return None

    @staticmethod
    def _offered_token(request: Request) -> str:
        return (
            request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            or request.query_params.get("token", "")
            or request.cookies.get("watcher_token", "")
        )

    def _token_valid(self, offered: str) -> bool:
        """Is `offered` the token (False when none is configured)?"""
        if not self.token:
            return False
        return hmac.compare_digest(offered.encode(), self.token.encode())

    def _from_proxy(self, request: Request) -> bool:
        try:
            peer = ipaddress.ip_address(request.client.host if request.client else "")
        except ValueError:
            return False
        if isinstance(peer, ipaddress.IPv6Address) and peer.ipv4_mapped is not None:
            peer = peer.ipv4_mapped  # an IPv4 proxy reaching a dual-stack socket
        return any(peer in network for network in self.proxies)


def _day_or_time(name: str, text: str | None, tz: ZoneInfo, end: bool = False) -> datetime | None:
    """`since`/`until`: a day (2026-12-02) in the page's zone, from its start, or to its end
    when `end` (the bound is then the next day's start, which the queries exclude); or an ISO
    8601 time (read in the zone when it names no offset). 400 for anything else."""
    if not text:
        return None
    try:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            at = datetime.fromisoformat(text.replace("Z", "+00:00"))
        else:
            at = datetime.combine(day + timedelta(days=1) if end else day, time())
        return (at if at.tzinfo else at.replace(tzinfo=tz)).astimezone(UTC)
    except (ValueError, OverflowError):
        # "+09:00" in an address unescaped arrives as " 09:00" (a + is a space in a query)
        plus = " (a + in an address is a space: write it %2B, or give the time in UTC with Z)"
        raise HTTPException(
            400,
            f"{name}: expected a date like 2026-12-02 (or an ISO 8601 time), got {text[:100]!r}"
            + (plus if re.search(r"\d \d\d:?\d\d$", text) else ""),
        ) from None


def _pattern(spellings: Sequence[str]) -> re.Pattern[str] | None:
    """What a search matched: each spelling, and for a longer Latin word the words that share
    its stem-like start (repatriation → repatriates)."""
    patterns = []
    for s in spellings:
        if s.isascii() and len(s) >= 5 and s.isalpha():
            patterns.append(r"\b" + re.escape(s[: max(4, len(s) - 3)]) + r"\w*")
        elif s:
            patterns.append(re.escape(s))
    return re.compile("|".join(patterns), re.IGNORECASE) if patterns else None


def excerpt(text: str, spellings: Sequence[str], width: int = 220) -> Markup:
    """Where in `text` a search matched: about `width` characters around the first match,
    marked (the start of the text when nothing is found in it)."""
    pattern = _pattern(spellings)
    found = pattern.search(text) if pattern else None
    start = max(0, found.start() - width // 3) if found else 0
    end = min(len(text), start + width)
    piece = ("…" if start else "") + text[start:end] + ("…" if end < len(text) else "")
    return mark(piece, spellings)


def mark(text: str, spellings: Sequence[str]) -> Markup:
    """`text`, escaped, with what a search matched wrapped in <mark> (see `_pattern`)."""
    text = redact(text)
    pattern = _pattern(spellings)
    if pattern is None or not text:
        return escape(text)
    out, at = [], 0
    for m in pattern.finditer(text):
        if m.end() == m.start():
            continue
        out.append(escape(text[at : m.start()]))
        out.append(Markup("<mark>%s</mark>") % m.group())
        at = m.end()
    out.append(escape(text[at:]))
    return Markup("").join(out)


def people(n: int, approximate: bool = False) -> str:
    """A story's count as the alerts write it: "1 person", "30,000 people", "~600 people"
    (the outlet gave it as approximate: "about 600", 600여 명)."""
    return WORDS["en"].people(n, approximate)


def report_day(report: StoredReport | Item) -> date | None:
    """The day a report's outlet gave without a time of day (`StoredReport.published_day`;
    for an item, read from its date as written); None when it gave a time, or no date."""
    if isinstance(report, StoredReport):
        return report.published_day
    return published_day(report)


def shown_published(report: StoredReport | Item, zone: ZoneInfo) -> str:
    """A report's publication time as feeds show it: "2026-11-20 17:05 KST"; its day alone,
    said so, when its outlet gave no time of day; "undated (fetched …)" when it gave none."""

    def when(at: datetime) -> str:
        local = at.astimezone(zone)
        return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"

    if report.published_at is None:
        return f"undated (fetched {when(report.fetched_at)})"
    day = report_day(report)
    return day_alone(day, WORDS["en"]) if day else when(report.published_at)


def count(n: int) -> str:
    """A count on a page, with thousands separators as the alerts write them: 12,345."""
    return f"{n:,}"


def _redacted(value: Any) -> Any:
    return redact(value) if type(value) is str else value
