"""Turn an alert, a digest or an operator notice into a `Message` for one channel format.

Pure: no I/O beyond loading the Jinja2 templates once (the Environment is cached), no clock.

**Formats.** Each apprise URL maps to one channel format (`channel_format`), and each format to
one `Message.format`, one escaping dialect and one set of templates named
``<kind>.<suffix>.j2`` (the `CHANNELS` registry):

========== ========= ============================ ==========================================
channel    format    templates                    length limit (why; see each `ChannelSpec`)
========== ========= ============================ ==========================================
email      html      ``alert.email.html.j2``      none; the lead cut to 2,000 chars
telegram   html      ``alert.telegram.html.j2``   4,096 UTF-16 units of `<b>title</b>` + body
slack      markdown  ``alert.slack.md.j2``        3,000 chars of body; title 150
discord    markdown  ``alert.md.j2``              2,000 UTF-16 units of title + body
mattermost markdown  ``alert.md.j2``              4,000 chars of title + body
teams      markdown  ``alert.teams.md.j2``        12,000 bytes of title + body as JSON
matrix     html      ``alert.matrix.html.j2``     60,000 bytes (the event carries it twice)
ntfy       text      ``alert.text.j2``            4,096 UTF-8 bytes of body; title 200
text       text      ``alert.text.j2``            none; the lead cut to 2,000 chars
========== ========= ============================ ==========================================

``text`` is every other apprise service. Kinds are ``alert``, ``digest`` and ``ops`` (operator
notices and ``watcher notify test``); an ``alert.*`` template writes every message about one
story, whose ``kind`` is ``alert``, ``update``, ``reminder``, ``removed``, ``retraction`` or
``reinstated``. An operator
overrides any template by putting a file of the same name in ``templates_dir``
(``alert.md.j2`` serves Discord and Mattermost alike).

**Locales.** A route's ``locale`` (``en``, ``ko``: the `WORDS` registry) is the language of
everything watcher writes (labels, event names, severities, counts, dates), never of the
reports' titles and leads. Its words are in `Words`; its templates in a folder of its own
(``ko/alert.telegram.html.j2``, same variables), overridable the same way. English uses the
templates above. A Korean reader needs no English gloss for a Korean term in the why line
(`Words.why`); glosses of terms in other languages stay.

**Story page.** With ``settings.public_url`` set, a view carries its story's page
(`AlertView.story_url`) and the templates get it as ``story_href`` (through `safe_url` and the
dialect's `Dialect.href`, like a report's link): the "story #N, revision R" line of an alert,
and each digest entry's "story #N", link to it in the format's own link form (plain text: the
URL on a line of its own). Without it, every message is exactly as it was before.

**Removed at source.** A story's reports whose page a re-check found gone (404/410) are
`AlertView.removed` ("outlet: title"). A message of kind ``removed`` says so in its title
("[HIGH] Removed at source · Detention: …") and lists them above the story; any other message
(alert, update, reminder, each digest entry) of such a story says so in one line ("Removed at
source: …"). They are cleaned, cut and escaped like report titles. A story with none gives
exactly the message it gave before.

**Retracted, reinstated.** A story marked not relevant after a message about it went out
sends those channels one short ``retraction`` ("[HIGH] Retracted · Detention: …"; the body:
"Retracted: <first headline> — marked not relevant by <who>: <reason>", and the story's
link); undoing that mark after the retraction went out sends a ``reinstated`` notice. Who and
why (`AlertContext.corrected_by`, ``reason``) are operator text, cleaned, cut and escaped like
a headline.

**Escaping.** Every string that comes from a source (titles, leads, outlet names, places,
rules' quoted text, servers' error lines) is untrusted. It is first cleaned for every format
(`clean`: control characters, lone surrogates and bidi overrides removed, whitespace folded to
single spaces, so no text can start a line of its own), then written in the format's dialect
(`DIALECTS`) by the template environment at output time (Jinja2 ``finalize``, then autoescape
for HTML), so an overriding template gets the same protection. Links come only from
`safe_url` (http/https, percent-encoded, no credentials); anything else is shown without a link.

- **Mentions and bare URLs:** every format but email gets a zero-width space (U+200B) after
  every ``@`` and after the ``:`` of ``scheme://``; email only the latter (mail clients link
  URLs in text; mail has no mentions). ``@everyone``, ``@here``, ``@channel``, ``@all``,
  ``@room``, ``<@123>``, ``<@&role>`` and ``@user`` then read the same and notify nobody, and a
  URL inside a headline is not made a link (or previewed) by the client. Titles get the same.
  Link targets get ``@`` as ``%40`` in every chat format (Discord finds ``@everyone``
  anywhere in a message, a URL's path included).
- **HTML** (email, Telegram, Matrix): Jinja2 autoescape. Matrix shows no link to
  ``matrix.to`` (Element draws those as mention pills).
- **Slack**: apprise reads a ``markdown`` body as CommonMark and translates it to Slack mrkdwn
  itself (``NotifySlack._commonmark_to_slack``): it entity-escapes ``&`` and turns ``\\<``
  into ``&lt;``, ``**b**`` into ``*b*`` and ``[t](<u>)`` into ``<u|t>``, but passes a raw
  ``<!here>`` through live and rewrites ``*x*`` to ``_x_``. So the Slack templates write
  CommonMark for that translator, and `md_escape` escapes untrusted text for it: ``< > [ ] #``
  get a backslash, ``\\`` is followed by a zero-width space (so it can escape nothing),
  asterisk, underscore, tilde and backtick become their fullwidth lookalikes ``＊ ＿ ～ ｀``.
  ``&`` is left to apprise (escaping it here would show ``&amp;`` literally). Fullwidth
  lookalikes rather than zero-width spaces because the text is parsed twice (CommonMark by
  apprise, then mrkdwn by Slack): a zero-width space does not stop apprise from pairing
  ``*…*`` (it is not whitespace to CommonMark), and whether it stops Slack is undocumented; a
  fullwidth character is markup to neither, reads the same, and the swap only touches ASCII
  punctuation, never Korean or Chinese text.
- **Line starts** (Slack, Discord, Mattermost, Teams): a value a template puts at the start of
  a line gets a zero-width space before a leading ``-``, ``+``, ``=`` or ``1.``, so it starts
  no list item, setext heading or thematic break.
- **Discord, Mattermost** (apprise sends the body as it is; both render it as Markdown, and
  apprise puts the title, unescaped, on the first line): a backslash before
  ``\\ ` * _ ~ | < > [ ] #`` (CommonMark and Discord read a backslashed punctuation character
  as itself), so no bold, code, spoiler, quote, heading, link, ``<#channel>``, ``<t:…>`` or
  autolink can start, and a zero-width space after an ``&`` that starts an entity
  (``&#64;`` is an ``@``). Mattermost also gets a zero-width space after ``~`` and ``#`` (its
  channel links and hashtags are found in text after Markdown). Links are ``[label](<url>)``
  on Discord (the angle brackets stop its link preview) and ``[label](url)`` on Mattermost;
  brackets inside a label become ``［ ］``.
- **Teams** (an Adaptive Card TextBlock, whose Markdown subset ignores backslash escapes on
  some clients): the markup characters ``\\ * _ ~ ` [ ] < > # |`` become their fullwidth
  lookalikes (so no ``<at>`` mention either) and an entity's ``&`` gets a zero-width space.
  Lines are separated by blank lines (a TextBlock needs them for a break).
- **Plain text** (ntfy and every other service): also a zero-width space after a ``<`` that
  touches a non-space (``<users/all>``, ``<@123>``, ``<at>``), between ``](`` (a Markdown
  link) and after an entity's ``&``. ntfy with ``?format=markdown`` gets apprise's own
  Markdown escaping of the text.

**Length.** Never by slicing rendered markup: the untrusted inputs are shortened (the lead,
then report titles, then other outlets beyond N become "+K more outlets", then the lead goes,
last the report links) and the message is rendered again until it fits (`_alert_budgets`). A
report link is kept whatever its length when the whole message fits with it (email always);
otherwise one longer than 2,000 characters (`MAX_LINK`, or half the channel's limit) goes
first: its title is shown unlinked.

Usage::

    msg = render_alert(view, channel_format("tgram://…"), "Asia/Seoul")
    apprise_obj.notify(title=msg.title, body=msg.body, body_format=msg.format)
"""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime
from functools import cache
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import jinja2

