"""Pure normalisation used by every parser: URLs, text, dates, language, stable keys.

Usage::

    item = make_item(source, title=..., link=..., guid=..., summary=..., date_raw=...,
                     fetched_at=now, base_url=page_url)
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urljoin, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

from watcher.types import Item
from watcher.urls import whole_forms

#: Caps on stored text: a hostile feed cannot fill the database through one item.
MAX_TITLE = 1_000
MAX_TEXT = 100_000
MAX_KEY = 200
#: The title an item the source gave none is stored and shown with (`Item.untitled` says so).
UNTITLED = "(untitled)"
#: A publication date later than the fetch by more than this is not taken as given (a site
#: that labels Seoul's time +0000 dates its reports nine hours ahead): the fetch time stands
#: for it (`future_date`), and the date given stays in `published_raw`. Less is a clock's skew.
FUTURE_TOLERANCE = timedelta(minutes=15)

#: Query parameters that only track readers; removed from canonical URLs.
TRACKING_PARAMS = frozenset(
    {
        "fbclid",
        "gclid",
        "dclid",
        "msclkid",
        "mc_cid",
        "mc_eid",
        "ref",
        "cmpid",
        "ocid",
        "igshid",
        "_ga",
    }
)
TRACKING_PREFIXES = ("utm_",)

#: (pattern, replacement) applied to canonical URLs: feed-only addresses → article addresses.
URL_REWRITES = ((re.compile(r"^https://news\.un\.org/feed/view/"), "https://news.un.org/"),)


# --------------------------------------------------------------------------- URLs


def canonical_url(url: str | None, base: str | None = None) -> str | None:
    """Absolute URL with scheme/host lowercased, default port, credentials, fragment and
    trackers removed.

    Returns None for an empty or non-http(s) link, and for one that resolves to `base`
    itself (`#1`, `?`, a blank: the document's own address, with whatever key its query
    holds, names no item). Idempotent.
    """
    if not url:
        return None
    url = url.strip()
    if base and (not url or _own_address(url, base)):
        return None
    try:
        if base:
            url = urljoin(base, url)
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a malformed link ("http://[2001:db8::1/bad"): no link, not no feed
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if not host.isprintable() or " " in host:
        return None  # a NUL or an escape in a host names no site: no link, not no feed
    if port and not ((scheme == "http" and port == 80) or (scheme == "https" and port == 443)):
        host = f"{host}:{port}"
    # A user or password in a link is never part of which article it is (and may be a
    # secret): the key, the stored link and every export leave it out.
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if k.lower() not in TRACKING_PARAMS and not k.lower().startswith(TRACKING_PREFIXES)
    ]
    # Characters a link may carry raw (spaces, Hangul) are percent-encoded, so that a
    # canonical URL canonicalises to itself; existing escapes are kept as they are.
    try:
        path = quote(parts.path, safe="/%:@!$&'()*+,;=~") or "/"
        encoded = urlencode(query, doseq=True, safe="/:@,")
    except UnicodeEncodeError:  # a lone surrogate (JSON's "\ud800") has no UTF-8 form
        return None
    out = urlunsplit((scheme, host, path, encoded, ""))
    for pattern, replacement in URL_REWRITES:
        out = pattern.sub(replacement, out)
    return out


def _own_address(link: str, base: str) -> bool:
    """Whether `link` read against `base` is `base` itself (fragment and trackers aside)."""
    try:
        resolved = urljoin(base, link)
    except ValueError:
        return False
    own = canonical_url(base)
    return own is not None and canonical_url(resolved) == own


#: A secret this long is replaced wherever it stands as a whole part of a link or key
#: (between `/ ? & = # : ; @ ,` or the ends); a shorter one only as a whole query value.
#: Never inside a word: a `${VAR}` that is a plain word ("korea", an app name) must not cut
#: "north-korea" out of every link.
_SECRET_ANYWHERE = 8
_DELIMITERS = "/?&=#:;@,"


@lru_cache(maxsize=256)
def _secret_pattern(form: str, *, whole_value: bool) -> re.Pattern[str]:
    body = re.escape(form)
    if whole_value:
        return re.compile(rf"(?P<pre>[?&;][^=&#;]*=){body}(?=$|[&#;])")
    edge = re.escape(_DELIMITERS)
    return re.compile(rf"(?P<pre>)(?<![^{edge}]){body}(?![^{edge}])")


def without_secrets(item: Item, secrets: Iterable[str]) -> Item:
    """`item` with each of its source's secrets (`SourceBase.secrets`) in its link and key
    replaced by `***`: an API that echoes its key in its items' links never has it stored,
    shown, sent or exported. A key made from the link is remade from the redacted one.

    Usage::

        without_secrets(item, {"k-123"})   # url "https://e.org/a?key=***"
    """
    url, key = item.url, item.key
    for secret in sorted(secrets, key=len, reverse=True):
        for form in sorted(whole_forms(secret), key=len, reverse=True):
            pattern = _secret_pattern(form, whole_value=len(secret) < _SECRET_ANYWHERE)
            if url is not None:
                url = pattern.sub(r"\g<pre>***", url)
            key = pattern.sub(r"\g<pre>***", key)
    if url == item.url and key == item.key:
        return item
    if item.url is not None and url is not None and item.key == _url_key(item.url):
        key = _url_key(url)
    return replace(item, url=url, key=key)


# --------------------------------------------------------------------------- text

#: C0 and C1 control characters but tab, newline and carriage return (whitespace, which text
#: cleaning folds), and lone surrogates: PostgreSQL refuses a NUL in any text column, UTF-8
#: has no form for a surrogate, and a terminal obeys an escape.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


#: What no database column of text takes: NUL (PostgreSQL) and lone surrogates (no UTF-8).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def without_controls(value: str) -> str:
    """`value` without control characters (but tab, newline, carriage return) or lone
    surrogates: what a parser takes from a document before it names anything.

    Usage::

        without_controls("g\\x00x\\x1b[31m")   # "gx[31m"
    """
    return _CONTROL.sub("", value)


_WS = re.compile(r"\s+")
_TAG_HINT = re.compile(r"<[a-zA-Z/!]")


def clean_text(value: Any, limit: int = MAX_TEXT) -> str:
    """HTML stripped, entities decoded, Unicode NFC, whitespace folded, capped. Idempotent."""
    if value is None:
        return ""
    text = str(value)
    if _TAG_HINT.search(text):
        text = _strip_html(text)
    text = html.unescape(text)
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    text = _WS.sub(" ", text).strip()
    if not text.isprintable():  # rare: control or format characters; drop them
        text = _WS.sub(" ", "".join(ch if ch.isprintable() else " " for ch in text)).strip()
    return text[:limit].rstrip()


#: What WordPress sites (Daily NK, NK News, Amnesty…) append to every feed item (Yoast SEO's
#: feed footer, in English whatever the site's language): "The post <title> appeared first on
#: <site>." It is not the report: it would stand in every alert's lead.
_POST_FOOTER = " appeared first on "
#: How far before "appeared first on" the footer's "The post " may stand (a title)...
_FOOTER_TITLE = 600
#: ...and how long the site's name after it may be: one name, not a sentence going on.
_FOOTER_SITE = 100
#: What ends the sentence before the footer (the footer starts one).
_SENTENCE_END = ".!?…\"”'’)]"
#: An excerpt's continuation mark ("…the forced return [&#8230;]"): shown as a plain "…".
_MORE = ("[…]", "[...]", "[&hellip;]")


def _footer_start(text: str, end: int) -> int | None:
    """Where the WordPress footer that ends `text[:end]` starts, or None when it ends
    otherwise: "The post <title> appeared first on <site>." at a sentence start, the site's
    name (up to _FOOTER_SITE, no sentence in it) and nothing after. A report's own "The post
    by a netizen appeared first on Douyin late Tuesday; it said…" goes on, and stays."""
    at = text.rfind(_POST_FOOTER, max(0, end - _FOOTER_SITE - len(_POST_FOOTER) - 1), end)
    if at == -1:
        return None
    site = text[at + len(_POST_FOOTER) : end].removesuffix(".")
    if not site or len(site) > _FOOTER_SITE or ". " in site or any(c in site for c in ";!?"):
        return None
    lowest, start = max(0, at - _FOOTER_TITLE), at
    # the latest "The post " that starts a sentence: a title may hold "the post" itself
    while (start := text.rfind("The post ", lowest, start)) != -1:
        stop = _rstripped(text, start)
        if stop == 0 or text[stop - 1] in _SENTENCE_END:
            return start
    return None


