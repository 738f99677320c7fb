"""The schema of sources.yaml as pydantic models: sources, rules, concepts, channels, routes,
settings, and the value types they use (durations, sizes, time zones). Pure: no file or
environment access (that is `loading`)."""

from __future__ import annotations

import difflib
import re
import zoneinfo
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any, Literal, TypeGuard, Union, get_args
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)

from watcher.urls import url_problem

# --------------------------------------------------------------------------- value types

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: object, *, example: str = "15m") -> timedelta:
    """`30s`, `15m`, `2h`, `1d`, `1h30m` (or `0`) → timedelta; anything else is a ValueError,
    whose hint shows `example` (a value the caller accepts: `db prune` takes a day at least)."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value == 0:
        return timedelta(0)
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if text == "0":
            return timedelta(0)
        parts = _DURATION_PART.findall(text)
        if parts and "".join(n + u for n, u in parts) == text:
            return timedelta(seconds=sum(float(n) * _DURATION_UNITS[u] for n, u in parts))
    raise ValueError(f"expected a duration like {example}, got {value!r}")


def format_duration(value: timedelta) -> str:
    """timedelta → the shortest `1h30m` style text (the inverse of `parse_duration`)."""
    seconds = value.total_seconds()
    if seconds == 0:
        return "0s"
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        count, seconds = divmod(seconds, size)
        if count:
            out.append(f"{int(count)}{unit}")
    if seconds:
        out.append(f"{seconds:g}s")
    return "".join(out)


_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?$")
_SIZE_UNITS = {
    None: 1,
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
}


def parse_size(value: object) -> int:
    """`10MiB`, `512KiB`, `2000000` → bytes."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        m = _SIZE.match(value.strip().lower())
        if m:
            return int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])
    raise ValueError(f"expected a size like 10MiB, got {value!r}")


def _check_timezone(value: object) -> str:
    if isinstance(value, str):
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass
        else:
            return value
    raise ValueError(f"expected a time zone name like Asia/Seoul or UTC, got {value!r}")


def _check_url(value: object) -> str:
    if isinstance(value, str) and re.match(r"^https?://[^\s/$.?#][^\s]*$", value, re.I):
        # a port or host no connection can use fails here, not as each poll's traceback
        problem = url_problem(value)
        if problem is None:
            return value
        raise ValueError(problem)
    raise ValueError(f"expected an http:// or https:// address, got {value!r}")


Duration = Annotated[timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration)]


def at_least(minimum: timedelta) -> AfterValidator:
    """A duration's lower bound: `repeat_interval: 0s` would remind advocates every second, a
    zero timeout fails every fetch."""

    def check(value: timedelta) -> timedelta:
        if value < minimum:
            raise ValueError(
                f"must be at least {format_duration(minimum)}, got {format_duration(value)}"
            )
        return value

    return AfterValidator(check)


_SECOND, _MINUTE, _HOUR = timedelta(seconds=1), timedelta(minutes=1), timedelta(hours=1)
Size = Annotated[int, BeforeValidator(parse_size)]
TimeZone = Annotated[str, BeforeValidator(_check_timezone)]
HttpUrl = Annotated[str, BeforeValidator(_check_url)]
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)]
Language = Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")]

#: Country codes often written for a language: the did-you-mean for them.
COUNTRY_FOR_LANG = {"kr": "ko", "kp": "ko", "jp": "ja", "cn": "zh", "tw": "zh", "hk": "zh"}


def _not_a_country(value: str) -> str:
    meant = COUNTRY_FOR_LANG.get(value.split("-")[0])
    if meant:
        raise ValueError(f"{value!r} is a country code, not a language (did you mean {meant!r}?)")
    return value


#: A language a source or rule declares: items are read as it (a country code such as `kr`
#: would make them a language no term list has).
DeclaredLanguage = Annotated[Language, AfterValidator(_not_a_country)]