from watcher.config import EVENT_NAMES, EVENT_TYPES, SEVERITIES, event_rank
from watcher.types import AlertView, Message, Report, counted_at

__all__ = [
    "CHANNELS",
    "DIALECTS",
    "EVENT_NAMES",
    "WORDS",
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

#: Other apprise schemes with a format of their own; any scheme not here nor in
#: `EMAIL_SCHEMES` gets "text".
SCHEMES: dict[str, str] = {
    "slack": "slack",
    "tgram": "telegram",
    "discord": "discord",
    "mmost": "mattermost",
    "mmosts": "mattermost",
    # msteams:// is Office 365 connectors (apprise up to 2.2; Microsoft retired them); the
    # Power Automate "workflows" that replaced them post the same Adaptive Card to Teams.
    "msteams": "teams",
    "workflow": "teams",
    "workflows": "teams",
    "matrix": "matrix",
    "matrixs": "matrix",
    "ntfy": "ntfy",
    "ntfys": "ntfy",
}

# Power Automate / Logic Apps hosts (apprise's workflows plugin takes these URLs as they are).
_WORKFLOW_HOST = re.compile(
    r"\.logic\.azure\.[a-z]{2,12}$|\.(?:power|apps)platform(?:\.[a-z0-9-]{2,24}){1,3}$"
)


def _native_format(host: str, path: str) -> str | None:
    """The format of a service's own https webhook URL, which apprise also accepts."""
    if host in ("hooks.slack.com", "hooks.slack-gov.com"):
        return "slack"
    if host == "api.telegram.org":
        return "telegram"
    if host in ("discord.com", "discordapp.com"):
        return "discord"
    if host == "outlook.office.com" or host.endswith(".webhook.office.com"):
        return "teams"
    if _WORKFLOW_HOST.search(host) and "/workflows/" in path:
        return "teams"
    if host == "ntfy.sh":
        return "ntfy"
    if host == "webhooks.t2bot.io":
        return "matrix"
    return None


def channel_format(url: str) -> str:
    """The channel format (a key of `CHANNELS`) for an apprise URL, by its scheme.

    Usage::

        channel_format("mailtos://user:pw@example.org")   # "email"
        channel_format("tgram://123:abc/456")             # "telegram"
        channel_format("https://hooks.slack.com/services/A/B/C")  # "slack" (native URL)
        channel_format("https://discord.com/api/webhooks/1/t")    # "discord"
        channel_format("ntfys://topic")                   # "ntfy"
        channel_format("json://example.org/hook")         # "text"
    """
    scheme, sep, _ = url.strip().partition(":")
    scheme = scheme.lower() if sep else ""
    if scheme in EMAIL_SCHEMES:
        return "email"
    if scheme in SCHEMES:
        return SCHEMES[scheme]
    if scheme in ("http", "https"):
        try:
            parts = urlsplit(url.strip())
            host = (parts.hostname or "").lower()
        except ValueError:
            return "text"
        return _native_format(host, parts.path) or "text"
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

    The one check for every link watcher writes: messages (each format then writes the result
    in its own link syntax) and the web pages.

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


# --------------------------------------------------------------------------- escaping

_ZWSP = "\u200b"

# What chat services make live in plain text: "@" starts a mention (Slack, Discord, Mattermost,
# Matrix's @room, Telegram's @username, Teams, Rocket.Chat, Zulip, Mastodon…) and "scheme://" a
# clickable link that some also preview. A zero-width space after the "@" or the ":" leaves the
# text reading the same and makes it inert on all of them.
_LIVE = re.compile(r"@|:(?=//)")
_SCHEME = re.compile(r":(?=//)")
# Plain text may reach any other apprise service: there also "<" touching a non-space (mentions
# are <@U1>, <!here> on Slack, <users/all> on Google Chat, <at>…</at> on Teams), "](" (a
# Markdown link, where a service renders Markdown from a plain-text body) and "&" starting an
# entity ("&#64;" is "@" to a Markdown or HTML renderer).
_LIVE_ANYWHERE = re.compile(r"@|:(?=//)|<(?=\S)|\](?=\()|&(?=#?\w{1,32};)")
# A value a template puts at the start of a line must not make it a list item, a setext heading
# underline or a thematic break: a zero-width space before "-", "+", "=" or "1." / "1)".
_BLOCK_START = re.compile(r"^(?=[-+=]|\d{1,9}[.)])")
# "&lt;", "&#64;" and friends, which Markdown renderers (and some Teams clients) decode.
_ENTITY = re.compile(r"&(?=#?\w{1,32};)")


def _defuse(text: str) -> str:
    return _LIVE.sub("\\g<0>" + _ZWSP, text)


def _email_subject(title: str) -> str:
    """The subject with each `=?` broken by a zero-width space: a mail reader decodes an RFC
    2047 encoded word it finds in a subject (`=?utf-8?q?=E2=80=AE?=` is a bidi override, a
    base64 one any hidden text), so the headline's own `=?…?=` must never read as one."""
    return title.replace("=?", "=" + _ZWSP + "?")


def _unlinked(text: str) -> str:
    # Mail has no mentions, but mail clients make links of URLs in the text.
    return _SCHEME.sub(":" + _ZWSP, text)


def _plain(text: str) -> str:
    return _LIVE_ANYWHERE.sub("\\g<0>" + _ZWSP, text)


class ChatMarkup(str):
    """Text a non-HTML environment outputs as it is (already escaped markup, e.g. a link)."""

    __slots__ = ()


class Href(str):
    """A link target that passed `safe_url` and its format's rule: written as it is."""

    __slots__ = ()


def _href(url: str | None) -> Href | None:
    return Href(url) if url else None


def _href_no_at(url: str | None) -> Href | None:
    # "@everyone" in a URL's path is a mention where the URL is text or Markdown (Discord looks
    # anywhere in a message), and any template may write a link target as text; "%40" reads
    # the same to practically every web server.
    return Href(url.replace("@", "%40")) if url else None


def _href_matrix(url: str | None) -> Href | None:
    # Element draws a link to matrix.to as a mention pill of the user or room it names.
    if not url or urlsplit(url).hostname == "matrix.to":
        return None
    return _href_no_at(url)


# Slack: see the module docstring (apprise translates CommonMark to mrkdwn).
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


def md_escape(text: object) -> str:
    """Untrusted text escaped for a Slack body that apprise translates (module doc).

    Usage::

        md_escape("<!here> *x* @channel")   # "\\<!here\\> ＊x＊ @\\u200bchannel"
    """
    if isinstance(text, ChatMarkup):
        return text
    return _BLOCK_START.sub(_ZWSP, _defuse(str(text).translate(_MD_TABLE)))


def _slack_link(label: str, href: str | None) -> ChatMarkup:
    """A CommonMark link that apprise turns into Slack's ``<url|label>``, or the bare label."""
    text = md_escape(label)
    if not href:
        return ChatMarkup(text)
    # `|` would end the label inside <url|label>; href comes from safe_url (no <, >, |).
    return ChatMarkup(f"[{text.replace('|', '｜')}](<{href}>)")


def _backslashed(zwsp_after: str = "") -> dict[int, str]:
    return str.maketrans({c: "\\" + c + (_ZWSP if c in zwsp_after else "") for c in "\\`*_~|<>[]#"})


_DISCORD_TABLE = _backslashed()
_MATTERMOST_TABLE = _backslashed(zwsp_after="~#")


def _markdown(text: str, table: dict[int, str]) -> str:
    text = _ENTITY.sub("&" + _ZWSP, _defuse(text.translate(table)))
    return _BLOCK_START.sub(_ZWSP, text)


def _discord_text(text: str) -> str:
    """Untrusted text as literal, inert Discord Markdown."""
    return _markdown(text, _DISCORD_TABLE)


def _mattermost_text(text: str) -> str:
    """Untrusted text as literal, inert Mattermost Markdown."""
    return _markdown(text, _MATTERMOST_TABLE)


def _label(text: str) -> str:
    # An escaped bracket inside a link label trips some link parsers (Discord's): lookalikes.
    return text.replace("[", "［").replace("]", "］")


def _discord_link(label: str, href: str | None) -> ChatMarkup:
    text = _discord_text(_label(label))
    # <url> in the parentheses: the link without Discord's preview of the page.
    return ChatMarkup(f"[{text}](<{href}>)" if href else text)


def _mattermost_link(label: str, href: str | None) -> ChatMarkup:
    text = _mattermost_text(_label(label))
    return ChatMarkup(f"[{text}]({href})" if href else text)


_TEAMS_TABLE = str.maketrans(
    {
        "\\": "＼",
        "*": "＊",
        "_": "＿",
        "~": "～",
        "`": "｀",
        "[": "［",
        "]": "］",
        "<": "＜",
        ">": "＞",
        "#": "＃",
        "|": "｜",
    }
)


def _teams_text(text: str) -> str:
    """Untrusted text as literal, inert Adaptive Card Markdown (no backslash escapes)."""
    return _markdown(text, _TEAMS_TABLE)


def _teams_link(label: str, href: str | None) -> ChatMarkup:
    text = _teams_text(label)
    return ChatMarkup(f"[{text}]({href})" if href else text)


@dataclass(frozen=True, kw_only=True, slots=True)
class Dialect:
    """How one markup writes untrusted text and links: the escaping half of a format."""

    #: HTML: Jinja2 autoescapes every value after `text`; templates write ``<a href>``.
    html: bool
    #: Untrusted text (already `clean`) → text that reads the same and is inert here.
    text: Callable[[str], str]
    #: A `safe_url` result → the link target as this markup writes it (None: no link).
    href: Callable[[str | None], Href | None] = _href
    #: ``link(label, href)`` for the templates of a non-HTML markup.
    link: Callable[[str, str | None], ChatMarkup] | None = None


#: The escaping dialects, by `ChannelSpec.syntax` (module docstring: what each escapes).
DIALECTS: dict[str, Dialect] = {
    "html": Dialect(html=True, text=_unlinked),
    "html-chat": Dialect(html=True, text=_defuse, href=_href_no_at),
    "matrix": Dialect(html=True, text=_defuse, href=_href_matrix),
    "slack": Dialect(html=False, text=md_escape, href=_href_no_at, link=_slack_link),
    "discord": Dialect(html=False, text=_discord_text, href=_href_no_at, link=_discord_link),
    "mattermost": Dialect(
        html=False, text=_mattermost_text, href=_href_no_at, link=_mattermost_link
    ),
    "teams": Dialect(html=False, text=_teams_text, href=_href_no_at, link=_teams_link),
    "text": Dialect(html=False, text=_plain, href=_href_no_at),
}


# --------------------------------------------------------------------------- measures


def _utf16_len(text: str) -> int:
    # Telegram counts UTF-16 code units: an emoji outside the BMP counts twice.
    return len(text.encode("utf-16-le")) // 2


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def _json_len(text: str) -> int:
    # apprise posts json.dumps() output: non-ASCII as \uXXXX (6 bytes), newlines as \n.
    return len(json.dumps(text)) - 2


def _chars(title: str, body: str) -> int:
    return len(title) + len(body)


def _telegram_cost(title: str, body: str) -> int:
    # apprise (title_maxlen = 0) sends f"<b>{title}</b><br />\r\n{body}" through its Telegram
    # HTML reducer: <br /> becomes "\r\n" and every "\n" in the body "\r\n".
    head = f"<b>{title}</b>\r\n" if title else ""
    return _utf16_len(head + body) + body.count("\n")


def _slack_cost(title: str, body: str) -> int:
    # apprise's CommonMark → mrkdwn translation lengthens & to &amp; and \< to &lt;
    # (links and ** get shorter); count the growth, never the shrinkage.
    return len(body) + 4 * body.count("&") + 2 * (body.count("\\<") + body.count("\\>"))


def _slack_title_len(title: str) -> int:
    # apprise escapes &, < and > in the title (attachment title or header block).
    return len(title) + 4 * title.count("&") + 3 * (title.count("<") + title.count(">"))


def _discord_cost(title: str, body: str) -> int:
    # apprise sends f"{title}\r\n{body}" as the message content (or, with ?format=markdown,
    # an embed whose 4,096/256 limits this bound also keeps).
    return _utf16_len(title) + 2 + _utf16_len(body.rstrip())


def _mattermost_cost(title: str, body: str) -> int:
    # Mattermost has no title: apprise sends f"{title}\r\n{body}".
    return len(title) + 2 + len(body.rstrip())


def _teams_cost(title: str, body: str) -> int:
    return _json_len(title) + _json_len(body)


def _matrix_cost(title: str, body: str) -> int:
    # The event holds the title twice (<h1> and "# title") and the body twice (HTML and
    # apprise's text fallback); JSON with Hangul as \uXXXX bounds its UTF-8 size from above.
    return 2 * (_json_len(title) + _json_len(body))


def _ntfy_cost(title: str, body: str) -> int:
    # ntfy's limit is on the message (the title is a separate field), in UTF-8 bytes.
    return _utf8_len(body.rstrip())


def _telegram_title(title: str) -> str:
    # apprise puts the title into the HTML body as <b>{title}</b>, unescaped.
    return html.escape(_defuse(title), quote=False)


def _telegram_title_len(title: str) -> int:
    return len(html.unescape(title))


# --------------------------------------------------------------------------- formats


@dataclass(frozen=True, kw_only=True, slots=True)
class ChannelSpec:
    """How one channel format is rendered and how long its messages may be."""

    #: `Message.format` (what apprise is told the body is).
    format: str
    #: Escaping dialect: a key of `DIALECTS`.
    syntax: str
    #: Template name part: ``alert.<suffix>.j2``.
    suffix: str
    #: Longest message in the channel's own measure (`cost`), or None.
    limit: int | None
    #: Longest title in the measure of `title_len`.
    title_limit: int
    #: Longest lead (characters) before any fitting.
    lead: int
    #: Most other outlets listed before any fitting.
    others: int
    #: The plain title → the title as apprise must receive it (escaped where apprise puts it
    #: into markup as it is).
    title: Callable[[str], str] = _defuse
    #: (title as sent, body) → the message's length as `limit` measures it.
    cost: Callable[[str, str], int] = _chars
    #: The title as sent → its length as `title_limit` measures it.
    title_len: Callable[[str], int] = len
    #: What a template's line break becomes in the body.
    line_break: str = "\n"


#: The channel formats. A new one is an entry here plus its templates (and a dialect in
#: `DIALECTS` when none fits).
CHANNELS: dict[str, ChannelSpec] = {
    # No limit for email; 2,000 characters per lead keeps a digest of many stories readable.
    # No mentions in mail: text is HTML-escaped and its URLs unlinked, the subject left plain
    # but for its `=?` (no encoded word of the source's is decoded by the reader).
    "email": ChannelSpec(
        format="html",
        syntax="html",
        suffix="email.html",
        limit=None,
        title_limit=250,
        lead=2000,
        others=50,
        title=_email_subject,
    ),
    # Telegram rejects a message over 4,096 characters (after entity parsing; apprise checks
    # the raw text, which is longer, so the raw text is what we count). @username in a group
    # notifies that member.
    "telegram": ChannelSpec(
        format="html",
        syntax="html-chat",
        suffix="telegram.html",
        limit=4096,
        title_limit=200,
        lead=1000,
        others=30,
        title=_telegram_title,
        cost=_telegram_cost,
        title_len=_telegram_title_len,
    ),
    # Slack's hard limit is 3,000 characters per Block Kit section text (a `?blocks=yes` URL
    # puts the whole body in one section; over it Slack rejects the message) and 150 for a
    # header block (the title there). The legacy attachment layout allows more, but a message
    # that fits both layouts never depends on how the operator wrote the URL.
    "slack": ChannelSpec(
        format="markdown",
        syntax="slack",
        suffix="slack.md",
        limit=3000,
        title_limit=150,
        lead=1000,
        others=30,
        cost=_slack_cost,
        title_len=_slack_title_len,
    ),
    # Discord rejects message content over 2,000 characters; apprise (body_maxlen 2000, title
    # included) sends title and body as one content, which Discord renders as Markdown and in
    # which it finds @everyone, @here and <@…> mentions anywhere. Counted in UTF-16 units (at
    # least Discord's count). An embed title (?format=markdown) holds 256.
    "discord": ChannelSpec(
        format="markdown",
        syntax="discord",
        suffix="md",
        limit=2000,
        title_limit=200,
        lead=500,
        others=10,
        title=_discord_text,
        cost=_discord_cost,
        title_len=_utf16_len,
    ),
    # apprise's Mattermost plugin takes text (body_maxlen 4000, no title: it becomes the first
    # line) and sends it as it is; Mattermost renders it as Markdown. 4,000 is also the post
    # limit of older servers (newer ones allow 16,383).
    "mattermost": ChannelSpec(
        format="markdown",
        syntax="mattermost",
        suffix="md",
        limit=4000,
        title_limit=250,
        lead=1000,
        others=30,
        title=_mattermost_text,
        cost=_mattermost_cost,
    ),
    # apprise's workflows plugin (markdown only) posts an Adaptive Card: the title in a heading
    # TextBlock, the body in another, both read as Markdown, and a <at>name</at> in the body
    # becomes a mention. Teams refuses a card over about 28 KB (some report half of that: the
    # service may count UTF-16); apprise's JSON writes Hangul as \uXXXX, 6 bytes each.
    "teams": ChannelSpec(
        format="markdown",
        syntax="teams",
        suffix="teams.md",
        limit=12_000,
        title_limit=250,
        lead=1000,
        others=30,
        title=_teams_text,
        cost=_teams_cost,
        line_break="\n\n",
    ),
    # apprise's Matrix plugin sends an html body as formatted_body (after an escaped
    # <h1>title</h1>) with a text fallback converted from it; clients notify everyone for
    # "@room" in that text. An event may not exceed 65,536 bytes; line breaks are <br>
    # (formatted_body is HTML, and clients differ on raw newlines).
    "matrix": ChannelSpec(
        format="html",
        syntax="matrix",
        suffix="matrix.html",
        limit=60_000,
        title_limit=250,
        lead=2000,
        others=50,
        cost=_matrix_cost,
        line_break="<br>",
    ),
    # ntfy turns a message over 4,096 bytes into an attachment (or refuses it). apprise sends
    # text as it is; with ?format=markdown it escapes our text for Markdown itself.
    "ntfy": ChannelSpec(
        format="text",
        syntax="text",
        suffix="text",
        limit=4096,
        title_limit=200,
        lead=500,
        others=15,
        title=_plain,
        cost=_ntfy_cost,
    ),
    "text": ChannelSpec(
        format="text",
        syntax="text",
        suffix="text",
        limit=None,
        title_limit=250,
        lead=2000,
        others=50,
        title=_plain,
    ),
}


# --------------------------------------------------------------------------- templates

_PACKAGE_TEMPLATES = os.path.join(os.path.dirname(__file__), "templates")


def _finalizer(dialect: Dialect) -> Callable[[object], object]:
    """Jinja2 ``finalize``: every ``{{ value }}`` in the dialect, unless it is already markup
    (a link, a macro's output) or a link target."""

    def finalize(value: object) -> object:
        # __html__: Jinja2's Markup (a macro's output in an HTML template).
        if isinstance(value, (ChatMarkup, Href)) or hasattr(value, "__html__"):
            return value
        return dialect.text(str(value))

    return finalize


@cache
def _environment(syntax: str, templates_dir: str | None) -> jinja2.Environment:
    """One Environment per (dialect, override directory); compiled templates stay cached."""
    dialect = DIALECTS[syntax]
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
        "autoescape": dialect.html,
        "finalize": _finalizer(dialect),
    }
    env = jinja2.Environment(**options)
    if dialect.link is not None:
        env.globals["link"] = dialect.link
    return env


