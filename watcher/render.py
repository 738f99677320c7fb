"""Turn an alert, a digest or an operator notice into a `Message` for one channel format.

Pure: no I/O beyond loading the Jinja2 templates once (the Environment is cached), no clock.

**Formats.** Each apprise URL maps to one channel format (`channel_format`), and each format to
one `Message.format` and one set of templates named ``<kind>.<suffix>.j2``:

======== ================ ============================== =====================================
channel  Message.format   templates                      length limit (why)
======== ================ ============================== =====================================
email    html             ``alert.email.html.j2``        none; the lead cut to 2,000 chars
telegram html             ``alert.telegram.html.j2``     4,096 chars of `<b>title</b>` + body
slack    markdown         ``alert.slack.md.j2``          3,000 chars of body (one Block Kit
                                                         section); title 150 (header block)
text     text             ``alert.text.j2``              none; the lead cut to 2,000 chars
======== ================ ============================== =====================================

Kinds are ``alert``, ``digest`` and ``ops`` (operator notices and ``watcher notify test``).
An operator overrides any template by putting a file of the same name in ``templates_dir``.

**Escaping.** Every string that comes from a source (titles, leads, outlet names, URLs) is
untrusted. It is first cleaned for every format (`clean`: control characters, lone surrogates
and bidi overrides removed, whitespace folded to single spaces, so no text can start a line of
its own), then escaped by the template environment at output time, so an overriding template
gets the same protection:

- HTML (email, Telegram): Jinja2 autoescape. Links come only from `safe_url` (http/https,
  percent-encoded, no credentials); anything else is shown without a link.
- Slack: apprise 2.2.0 reads a ``markdown`` body as CommonMark and translates it to Slack
  mrkdwn itself (``NotifySlack._commonmark_to_slack``): it entity-escapes ``&`` and turns
  ``\\<`` into ``&lt;``, ``**b**`` into ``*b*`` and ``[t](<u>)`` into ``<u|t>``, but passes a
  raw ``<!here>`` through live and rewrites ``*x*`` to ``_x_``. So the Slack templates write
  CommonMark for that translator, and `md_escape` escapes untrusted text for it: ``< > [ ] #``
  get a backslash, ``\\`` is followed by a zero-width space (so it can escape nothing),
  asterisk, underscore, tilde and backtick become their fullwidth lookalikes ``＊ ＿ ～ ｀``,
  and ``@name`` gets a zero-width space after the ``@``. ``&`` is left to apprise (escaping
  it here would show ``&amp;`` literally). Fullwidth lookalikes rather than zero-width
  spaces because the text is parsed twice (CommonMark by apprise, then mrkdwn by Slack): a
  zero-width space does not stop apprise from pairing ``*…*`` (it is not whitespace to
  CommonMark), and whether it stops Slack is undocumented; a fullwidth character is markup to
  neither, reads the same, and the swap only touches ASCII punctuation, never Korean or
  Chinese text.
- Plain text: cleaned only.

**Length.** Never by slicing rendered markup: the untrusted inputs are shortened (the lead,
then report titles, then other outlets beyond N become "+K more outlets", then the lead goes)
and the message is rendered again until it fits (`_alert_budgets`).

Usage::

    msg = render_alert(view, channel_format("tgram://…"), "Asia/Seoul")
    apprise_obj.notify(title=msg.title, body=msg.body, body_format=msg.format)
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from functools import cache
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import jinja2

from watcher.config import EVENT_NAMES
from watcher.types import AlertView, Message, Report

__all__ = [
    "CHANNELS",
    "EVENT_NAMES",
    "channel_format",
    "clean",
    "cut",
    "md_escape",
    "render_alert",
    "render_digest",
    "render_ops",
    "render_test",
    "safe_url",
]

#: Human names of the event types (an unknown "some_type" shows as "Some type").

#: apprise schemes of email services that take an HTML body. mailto/mailtos send
#: multipart/alternative, the text part converted from our HTML by apprise.
EMAIL_SCHEMES = frozenset(
    {
        "mailto",
        "mailtos",
        "ses",
        "sendgrid",
        "mailgun",
        "sparkpost",
        "smtp2go",
        "o365",
        "azure",
        "resend",
        "brevo",
        "mailersend",
        "postmark",
        "sendpulse",
    }
)


@dataclass(frozen=True, kw_only=True, slots=True)
class ChannelSpec:
    """How one channel format is rendered and how long its messages may be."""

    #: `Message.format` (what apprise is told the body is).
    format: str
    #: Escaping environment: html (autoescape), md (Slack via apprise), text.
    syntax: str
    #: Template name part: ``alert.<suffix>.j2``.
    suffix: str
    #: Longest message in the channel's own measure (see `_cost`), or None.
    limit: int | None
    #: Longest title in the same measure.
    title_limit: int
    #: Longest lead (characters) before any fitting.
    lead: int
    #: Most other outlets listed before any fitting.
    others: int


#: The channel formats. A new one is an entry here plus its templates (and a `_cost` branch
#: when the service has a hard limit).
CHANNELS: dict[str, ChannelSpec] = {
    # No limit for email; 2,000 characters per lead keeps a digest of many stories readable.
    "email": ChannelSpec(
        format="html",
        syntax="html",
        suffix="email.html",
        limit=None,
        title_limit=250,
        lead=2000,
        others=50,
    ),
    # Telegram rejects a message over 4,096 characters (after entity parsing; apprise checks
    # the raw text, which is longer, so the raw text is what we count).
    "telegram": ChannelSpec(
        format="html",
        syntax="html",
        suffix="telegram.html",
        limit=4096,
        title_limit=200,
        lead=1000,
        others=30,
    ),
    # Slack's hard limit is 3,000 characters per Block Kit section text (a `?blocks=yes` URL
    # puts the whole body in one section; over it Slack rejects the message) and 150 for a
    # header block (the title there). The legacy attachment layout allows more, but a message
    # that fits both layouts never depends on how the operator wrote the URL.
    "slack": ChannelSpec(
        format="markdown",
        syntax="md",
        suffix="slack.md",
        limit=3000,
        title_limit=150,
        lead=1000,
        others=30,
    ),
    "text": ChannelSpec(
        format="text",
        syntax="text",
        suffix="text",
        limit=None,
        title_limit=250,
        lead=2000,
        others=50,
    ),
}


def channel_format(url: str) -> str:
    """The channel format (a key of `CHANNELS`) for an apprise URL, by its scheme.

    Usage::

        channel_format("mailtos://user:pw@example.org")   # "email"
        channel_format("tgram://123:abc/456")             # "telegram"
        channel_format("https://hooks.slack.com/services/A/B/C")  # "slack" (native URL)
        channel_format("ntfy://topic")                    # "text"
    """
    scheme, sep, _ = url.strip().partition(":")
    scheme = scheme.lower() if sep else ""
    if scheme in EMAIL_SCHEMES:
        return "email"
    if scheme == "slack":
        return "slack"
    if scheme == "tgram":
        return "telegram"
    if scheme in ("http", "https"):
        # apprise also accepts the services' own webhook URLs.
        host = (urlsplit(url.strip()).hostname or "").lower()
        if host in ("hooks.slack.com", "hooks.slack-gov.com"):
            return "slack"
        if host == "api.telegram.org":
            return "telegram"
    return "text"


# --------------------------------------------------------------------------- cleaning


# C0/C1 controls (tab, newline and carriage return are folded as whitespace below),
# lone surrogates (they break UTF-8 encoding in the sender), and the bidi embeddings,
# overrides and isolates that can make text display in a misleading order.
_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def clean(text: str | None) -> str:
    """Untrusted text made safe for every format's layout: one line, no control characters.

    Usage::

        clean("a\\u202eb\\n c\\x00")   # "ab c"
    """
    if not text:
        return ""
    # str.split() folds every Unicode whitespace, including U+2028/U+2029 line separators.
    return " ".join(_UNSAFE.sub("", text).split())


def cut(text: str, limit: int) -> str:
    """`text` shortened to at most `limit` characters, at a word end when one is near."""
    if len(text) <= limit:
        return text
    if limit <= 1:
        return "…"[:limit]
    head = text[: limit - 1]
    space = head.rfind(" ")
    if space >= limit * 0.8:
        head = head[:space]
    return head.rstrip() + "…"


_HOST = re.compile(r"[a-z0-9.-]+|\[[0-9a-f:.]+\]")
# Kept as they are in a URL; everything else is percent-encoded, so a URL can hold no quote,
# bracket, space, backslash or `|` that could end the markup around it.
_URL_SAFE = "/%:@!$&+,;=-._~"


def safe_url(url: str | None) -> str | None:
    """`url` if it is an http(s) link we may render, percent-encoded; else None.

    Refused: other schemes (javascript:, data:, mailto:…), no host, credentials in the URL
    (``https://news.example@evil.example/``), an unparseable port or host.

    Usage::

        safe_url("https://ex.com/a b?q=<x>")   # "https://ex.com/a%20b?q=%3Cx%3E"
        safe_url("javascript:alert(1)")        # None
    """
    url = clean(url)
    if not url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    if parts.username is not None or parts.password is not None:
        return None
    host = parts.hostname
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    if ":" in host:
        host = f"[{host}]"
    if not _HOST.fullmatch(host):
        return None
    netloc = host if port is None else f"{host}:{port}"
    return urlunsplit(
        (
            parts.scheme.lower(),
            netloc,
            quote(parts.path, safe=_URL_SAFE) or "/",
            quote(parts.query, safe=_URL_SAFE + "?"),
            quote(parts.fragment, safe=_URL_SAFE + "?"),
        )
    )


_LANG = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*")


def _lang(value: str | None) -> str | None:
    return value if value and _LANG.fullmatch(value) else None


# --------------------------------------------------------------------------- Slack escaping

_MD_TABLE = str.maketrans(
    {
        "\\": "\\\u200b",
        "<": "\\<",
        ">": "\\>",
        "[": "\\[",
        "]": "\\]",
        "#": "\\#",
        "*": "＊",
        "_": "＿",
        "~": "～",
        "`": "｀",
    }
)
_MENTION = re.compile(r"@(?=\w)")


class SlackMarkup(str):
    """Text the Slack environment outputs as it is (already escaped markup)."""

    __slots__ = ()


def md_escape(text: object) -> str:
    """Untrusted text escaped for a Slack body that apprise 2.2.0 translates (module doc).

    Usage::

        md_escape("<!here> *x* @channel")   # "\\<!here\\> ＊x＊ @\\u200bchannel"
    """
    if isinstance(text, SlackMarkup):
        return text
    return _MENTION.sub("@\u200b", str(text).translate(_MD_TABLE))


def _md_link(label: str, href: str | None) -> SlackMarkup:
    """A CommonMark link that apprise turns into Slack's ``<url|label>``, or the bare label."""
    text = md_escape(label)
    if not href:
        return SlackMarkup(text)
    # `|` would end the label inside <url|label>; href comes from safe_url (no <, >, |).
    return SlackMarkup(f"[{text.replace('|', '｜')}](<{href}>)")


def _md_finalize(value: object) -> str:
    return md_escape(value)


def _slack_title(title: str) -> str:
    # apprise escapes &, < and > in the title (attachment title or header block) itself.
    return _MENTION.sub("@\u200b", title)


# --------------------------------------------------------------------------- templates

_PACKAGE_TEMPLATES = os.path.join(os.path.dirname(__file__), "templates")


@cache
def _environment(syntax: str, templates_dir: str | None) -> jinja2.Environment:
    """One Environment per (escaping, override directory); compiled templates stay cached."""
    loaders: list[jinja2.BaseLoader] = []
    if templates_dir:
        loaders.append(jinja2.FileSystemLoader(templates_dir))
    loaders.append(jinja2.FileSystemLoader(_PACKAGE_TEMPLATES))
    options: dict[str, Any] = {
        "loader": jinja2.ChoiceLoader(loaders),
        "trim_blocks": True,
        "lstrip_blocks": True,
        "undefined": jinja2.StrictUndefined,
        # Templates are read once; no stat() per message.
        "auto_reload": False,
        "autoescape": syntax == "html",
    }
    if syntax == "md":
        options["finalize"] = _md_finalize
    env = jinja2.Environment(**options)
    if syntax == "md":
        env.globals["link"] = _md_link
    return env


def _render_template(
    kind: str,
    spec: ChannelSpec,
    templates_dir: str | None,
    ctx: AlertContext | DigestContext | OpsContext,
) -> str:
    env = _environment(spec.syntax, templates_dir)
    template = env.get_template(f"{kind}.{spec.suffix}.j2")
    values = {f.name: getattr(ctx, f.name) for f in fields(ctx)}
    return template.render(**values).strip() + "\n"


def _spec(channel: str) -> ChannelSpec:
    try:
        return CHANNELS[channel]
    except KeyError:
        raise ValueError(
            f"unknown channel format {channel!r}; expected one of {', '.join(CHANNELS)}"
        ) from None


# --------------------------------------------------------------------------- length


def _utf16_len(text: str) -> int:
    # Telegram counts UTF-16 code units: an emoji outside the BMP counts twice.
    return len(text.encode("utf-16-le")) // 2


def _cost(channel: str, title: str, body: str) -> int:
    """The message's length as the channel's limit measures it."""
    if channel == "telegram":
        # apprise 2.2.0 (title_maxlen = 0) sends f"<b>{title}</b><br />\r\n{body}" through its
        # Telegram HTML reducer: <br /> becomes "\r\n" and every "\n" in the body "\r\n".
        head = f"<b>{title}</b>\r\n" if title else ""
        return _utf16_len(head + body) + body.count("\n")
    if channel == "slack":
        # apprise's CommonMark → mrkdwn translation lengthens & to &amp; and \< to &lt;
        # (links and ** get shorter); count the growth, never the shrinkage.
        return len(body) + 4 * body.count("&") + 2 * (body.count("\\<") + body.count("\\>"))
    return 0


def _title_cost(channel: str, title: str) -> int:
    if channel == "slack":
        # apprise escapes &, < and > in the title.
        title = _slack_title(title)
        return len(title) + 4 * title.count("&") + 3 * (title.count("<") + title.count(">"))
    return len(title)


B = TypeVar("B")


def _fit(
    channel: str, budgets: Iterator[B], build: Callable[[B], tuple[str, str]]
) -> tuple[str, str]:
    """The first (title, body) from `budgets` (largest first) that fits the channel's limit."""
    limit = CHANNELS[channel].limit
    built = ("", "")
    for budget in budgets:
        built = build(budget)
        if limit is None or _cost(channel, *built) <= limit:
            return built
    # Nothing fits (an override template longer than the limit?): send the smallest and let
    # apprise's overflow handling deal with it.
    return built


def _plain_title(channel: str, head: str, detail: str, sep: str = ": ") -> str:
    """`head` + `sep` + `detail`, the detail cut until the title fits the channel."""
    limit = CHANNELS[channel].title_limit
    room = limit
    title = f"{head}{sep}{cut(detail, room)}" if detail else head
    while detail and room > 0 and _title_cost(channel, title) > limit:
        room -= max(1, room // 10)
        title = f"{head}{sep}{cut(detail, room)}" if room > 0 else head
    if _title_cost(channel, title) > limit:
        title = cut(title, limit)
    return title


def _channel_title(channel: str, title: str) -> str:
    """A plain title as apprise must receive it for the channel."""
    if channel == "telegram":
        # apprise puts the title into the HTML body as <b>{title}</b>, unescaped.
        return html.escape(title, quote=False)
    if channel == "slack":
        return _slack_title(title)
    return title


# --------------------------------------------------------------------------- what templates see


@dataclass(frozen=True, kw_only=True, slots=True)
class ReportLine:
    """One outlet's report as templates see it: cleaned, cut, time already local."""

    #: Outlet name.
    outlet: str
    #: Language tag ("ko"), only when well-formed.
    lang: str | None
    title: str
    #: A safe http(s) URL, or None: then show no link.
    href: str | None
    #: "2026-11-20 17:05 KST", "17:40 KST" (same day as the first report) or "time unknown".
    time: str
    #: Lead, cut to the budget ("" when none or cut away).
    lead: str


@dataclass(frozen=True, kw_only=True, slots=True)
class AlertContext:
    """Variables of the ``alert.*`` templates."""

    #: alert | update | reminder
    kind: str
    #: The message title, plain (the environment escapes it like any value). apprise shows
    #: it as the subject, Slack title or Telegram's bold first line.
    title: str
    #: "critical", and "CRITICAL".
    severity: str
    severity_label: str
    #: Human event names: ("Forced repatriation",).
    events: tuple[str, ...]
    #: "600 people · Dandong, Tumen · 2023-10-09" (may be "").
    summary: str
    first: ReportLine
    #: Other outlets listed, and how many more were left out to fit.
    others: tuple[ReportLine, ...]
    more_outlets: int
    #: For updates: outlets new since the last message.
    new_outlets: tuple[str, ...]
    #: For reminders: "2026-11-20 17:05 KST" (the latest report) or "revision 3".
    reminder_since: str
    rules: tuple[str, ...]
    story_id: int
    revision: int


@dataclass(frozen=True, kw_only=True, slots=True)
class DigestEntry:
    """One story in a digest."""

    severity: str
    severity_label: str
    events: tuple[str, ...]
    summary: str
    first: ReportLine
    #: Outlets beyond the first.
    more_outlets: int
    story_id: int
    revision: int


@dataclass(frozen=True, kw_only=True, slots=True)
class DigestGroup:
    """The digest's stories of one event type, newest first."""

    event: str
    entries: tuple[DigestEntry, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class DigestContext:
    """Variables of the ``digest.*`` templates."""

    title: str
    route: str
    #: Stories in the digest (shown or not).
    count: int
    groups: tuple[DigestGroup, ...]
    #: Stories left out to fit.
    more_stories: int


@dataclass(frozen=True, kw_only=True, slots=True)
class OpsContext:
    """Variables of the ``ops.*`` templates (operator notices and test messages)."""

    title: str
    subject: str
    lines: tuple[str, ...]
    #: Lines left out to fit.
    more_lines: int


def _event_name(event: str) -> str:
    return EVENT_NAMES.get(event) or clean(event).replace("_", " ").capitalize()


def _local(when: datetime, zone: ZoneInfo) -> datetime:
    return when.astimezone(zone)


def _fmt_time(when: datetime | None, zone: ZoneInfo, same_day_as: datetime | None = None) -> str:
    if when is None:
        return "time unknown"
    local = _local(when, zone)
    abbr = local.tzname() or ""
    if same_day_as is not None and _local(same_day_as, zone).date() == local.date():
        return f"{local:%H:%M} {abbr}".rstrip()
    return f"{local:%Y-%m-%d %H:%M} {abbr}".rstrip()


def _report_line(
    report: Report, zone: ZoneInfo, *, lead: int, title: int, first_at: datetime | None = None
) -> ReportLine:
    return ReportLine(
        outlet=cut(clean(report.source_name) or clean(report.source_id), 80),
        lang=_lang(report.lang),
        title=cut(clean(report.title), title) or "(no title)",
        href=safe_url(report.url),
        time=_fmt_time(report.published_at, zone, first_at),
        lead=cut(clean(report.text), lead) if lead > 0 else "",
    )


def _people(n: int | None) -> str:
    if n is None:
        return ""
    return "1 person" if n == 1 else f"{n:,} people"


def _places(places: Sequence[str], shown: int = 4) -> str:
    names = [cut(p, 60) for p in map(clean, places) if p]
    text = ", ".join(names[:shown])
    if len(names) > shown:
        text += f" +{len(names) - shown}"
    return text


def _summary(view: AlertView, *, with_dates: bool) -> str:
    dates = [cut(d, 40) for d in map(clean, view.dates) if d][:2]
    parts = [_people(view.people), _places(view.places)]
    if with_dates:
        parts.append(", ".join(dates))
    return " · ".join(p for p in parts if p)


def _latest(view: AlertView) -> datetime | None:
    times = [r.published_at for r in (view.first, *view.others) if r.published_at is not None]
    return max(times, default=None)


# --------------------------------------------------------------------------- alerts


@dataclass(frozen=True, slots=True)
class _AlertBudget:
    lead: int
    others: int
    title: int


def _alert_budgets(spec: ChannelSpec) -> Iterator[_AlertBudget]:
    """Largest first: shorter leads, then shorter report titles, then fewer other outlets
    (a list of twenty outlets with short titles beats five with long ones), then no lead."""
    yield _AlertBudget(spec.lead, spec.others, 300)
    yield _AlertBudget(min(500, spec.lead), spec.others, 300)
    yield _AlertBudget(min(250, spec.lead), spec.others, 120)
    for n in (20, 15, 12, 10, 8, 6, 5):
        yield _AlertBudget(min(250, spec.lead), min(n, spec.others), 120)
    for n in (5, 3, 1, 0):
        yield _AlertBudget(0, n, 120)
    for title in (80, 40):
        yield _AlertBudget(0, 0, title)


def _alert_title(view: AlertView, channel: str) -> str:
    head = f"[{clean(view.severity).upper()}] "
    if view.kind == "update":
        head += "Update · "
    elif view.kind == "reminder":
        head += "Reminder · "
    head += ", ".join(_event_name(e) for e in view.events) or "Story"
    # Without people or places, the first headline says what the story is about.
    detail = _summary(view, with_dates=False) or clean(view.first.title)
    return _plain_title(channel, head, detail)


def render_alert(
    view: AlertView,
    channel: str,
    tz: str,
    *,
    templates_dir: str | os.PathLike[str] | None = None,
) -> Message:
    """The message about one story (first alert, update or reminder) for a channel format.

    `tz` is an IANA zone name: report times are shown in it ("2026-11-20 17:05 KST").

    Usage::

        msg = render_alert(view, "telegram", "Asia/Seoul")
        msg.title   # "[CRITICAL] Forced repatriation: 600 people · Dandong, Tumen"
    """
    spec = _spec(channel)
    zone = ZoneInfo(tz)
    folder = os.fspath(templates_dir) if templates_dir else None
    title = _alert_title(view, channel)
    sent_title = _channel_title(channel, title)
    first_at = view.first.published_at
    since = _latest(view)

    def build(b: _AlertBudget) -> tuple[str, str]:
        others = view.others[: b.others]
        ctx = AlertContext(
            kind=view.kind if view.kind in ("update", "reminder") else "alert",
            title=title,
            severity=clean(view.severity).lower(),
            severity_label=clean(view.severity).upper(),
            events=tuple(_event_name(e) for e in view.events),
            summary=_summary(view, with_dates=True),
            first=_report_line(view.first, zone, lead=b.lead, title=b.title),
            others=tuple(
                _report_line(r, zone, lead=0, title=b.title, first_at=first_at) for r in others
            ),
            more_outlets=len(view.others) - len(others),
            new_outlets=tuple(n for n in (cut(clean(o), 80) for o in view.new_outlets) if n),
            reminder_since=(
                _fmt_time(since, zone) if since is not None else f"revision {view.revision}"
            ),
            rules=tuple(r for r in (cut(clean(r), 200) for r in view.rules) if r),
            story_id=view.story_id,
            revision=view.revision,
        )
        return sent_title, _render_template("alert", spec, folder, ctx)

    sent, body = _fit(channel, _alert_budgets(spec), build)
    return Message(title=sent, body=body, format=spec.format)


# --------------------------------------------------------------------------- digests


@dataclass(frozen=True, slots=True)
class _DigestBudget:
    stories: int
    title: int


def _digest_budgets(count: int) -> Iterator[_DigestBudget]:
    for title in (300, 150):
        yield _DigestBudget(count, title)
    for n in (30, 20, 10, 5, 3, 1):
        if n < count:
            yield _DigestBudget(n, 80)
    yield _DigestBudget(1, 40)


def _newest(view: AlertView) -> tuple[datetime, int]:
    latest = _latest(view)
    return (latest or datetime.min.replace(tzinfo=UTC), view.story_id)


def render_digest(
    views: Sequence[AlertView],
    route_name: str,
    channel: str,
    tz: str,
    *,
    templates_dir: str | os.PathLike[str] | None = None,
) -> Message:
    """One message listing several stories, newest first, one or two lines each.

    Stories are grouped by their first event type; groups come in the order of their newest
    story, and stories within a group newest first (by their latest report, then story id).

    Usage::

        msg = render_digest(views, "morning", "email", "Europe/Zurich")
    """
    spec = _spec(channel)
    zone = ZoneInfo(tz)
    folder = os.fspath(templates_dir) if templates_dir else None
    ordered = sorted(views, key=_newest, reverse=True)
    count = len(ordered)
    route = cut(clean(route_name), 80)
    noun = "story" if count == 1 else "stories"
    title = _plain_title(channel, f"Digest · {count} {noun}", route, " · ")
    sent_title = _channel_title(channel, title)

    def build(b: _DigestBudget) -> tuple[str, str]:
        groups: dict[str, list[DigestEntry]] = {}
        for view in ordered[: b.stories]:
            event = _event_name(view.events[0]) if view.events else "Other"
            groups.setdefault(event, []).append(
                DigestEntry(
                    severity=clean(view.severity).lower(),
                    severity_label=clean(view.severity).upper(),
                    events=tuple(_event_name(e) for e in view.events),
                    summary=_summary(view, with_dates=True),
                    first=_report_line(view.first, zone, lead=0, title=b.title),
                    more_outlets=len(view.others),
                    story_id=view.story_id,
                    revision=view.revision,
                )
            )
        ctx = DigestContext(
            title=title,
            route=route,
            count=count,
            groups=tuple(DigestGroup(event=e, entries=tuple(s)) for e, s in groups.items()),
            more_stories=count - min(count, b.stories),
        )
        return sent_title, _render_template("digest", spec, folder, ctx)

    sent, body = _fit(channel, _digest_budgets(count), build)
    return Message(title=sent, body=body, format=spec.format)


# --------------------------------------------------------------------------- operator notices


@dataclass(frozen=True, slots=True)
class _OpsBudget:
    lines: int
    width: int


def _ops_budgets(count: int) -> Iterator[_OpsBudget]:
    yield _OpsBudget(count, 1000)
    yield _OpsBudget(count, 300)
    for n in (50, 20, 10, 5, 1):
        if n < count:
            yield _OpsBudget(n, 200)
    yield _OpsBudget(1, 80)


def render_ops(
    subject: str,
    lines: Sequence[str],
    channel: str,
    *,
    templates_dir: str | os.PathLike[str] | None = None,
) -> Message:
    """An operator notice (a delivery failed, a source is unhealthy): a subject and lines.

    Lines may quote servers' error messages, so they are treated as untrusted too.

    Usage::

        render_ops("Source dailynk failing", ["HTTP 503 since 04:10 UTC"], "slack")
    """
    spec = _spec(channel)
    folder = os.fspath(templates_dir) if templates_dir else None
    # Never an empty body: apprise (and Telegram) refuse one.
    kept = [line for line in (clean(x) for x in lines) if line] or [clean(subject) or "notice"]
    title = _plain_title(channel, "[watcher]", clean(subject) or "notice", " ")
    sent_title = _channel_title(channel, title)

    def build(b: _OpsBudget) -> tuple[str, str]:
        ctx = OpsContext(
            title=title,
            subject=cut(clean(subject), 300),
            lines=tuple(cut(line, b.width) for line in kept[: b.lines]),
            more_lines=len(kept) - min(len(kept), b.lines),
        )
        return sent_title, _render_template("ops", spec, folder, ctx)

    sent, body = _fit(channel, _ops_budgets(len(kept)), build)
    return Message(title=sent, body=body, format=spec.format)


def render_test(channel: str, *, templates_dir: str | os.PathLike[str] | None = None) -> Message:
    """The message `watcher notify test` sends: proves the channel and its format work.

    Usage::

        render_test("telegram").format   # "html"
    """
    spec = _spec(channel)
    return render_ops(
        "Test notification",
        [
            "This is a test message from watcher notify test.",
            f"Channel format: {channel} (sent as {spec.format}).",
            "Korean and Chinese should read correctly: 강제북송 = forced repatriation, "
            "遣返 = repatriation.",
            "If you can read this, alerts will reach this channel.",
        ],
        channel,
        templates_dir=templates_dir,
    )