class Model(BaseModel):
    """Base of every config model: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- sources

#: Zone assumed for zone-less dates, by source language, when the source names none.
DEFAULT_ZONE_BY_LANG = {"ko": "Asia/Seoul", "ja": "Asia/Tokyo", "zh": "Asia/Shanghai"}


#: A `${VAR}` (or `${VAR:-default}`) and the user-info of a URL: never shown.
_SECRET_PART = re.compile(r"\$\{[^}]*\}")
_USER_INFO = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/?#\s]*@")


class SourceBase(Model):
    #: Unique, stable id used in the database, logs and alerts (letters, digits, - _ .).
    id: Identifier
    #: Human name of the outlet, shown in alerts ("Daily NK (Korean)").
    name: str | None = None
    url: HttpUrl
    #: How often to poll.
    interval: Duration = timedelta(minutes=15)
    #: Language of the source's items (en, ko, zh, ja…); detected per item when absent.
    lang: DeclaredLanguage | None = None
    tags: tuple[str, ...] = ()
    enabled: bool = True
    #: Time zone for dates that carry none (default: by language, else UTC).
    timezone: TimeZone | None = None
    #: Extra request headers (e.g. a Referer some sites require).
    headers: dict[str, str] = Field(default_factory=dict)
    #: Also fetch each new item's page and extract its main text.
    fetch_article: bool = False
    #: At most this many article pages per source per cycle.
    max_articles: int = Field(default=10, ge=1, le=200)
    #: Honour robots.txt (html sources and article pages).
    robots: bool = True
    #: Unhealthy ("stale") after this long without a new item; default: from the source's own
    #: history (10 times its usual gap, at least 3 days; 14 days until it has some history).
    stale_after: Annotated[Duration, at_least(_MINUTE)] | None = None
    #: `url` as sources.yaml writes it, `${VAR}` unexpanded; set by the loader when the two
    #: differ (a private attribute: the file cannot set it).
    _written_url: str | None = None
    #: The values this source's own `${VAR}`s expand to; set by the loader.
    _secrets: frozenset[str] = frozenset()

    @field_validator("interval")
    @classmethod
    def _interval_at_least_one_second(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError(f"a source interval must be at least 1s, got {format_duration(value)}")
        return value

    @property
    def display_name(self) -> str:
        return self.name or self.id

    @property
    def zone(self) -> str:
        return self.timezone or DEFAULT_ZONE_BY_LANG.get(self.lang or "", "UTC")

    @property
    def written_url(self) -> str:
        """The address as written in sources.yaml (`${VAR}` kept): what the database stores.
        Fetching uses `url`, the expanded one."""
        return self._written_url or self.url

    @property
    def secrets(self) -> frozenset[str]:
        """The values this source's `${VAR}`s (in its url, headers, params…) expand to: a
        link the source sends that carries one (an API echoing its key) is stored with `***`
        in its place (`items.without_secrets`)."""
        return self._secrets

    @property
    def shown_url(self) -> str:
        """The written address with each `${VAR}` and any `user:password@` replaced by `***`:
        what pages, the API and the command line show.

        Usage::

            FeedSource(id="f", kind="feed", url="https://u:p@e.org/f").shown_url
            # 'https://***@e.org/f'
        """
        return _SECRET_PART.sub("***", _USER_INFO.sub(r"\g<scheme>***@", self.written_url))


class FeedSource(SourceBase):
    """RSS 0.9x/1.0/2.0 or Atom, parsed by feedparser."""

    kind: Literal["feed"]


#: Text that must say something: an empty selector or attribute name is a slip, not "none".
Written = Annotated[str, Field(min_length=1)]


class HtmlSelectors(Model):
    #: CSS selector of one item's container on the listing page.
    item: Written
    #: Selector (inside the item) of the title; default: the link's text.
    title: Written | None = None
    #: Selector of the link (an element with href); default: the first `a[href]`.
    link: Written = "a[href]"
    date: Written | None = None
    #: Attribute holding the date (e.g. datetime); default: the element's text.
    date_attr: Written | None = None
    summary: Written | None = None


class HtmlSource(SourceBase):
    """A listing page scraped with CSS selectors."""

    kind: Literal["html"]
    selectors: HtmlSelectors


class JsonFields(Model):
    """Dotted paths inside one JSON item (`fields.date.created`)."""

    title: str
    url: str
    id: str | None = None
    date: str | None = None
    summary: str | None = None
    lang: str | None = None


class JsonSource(SourceBase):
    """A JSON API; `items` is the dotted path of the list, `fields` maps item fields."""

    kind: Literal["json"]
    method: Literal["GET", "POST"] = "GET"
    params: dict[str, str | int | float | bool | list[str]] = Field(default_factory=dict)
    body: dict[str, Any] | None = None
    items: str
    fields: JsonFields


Source = Annotated[Union[FeedSource, HtmlSource, JsonSource], Field(discriminator="kind")]  # noqa: UP007

#: Source kinds, from the union above (the parser registry must match them; a test checks).
SOURCE_KINDS: tuple[str, ...] = tuple(
    get_args(model.model_fields["kind"].annotation)[0] for model in get_args(get_args(Source)[0])
)


# ----------------------------------------------------------- rules, channels, routes


#: Severities, lowest first.
SEVERITIES = ("low", "medium", "high", "critical")
Severity = Literal["low", "medium", "high", "critical"]

#: The key under which a concept's English gloss is kept beside its per-language terms.
GLOSS = "gloss"
#: The key under which a concept names the concepts whose longer terms hide its own.
NOT_INSIDE = "not_inside"
#: The key under which a concept names concepts whose terms it takes as its own (resolved when
#: the file is read: rules and matching see one list per language).
INCLUDES = "includes"

#: The event types the shipped rules produce (operators may add their own).
EVENT_TYPES = (
    "forced_repatriation",
    "detention",
    "border_reopening",
    "un_action",
    "china_position",
    "policy_change",
)


def event_rank(event: str) -> tuple[int, str]:
    """Sort key of event types, gravest first: the shipped ones in the order of EVENT_TYPES,
    an operator's own after them, by name. What a story is counted and titled under."""
    if event in EVENT_TYPES:
        return EVENT_TYPES.index(event), ""
    return len(EVENT_TYPES), event