def _rstripped(text: str, end: int) -> int:
    """Where `text[:end]` ends without its trailing whitespace."""
    while end > 0 and text[end - 1].isspace():
        end -= 1
    return end


def without_feed_footer(text: str) -> str:
    """`text` without the WordPress feed footers at its end, and with an excerpt's "[…]" as
    "…". Only at the end, and only the footer's shape: the same words inside a report stay.
    Linear: each footer found moves the end back, and each look spans a bounded window."""

    def footers_off(end: int) -> int:
        while (start := _footer_start(text, end)) is not None:
            end = _rstripped(text, start)
        return end

    end = footers_off(_rstripped(text, len(text)))
    for mark in _MORE:
        if text.endswith(mark, 0, end):
            # a footer can stand before the mark too
            return text[: footers_off(_rstripped(text, end - len(mark)))] + "…"
    return text[:end]


def _strip_html(markup: str) -> str:
    from lxml import html as lxml_html
    from lxml.etree import ParserError

    try:
        root = lxml_html.fragment_fromstring(markup, create_parent="div")
    except (ParserError, ValueError):
        return re.sub(r"<[^>]*>", " ", markup)
    for bad in root.xpath("//script|//style|//noscript"):
        bad.drop_tree()
    # Block elements end in a space so that words of adjacent paragraphs do not join.
    for block in root.xpath("//p|//div|//br|//li|//h1|//h2|//h3|//h4|//tr|//td"):
        block.tail = " " + (block.tail or "")
    return str(root.text_content())