def _render_template(
    kind: str,
    spec: ChannelSpec,
    templates_dir: str | None,
    ctx: AlertContext | DigestContext | OpsContext,
    folder: str = "",
) -> str:
    env = _environment(spec.syntax, templates_dir)
    # `folder`: a locale's own templates ("ko/alert.telegram.html.j2"), same variables.
    template = env.get_template(f"{folder}{kind}.{spec.suffix}.j2")
    values = {f.name: getattr(ctx, f.name) for f in fields(ctx)}
    # Untrusted values hold no newline (`clean`), so every one here is the template's.
    body = template.render(**values).strip().replace("\n", spec.line_break)
    return body + "\n"


def _spec(channel: str) -> ChannelSpec:
    try:
        return CHANNELS[channel]
    except KeyError:
        raise ValueError(
            f"unknown channel format {channel!r}; expected one of {', '.join(CHANNELS)}"
        ) from None


# --------------------------------------------------------------------------- length

B = TypeVar("B")


def _fit(
    spec: ChannelSpec, budgets: Iterator[B], build: Callable[[B], tuple[str, str]]
) -> tuple[str, str]:
    """The first (title, body) from `budgets` (largest first) that fits the channel's limit."""
    built = ("", "")
    for budget in budgets:
        built = build(budget)
        if spec.limit is None or spec.cost(*built) <= spec.limit:
            return built
    # Nothing fits (an override template longer than the limit?): send the smallest and let
    # apprise's overflow handling deal with it.
    return built


