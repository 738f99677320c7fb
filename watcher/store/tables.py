"""The database schema as SQLAlchemy Core tables; Alembic's target metadata. No queries here.

Core tables rather than ORM classes: start-up stays light (the ORM import costs ~0.1 s of CPU
on every `watcher run --once`), and store.py speaks SQL expressions anyway.

Times are stored as aware UTC datetimes through `UTCDateTime` (SQLite keeps text without a
zone, PostgreSQL keeps timestamptz; both come back aware UTC).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
    false,
)
from sqlalchemy.engine import Connection, Dialect

#: Constraint names fixed by convention, so migrations are the same on both databases.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime, stored in UTC, returned aware in UTC; naive values are refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        stamp: datetime = value
        if stamp.tzinfo is None:
            return stamp.replace(tzinfo=UTC)
        return stamp.astimezone(UTC)


#: 64-bit ids on PostgreSQL; SQLite's INTEGER PRIMARY KEY is already 64-bit (and autoincrements).
ID = BigInteger().with_variant(Integer, "sqlite")

#: One configured source and its fetch state (kept when the source leaves the config).
sources = Table(
    "sources",
    metadata,
    Column("id", String(100), primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("url", Text, nullable=False),
    Column("etag", Text),
    Column("last_modified", Text),
    #: SHA-256 of the last body parsed: an unchanged body is not parsed again.
    Column("body_hash", String(64)),
    Column("last_polled_at", UTCDateTime),
    Column("last_success_at", UTCDateTime),
    Column("last_error", Text),
    Column("last_error_at", UTCDateTime),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    #: When the source is due again (interval, or backoff after failures).
    Column("next_due_at", UTCDateTime),
    #: Items parsed on the last successful poll (zero after some is a layout change).
    Column("last_item_count", Integer),
    Column("created_at", UTCDateTime, nullable=False),
    #: Successful polls, 304 and unchanged bodies included (health: "parsed nothing in N").
    Column("ok_polls", Integer, nullable=False, default=0, server_default="0"),
    #: The last poll that parsed at least one item, and the last that stored a new one.
    Column("items_seen_at", UTCDateTime),
    Column("last_new_at", UTCDateTime),
    #: What the last parsed poll found wrong with its items (None: nothing).
    Column("poll_problem", Text),
    #: Where a permanent redirect (301/308) led on the last poll.
    Column("moved_to", Text),
    #: The assessed health (None: ok), why, and since when: each change is told once.
    Column("health", String(20)),
    Column("health_reason", Text),
    Column("health_since", UTCDateTime),
    #: Items it first carried, counted as they are stored (pages show it without counting).
    Column("item_count", Integer, nullable=False, default=0, server_default="0"),
    #: The newest publication date among the items of its last parsed poll (None: undated).
    Column("newest_published_at", UTCDateTime),
    #: While unhealthy: polls in a row that found nothing wrong (`health.settled`: recovery
    #: is told only after several).
    Column("clean_polls", Integer, nullable=False, default=0, server_default="0"),
)

#: One distinct news item; `key` is its stable identity.
items = Table(
    "items",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("key", String(200), nullable=False, unique=True),
    #: The source that first carried the item.
    Column("source_id", ForeignKey("sources.id"), nullable=False),
    Column("url", Text),
    Column("title", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("lang", String(16)),
    Column("published_at", UTCDateTime),
    Column("published_raw", Text),
    #: The day alone its outlet gave (`items.written_day`: no time of day), else None:
    #: `published_at` is then that day's midnight where the source is, which no view or filter
    #: takes as a time (`store.search.within`).
    Column("published_day", Date),
    Column("fetched_at", UTCDateTime, nullable=False),
    #: Stored on a source's first poll: backlog, never alerted on.
    Column("baseline", Boolean, nullable=False, default=False),
    #: Hash of title+text, to notice edits.
    Column("content_hash", String(64), nullable=False),
    Index("ix_items_fetched_at", "fetched_at"),
    #: A source's history of new items (health's typical gap; items per source).
    Index("ix_items_source_id_fetched_at", "source_id", "fetched_at"),
)

#: Every source that carried an item (an item is stored once across sources).
item_sources = Table(
    "item_sources",
    metadata,
    Column("item_id", ID, ForeignKey("items.id", ondelete="CASCADE"), primary_key=True),
    Column("source_id", ForeignKey("sources.id"), primary_key=True),
    Column("first_seen_at", UTCDateTime, nullable=False),
)

#: The previous title and text of an item that an outlet edited materially.
item_revisions = Table(
    "item_revisions",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("item_id", ID, ForeignKey("items.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("changed_at", UTCDateTime, nullable=False),
    Column("old_title", Text, nullable=False),
    Column("old_text", Text, nullable=False),
)


#: What the rules found in an item: one row per (item, rule), with what was extracted.
matches = Table(
    "matches",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("item_id", ID, ForeignKey("items.id", ondelete="CASCADE"), nullable=False),
    Column("rule_id", String(100), nullable=False),
    Column("event", String(100), nullable=False),
    Column("severity", String(16), nullable=False),
    #: Number of people the item states, when it states one.
    Column("people", Integer),
    #: The item gave that number as approximate ("about 600", 600여 명, 约500名, 約600人).
    Column("people_approximate", Boolean, nullable=False, default=False, server_default=false()),
    #: Canonical place names, as a JSON list.
    Column("places", Text, nullable=False, default="[]"),
    #: ISO dates the item states, as a JSON list.
    Column("dates", Text, nullable=False, default="[]"),
    #: Why the rule fired: its terms, with English glosses (Matcher.why).
    Column("why", Text),
    Column("matched_at", UTCDateTime, nullable=False),
    UniqueConstraint("item_id", "rule_id", name="uq_matches_item_id_rule_id"),
    Index("ix_matches_event_matched_at", "event", "matched_at"),
)


#: One event reported by one or more outlets: what an alert is about.
stories = Table(
    "stories",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    #: Event types, as a JSON list (every type any of its reports states).
    Column("events", Text, nullable=False),
    Column("severity", String(16), nullable=False),
    #: The first report's title (the story's name in lists).
    Column("title", Text, nullable=False),
    Column("people", Integer),
    #: `people` was taken from a report that gave it as approximate: shown "~600 people".
    Column("people_approximate", Boolean, nullable=False, default=False, server_default=false()),
    #: Canonical place names, as a JSON list.
    Column("places", Text, nullable=False),
    Column("first_seen_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    #: Raised when severity rises or the number of people changes materially.
    Column("revision", Integer, nullable=False),
    Column("item_count", Integer, nullable=False),
    #: The event clock of its founding report (publication, else fetch time): candidates for a
    #: new report are looked up by this, so the cost does not grow with history.
    Column("event_at", UTCDateTime),
    #: The day alone its founding report's outlet gave (`items.published_day`), else None.
    Column("event_day", Date),
    #: open | not_relevant (an advocate said so: no further alerts) | merged (its reports
    #: moved to `merged_into`). Corrections are recorded in `story_corrections`.
    Column("status", String(16), nullable=False, server_default="open"),
    Column("merged_into", ID),
    Index("ix_stories_updated_at", "updated_at"),
    Index("ix_stories_event_at", "event_at"),
)

#: The reports of a story; an item belongs to at most one story.
#: What advocates corrected: who, when, why, and what it moved, so that it can be undone.
story_corrections = Table(
    "story_corrections",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("story_id", ID, nullable=False),
    #: not_relevant | merge | split
    Column("action", String(16), nullable=False),
    #: merge: the story merged into `story_id`; split: the story the report went to.
    Column("other_story_id", ID),
    Column("by", String(100), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("reason", Text, nullable=False),
    #: What the correction moved and withdrew (item and delivery ids), as JSON: what undo reverts.
    Column("detail", Text, nullable=False),
    Column("undone_at", UTCDateTime),
    Column("undone_by", String(100)),
    Index("ix_story_corrections_story_id", "story_id"),
)

story_items = Table(
    "story_items",
    metadata,
    Column("story_id", ID, ForeignKey("stories.id", ondelete="CASCADE"), nullable=False),
    Column("item_id", ID, ForeignKey("items.id", ondelete="CASCADE"), primary_key=True),
    Column("added_at", UTCDateTime, nullable=False),
    Column("revision", Integer, nullable=False),
    #: What grouping compares a later report with (stories.Facts.as_json), as JSON.
    Column("facts", Text),
    Index("ix_story_items_story_id", "story_id"),
)

#: The outbox: one message to send to one channel, written in the poll's transaction.
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    #: None for operator alerts and tests.
    Column("story_id", ID, ForeignKey("stories.id", ondelete="CASCADE")),
    Column("revision", Integer, nullable=False),
    Column("route", String(100), nullable=False),
    Column("channel", String(100), nullable=False),
    #: alert | update | reminder | digest | ops | removed (a report gone from its source) |
    #: retraction (its story was marked not relevant after a message went out) | reinstated
    Column("kind", String(16), nullable=False),
    #: 0 for the first message of a revision; reminders count up.
    Column("seq", Integer, nullable=False),
    #: pending | sent | failed | uncertain | expired | superseded | silenced | skipped |
    #: withdrawn (its story was marked not relevant or merged away: `watcher story`)
    Column("status", String(16), nullable=False),
    Column("due_at", UTCDateTime, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", Text),
    Column("sent_at", UTCDateTime),
    #: Operator alerts carry their text; story messages are rendered at send time.
    Column("subject", Text),
    Column("body", Text),
    Column("created_at", UTCDateTime, nullable=False),
    #: A sending process holds the delivery until then (replicas skip it; a crash frees it).
    Column("claimed_until", UTCDateTime),
    #: Once sent, what the message said of its story (severity, events, people, places) as
    #: JSON: what the next update on the channel says changed ("60 → 600 people").
    Column("told", Text),
    UniqueConstraint(
        "story_id", "revision", "route", "channel", "seq", name="uq_deliveries_story_id"
    ),
    Index("ix_deliveries_status_due_at", "status", "due_at"),
)

#: Every send attempt, with the message as sent.
delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("delivery_id", ID, ForeignKey("deliveries.id", ondelete="CASCADE"), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    #: sent | failed (refused) | unreachable | uncertain | silenced | skipped | expired
    Column("outcome", String(16), nullable=False),
    Column("error", Text),
    Column("elapsed", Float),
    Column("subject", Text),
    Column("body", Text),
    Index("ix_delivery_attempts_delivery_id", "delivery_id"),
)

#: A channel that could not be reached: its queue waits, in order, and is retried as one.
#: The row goes when a send gets through.
channel_status = Table(
    "channel_status",
    metadata,
    Column("channel", String(100), primary_key=True),
    Column("down_since", UTCDateTime, nullable=False),
    Column("next_try_at", UTCDateTime, nullable=False),
    #: Failed tries in a row; the next try backs off by it.
    Column("failures", Integer, nullable=False),
    Column("last_error", Text),
    #: When the ops routes were told this channel's messages are late (once per outage).
    Column("late_told_at", UTCDateTime),
)

#: The URL each channel had when a daemon last started or reloaded, as a hash (never the URL:
#: it may hold a password): a channel whose URL changed is no longer the one that was down.
channel_urls = Table(
    "channel_urls",
    metadata,
    Column("channel", String(100), primary_key=True),
    Column("url_hash", String(64), nullable=False),
)

#: Muted stories: recorded, not sent, while a silence matches.
silences = Table(
    "silences",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    #: {"source": "dailynk-*", "event": "detention"}, as JSON; all must match.
    Column("matchers", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_by", String(100)),
    Column("starts_at", UTCDateTime, nullable=False),
    Column("ends_at", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)


def _create_search_index(_target: MetaData, connection: Connection, **_kw: Any) -> None:
    """A database created in one step (`create_all`) gets the search index that migration 0009
    builds: it lives outside this metadata (an FTS5 virtual table, a tsvector and GIN index)."""
    from watcher.store.search import create_index

    create_index(connection)


event.listen(metadata, "after_create", _create_search_index)

#: Items `watcher db prune` dropped (unmatched and old), by a hash of their key: a dropped item
#: seen again in a feed is not new, so it is neither stored nor matched nor alerted on again.
#: A row costs about 65 bytes on SQLite; the item it replaces about 1.7 KB (`store.prune`).
pruned_items = Table(
    "pruned_items",
    metadata,
    #: The first 128 bits of SHA-256 of the item's key, in hex (`prune.key_hash`).
    Column("key_hash", String(32), primary_key=True),
    Column("pruned_at", UTCDateTime, nullable=False),
    # The key is the row: no second copy of it in a rowid table (SQLite).
    sqlite_with_rowid=False,
)

#: Evidence (`watcher.evidence`): bytes as fetched, content-addressed and compressed, written
#: once and never changed. A feed response many matched items came in is kept once.
evidence_blobs = Table(
    "evidence_blobs",
    metadata,
    #: SHA-256 of the uncompressed bytes, hex.
    Column("sha256", String(64), primary_key=True),
    Column("size", Integer, nullable=False),
    #: zlib-compressed.
    Column("data", LargeBinary, nullable=False),
)

#: The first-seen record of a matched item: one per item and kind (feed | article).
evidence = Table(
    "evidence",
    metadata,
    Column("id", ID, primary_key=True, autoincrement=True),
    Column("item_id", ID, ForeignKey("items.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("url", Text, nullable=False),
    Column("final_url", Text, nullable=False),
    Column("status", Integer, nullable=False),
    #: The response's header lines, as a JSON list of [name, value].
    Column("headers", Text, nullable=False),
    Column("fetched_at", UTCDateTime, nullable=False),
    Column("body_sha256", String(64), nullable=False),
    #: SHA-256 of the text the rules read (`evidence.text_bytes`), also kept as a blob.
    Column("text_sha256", String(64), nullable=False),
    UniqueConstraint("item_id", "kind", name="uq_evidence_item_kind"),
)

#: Re-checks of matched items at their source (`watcher.recheck`): 1, 7 and 30 days after
#: they were first seen, a 404 or 410 marks the report removed at source, and a changed page
#: makes a revision. The first-seen evidence is never touched.
item_checks = Table(
    "item_checks",
    metadata,
    Column("item_id", ID, ForeignKey("items.id", ondelete="CASCADE"), primary_key=True),
    Column("first_seen_at", UTCDateTime, nullable=False),
    #: When the next check is due; None when all are done (or the report was removed).
    Column("due_at", UTCDateTime),
    #: Checks done so far (0 to 3).
    Column("done", Integer, nullable=False),
    Column("last_checked_at", UTCDateTime),
    #: The last check's HTTP status, or 0 when it got no answer.
    Column("last_status", Integer),
    Column("removed_at", UTCDateTime),
    #: The page's main text as the last check read it, and its SHA-256: what a later check
    #: compares with (a feed item's own text is a summary, not the page).
    Column("page_sha256", String(64)),
    Column("page_text", Text),
    Index("ix_item_checks_due_at", "due_at"),
)

#: Article pages still to fetch (`fetch_article` sources): an item whose page failed keeps its
#: listing text and is tried again on later polls, with a growing wait, until its page arrives
#: (the row goes) or `tries` reaches the limit (`pipeline.ARTICLE_TRIES`; the row goes too).
article_retries = Table(
    "article_retries",
    metadata,
    Column("item_id", ID, ForeignKey("items.id", ondelete="CASCADE"), primary_key=True),
    #: The source whose poll fetches it again.
    Column("source_id", ForeignKey("sources.id"), nullable=False),
    #: Fetches that failed so far, and the last one's error.
    Column("tries", Integer, nullable=False),
    Column("last_error", Text, nullable=False),
    Column("last_tried_at", UTCDateTime, nullable=False),
    Index("ix_article_retries_source_id", "source_id"),
)
