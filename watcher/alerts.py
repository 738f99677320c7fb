"""Stories and the outbox, written in the poll's own transaction (the transactional outbox).

`Alerting` is handed to `Store.save_items`; after the items and their matches are inserted it
groups each newly matched item into a story and writes the deliveries the routes ask for,
on the same connection: a crash either keeps items, matches, stories and deliveries, or none.
Messages are rendered later, at send time (so `group_wait` can gather more outlets).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.engine import Connection

from watcher import routing
from watcher import stories as st
from watcher import tables as t
from watcher.config import SEVERITIES, Config, Route
from watcher.types import Item, MatchRecord

log = logging.getLogger(__name__)

#: The PostgreSQL advisory lock under which stories are assigned (any fixed 64-bit number).
STORY_LOCK = 0x57A7C4E5


@dataclass(frozen=True, kw_only=True, slots=True)
class StoryChange:
    story_id: int
    revision: int
    #: new | joined | revised
    change: str
    item_key: str
    deliveries: int
    #: The route of each delivery queued (for the per-route metric).
    routes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Alerting:
    """The routing policy of one configuration (pure data; `__call__` does the writing)."""

    routes: tuple[Route, ...]
    window: timedelta
    max_age: timedelta
    timezone: str
    tags: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Config) -> Alerting:
        return cls(
            routes=config.routes,
            window=config.settings.story_window,
            max_age=config.settings.max_alert_age,
            timezone=config.settings.timezone,
            tags={s.id: s.tags for s in config.sources},
        )

    def __call__(
        self,
        conn: Connection,
        items: Sequence[Item],
        matches: Sequence[MatchRecord],
        ids: Mapping[str, int],
        now: datetime,
    ) -> list[StoryChange]:
        by_item: dict[str, list[MatchRecord]] = defaultdict(list)
        for m in matches:
            by_item[m.item_key].append(m)
        todo = [i for i in items if i.key in by_item and i.key in ids]
        if not todo:
            return []
        if conn.dialect.name == "postgresql":
            # Replicas polling different outlets of one event must not both open a story:
            # story assignment is serialised across them, for this transaction only.
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": STORY_LOCK})
        # One clock, and an order that does not depend on which source answered first.
        todo.sort(key=lambda i: (_when(i), i.key))
        changes = []
        for item in todo:
            facts = _facts(item, by_item[item.key], self.tags.get(item.source_id, ()))
            candidates = _candidates(conn, facts.at, self.window)
            story = st.choose(facts, candidates, self.window)
            if story is None:
                story = _insert_story(conn, facts, now)
                change, kind = "new", "alert"
            else:
                story, material = st.joined(story, facts, now)
                _update_story(conn, story)
                change, kind = ("revised", "update") if material else ("joined", "")
            conn.execute(
                t.story_items.insert().values(
                    story_id=story.id,
                    item_id=ids[item.key],
                    added_at=now,
                    revision=story.revision,
                    facts=json.dumps(facts.as_json(), ensure_ascii=False),
                )
            )
            queued: list[routing.Planned] = []
            if kind and self._alertable(item, now):
                tags, langs = _labels(conn, story.id, self.tags)
                planned = routing.plan(
                    self.routes,
                    story,
                    kind=kind,
                    tags=tags | set(facts.tags),
                    langs=langs | ({facts.lang} if facts.lang else set()),
                    now=now,
                    default_tz=self.timezone,
                )
                queued = _insert_deliveries(conn, story, planned, now)
            changes.append(
                StoryChange(
                    story_id=story.id,
                    revision=story.revision,
                    change=change,
                    item_key=item.key,
                    deliveries=len(queued),
                    routes=tuple(p.route for p in queued),
                )
            )
        return changes

    def _alertable(self, item: Item, now: datetime) -> bool:
        """Baseline backlog never alerts, nor does news older than max_alert_age."""
        return not item.baseline and now - _when(item) <= self.max_age


def _when(item: Item) -> datetime:
    return item.published_at or item.fetched_at


def _facts(item: Item, matches: Sequence[MatchRecord], tags: tuple[str, ...]) -> st.Facts:
    first = matches[0]
    return st.Facts(
        item_key=item.key,
        source_id=item.source_id,
        title=item.title,
        at=_when(item),
        dated=item.published_at is not None,
        events=frozenset(m.event for m in matches),
        severity=max((m.severity for m in matches), key=SEVERITIES.index),
        rules=tuple(m.rule_id for m in matches),
        people=first.people,
        places=first.places,
        lang=item.lang,
        tags=tags,
        names=st.names_in(item.title, item.text),
    )


def _candidates(conn: Connection, at: datetime, window: timedelta) -> list[st.Story]:
    """Stories founded within `window` of `at` on the event clock (a report is compared with
    a story's founding report), with the facts of their first reports: an index range on
    `event_at`, so the cost stays flat as history grows."""
    rows = conn.execute(
        select(t.stories)
        .where(t.stories.c.event_at >= at - window)
        .where(t.stories.c.event_at <= at + window)
        .order_by(t.stories.c.id)
    ).all()
    if not rows:
        return []
    reports: dict[int, list[st.Facts]] = defaultdict(list)
    # The same index range again rather than an IN list of ids: one statement shape, however
    # many stories (a list's length would make a new cached statement each time).
    query = (
        select(
            t.story_items.c.story_id,
            t.story_items.c.facts,
            t.items.c.key,
            t.items.c.title,
            t.items.c.published_at,
            t.items.c.fetched_at,
        )
        .join(t.stories, t.stories.c.id == t.story_items.c.story_id)
        .join(t.items, t.items.c.id == t.story_items.c.item_id)
        .where(t.stories.c.event_at >= at - window)
        .where(t.stories.c.event_at <= at + window)
        .order_by(t.story_items.c.story_id, t.story_items.c.added_at, t.story_items.c.item_id)
    )
    for story_id, facts, key, title, published_at, fetched_at in conn.execute(query):
        if len(reports[story_id]) >= st.REPORTS_COMPARED:
            continue
        if facts:
            reports[story_id].append(st.Facts.from_json(json.loads(facts), item_key=key))
        else:  # a report grouped before facts were kept: its title and clock
            reports[story_id].append(
                st.Facts(
                    item_key=key,
                    source_id="",
                    title=title,
                    at=published_at or fetched_at,
                    dated=published_at is not None,
                    events=frozenset(),
                    severity="low",
                )
            )
    return [_story(r, tuple(reports[r.id])) for r in rows]


def _story(row: Any, reports: tuple[st.Facts, ...] = ()) -> st.Story:
    return st.Story(
        id=row.id,
        events=frozenset(json.loads(row.events)),
        severity=row.severity,
        title=row.title,
        people=row.people,
        places=tuple(json.loads(row.places)),
        first_seen_at=row.first_seen_at,
        updated_at=row.updated_at,
        revision=row.revision,
        item_count=row.item_count,
        event_at=row.event_at,
        reports=reports,
    )


def _insert_story(conn: Connection, facts: st.Facts, now: datetime) -> st.Story:
    story = st.founded(0, facts, now)
    values = {
        "events": json.dumps(sorted(story.events)),
        "severity": story.severity,
        "title": story.title,
        "people": story.people,
        "places": json.dumps(list(story.places), ensure_ascii=False),
        "first_seen_at": now,
        "updated_at": now,
        "revision": 1,
        "item_count": 1,
        "event_at": story.event_at,
    }
    story_id = conn.execute(
        t.stories.insert().values(**values).returning(t.stories.c.id)
    ).scalar_one()
    return replace(story, id=story_id)


def _update_story(conn: Connection, story: st.Story) -> None:
    conn.execute(
        update(t.stories)
        .where(t.stories.c.id == story.id)
        .values(
            events=json.dumps(sorted(story.events)),
            severity=story.severity,
            people=story.people,
            places=json.dumps(list(story.places), ensure_ascii=False),
            updated_at=story.updated_at,
            revision=story.revision,
            item_count=story.item_count,
        )
    )


def _labels(
    conn: Connection, story_id: int, tags_by_source: Mapping[str, tuple[str, ...]]
) -> tuple[set[str], set[str]]:
    """Tags and languages of the story's reports so far."""
    query = (
        select(t.items.c.source_id, t.items.c.lang)
        .join(t.story_items, t.story_items.c.item_id == t.items.c.id)
        .where(t.story_items.c.story_id == story_id)
    )
    tags: set[str] = set()
    langs: set[str] = set()
    for source_id, lang in conn.execute(query):
        tags.update(tags_by_source.get(source_id, ()))
        if lang:
            langs.add(lang)
    return tags, langs


def _insert_deliveries(
    conn: Connection, story: st.Story, planned: Sequence[routing.Planned], now: datetime
) -> list[routing.Planned]:
    """One message per story revision per channel: when two routes name the same channel,
    the first route in the file decides how and when. Returns what was queued."""
    seen: set[str] = set()
    queued: list[routing.Planned] = []
    for p in planned:
        if p.channel in seen:
            continue
        seen.add(p.channel)
        exists = conn.execute(
            select(t.deliveries.c.id).where(
                (t.deliveries.c.story_id == story.id)
                & (t.deliveries.c.revision == story.revision)
                & (t.deliveries.c.channel == p.channel)
                & (t.deliveries.c.seq == p.seq)
            )
        ).first()
        if exists:
            continue
        conn.execute(
            t.deliveries.insert().values(
                story_id=story.id,
                revision=story.revision,
                route=p.route,
                channel=p.channel,
                kind=p.kind,
                seq=p.seq,
                status="pending",
                due_at=p.due_at,
                attempts=0,
                created_at=now,
            )
        )
        queued.append(p)
    return queued
