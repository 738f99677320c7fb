"""The frozen values passed between pipeline stages. No logic beyond validation.

Datetimes are aware and in UTC; keys are never empty. Imports nothing from watcher.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any


def check_aware(value: datetime | None, name: str) -> None:
    if value is not None and (value.tzinfo is None or value.utcoffset() != UTC.utcoffset(None)):
        raise ValueError(f"{name} must be an aware UTC datetime, got {value!r}")


@dataclass(frozen=True, kw_only=True, slots=True)
class FetchResult:
    """What one HTTP fetch of a source gave. Faults are values (`error`), never exceptions."""

    source_id: str
    url: str
    #: URL after redirects.
    final_url: str
    #: HTTP status, or 0 when no response came (timeout, refused, too large…).
    status: int
    body: bytes | None = None
    #: Charset named by the Content-Type header, if any.
    encoding: str | None = None
    content_type: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    #: The server said 304: nothing changed since the last fetch.
    not_modified: bool = False
    #: One line saying what went wrong, or None.
    error: str | None = None
    #: Seconds from the first request to the last byte (retries included).
    elapsed: float = 0.0
    #: HTTP requests made (1 + retries).
    attempts: int = 1
    #: Where a permanent redirect (301/308) on the way led, when one did.
    moved_to: str | None = None
    #: The response's header lines as received, in order (kept as evidence).
    headers: tuple[tuple[str, str], ...] = ()
    #: Seconds the server asked to be left alone (Retry-After on the 429 or 5xx that ended
    #: the fetch), or None: the source's next poll waits at least this long (capped).
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, kw_only=True, slots=True)
class PendingArticle:
    """A stored item of a `fetch_article` source whose article page has not arrived yet."""

    #: The item as stored (its listing text).
    item: Item
    #: Fetches of its page that failed so far, the last one's error, and when it was.
    tries: int
    last_error: str
    last_tried_at: datetime


@dataclass(frozen=True, kw_only=True, slots=True)
class Item:
    """One normalised news item, as a parser made it (see items.make_item)."""

    #: Stable identity: the canonical URL, else source id + guid, else a hash of title+date.
    key: str
    source_id: str
    #: Canonical URL (tracking parameters and fragment removed), or None.
    url: str | None
    title: str
    #: Summary or article text: HTML stripped, whitespace folded, Unicode NFC.
    text: str
    lang: str | None
    published_at: datetime | None
    #: The date as the source wrote it.
    published_raw: str | None
    fetched_at: datetime
    #: Stored on the source's first poll: backlog, never alerted on.
    baseline: bool = False
    #: The source gave no title (`title` is then `items.UNTITLED`): health counts it, and a
    #: stored item keeps the title it was found with (not stored: an item read back is False).
    untitled: bool = False

    def __post_init__(self) -> None:
        if not self.key:
            raise ValueError("Item.key must not be empty")
        check_aware(self.published_at, "published_at")
        check_aware(self.fetched_at, "fetched_at")


@dataclass(frozen=True, kw_only=True, slots=True)
class SourceState:
    """A source's stored fetch state, as `watcher sources list` shows it."""

    id: str
    kind: str
    url: str
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None
    last_polled_at: datetime | None = None
    last_success_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    consecutive_failures: int = 0
    next_due_at: datetime | None = None
    last_item_count: int | None = None
    items_stored: int = 0
    created_at: datetime | None = None
    #: Successful polls (304 and unchanged bodies included).
    ok_polls: int = 0
    #: The last poll that parsed an item, and the last that stored a new one.
    items_seen_at: datetime | None = None
    last_new_at: datetime | None = None
    #: What the last parsed poll found wrong with its items.
    poll_problem: str | None = None
    #: Where a permanent redirect led on the last poll.
    moved_to: str | None = None
    #: The assessed health (None: ok) and why (`watcher.health`).
    health: str | None = None
    health_reason: str | None = None
    health_since: datetime | None = None
    #: The newest publication date among the items its last parsed poll yielded (None: none
    #: was dated): a source whose news is old is stale from its first polls.
    newest_published_at: datetime | None = None
    #: While unhealthy: polls in a row that found nothing wrong (`health.settled`).
    clean_polls: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class MatchRecord:
    """One rule's match on one item, as stored."""

    item_key: str
    rule_id: str
    event: str
    severity: str
    people: int | None = None
    #: The source gave `people` as approximate ("about 600", 600여 명): shown "~600 people".
    people_approximate: bool = False
    places: tuple[str, ...] = ()
    dates: tuple[str, ...] = ()
    #: Why the rule fired, in one line with glosses ("북송 (sent back) near 탈북민 (…)").
    why: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class PollSuccess:
    """The fetch state a successful poll leaves on its source."""

    source_id: str
    polled_at: datetime
    next_due_at: datetime
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None
    item_count: int | None = None
    #: What looks wrong with the parsed items (`health.item_problem`), or None.
    problem: str | None = None
    #: Where a permanent redirect led.
    moved_to: str | None = None
    #: The newest publication date among the parsed items (`health.newest_published`).
    newest_published: datetime | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class HealthChange:
    """A source's assessed health changed: what to keep, and what to tell the ops routes."""

    source_id: str
    #: The stored health it was assessed from, and the new one (None: ok).
    old: str | None
    new: str | None
    reason: str | None
    #: The ops notice, or None when the change is not worth one (e.g. to `disabled`).
    subject: str | None = None
    body: str | None = None
    #: What the source keeps for recovery (`health.settled`): clean polls in a row.
    clean_polls: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class SaveResult:
    """What storing one poll's items did."""

    new: tuple[Item, ...] = ()
    updated: tuple[Item, ...] = ()
    #: Items already stored (by this or another source), unchanged.
    seen: int = 0
    #: Matches stored for the new and updated items.
    matches: tuple[MatchRecord, ...] = ()
    #: Stories made or joined by the new matched items, in the same transaction.
    stories: tuple[StoryChange, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class PollReport:
    """The outcome of polling one source, for logs, the CLI and metrics."""

    source_id: str
    #: ok | not_modified | unchanged | failed | skipped
    outcome: str
    status: int = 0
    parsed: int = 0
    new: int = 0
    updated: int = 0
    #: New or updated items that matched a rule.
    matched: int = 0
    #: Event types of the stored matches, one per matched item and event.
    events: tuple[str, ...] = ()
    #: Stories made or joined by this poll.
    stories: tuple[StoryChange, ...] = field(default=(), repr=False)
    error: str | None = None
    elapsed: float = 0.0


# --------------------------------------------------------------------------- alerts


@dataclass(frozen=True, kw_only=True, slots=True)
class StoryChange:
    story_id: int
    revision: int
    #: new | joined | revised | edited (an outlet edited a report already in the story)
    change: str
    item_key: str
    deliveries: int
    #: The route of each delivery queued (for the per-route metric).
    routes: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class Report:
    """One outlet's report of a story, as an alert shows it."""

    source_id: str
    #: The outlet's human name (the source's `name`, else its id).
    source_name: str
    title: str
    url: str | None = None
    published_at: datetime | None = None
    lang: str | None = None
    #: Lead or summary (already cleaned text, may be long: renderers cut it).
    text: str = ""
    #: When the outlet gave no publication time: when watcher found the report (shown as
    #: such, never as a publication time).
    found_at: datetime | None = None
    #: When the outlet gave its day but no time of day: that day as it wrote it
    #: (`items.written_day`). `published_at` is then the day's midnight, no time to show:
    #: the report is shown with its day alone.
    published_day: date | None = None


#: A report its outlet gave the day of only is counted at that day's last instant (its stored
#: midnight + this): it could be any time of that day, so a report given a time that day comes
#: first. The first report, the order of reports and a reminder's "since" all count so.
DAY_END = timedelta(days=1, microseconds=-1)


def counted_at(published_at: datetime, published_day: date | None) -> datetime:
    """When a dated report counts as published (see `DAY_END`)."""
    return published_at + DAY_END if published_day is not None else published_at


@dataclass(frozen=True, kw_only=True, slots=True)
class StoredReport:
    """One report of a stored story: the item, and when it joined the story."""

    item_id: int
    key: str
    source_id: str
    title: str
    url: str | None
    lang: str | None
    published_at: datetime | None
    fetched_at: datetime
    added_at: datetime
    text: str = ""
    #: When the outlet gave its day but no time of day: that day as it wrote it
    #: (`items.written_day` of the stored `published_raw`); `published_at` is then that
    #: day's midnight, no time the outlet gave. None when it gave a time, or no date.
    published_day: date | None = None

    @property
    def date_only(self) -> bool:
        """The outlet gave the day only: no clock time is shown for it."""
        return self.published_day is not None

    def shown(self, names: Mapping[str, str]) -> Report:
        """As an alert shows it: the outlet's name, and when undated the time it was found."""
        return Report(
            source_id=self.source_id,
            source_name=names.get(self.source_id, self.source_id),
            title=self.title,
            url=self.url,
            published_at=self.published_at,
            lang=self.lang,
            text=self.text,
            found_at=None if self.published_at else self.fetched_at,
            published_day=self.published_day,
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class StoredStory:
    """A stored story as pages, feeds and the CLI show it (the read model)."""

    id: int
    events: tuple[str, ...]
    severity: str
    title: str
    people: int | None
    places: tuple[str, ...]
    first_seen_at: datetime
    updated_at: datetime
    revision: int
    reports: tuple[StoredReport, ...] = ()
    #: Its count came from a report that gave it as approximate ("about 600", 600여 명):
    #: shown "~600 people".
    people_approximate: bool = False

    deliveries: tuple[dict[str, Any], ...] = ()
    #: Why it matched: one line per rule, with the words that fired and their glosses.
    why: tuple[str, ...] = ()
    #: open | not_relevant | merged (`watcher story`), and the story it was merged into.
    status: str = "open"
    merged_into: int | None = None

    @property
    def first(self) -> StoredReport | None:
        return self.reports[0] if self.reports else None

    @property
    def outlets(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.source_id for r in self.reports))


@dataclass(frozen=True, kw_only=True, slots=True)
class Told:
    """What a sent message said of its story: what the next update on the same channel
    says changed ("60 → 600 people"). Stored with the delivery as JSON (`as_json`)."""

    severity: str
    events: tuple[str, ...] = ()
    people: int | None = None
    #: The count was shown approximate ("~60 people"): an update says "~60 → 600 people".
    people_approximate: bool = False
    places: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "events": list(self.events),
            "people": self.people,
            "people_approximate": self.people_approximate,
            "places": list(self.places),
        }

    @classmethod
    def from_json(cls, data: Any) -> Told | None:
        """The value `as_json` wrote; None for anything else (a row written by hand, or
        by a later version with another shape): then an update names no change."""
        if not isinstance(data, dict) or not isinstance(data.get("severity"), str):
            return None
        events, places, people = data.get("events"), data.get("places"), data.get("people")
        if not isinstance(events, list) or not isinstance(places, list):
            return None
        return cls(
            severity=data["severity"],
            events=tuple(str(e) for e in events),
            people=people if isinstance(people, int) and not isinstance(people, bool) else None,
            people_approximate=data.get("people_approximate") is True,
            places=tuple(str(p) for p in places),
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class AlertView:
    """Everything a message about one story needs; built at send time."""

    #: alert (first message) | update (more outlets, severity or count changed) | reminder |
    #: removed (a report of the story is gone at its source: a re-check got 404 or 410) |
    #: retraction (an advocate marked the story not relevant after a message about it went
    #: out) | reinstated (that correction was undone after the retraction went out)
    kind: str
    story_id: int
    revision: int
    events: tuple[str, ...]
    severity: str
    rules: tuple[str, ...]
    people: int | None = None
    #: The story gives `people` as approximate ("about 600", 600여 명): shown "~600 people".
    people_approximate: bool = False
    places: tuple[str, ...] = ()
    dates: tuple[str, ...] = ()
    #: The first report of the story, then the others in the order they came.
    first: Report
    others: tuple[Report, ...] = ()
    #: For updates: the outlets added since the last message on this channel.
    new_outlets: tuple[str, ...] = ()
    #: For updates: what the last message on this channel said of the story (None: no
    #: message was sent there, or it was sent before watcher kept this). What changed since
    #: is `told` against it.
    before: Told | None = None
    #: The story's web page (``{settings.public_url}/stories/{story_id}``), or None when no
    #: `public_url` is set: then messages link no story page.
    story_url: str | None = None
    #: The story's reports removed at source ("Daily NK: title", the outlet's name and the
    #: report's title, in the order of the reports), for every kind: a "removed" message lists
    #: them, any other says so in one line. Empty: the message is as it was before.
    removed: tuple[str, ...] = ()
    #: For a retraction: who marked the story not relevant and why (`watcher story mark`);
    #: for a reinstatement: who undid it (no reason). Operator text, escaped like any other.
    corrected_by: str = ""
    correction_reason: str = ""

    @property
    def told(self) -> Told:
        """What a message rendered from this view says of the story."""
        return Told(
            severity=self.severity,
            events=self.events,
            people=self.people,
            people_approximate=self.people_approximate,
            places=self.places,
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Message:
    """A rendered message: what apprise sends (`format`: html, markdown or text)."""

    title: str
    body: str
    format: str
    #: The highest severity it tells of (None: an operator notice), which sets how loudly
    #: services that can show it do (colour, priority): `outbox.NOTIFY_TYPES`.
    severity: str | None = None
    #: The stories it shows (a digest cut to fit the channel leaves some out): what the
    #: channel was told about, for the next update to compare with.
    stories: tuple[int, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class Delivery:
    """One message for one channel about one story revision: the outbox's row."""

    id: int
    story_id: int | None
    revision: int
    route: str
    channel: str
    kind: str
    seq: int
    status: str
    due_at: datetime
    attempts: int
    last_error: str | None
    sent_at: datetime | None
    subject: str | None
    body: str | None
    created_at: datetime
    claimed_until: datetime | None = None
    #: Once sent: what the message said of its story, as `Told.as_json` (JSON text).
    told: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ChannelStatus:
    """A channel that could not be reached: its messages wait, in order, for `next_try_at`."""

    channel: str
    down_since: datetime
    next_try_at: datetime
    failures: int
    last_error: str | None
    late_told_at: datetime | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Silence:
    """Mutes deliveries whose labels match, from `starts_at` to `ends_at`, with a reason."""

    id: int
    matchers: dict[str, str]
    reason: str
    created_by: str | None
    starts_at: datetime
    ends_at: datetime