# --------------------------------------------------------------------------- dates

_KOREAN_DATE = re.compile(
    r"(?P<y>\d{4})\s*[년.\-/]\s*(?P<m>\d{1,2})\s*[월.\-/]\s*(?P<d>\d{1,2})\s*[일.]?"
    r"(?:\s*\([^)]*\))?"
    r"(?:\s*(?P<ampm>오전|오후|AM|PM|am|pm)?\s*(?P<H>\d{1,2})\s*(?:[:시])\s*(?P<M>\d{1,2})?"
    r"\s*(?:분)?(?:\s*:?\s*(?P<S>\d{1,2}))?)?"
)
_CJK_DATE = re.compile(
    r"(?P<y>\d{4})\s*年\s*(?P<m>\d{1,2})\s*月\s*(?P<d>\d{1,2})\s*日"
    r"(?:\s*(?P<H>\d{1,2})\s*[:時时]\s*(?P<M>\d{1,2})?)?"
)


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def parse_date(raw: str | None, zone: str = "UTC") -> datetime | None:
    """A date as sources write it → aware UTC; zone-less values are read in `zone`.

    Handles ISO 8601, RFC 2822, `2024.04.26 14:05`, `2024년 4월 26일 오후 2시 5분`,
    `2024年4月26日`, and English forms like `November 20, 2026`.
    """
    if not raw:
        return None
    text = unicodedata.normalize("NFKC", str(raw)).strip()
    if not text:
        return None
    parsed = _parse_known(text)
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_zone(zone))
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


#: What writes a time of day into a date: a clock ("14:05", "T14", "140500Z" after a "T"),
#: an hour word (2시, 14時, 14点), or a half of the day (2 pm, 오후, 午後, 下午). A written
#: 00:00 is a time too: nobody can tell it from a report published at midnight.
_TIME_OF_DAY = re.compile(
    r"\d\s*[:：]\s*\d|\dT\d|\d\s*[시時时点點]|\d\s*h\s*\d"
    r"|\d\s*(?:[ap]\.?\s*m\b\.?)|오전|오후|午前|午後|上午|下午|\b(?:noon|midnight)\b",
    re.IGNORECASE,
)