def _plain_title(spec: ChannelSpec, head: str, detail: str, sep: str = ": ") -> str:
    """`head` + `sep` + `detail`, the detail cut until the title (as sent) fits the channel."""

    def size(title: str) -> int:
        return spec.title_len(spec.title(title))

    limit = spec.title_limit
    room = limit
    title = f"{head}{sep}{cut(detail, room)}" if detail else head
    while detail and room > 0 and size(title) > limit:
        room -= max(1, room // 10)
        title = f"{head}{sep}{cut(detail, room)}" if room > 0 else head
    if size(title) > limit:
        title = cut(title, limit)
    return title


# --------------------------------------------------------------------------- locales

_DAY = re.compile(r"(\d{4}|-)-(\d{2})(?:-(\d{2}))?")


def _iso_date_en(text: str) -> str:
    """ "2026-11-19" as it is; a range "2026-11-16/2026-11-20" → "2026-11-16 to 2026-11-20";
    a day the text gave without a year ("--02-21") → "02-21 (year not given)"."""

    def one(part: str) -> str:
        return f"{part[2:]} (year not given)" if part.startswith("--") else part

    return " to ".join(one(p) for p in text.split("/"))


def _iso_date_ko(text: str) -> str:
    """ "2026-11-19" → "2026년 11월 19일" (and each side of a "…/…" range), "--02-21" → "2월
    21일(연도 미상)"; else as it is."""

    def one(part: str) -> str:
        m = _DAY.fullmatch(part)
        if m is None:
            return part
        year, month, day = m.group(1), int(m.group(2)), m.group(3)
        if year == "-":
            return f"{month}월" + (f" {int(day)}일" if day else "") + "(연도 미상)"
        return f"{year}년 {month}월" + (f" {int(day)}일" if day else "")

    return "–".join(one(p) for p in text.split("/"))


_HANGUL = re.compile("[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]")
# One part of a why line (`rules.Matcher.why`): "term (gloss)", joined by " near " or " + ".
_WHY_JOIN = re.compile(r"( near | \+ )")
_GLOSSED = re.compile(r"(.*\S) \(([^()]*)\)")


def _why_without(own: re.Pattern[str]) -> Callable[[str], str]:
    """A why line without the English glosses of terms written in the reader's own script:
    "return: 북송 (sent back) near 遣返 (repatriation)" → "return: 북송 near 遣返 (repatriation)".
    A gloss stays wherever the report's language is not the reader's."""

    def why(line: str) -> str:
        rule, sep, rest = line.partition(": ")
        if not sep:
            return line
        parts = _WHY_JOIN.split(rest)
        for n in range(0, len(parts), 2):
            m = _GLOSSED.fullmatch(parts[n])
            if m is not None and own.search(m.group(1)):
                parts[n] = m.group(1)
        return f"{rule}: {''.join(parts)}"

    return why


@dataclass(frozen=True, kw_only=True, slots=True)
class Words:
    """What render.py itself writes into messages, in one locale. The rest of a message's
    words are in the locale's templates (`folder`); reports keep their own titles."""

    #: Where the locale's templates are, under the template directories ("" or "ko/").
    folder: str
    #: Event type → its name.
    events: Mapping[str, str]
    #: A severity ("critical") → its label in titles and messages ("CRITICAL").
    severity: Callable[[str], str]
    update: str
    reminder: str
    #: The title's head of a message about reports removed at source.
    removed: str
    #: The title's heads of the notices that a story was marked not relevant after its alert
    #: went out, and that the mark was undone after that (`watcher story mark`, `undo`).
    retracted: str
    reinstated: str
    #: A story without event types (the title's head).
    story: str
    #: The digest group of stories without event types.
    other: str
    no_title: str
    time_unknown: str
    #: "23:06 KST" → "undated, found 23:06 KST": a report the outlet gave no time
    undated: Callable[[str], str]
    #: "2026-11-20" → "2026-11-20 (no time given)": a report the outlet gave its day but
    #: no time of day (its day as written, never a clock time)
    day_only: Callable[[str], str]
    #: 3 → "revision 3"
    revision: Callable[[int], str]
    #: 600 → "600 people"; (600, approximate) → "~600 people": the outlet's hedge ("about
    #: 600", 600여 명) is kept, as advocates repeat the figure
    people: Callable[[int, bool], str]
    #: What an update says changed since the last message on the channel, each count with its
    #: hedge: (60, False, 600, False) → "60 → 600 people"; (60, True, 600, False) → "~60 → 600
    #: people"
    count_changed: Callable[[int, bool, int, bool], str]
    #: "600 people" → "600 people (first count)": the last message gave no number
    first_count: Callable[[str], str]
    #: "Forced repatriation" → "now also: Forced repatriation": event types new to the story
    now_also: Callable[[str], str]
    #: "Dandong, Tumen" → "now also in Dandong, Tumen": places new to the story
    also_in: Callable[[str], str]
    #: (year, month, day) → "2026-11-20"
    day: Callable[[int, int, int], str]
    #: A date the rules extracted (ISO, or an ISO range "a/b") as the reader reads dates.
    iso_date: Callable[[str], str]
    #: 3 → "Digest · 3 stories" (the digest title, before the route's name).
    digest: Callable[[int], str]
    #: A why line (rule: terms with glosses) as this reader needs it.
    why: Callable[[str], str]


_SEVERITY_KO = {"critical": "긴급", "high": "중요", "medium": "보통", "low": "낮음"}

#: The words of each locale a route may choose (`config.models.LOCALES`; a test checks that
#: the two agree and that each locale has every template).
WORDS: dict[str, Words] = {
    "en": Words(
        folder="",
        events=EVENT_NAMES,
        severity=str.upper,
        update="Update",
        reminder="Reminder",
        removed="Removed at source",
        retracted="Retracted",
        reinstated="Reinstated",
        story="Story",
        other="Other",
        no_title="(no title)",
        time_unknown="time unknown",
        undated=lambda found: f"undated, found {found}",
        day_only=lambda day: f"{day} (no time given)",
        revision=lambda n: f"revision {n}",
        people=lambda n, about: f"{'~' * about}{n:,} {'person' if n == 1 else 'people'}",
        count_changed=lambda a, a_about, b, b_about: (
            f"{'~' * a_about}{a:,} → {'~' * b_about}{b:,} {'person' if b == 1 else 'people'}"
        ),
        first_count=lambda people: f"{people} (first count)",
        now_also=lambda events: f"now also: {events}",
        also_in=lambda places: f"now also in {places}",
        day=lambda y, m, d: f"{y:04d}-{m:02d}-{d:02d}",
        iso_date=_iso_date_en,
        digest=lambda n: f"Digest · {n} {'story' if n == 1 else 'stories'}",
        why=str,
    ),
    "ko": Words(
        folder="ko/",
        events={
            "forced_repatriation": "강제북송",
            "detention": "구금",
            "border_reopening": "국경 재개방",
            "un_action": "유엔 조치",
            "china_position": "중국 입장",
            "policy_change": "정책 변화",
        },
        severity=lambda s: _SEVERITY_KO.get(s.lower(), s.upper()),
        update="업데이트",
        reminder="다시 알림",
        removed="출처에서 삭제됨",
        retracted="알림 철회",
        reinstated="알림 복원",
        story="사건",
        other="기타",
        no_title="(제목 없음)",
        time_unknown="시각 미상",
        undated=lambda found: f"날짜 미상, {found} 수집",
        day_only=lambda day: f"{day} (시각 미상)",
        revision=lambda n: f"{n}차 개정",
        people=lambda n, about: f"{'약 ' * about}{n:,}명",
        count_changed=lambda a, a_about, b, b_about: (
            f"{'약 ' * a_about}{a:,}명 → {'약 ' * b_about}{b:,}명"
        ),
        first_count=lambda people: f"{people} (첫 집계)",
        now_also=lambda events: f"사건 유형 추가: {events}",
        also_in=lambda places: f"장소 추가: {places}",
        day=lambda y, m, d: f"{y}년 {m}월 {d}일",
        iso_date=_iso_date_ko,
        digest=lambda n: f"요약 · 사건 {n}건",
        why=_why_without(_HANGUL),
    ),
}


def _words(locale: str) -> Words:
    try:
        return WORDS[locale]
    except KeyError:
        raise ValueError(f"unknown locale {locale!r}; expected one of {', '.join(WORDS)}") from None


# --------------------------------------------------------------------------- what templates see


@dataclass(frozen=True, kw_only=True, slots=True)
class ReportLine:
    """One outlet's report as templates see it: cleaned, cut, time already local."""

    #: Outlet name.
    outlet: str
    #: Language tag ("ko"), only when well-formed.
    lang: str | None
    title: str
    #: A `safe_url` link in the format's own form (`Dialect.href`), or None: then show no link.
    href: Href | None
    #: "2026-11-20 17:05 KST", "17:40 KST" (same day as the first report) or "time unknown".
    time: str
    #: Lead, cut to the budget ("" when none or cut away).
    lead: str


@dataclass(frozen=True, kw_only=True, slots=True)
class AlertContext:
    """Variables of the ``alert.*`` templates."""

    #: alert | update | reminder | removed | retraction | reinstated
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
    #: For updates: what changed since the last message on the channel, worded and plain
    #: (the environment escapes them): ("60 → 600 people", "HIGH → CRITICAL",
    #: "now also: Forced repatriation", "now also in Dandong"); () when nothing is known.
    changes: tuple[str, ...]
    #: For reminders: "2026-11-20 17:05 KST" (the latest report) or "revision 3".
    reminder_since: str
    rules: tuple[str, ...]
    story_id: int
    revision: int
    #: The story's web page as a link target in the format's own form (`Dialect.href` of
    #: `safe_url`), or None (no ``public_url``, or refused): then the line links nothing.
    story_href: Href | None = None
    #: Reports removed at source, "outlet: title" (cleaned, cut); a "removed" message lists
    #: them, any other shows them in one line. Empty for most stories.
    removed: tuple[str, ...] = ()
    #: Removed reports left out to fit.
    more_removed: int = 0
    #: A retraction: who marked the story not relevant, and why; a reinstatement: who undid
    #: it (reason ""). Cleaned and cut; "" for every other kind.
    corrected_by: str = ""
    reason: str = ""


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
    #: The story's web page, as `AlertContext.story_href`.
    story_href: Href | None = None
    #: Reports removed at source and how many more were left out, as in `AlertContext`.
    removed: tuple[str, ...] = ()
    more_removed: int = 0


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
    #: The timeline from the day of the oldest story left out (with ``public_url``), where
    #: the stories left out can be read; None: no link.
    more_href: Href | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class OpsContext:
    """Variables of the ``ops.*`` templates (operator notices and test messages)."""

    title: str
    subject: str
    lines: tuple[str, ...]
    #: Lines left out to fit.
    more_lines: int


def _event_name(event: str, words: Words) -> str:
    return words.events.get(event) or clean(event).replace("_", " ").capitalize()


def _local(when: datetime, zone: ZoneInfo) -> datetime:
    return when.astimezone(zone)


def _fmt_time(
    when: datetime | None, zone: ZoneInfo, words: Words, same_day_as: datetime | None = None
) -> str:
    if when is None:
        return words.time_unknown
    local = _local(when, zone)
    abbr = local.tzname() or ""
    if same_day_as is not None and _local(same_day_as, zone).date() == local.date():
        return f"{local:%H:%M} {abbr}".rstrip()
    return f"{words.day(local.year, local.month, local.day)} {local:%H:%M} {abbr}".rstrip()


def _report_line(
    report: Report,
    zone: ZoneInfo,
    dialect: Dialect,
    words: Words,
    *,
    lead: int,
    title: int,
    link: int,
    first_at: datetime | None = None,
) -> ReportLine:
    return ReportLine(
        outlet=cut(clean(report.source_name) or clean(report.source_id), 80),
        lang=_lang(report.lang),
        title=cut(clean(report.title), title) or words.no_title,
        href=_report_href(report.url, dialect, link),
        time=_report_time(report, zone, words, first_at),
        lead=cut(clean(report.text), lead) if lead > 0 else "",
    )


def _report_time(
    report: Report, zone: ZoneInfo, words: Words, first_at: datetime | None = None
) -> str:
    """When the outlet published the report; for an undated one, when it was found, said so
    (a fetch time is never shown as a publication time); for one the outlet gave its day
    only, that day as written and no clock time (its midnight is no time it gave)."""
    if report.published_at is None and report.found_at is not None:
        return words.undated(_fmt_time(report.found_at, zone, words, first_at))
    if report.published_at is not None and report.published_day is not None:
        return day_alone(report.published_day, words)
    return _fmt_time(report.published_at, zone, words, first_at)


def day_alone(day: date, words: Words) -> str:
    """A day an outlet gave without a time of day, said so: "2026-11-20 (no time given)".

    Usage::

        day_alone(date(2026, 11, 20), WORDS["ko"])   # "2026년 11월 20일 (시각 미상)"
    """
    return words.day_only(words.day(day.year, day.month, day.day))


def _shown_at(report: Report) -> datetime | None:
    """The instant a report's time is compared at (the day of the others' times): None for
    a day-only report, whose midnight is no time the outlet gave."""
    if report.published_at is not None and report.published_day is not None:
        return None
    return report.published_at or report.found_at


def _people(n: int | None, approximate: bool, words: Words) -> str:
    return "" if n is None else words.people(n, approximate)


def _places(places: Sequence[str], shown: int = 4) -> str:
    names = [cut(p, 60) for p in map(clean, places) if p]
    text = ", ".join(names[:shown])
    if len(names) > shown:
        text += f" +{len(names) - shown}"
    return text


def _summary(view: AlertView, words: Words, *, with_dates: bool) -> str:
    dates = [cut(words.iso_date(d), 40) for d in map(clean, view.dates) if d][:2]
    parts = [_people(view.people, view.people_approximate, words), _places(view.places)]
    if with_dates:
        parts.append(", ".join(dates))
    return " · ".join(p for p in parts if p)


def _changes(view: AlertView, words: Words) -> tuple[str, ...]:
    """What an update says changed since the last message on its channel (`view.before`),
    gravest news first: the count, the severity, event types and places new to the story.
    () when that message is not known."""
    before = view.before
    if before is None:
        return ()
    out = []
    was_counted = (before.people, before.people_approximate)
    if view.people is not None and (view.people, view.people_approximate) != was_counted:
        if before.people is None:
            out.append(words.first_count(words.people(view.people, view.people_approximate)))
        else:
            # also when only the hedge changed: "~600 → 600 people", the count was confirmed
            out.append(
                words.count_changed(
                    before.people, before.people_approximate, view.people, view.people_approximate
                )
            )
    was, now = clean(before.severity), clean(view.severity)
    if was.lower() != now.lower():
        out.append(f"{words.severity(was)} → {words.severity(now)}")
    events = [_event_name(e, words) for e in view.events if e not in before.events]
    if events:
        out.append(words.now_also(", ".join(events)))
    places = _places([p for p in view.places if p not in before.places])
    if places:
        out.append(words.also_in(places))
    return tuple(out)


#: The longest report link a message writes (characters, as written): a longer one is no
#: link anyone follows from a chat, and would leave no room for the message around it.
MAX_LINK = 2000


#: No cap on a link's length: the first budget, which keeps every link when all fits.
_ANY_LINK = 1 << 30


def _uncapped(spec: ChannelSpec) -> int:
    """The longest link the first budget writes: any, where the limit is known (a message
    that fits with it is sent whole) or there is none (email); `_link_cap` for plain text,
    which goes to services whose limit is unknown (an SMS gateway, a pager)."""
    return _ANY_LINK if spec.limit is not None or spec.format == "html" else _link_cap(spec)


def _link_cap(spec: ChannelSpec) -> int:
    """The longest report link a message of this format writes while anything else fits:
    `MAX_LINK`, or half the channel's limit where that is less (Discord: 1,000)."""
    return MAX_LINK if spec.limit is None else min(MAX_LINK, spec.limit // 2)


def _report_href(url: str | None, dialect: Dialect, link: int) -> Href | None:
    """A report's link as the format writes it; None (the title unlinked) when it is longer
    than `link` characters (0: the last budgets, which write no report link at all)."""
    href = dialect.href(safe_url(url))
    return href if href is not None and len(href) <= link else None


def _story_href(view: AlertView, dialect: Dialect) -> Href | None:
    """The story page as this format links it: the path every report link takes."""
    return dialect.href(safe_url(view.story_url))


def _removed(view: AlertView, shown: int, title: int) -> tuple[tuple[str, ...], int]:
    """The removed reports to show ("outlet: title", each cut like a report's outlet and
    title), at most `shown`, and how many more were left out."""
    kept = [x for x in (cut(clean(r), 80 + title) for r in view.removed) if x]
    return tuple(kept[:shown]), max(0, len(kept) - shown)


def _latest_said(view: AlertView, zone: ZoneInfo, words: Words) -> str | None:
    """The latest report's time as a reminder says it ("unchanged since …"): a report the
    outlet gave its day only counts at that day's end (as when the first report is chosen)
    and is said as its day, no clock time; None when no report has a time."""
    latest: tuple[datetime, str] | None = None
    for r in (view.first, *view.others):
        if r.published_at is not None and r.published_day is not None:
            at = counted_at(r.published_at, r.published_day)
            said = day_alone(r.published_day, words)
        elif (shown := _shown_at(r)) is not None:
            at, said = shown, _fmt_time(shown, zone, words)
        else:
            continue
        if latest is None or at > latest[0]:
            latest = (at, said)
    return latest[1] if latest else None


# --------------------------------------------------------------------------- alerts


@dataclass(frozen=True, slots=True)
class _AlertBudget:
    lead: int
    others: int
    title: int
    #: The longest report link written (`_report_href`).
    link: int


def _alert_budgets(spec: ChannelSpec) -> Iterator[_AlertBudget]:
    """Largest first: shorter leads, then shorter report titles, then fewer other outlets
    (a list of twenty outlets with short titles beats five with long ones), then no lead,
    and last the report's title without its link (an address of thousands of characters).
    Every link goes in when the whole message fits with them (email, which has no limit,
    always); after that, a link longer than `_link_cap` is not written."""
    link = _link_cap(spec)
    yield _AlertBudget(spec.lead, spec.others, 300, _uncapped(spec))
    yield _AlertBudget(spec.lead, spec.others, 300, link)
    yield _AlertBudget(min(500, spec.lead), spec.others, 300, link)
    yield _AlertBudget(min(250, spec.lead), spec.others, 120, link)
    for n in (20, 15, 12, 10, 8, 6, 5):
        yield _AlertBudget(min(250, spec.lead), min(n, spec.others), 120, link)
    for n in (5, 3, 1, 0):
        yield _AlertBudget(0, n, 120, link)
    for title in (80, 40):
        yield _AlertBudget(0, 0, title, link)
    yield _AlertBudget(0, 0, 40, 0)


def _alert_title(view: AlertView, spec: ChannelSpec, words: Words) -> str:
    head = f"[{words.severity(clean(view.severity))}] "
    if view.kind == "update":
        head += f"{words.update} · "
    elif view.kind == "reminder":
        head += f"{words.reminder} · "
    elif view.kind == "removed":
        head += f"{words.removed} · "
    elif view.kind == "retraction":
        head += f"{words.retracted} · "
    elif view.kind == "reinstated":
        head += f"{words.reinstated} · "
    head += ", ".join(_event_name(e, words) for e in view.events) or words.story
    # Without people or places, the first headline says what the story is about.
    detail = _summary(view, words, with_dates=False) or clean(view.first.title)
    return _plain_title(spec, head, detail)


#: The kinds an ``alert.*`` template tells apart (any other is shown as an alert).
_ALERT_KINDS = ("update", "reminder", "removed", "retraction", "reinstated")


def render_alert(
    view: AlertView,
    channel: str,
    tz: str,
    *,
    templates_dir: str | os.PathLike[str] | None = None,
    locale: str = "en",
) -> Message:
    """The message about one story (first alert, update, reminder, removed at source, or the
    short notice that it was retracted or reinstated) for a channel format.

    `tz` is an IANA zone name: report times are shown in it ("2026-11-20 17:05 KST").
    `locale` (the route's, a key of `WORDS`) is the language of everything but the reports.

    Usage::

        msg = render_alert(view, "telegram", "Asia/Seoul")
        msg.title   # "[CRITICAL] Forced repatriation: 600 people · Dandong, Tumen"
        render_alert(view, "telegram", "Asia/Seoul", locale="ko").title
                    # "[긴급] 강제북송: 600명 · Dandong, Tumen"
    """
    spec = _spec(channel)
    words = _words(locale)
    zone = ZoneInfo(tz)
    folder = os.fspath(templates_dir) if templates_dir else None
    dialect = DIALECTS[spec.syntax]
    title = _alert_title(view, spec, words)
    sent_title = spec.title(title)
    first_at = _shown_at(view.first)
    story_href = _story_href(view, dialect)

    def build(b: _AlertBudget) -> tuple[str, str]:
        others = view.others[: b.others]
        removed, more_removed = _removed(view, b.others + 1, b.title)
        ctx = AlertContext(
            kind=view.kind if view.kind in _ALERT_KINDS else "alert",
            title=title,
            severity=clean(view.severity).lower(),
            severity_label=words.severity(clean(view.severity)),
            events=tuple(_event_name(e, words) for e in view.events),
            summary=_summary(view, words, with_dates=True),
            first=_report_line(
                view.first, zone, dialect, words, lead=b.lead, title=b.title, link=b.link
            ),
            others=tuple(
                _report_line(
                    r, zone, dialect, words, lead=0, title=b.title, link=b.link, first_at=first_at
                )
                for r in others
            ),
            more_outlets=_other_outlets(view.first, view.others, shown=others),
            new_outlets=tuple(n for n in (cut(clean(o), 80) for o in view.new_outlets) if n),
            changes=_changes(view, words) if view.kind == "update" else (),
            reminder_since=_latest_said(view, zone, words) or words.revision(view.revision),
            rules=tuple(r for r in (cut(words.why(clean(r)), 200) for r in view.rules) if r),
            story_id=view.story_id,
            revision=view.revision,
            story_href=story_href,
            removed=removed,
            more_removed=more_removed,
            corrected_by=cut(clean(view.corrected_by), 100),
            reason=cut(clean(view.correction_reason), 500),
        )
        return sent_title, _render_template("alert", spec, folder, ctx, words.folder)

    sent, body = _fit(spec, _alert_budgets(spec), build)
    return Message(
        title=sent,
        body=body,
        format=spec.format,
        severity=view.severity,
        stories=(view.story_id,),
    )


# --------------------------------------------------------------------------- digests


@dataclass(frozen=True, slots=True)
class _DigestBudget:
    stories: int
    title: int
    #: The longest report link written (`_report_href`).
    link: int


def _digest_budgets(spec: ChannelSpec, count: int) -> Iterator[_DigestBudget]:
    link = _link_cap(spec)
    yield _DigestBudget(count, 300, _uncapped(spec))  # all in, when it fits so
    for title in (300, 150):
        yield _DigestBudget(count, title, link)
    for n in (30, 20, 10, 5, 3, 1):
        if n < count:
            yield _DigestBudget(n, 80, link)
    yield _DigestBudget(1, 40, link)
    yield _DigestBudget(1, 40, 0)


def _timeline_href(
    timeline_url: str | None,
    left_out: Sequence[AlertView],
    zone: ZoneInfo,
    tz: str,
    dialect: Dialect,
) -> Href | None:
    """The web timeline from the day (in the message's zone) of the earliest report of the
    stories `left_out`, as this format links it; None when none is left out or there is no
    timeline."""
    if not timeline_url or not left_out:
        return None
    times = [
        t
        for view in left_out
        for r in (view.first, *view.others)
        if (t := r.published_at or r.found_at) is not None
    ]
    query = (
        f"?since={min(times).astimezone(zone).date().isoformat()}&tz={quote(tz)}" if times else ""
    )
    return dialect.href(safe_url(f"{timeline_url.rstrip('/')}/{query}"))


def _newest(view: AlertView) -> tuple[datetime, int]:
    # a day-only report counts at its day's end, as stories order their reports
    times = [
        counted_at(r.published_at, r.published_day) if r.published_at else r.found_at
        for r in (view.first, *view.others)
    ]
    latest = max((t for t in times if t is not None), default=None)
    return (latest or datetime.min.replace(tzinfo=UTC), view.story_id)


def _other_outlets(first: Any, others: Sequence[Any], *, shown: Sequence[Any] = ()) -> int:
    """How many outlets the story's reports name beyond the first report's (and beyond those
    of the reports listed): "+2 outlets" counts outlets, not a third report from one."""
    listed = {first.source_name, *(r.source_name for r in shown)}
    return len({r.source_name for r in others} - listed)


def _severity_rank(severity: str) -> int:
    """Higher for graver severities; -1 for one that is not known."""
    return SEVERITIES.index(severity) if severity in SEVERITIES else -1


def _loudest(views: Sequence[AlertView]) -> str | None:
    """The highest severity among a digest's stories."""
    known = [v.severity for v in views if v.severity in SEVERITIES]
    return max(known, key=SEVERITIES.index) if known else None


def render_digest(
    views: Sequence[AlertView],
    route_name: str,
    channel: str,
    tz: str,
    *,
    templates_dir: str | os.PathLike[str] | None = None,
    locale: str = "en",
    timeline_url: str | None = None,
) -> Message:
    """One message listing several stories, one or two lines each. `timeline_url` (the web
    timeline, from ``public_url``) links "+6 more stories" to the timeline from the day of
    the oldest story left out, so that none is out of reach.

    Stories are grouped by their gravest event type, groups gravest type first, stories within
    a group newest first (by their latest report, then story id). A digest cut to fit keeps
    the gravest stories (by severity, then newest) and counts the rest ("+6 more stories").

    Usage::

        msg = render_digest(views, "morning", "email", "Europe/Zurich")
    """
    spec = _spec(channel)
    words = _words(locale)
    zone = ZoneInfo(tz)
    folder = os.fspath(templates_dir) if templates_dir else None
    # Cut to fit, the gravest stay: by severity, then newest (a critical story is never left
    # out for newer low ones). Shown grouped by event type, gravest type first; newest first
    # within a group.
    ordered = sorted(views, key=lambda v: (_severity_rank(v.severity), _newest(v)), reverse=True)
    count = len(ordered)
    route = cut(clean(route_name), 80)
    dialect = DIALECTS[spec.syntax]
    title = _plain_title(spec, words.digest(count), route, " · ")
    sent_title = spec.title(title)

    shown: list[int] = []

    def build(b: _DigestBudget) -> tuple[str, str]:
        groups: dict[str, list[DigestEntry]] = {}
        chosen = ordered[: b.stories]
        shown[:] = [view.story_id for view in chosen]
        by_type = sorted(chosen, key=_newest, reverse=True)
        by_type.sort(
            key=lambda v: event_rank(v.events[0]) if v.events else (len(EVENT_TYPES) + 1, "")
        )
        for view in by_type:
            event = _event_name(view.events[0], words) if view.events else words.other
            removed, more_removed = _removed(view, 3, b.title)
            groups.setdefault(event, []).append(
                DigestEntry(
                    severity=clean(view.severity).lower(),
                    severity_label=words.severity(clean(view.severity)),
                    events=tuple(_event_name(e, words) for e in view.events),
                    summary=_summary(view, words, with_dates=True),
                    first=_report_line(
                        view.first, zone, dialect, words, lead=0, title=b.title, link=b.link
                    ),
                    more_outlets=_other_outlets(view.first, view.others),
                    story_id=view.story_id,
                    revision=view.revision,
                    story_href=_story_href(view, dialect),
                    removed=removed,
                    more_removed=more_removed,
                )
            )
        ctx = DigestContext(
            title=title,
            route=route,
            count=count,
            groups=tuple(DigestGroup(event=e, entries=tuple(s)) for e, s in groups.items()),
            more_stories=count - min(count, b.stories),
            more_href=_timeline_href(timeline_url, ordered[b.stories :], zone, tz, dialect),
        )
        return sent_title, _render_template("digest", spec, folder, ctx, words.folder)

    sent, body = _fit(spec, _digest_budgets(spec, count), build)  # `shown`: of the budget that fit
    return Message(
        title=sent,
        body=body,
        format=spec.format,
        severity=_loudest(views),
        stories=tuple(shown),
    )


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
    # "[watcher] source dnk is unhealthy", not "[watcher] watcher: source dnk …"
    told = clean(subject).removeprefix("watcher: ")
    title = _plain_title(spec, "[watcher]", told or "notice", " ")
    sent_title = spec.title(title)

    def build(b: _OpsBudget) -> tuple[str, str]:
        ctx = OpsContext(
            title=title,
            subject=cut(clean(subject), 300),
            lines=tuple(cut(line, b.width) for line in kept[: b.lines]),
            more_lines=len(kept) - min(len(kept), b.lines),
        )
        return sent_title, _render_template("ops", spec, folder, ctx)

    sent, body = _fit(spec, _ops_budgets(len(kept)), build)
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