#: How the shipped event types are named to readers (alerts, web pages, feeds).
EVENT_NAMES: dict[str, str] = {
    "forced_repatriation": "Forced repatriation",
    "detention": "Detention",
    "border_reopening": "Border reopening",
    "un_action": "UN action",
    "china_position": "China's position",
    "policy_change": "Policy change",
}

#: The languages alerts can be written in (a route's `locale`); `watcher.render` holds each
#: one's words and templates.
LOCALES = ("en", "ko")


def _check_terms(value: object) -> object:
    """A term group: a concept name, a list of terms, or terms per language."""
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("expected a concept name or a list of terms, got ''")
        return value
    if isinstance(value, list | tuple):
        _check_term_list(value, "")
        return tuple(value)
    if isinstance(value, dict):
        if not value:
            raise ValueError("expected terms per language like {en: [...], ko: [...]}, got {}")
        for lang, terms in value.items():
            if not isinstance(lang, str) or not re.match(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$", lang):
                raise ValueError(f"expected a language code like en or ko, got {lang!r}")
            _check_term_list(terms, f"{lang}: ")
        return {lang: tuple(terms) for lang, terms in value.items()}
    raise ValueError(f"expected a concept name or a list of terms, got {short(value)}")


def _check_term_list(terms: object, where: str) -> None:
    if not isinstance(terms, list | tuple):
        raise ValueError(f"{where}expected a list of terms, got {short(terms)}")
    if not terms:
        raise ValueError(f"{where}the term list is empty")
    for term in terms:
        if not isinstance(term, str) or not term.strip(" *"):
            raise ValueError(f"{where}expected a non-empty term, got {short(term)}")
        if "*" in term.rstrip("*") or term.startswith("*"):
            raise ValueError(f"{where}'*' is only allowed at the end of a term, got {term!r}")


#: A concept name, an inline list of terms, or inline terms per language.
Terms = Annotated[str | tuple[str, ...] | dict[str, tuple[str, ...]], BeforeValidator(_check_terms)]


#: Characters of Korean, Chinese or Japanese text per word of Latin-script text, for a `near`
#: that gives only one of them (the shipped rules' own ratio: 30 words, 60 characters).
CHARS_PER_WORD = 2


class Near(Model):
    """The `all_of` groups must occur within this distance of each other. Either may be given
    alone: the other is derived from it (`CHARS_PER_WORD` characters per word).

    Usage::

        near: {words: 30, chars: 70}    # each script its own distance
        near: {words: 30}               # chars: 60
        near: {chars: 60}               # words: 30
    """

    #: Words, in Latin-script text.
    words: int = Field(ge=1, le=500)
    #: Characters, in Korean, Chinese and Japanese text.
    chars: int = Field(ge=1, le=5000)

    @model_validator(mode="before")
    @classmethod
    def _one_gives_the_other(cls, value: Any) -> Any:
        if not isinstance(value, dict) or ("words" in value and "chars" in value):
            return value
        words, chars = value.get("words"), value.get("chars")
        if words is None and chars is None:
            if any(k in value for k in ("words", "chars")):
                return value  # `words:` left empty: said as that key's problem
            raise ValueError(
                "give `words` (Latin-script text), `chars` (Korean, Chinese, Japanese) or both, "
                "e.g. near: {words: 30, chars: 60}"
            )
        # a written value that is wrong is said as that key's problem; the derived one is then
        # any valid number, not a second problem on a key the file does not have
        if "chars" not in value:
            derived = words * CHARS_PER_WORD if _whole(words) else 1
            return {**value, "chars": max(1, min(5000, derived))}
        derived = -(-chars // CHARS_PER_WORD) if _whole(chars) else 1
        return {**value, "words": max(1, min(500, derived))}


def _whole(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


class Escalation(Model):
    """Raise a match's severity when a term group is present or enough people are named."""

    to: Severity
    any_of: tuple[Terms, ...] = ()
    people_at_least: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _has_a_condition(self) -> Escalation:
        if not self.any_of and self.people_at_least is None:
            raise ValueError("an escalation needs any_of or people_at_least")
        return self


class RuleExamples(Model):
    #: Texts this rule must match (checked by `watcher check`).
    match: tuple[str, ...] = ()
    #: Texts this rule must not match.
    no_match: tuple[str, ...] = ()


class Rule(Model):
    id: Identifier
    #: The event type the rule reports (forced_repatriation, detention…).
    event: Identifier
    severity: Severity = "medium"
    #: Every group must be present (a group: a concept name, a term list, terms per language).
    all_of: tuple[Terms, ...] = Field(min_length=1)
    #: No group may be present anywhere in the title or text.
    none_of: tuple[Terms, ...] = ()
    #: No group may be present in the sentence(s) where the `all_of` hits lie: an exclusion
    #: that cancels only the statement it is part of ("urged China not to repatriate").
    none_in_sentence: tuple[Terms, ...] = ()
    #: Groups that must also be present, at any distance (`near` does not apply to them).
    context: tuple[Terms, ...] = ()
    near: Near | None = None
    escalate: tuple[Escalation, ...] = ()
    #: Only items from sources with one of these tags.
    tags: tuple[str, ...] = ()
    #: Only items in these languages.
    langs: tuple[DeclaredLanguage, ...] = ()
    examples: RuleExamples = RuleExamples()
    enabled: bool = True
    #: A line for operators (shown by `watcher check` and the web page).
    description: str | None = None


class Channel(Model):
    """A named apprise URL (mailto://, slack://, tgram://, json://…)."""

    id: Identifier
    url: str = Field(min_length=1)
    enabled: bool = True


_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def time_of_day(value: str) -> str:
    """`HH:MM` (24-hour) from `HH:MM` or `H:MM` (`9:30` is 09:30); a ValueError otherwise."""
    found = _HHMM.match(value.strip())
    if not found:
        raise ValueError(f"expected a time of day like 08:00, got {value!r}")
    return f"{int(found.group(1)):02d}:{found.group(2)}"


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Digest(Model):
    """When a digest route sends: at a time of day, daily or on some weekdays."""

    #: Time of day, 24-hour `HH:MM`, in the route's time zone.
    at: str = "08:00"
    #: Weekdays (mon…sun); empty: every day.
    days: tuple[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], ...] = ()

    @field_validator("at")
    @classmethod
    def _time_of_day(cls, value: str) -> str:
        return time_of_day(value)


class Route(Model):
    """Which stories go to which channels, how soon, and how often."""

    #: Stable name, used to remember what was sent; default `route-N` (its position).
    id: Identifier | None = None
    channels: tuple[Identifier, ...] = Field(min_length=1)
    #: Event types routed here; empty: all.
    events: tuple[Identifier, ...] = ()
    min_severity: Severity = "low"
    #: Only stories with a report from a source carrying one of these tags.
    tags: tuple[str, ...] = ()
    #: Only stories with a report in one of these languages.
    langs: tuple[Language, ...] = ()
    #: The language messages are written in (labels, event names, dates; not the reports'
    #: titles): one of `LOCALES`. Checked with the route's other names (`loading`).
    locale: str = "en"
    mode: Literal["immediate", "digest"] = "immediate"
    #: After a story's first report, wait this long to gather more outlets before sending.
    group_wait: Duration = timedelta(minutes=2)
    #: Re-send an unchanged story this often, labelled as a reminder; default never.
    repeat_interval: Annotated[Duration, at_least(_MINUTE)] | None = None
    #: The schedule of a digest route (default: daily at 08:00).
    digest: Digest | None = None
    #: Time zone of times in messages and of the digest schedule; default settings.timezone.
    timezone: TimeZone | None = None
    #: `false`: a story that matches this route goes to no later route.
    continue_: bool = Field(default=True, alias="continue")
    #: Operator alerts (failed deliveries, unhealthy sources) go to ops routes, stories don't.
    ops: bool = False
    #: While a channel is unreachable its messages wait and are retried (backing off up to
    #: `settings.delivery_max_backoff`) until they are this old; then they expire and the
    #: ops routes hear of it. Distinct from `settings.max_alert_age`, which is about items.
    give_up_after: Annotated[Duration, at_least(_MINUTE)] = timedelta(days=3)
    #: More occasions for a message: `removed` (a report of a story routed here was found
    #: removed at its source: a 404 or 410 when it was re-checked, `watcher.recheck`).
    notify_on: tuple[Literal["removed"], ...] = ()

    def key(self, index: int) -> str:
        return self.id or f"route-{index + 1}"


#: The databases watcher runs on, as SQLAlchemy names them (a driver may follow the `+`).
_DATABASE_URL = re.compile(r"^(sqlite|postgresql)(\+\w+)?://(.*)$", re.DOTALL)
#: What a contact may be: a web address or an e-mail address (mailto: optional).
_CONTACT = re.compile(r"^(https?://[^\s/]+\S*|(mailto:)?[^\s@:/]+@[^\s@]+)$", re.IGNORECASE)


def address_problem(value: str, *, off: bool = False) -> str | None:
    """What is wrong with an address to listen on (`HOST:PORT` or `:PORT`, and `off` when
    `off` is allowed); None if nothing. The one check behind `serve --address`,
    `run --metrics-address` and settings.metrics_address."""
    if off and value == "off":
        return None
    host, colon, port = value.rpartition(":")
    if not colon or not port.isdigit() or not 1 <= int(port) <= 65535:
        either = " or off" if off else ""
        return f"expected HOST:PORT (a port from 1 to 65535){either}, got {value!r}"
    if host.startswith("[") != host.endswith("]"):
        return f"expected HOST:PORT with an IPv6 host in brackets, got {value!r}"
    return None


class Settings(Model):
    #: Database URL; `--db` and WATCHER_DATABASE_URL take precedence.
    database_url: str | None = None
    #: Time zone in which alerts and summaries show times.
    timezone: TimeZone = "UTC"
    #: Contact URL or e-mail sent in the User-Agent, so outlets can reach the operator.
    contact: str = "https://github.com/watcher-project/watcher"
    #: Concurrent fetches in all, and per host.
    concurrency: int = Field(default=100, ge=1, le=1000)
    per_host: int = Field(default=2, ge=1, le=20)
    connect_timeout: Annotated[Duration, at_least(timedelta(milliseconds=100))] = timedelta(
        seconds=5
    )
    read_timeout: Annotated[Duration, at_least(timedelta(milliseconds=100))] = timedelta(seconds=15)
    #: Total time budget of one source per poll, retries included.
    source_timeout: Annotated[Duration, at_least(_SECOND)] = timedelta(seconds=45)
    retries: int = Field(default=2, ge=0, le=10)
    max_body: Size = 10 * 1024 * 1024
    max_redirects: int = Field(default=5, ge=0, le=30)
    #: After this many consecutive failures a source is polled less often...
    failure_threshold: int = Field(default=3, ge=1)
    #: ...its interval doubling per further failure, up to this.
    max_backoff: Annotated[Duration, at_least(_SECOND)] = timedelta(hours=6)
    #: A source that has yielded no item in this many successful polls is unhealthy ("empty").
    empty_polls: int = Field(default=3, ge=1)
    #: The address advocates reach the web pages at (https://watcher.example.org): absolute
    #: links in feeds start with it. Default: the address `watcher serve` listens on.
    public_url: HttpUrl | None = None
    #: A daily summary to the ops routes at this time of day (`HH:MM`, in `timezone`): sources
    #: ok / unhealthy, items and stories of the last day, failed deliveries. Off when unset.
    heartbeat: str | None = None
    #: Each poll's next time is the interval plus a random share of it up to this (≤ 10 %).
    jitter: float = Field(default=0.1, ge=0, le=0.1)
    #: On SIGTERM, in-flight polls and sends get this long to finish.
    shutdown_grace: Duration = timedelta(seconds=30)
    #: Where `watcher run` serves /healthz and /metrics (`--metrics-address` overrides).
    metrics_address: str = "127.0.0.1:9464"
    #: Processes that parse fetched bodies, beside the daemon's own (0: one per core, at most
    #: 4). Parsing never runs in the daemon's process: 1 is one worker, still under the cap.
    parse_processes: int = Field(default=0, ge=0, le=32)
    #: How much each parse process may grow by while parsing (a page that needs more fails its
    #: poll with a clear error instead of pressing the machine). Linux; 0: no cap.
    parse_memory: Size = 256 * 1024 * 1024
    #: Where the daemon keeps its PID and lock files.
    state_dir: str = "."
    #: Reports of one event this close in time can join one story.
    story_window: Annotated[Duration, at_least(_HOUR)] = timedelta(days=7)
    #: Items published longer ago than this never alert (they still make stories).
    max_alert_age: Annotated[Duration, at_least(_HOUR)] = timedelta(days=7)
    #: A folder of message templates that replace the shipped ones of the same name.
    templates_dir: str | None = None
    #: Refused sends (the service answered and said no) before a delivery is marked failed
    #: and the ops routes told. An unreachable channel is retried until `give_up_after`.
    delivery_attempts: int = Field(default=6, ge=1, le=50)
    #: First retry delay; it doubles per attempt (with jitter) up to `delivery_max_backoff`.
    delivery_backoff: Annotated[Duration, at_least(_SECOND)] = timedelta(seconds=30)
    delivery_max_backoff: Annotated[Duration, at_least(_SECOND)] = timedelta(hours=1)
    #: Time allowed for one send through apprise.
    delivery_timeout: Annotated[Duration, at_least(_SECOND)] = timedelta(seconds=30)
    #: A message still waiting this long after it was due is late: the ops routes hear of it
    #: once per channel outage (and again when the channel is back).
    delivery_late_after: Annotated[Duration, at_least(_MINUTE)] = timedelta(minutes=15)
    #: Fetch from loopback, private, link-local and metadata addresses (configured URLs,
    #: redirects, article pages). Off by default: a feed cannot redirect watcher into the
    #: operator's network. Turn on for intranet sources and local test setups.
    allow_private_addresses: bool = False

    @field_validator("database_url")
    @classmethod
    def _database(cls, value: str | None) -> str | None:
        if not value:  # `${DB_URL:-}`: unset, so --db, WATCHER_DATABASE_URL or the default
            return None
        found = _DATABASE_URL.match(value)
        if found and found.group(1) == "sqlite" and not found.group(3).lstrip("/"):
            raise ValueError("an in-memory database keeps nothing: give sqlite:///PATH")
        if not found:
            # only the scheme is quoted back: the rest may hold a password
            scheme = value.partition("://")[0][:30] if "://" in value else "no scheme"
            raise ValueError(
                "expected sqlite:///PATH (sqlite:///watcher.db) or a postgresql+psycopg:// "
                f"URL, got {scheme}"
            )
        return value

    @field_validator("contact")
    @classmethod
    def _contact(cls, value: str) -> str:
        # sent in the User-Agent so that an outlet can reach the operator: it must be one
        # ASCII: it goes in a request header, which takes nothing else (every fetch failed)
        if not (value.isascii() and value.isprintable() and _CONTACT.match(value)):
            raise ValueError(f"expected a web address or an e-mail address, got {short(value)}")
        return value

    @field_validator("heartbeat")
    @classmethod
    def _heartbeat_time(cls, value: str | None) -> str | None:
        return None if value is None else time_of_day(value)

    @field_validator("metrics_address", mode="before")
    @classmethod
    def _metrics_address(cls, value: Any) -> Any:
        # `metrics_address: off` unquoted is YAML's false: it means off all the same.
        if value is False:
            return "off"
        if isinstance(value, str):
            problem = address_problem(value, off=True)
            if problem:
                raise ValueError(problem)
        return value

    @field_validator("public_url")
    @classmethod
    def _site_address(cls, value: HttpUrl | None) -> HttpUrl | None:
        # Links are made by appending paths (/stories/12): a query or fragment would end up
        # in the middle of every one of them.
        parts = urlsplit(str(value)) if value is not None else None
        if parts is not None and (parts.query or parts.fragment):
            raise ValueError(
                f"expected the site's address without ?query or #fragment, got {str(value)!r}"
            )
        return value


def _other_concepts(concepts: Mapping[str, Any], name: str, key: str) -> tuple[str, ...]:
    """The other concepts a concept's `key` (`includes`, `not_inside`) names; a located error
    when it is not a list of them."""
    others = concepts[name][key]
    if not isinstance(others, list) or not all(
        isinstance(o, str) and o in concepts and o != name for o in others
    ):
        known = ", ".join(k for k in concepts if k != name)
        raise LocatedError(
            ("concepts", name, key),
            f"expected a list of other concepts (one of: {known}), got {short(others)}",
        )
    return tuple(others)


def _with_included(
    concepts: dict[str, Any],
    included: Mapping[str, tuple[str, ...]],
    name: str,
    path: tuple[str, ...],
) -> dict[str, Any]:
    """A concept's terms with those of the concepts it includes (and they include), per
    language, each term once; its own gloss and `not_inside` stay its own."""
    if name in path:
        cycle = " → ".join((*path[path.index(name) :], name))
        raise LocatedError(("concepts", path[0], INCLUDES), f"concepts include each other: {cycle}")
    merged = dict(concepts[name])
    for other in included.get(name, ()):
        for lang, terms in _with_included(concepts, included, other, (*path, name)).items():
            if lang not in (GLOSS, NOT_INSIDE):
                merged[lang] = list(dict.fromkeys((*merged.get(lang, ()), *terms)))
    return merged


class Config(Model):
    sources: tuple[Source, ...]
    #: Named term groups, per language, that rules refer to by name.
    concepts: dict[Identifier, dict[str, tuple[str, ...]]] = Field(default_factory=dict)
    rules: tuple[Rule, ...] = ()
    channels: tuple[Channel, ...] = ()
    routes: tuple[Route, ...] = ()
    settings: Settings = Settings()

    @field_validator("concepts", mode="before")
    @classmethod
    def _concept_terms(cls, value: Any) -> Any:
        if isinstance(value, dict):
            included: dict[str, tuple[str, ...]] = {}
            for name, terms in value.items():
                if isinstance(terms, dict) and INCLUDES in terms:
                    included[name] = _other_concepts(value, name, INCLUDES)
                    terms = value[name] = {k: v for k, v in terms.items() if k != INCLUDES}
                if isinstance(terms, dict) and "gloss" in terms:
                    gloss = terms["gloss"]
                    if not isinstance(gloss, str) or not gloss.strip():
                        raise LocatedError(
                            ("concepts", name, "gloss"),
                            f"expected a short English gloss, got {short(gloss)}",
                        )
                    terms = {k: v for k, v in terms.items() if k != "gloss"}
                    value[name] = {**terms, GLOSS: (gloss.strip(),)}
                if isinstance(terms, dict) and NOT_INSIDE in terms:
                    hiders = _other_concepts(value, name, NOT_INSIDE)
                    terms = {k: v for k, v in terms.items() if k != NOT_INSIDE}
                    value[name] = {**value[name], NOT_INSIDE: hiders}
                if not isinstance(terms, dict):
                    raise LocatedError(
                        ("concepts", name),
                        f"expected terms per language like {{en: [...], ko: [...]}}, "
                        f"got {short(terms)}",
                    )
                try:
                    _check_terms(terms)
                except ValueError as exc:
                    raise LocatedError(("concepts", name), str(exc)) from None
            for name in included:
                value[name] = _with_included(value, included, name, ())
        return value

    @model_validator(mode="after")
    def _references_hold(self) -> Config:
        problems = reference_problems(self)
        if problems:
            raise ReferenceProblem(*problems[0])
        return self

    def source(self, source_id: str) -> Source:
        for source in self.sources:
            if source.id == source_id:
                return source
        raise KeyError(source_id)


class LocatedError(ValueError):
    """A cross-field error that knows which path it belongs to."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


class ReferenceProblem(LocatedError):
    """The first of `reference_problems`, raised by a valid-looking model (the loader reports
    them all itself, from the file's data, whatever else is wrong)."""


def _get(entry: Any, key: str) -> Any:
    """`key` of a mapping as written in the file, or the attribute of a model."""
    if isinstance(entry, Mapping):
        return entry.get(key)
    return getattr(entry, key, None)


def _entries(value: Any) -> list[tuple[int, Any]]:
    return list(enumerate(value)) if isinstance(value, list | tuple) else []


def reference_problems(config: Any) -> list[tuple[tuple[str | int, ...], str]]:
    """(path, message) for every reference between sections that does not hold: a duplicate
    id, a rule naming a concept that is not defined or a route a channel that is not, `near`
    with one group, a digest schedule on an immediate route. `config` is the file's data as
    written (mappings and lists, any of them malformed: what is not there is skipped) or a
    `Config`: the loader lists them all in one run with the fields' own problems, which stop
    pydantic before its model validators run."""
    out: list[tuple[tuple[str | int, ...], str]] = []
    for section in ("sources", "channels"):
        seen: set[str] = set()
        for index, entry in _entries(_get(config, section)):
            entry_id = _get(entry, "id")
            if not isinstance(entry_id, str):
                continue
            if entry_id in seen:
                out.append(
                    ((section, index, "id"), f"duplicate id {entry_id!r} (ids must be unique)")
                )
            seen.add(entry_id)
    concepts = _get(config, "concepts")
    # concepts that are not a mapping are a problem of their own: no rule's name is told again
    names = (
        [str(n) for n in concepts]
        if isinstance(concepts, Mapping)
        else ([] if concepts is None else None)  # none defined: every name is unknown
    )
    seen = set()
    for index, rule in _entries(_get(config, "rules")):
        rule_id = _get(rule, "id")
        if isinstance(rule_id, str):
            if rule_id in seen:
                out.append(
                    (
                        ("rules", index, "id"),
                        f"rule {rule_id!r}: duplicate id (rule ids must be unique)",
                    )
                )
            seen.add(rule_id)
        groups: list[tuple[tuple[str | int, ...], int, Any]] = []
        for key in ("all_of", "none_of", "none_in_sentence", "context"):
            groups += [((key,), i, g) for i, g in _entries(_get(rule, key))]
        for e, esc in _entries(_get(rule, "escalate")):
            groups += [(("escalate", e, "any_of"), i, g) for i, g in _entries(_get(esc, "any_of"))]
        for where, i, group in groups:
            if names is not None and isinstance(group, str) and group and group not in names:
                close = difflib.get_close_matches(group, names, n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                out.append(
                    (
                        ("rules", index, *where, i),
                        f"rule {rule_id!r}: unknown concept {group!r}{hint}",
                    )
                )
        if _get(rule, "near") is not None and len(_entries(_get(rule, "all_of"))) < 2:
            out.append(
                (
                    ("rules", index, "near"),
                    f"rule {rule_id!r}: near needs at least two all_of groups",
                )
            )
    written = [_get(e, "id") for _, e in _entries(_get(config, "channels"))]
    channels = list(dict.fromkeys(c for c in written if isinstance(c, str)))
    seen = set()
    for index, route in _entries(_get(config, "routes")):
        route_id = _get(route, "id")
        key = route_id if isinstance(route_id, str) and route_id else f"route-{index + 1}"
        if key in seen:
            out.append((("routes", index, "id"), f"duplicate route id {key!r}"))
        seen.add(key)
        for n, channel in _entries(_get(route, "channels")):
            if isinstance(channel, str) and channel not in channels:
                close = difflib.get_close_matches(channel, channels, n=1, cutoff=0.6)
                if close:
                    hint = f" (did you mean {close[0]!r}?)"
                else:
                    hint = f" (channels: {', '.join(channels)})" if channels else " (no channels)"
                out.append((("routes", index, "channels", n), f"unknown channel {channel!r}{hint}"))
        if _get(route, "mode") in (None, "immediate") and _get(route, "digest") is not None:
            out.append((("routes", index, "digest"), "a digest schedule needs mode: digest"))
    return out


def short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