def written_day(raw: str | None) -> date | None:
    """The day a written date gives when it gives no time of day ("2026-11-20",
    "Nov 20, 2026", "2026년 11월 20일", "2026年11月20日"), as written: no zone moves it to
    another day. None when it gives a time (even "00:00") or is no date `parse_date` reads.

    Such a date's `published_at` is that day's midnight (in the source's zone): no time
    the outlet gave, which every view shows as the day alone.

    Usage::

        written_day("2026-11-20")             # date(2026, 11, 20)
        written_day("2026-11-20T00:00:00Z")   # None: a time, if midnight
    """
    if not raw:
        return None
    text = unicodedata.normalize("NFKC", str(raw)).strip()
    if not text or _TIME_OF_DAY.search(text):
        return None
    parsed = _parse_known(text)
    if parsed is None or parsed.time() != datetime.min.time():
        return None  # a time the markers above missed: it is the outlet's, not a day alone
    return parsed.date()


def date_only(raw: str | None) -> bool:
    """Whether a written date gives its day but no time of day (see `written_day`)."""
    return written_day(raw) is not None


def published_day(item: Any) -> date | None:
    """The day alone an item's outlet gave (an `Item`, or a row with its `published_at`,
    `published_raw` and `fetched_at`): None when it gave a time or no date, or a day after
    the one it was fetched on (`future_date`: the fetch time stands for it)."""
    if item.published_at is None or future_date(item):
        return None
    return written_day(item.published_raw)


def future_date(item: Any) -> bool:
    """Whether the date the outlet gave was more than `FUTURE_TOLERANCE` after the item was
    fetched (an `Item`, or a row with its `published_at` and `fetched_at`): `make_item` then
    made the fetch time its publication time, and kept the date given in `published_raw`."""
    fetched = getattr(item, "fetched_at", None)
    return item.published_at is not None and item.published_at == fetched


def published_fields(published_at: datetime | None, day: date | None) -> dict[str, Any]:
    """A report's publication as every machine output gives it (API, exports, evidence):
    `published_at` (a day alone's is that day's midnight where the source is, no time its
    outlet gave), `published_precision` ("day": the outlet gave its day only; "time"; null:
    no date) and `published_day` (a "day" precision's day as written, else null).

    Usage::

        published_fields(datetime(2026, 11, 19, 15, tzinfo=UTC), date(2026, 11, 20))
        # {"published_at": "2026-11-19T15:00:00+00:00", "published_precision": "day",
        #  "published_day": "2026-11-20"}
    """
    return {
        "published_at": published_at.isoformat() if published_at else None,
        "published_precision": (day and "day") or (published_at and "time") or None,
        "published_day": day.isoformat() if day else None,
    }


def _parse_known(text: str) -> datetime | None:
    iso = text.replace("Z", "+00:00") if text.endswith("Z") else text
    try:
        return datetime.fromisoformat(iso)
    except ValueError:
        pass
    if re.match(r"^[A-Za-z]{3},|^\d{1,2} [A-Za-z]{3} \d{4}", text):
        try:
            return parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            pass
    for pattern in (_KOREAN_DATE, _CJK_DATE):
        m = pattern.search(text)
        if m:
            return _from_match(m)
    try:
        from dateutil import parser as du_parser

        # dateutil fills what a text leaves out from its default: "November 2026", "2026" or
        # "14:05" would take today's day, month or year. Read twice with two defaults: a date
        # that gives its year, month and day reads the same.
        parsed = du_parser.parse(text, fuzzy=False, default=_DEFAULTS[0])
        if parsed.date() != du_parser.parse(text, fuzzy=False, default=_DEFAULTS[1]).date():
            return None  # no whole date: the item is undated, not given a made-up day
        return parsed
    except (ValueError, OverflowError, TypeError):
        return None


_DEFAULTS = (datetime(2000, 1, 1), datetime(2001, 2, 2))


def _from_match(m: re.Match[str]) -> datetime | None:
    g = m.groupdict()
    hour = int(g.get("H") or 0)
    ampm = (g.get("ampm") or "").lower()
    if ampm in ("오후", "pm") and hour < 12:
        hour += 12
    elif ampm in ("오전", "am") and hour == 12:
        hour = 0
    try:
        return datetime(
            int(g["y"]), int(g["m"]), int(g["d"]), hour, int(g.get("M") or 0), int(g.get("S") or 0)
        )
    except ValueError:
        return None


