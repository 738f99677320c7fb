"""Read-only queries behind the web pages, feeds and API: stories with their reports,
search over items, per-month counts, sources and rules at a glance."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, or_, select

from watcher import tables as t
from watcher.config import SEVERITIES
from watcher.store import Store
from watcher.stories import why_lines


@dataclass(frozen=True, kw_only=True, slots=True)
class Filters:
    """What the timeline, feeds and API can be narrowed by (all optional)."""

    event: str | None = None
    #: Minimum severity.
    severity: str | None = None
    source: str | None = None
    lang: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50
    offset: int = 0


@dataclass(frozen=True, kw_only=True, slots=True)
class ReportRow:
    item_id: int
    source_id: str
    title: str
    url: str | None
    lang: str | None
    published_at: datetime | None
    fetched_at: datetime
    text: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class StoryRow:
    id: int
    events: tuple[str, ...]
    severity: str
    title: str
    people: int | None
    places: tuple[str, ...]
    first_seen_at: datetime
    updated_at: datetime
    revision: int
    reports: tuple[ReportRow, ...] = ()
    deliveries: tuple[dict[str, Any], ...] = field(default=())
    #: Why it matched: one line per rule, with the words that fired and their glosses.
    why: tuple[str, ...] = ()

    @property
    def first(self) -> ReportRow | None:
        return self.reports[0] if self.reports else None

    @property
    def outlets(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.source_id for r in self.reports))


def _report(row: Any) -> ReportRow:
    return ReportRow(
        item_id=row.id,
        source_id=row.source_id,
        title=row.title,
        url=row.url,
        lang=row.lang,
        published_at=row.published_at,
        fetched_at=row.fetched_at,
        text=row.text[:600],
    )


def _story(row: Any, reports: Sequence[ReportRow] = ()) -> StoryRow:
    return StoryRow(
        id=row.id,
        events=tuple(json.loads(row.events)),
        severity=row.severity,
        title=row.title,
        people=row.people,
        places=tuple(json.loads(row.places)),
        first_seen_at=row.first_seen_at,
        updated_at=row.updated_at,
        revision=row.revision,
        reports=tuple(reports),
    )


class Browse:
    def __init__(self, store: Store) -> None:
        self.engine = store.engine
        self.store = store

    def stories(self, f: Filters) -> list[StoryRow]:
        s = t.stories
        query = select(s).order_by(s.c.first_seen_at.desc(), s.c.id.desc())
        if f.event:
            # events is a JSON list of names: match the quoted name
            query = query.where(s.c.events.like(f'%"{_like(f.event)}"%', escape="\\"))
        if f.severity in SEVERITIES:
            allowed = SEVERITIES[SEVERITIES.index(f.severity) :]
            query = query.where(s.c.severity.in_(allowed))
        if f.since:
            query = query.where(s.c.first_seen_at >= f.since)
        if f.until:
            query = query.where(s.c.first_seen_at < f.until)
        if f.source or f.lang:
            conds = [t.story_items.c.story_id == s.c.id, t.items.c.id == t.story_items.c.item_id]
            if f.source:
                conds.append(t.items.c.source_id == f.source)
            if f.lang:
                conds.append(t.items.c.lang == f.lang)
            query = query.where(exists(select(1).select_from(t.story_items, t.items).where(*conds)))
        query = query.limit(max(1, min(f.limit, 500))).offset(max(0, f.offset))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
            reports = self._reports(conn, [r.id for r in rows])
        return [_story(r, reports.get(r.id, ())) for r in rows]

    def story(self, story_id: int) -> StoryRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.stories).where(t.stories.c.id == story_id)).first()
            if row is None:
                return None
            reports = self._reports(conn, [story_id]).get(story_id, ())
            deliveries = conn.execute(
                select(
                    t.deliveries.c.route,
                    t.deliveries.c.channel,
                    t.deliveries.c.kind,
                    t.deliveries.c.status,
                    t.deliveries.c.sent_at,
                )
                .where(t.deliveries.c.story_id == story_id)
                .order_by(t.deliveries.c.id)
            ).all()
            found = conn.execute(
                select(
                    t.matches.c.item_id, t.matches.c.rule_id, t.matches.c.dates, t.matches.c.why
                ).where(t.matches.c.item_id.in_([r.item_id for r in reports]))
            ).all()
        story = _story(row, reports)
        return StoryRow(
            **{k: getattr(story, k) for k in StoryRow.__slots__ if k not in ("deliveries", "why")},
            deliveries=tuple(d._asdict() for d in deliveries),
            why=tuple(why_lines(found, [r.item_id for r in reports])),
        )

    def _reports(self, conn: Any, story_ids: Sequence[int]) -> dict[int, list[ReportRow]]:
        out: dict[int, list[ReportRow]] = defaultdict(list)
        if not story_ids:
            return out
        query = (
            select(
                t.story_items.c.story_id,
                t.items.c.id,
                t.items.c.source_id,
                t.items.c.title,
                t.items.c.url,
                t.items.c.lang,
                t.items.c.published_at,
                t.items.c.fetched_at,
                t.items.c.text,
            )
            .join(t.items, t.items.c.id == t.story_items.c.item_id)
            .where(t.story_items.c.story_id.in_(list(story_ids)))
            .order_by(t.story_items.c.added_at, t.items.c.id)
        )
        for r in conn.execute(query):
            out[r.story_id].append(_report(r))
        return out

    def monthly(
        self, months: int = 12, now: datetime | None = None
    ) -> list[tuple[str, Counter[str]]]:
        """Stories per month by event type, oldest month first (the chart on the timeline)."""
        from watcher.clock import utcnow

        now = now or utcnow()
        keys = []
        year, month = now.year, now.month
        for _ in range(months):
            keys.append(f"{year:04d}-{month:02d}")
            year, month = (year, month - 1) if month > 1 else (year - 1, 12)
        keys.reverse()
        start = datetime(int(keys[0][:4]), int(keys[0][5:]), 1, tzinfo=now.tzinfo)
        counts: dict[str, Counter[str]] = {k: Counter() for k in keys}
        query = select(t.stories.c.first_seen_at, t.stories.c.events).where(
            t.stories.c.first_seen_at >= start
        )
        with self.engine.connect() as conn:
            for when, events in conn.execute(query):
                key = f"{when:%Y-%m}"
                if key in counts:
                    counts[key].update(json.loads(events))
        return [(k, counts[k]) for k in keys]

    def search(self, text: str, *, source: str | None = None, limit: int = 50) -> list[ReportRow]:
        """Items whose title or text contains `text` (two characters or more; Korean words
        match inside longer words, so 북송 finds 강제북송을)."""
        text = text.strip()
        if len(text) < 2:
            return []
        pattern = f"%{_like(text)}%"
        i = t.items
        query = (
            select(i)
            .where(or_(i.c.title.ilike(pattern, escape="\\"), i.c.text.ilike(pattern, escape="\\")))
            .order_by(i.c.fetched_at.desc(), i.c.id.desc())
            .limit(max(1, min(limit, 500)))
        )
        if source:
            query = query.where(i.c.source_id == source)
        with self.engine.connect() as conn:
            return [_report(r) for r in conn.execute(query)]

    def items_per_day(self, days: int = 7, now: datetime | None = None) -> dict[str, float]:
        from watcher.clock import utcnow

        since = (now or utcnow()) - timedelta(days=days)
        query = (
            select(t.items.c.source_id, func.count())
            .where(t.items.c.fetched_at >= since)
            .group_by(t.items.c.source_id)
        )
        with self.engine.connect() as conn:
            return {source: n / days for source, n in conn.execute(query)}

    def recent_matches(self, per_rule: int = 5) -> dict[str, list[dict[str, Any]]]:
        query = (
            select(
                t.matches.c.rule_id,
                t.matches.c.matched_at,
                t.items.c.title,
                t.items.c.url,
                t.items.c.source_id,
            )
            .join(t.items, t.items.c.id == t.matches.c.item_id)
            .order_by(t.matches.c.matched_at.desc(), t.matches.c.id.desc())
            .limit(2000)
        )
        out: dict[str, list[dict[str, Any]]] = defaultdict(list)
        totals: Counter[str] = Counter()
        with self.engine.connect() as conn:
            for r in conn.execute(query):
                totals[r.rule_id] += 1
                if len(out[r.rule_id]) < per_rule:
                    out[r.rule_id].append(r._asdict())
            counts = dict(
                conn.execute(
                    select(t.matches.c.rule_id, func.count()).group_by(t.matches.c.rule_id)
                ).all()
            )
        for rule_id in out:
            out[rule_id][0]["total"] = counts.get(rule_id, totals[rule_id])
        return out


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