# --------------------------------------------------------------------------- language

_SCRIPT_RANGES = (
    ("ko", re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")),
    ("ja", re.compile(r"[\u3040-\u309f\u30a0-\u30ff]")),
    ("zh", re.compile(r"[\u4e00-\u9fff]")),
)
_LATIN = re.compile(r"[A-Za-z]")


#: A language tag as feeds and APIs write one: `en`, `ko`, `zh-Hant`, `en_US`, `es-419`.
_LANG_TAG = re.compile(r"[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8}){0,4}")


def language_tag(declared: str | None) -> str | None:
    """`declared` when it is a language tag (without surrounding spaces), else None: a
    declared language that is not one (a NUL, an escape, a page of text) is not believed."""
    if not declared:
        return None
    declared = declared.strip()
    return declared if _LANG_TAG.fullmatch(declared) else None


def detect_lang(text: str, declared: str | None = None) -> str | None:
    """Language by Unicode script (ko, ja, zh), else the declared one, else en for Latin text."""
    sample = text[:600]
    counts = {lang: len(pattern.findall(sample)) for lang, pattern in _SCRIPT_RANGES}
    if counts["ko"] >= 2:
        return "ko"
    if counts["ja"] >= 2:
        return "ja"
    if counts["zh"] >= 2:
        return "ja" if declared == "ja" else "zh"
    if declared and declared not in ("ko", "ja", "zh"):
        return declared
    if _LATIN.search(sample):
        return "en"
    return declared


# --------------------------------------------------------------------------- items


def stable_key(
    source_id: str, url: str | None, guid: str | None, title: str, date_raw: str | None
) -> str:
    """Canonical URL, else source id + guid, else source id + hash of title and date.

    A guid too long for a key, or holding what a database cannot store (NUL, which
    PostgreSQL refuses; a lone surrogate, which is no UTF-8), is hashed. Any other guid is the
    key as it always was (an item stored before keeps its key: it is not new again);
    whatever shows a key cleans it (`render.clean`)."""
    if url:
        return _url_key(url)
    if guid and guid.strip():
        key = f"{source_id}:{guid.strip()}"
        if len(key) <= MAX_KEY and not _UNSTORABLE.search(key):
            return key
        digest = hashlib.sha256(guid.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{source_id}:g:{digest}"
    digest = hashlib.sha256(f"{title}\n{date_raw or ''}".encode()).hexdigest()
    return f"{source_id}:h:{digest}"


def _url_key(url: str) -> str:
    return url if len(url) <= MAX_KEY else "u:" + hashlib.sha256(url.encode()).hexdigest()


def make_item(
    *,
    source_id: str,
    title: Any,
    link: str | None,
    guid: str | None = None,
    summary: Any = None,
    date_raw: str | None = None,
    published_at: datetime | None = None,
    lang: str | None = None,
    zone: str = "UTC",
    fetched_at: datetime,
    base_url: str | None = None,
    shared_url: bool = False,
    canonical: bool = False,
) -> Item:
    """Normalise one parsed entry. `shared_url`: the link is not this item's own (several
    entries of the page share it), so it cannot identify the item. `canonical`: the parser
    already canonicalised the link."""
    clean_title = clean_text(title, MAX_TITLE)
    text = without_feed_footer(clean_text(summary))
    url = link if canonical else canonical_url(link, base_url)
    when = parse_date(date_raw, zone) or published_at
    if when is not None and when.tzinfo is not None:
        when = when.astimezone(UTC)
        if when > fetched_at + FUTURE_TOLERANCE:
            when = fetched_at  # not yet published: a wrong zone or a mistyped date
    key = stable_key(source_id, None if shared_url else url, guid, clean_title, date_raw)
    return Item(
        key=key,
        source_id=source_id,
        url=url,
        title=clean_title or UNTITLED,
        untitled=not clean_title,
        text=text,
        lang=detect_lang(f"{clean_title} {text}", language_tag(lang)),
        published_at=when,
        published_raw=(date_raw or None) and clean_text(date_raw, 200),
        fetched_at=fetched_at,
    )
