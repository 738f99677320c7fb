"""Read-only queries behind the web pages, feeds and API: stories with their reports,
search over items, per-month counts, sources and rules at a glance."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, or_, select

from watcher.config import SEVERITIES
from watcher.store import Store, rows
from watcher.store import stories as story_queries
from watcher.store import tables as t
from watcher.stories import why_lines
from watcher.types import Item, StoredStory


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


class Views:
    def __init__(self, store: Store) -> None:
        self.engine = store.engine
        self.store = store

    def stories(self, f: Filters) -> list[StoredStory]:
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
            found = conn.execute(query).all()
            reports = story_queries.reports_of(conn, [r.id for r in found])
        return [rows.stored_story(r, tuple(reports.get(r.id, ()))) for r in found]

    def story(self, story_id: int) -> StoredStory | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.stories).where(t.stories.c.id == story_id)).first()
            if row is None:
                return None
            reports = tuple(story_queries.reports_of(conn, [story_id]).get(story_id, ()))
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
            found = story_queries.matches_of(conn, [r.item_id for r in reports])
        return replace(
            rows.stored_story(row, reports),
            deliveries=tuple(d._asdict() for d in deliveries),
            why=tuple(why_lines(found, [r.item_id for r in reports])),
        )

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
            for row in conn.execute(query):
                key = f"{row.first_seen_at:%Y-%m}"
                if key in counts:
                    counts[key].update(json.loads(row.events))
        return [(k, counts[k]) for k in keys]

    def search(self, text: str, *, source: str | None = None, limit: int = 50) -> list[Item]:
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
            return [rows.item(r) for r in conn.execute(query)]

    def items_per_day(self, days: int = 7, now: datetime | None = None) -> dict[str, float]:
        from watcher.clock import utcnow

        since = (now or utcnow()) - timedelta(days=days)
        query = (
            select(t.items.c.source_id, func.count().label("n"))
            .where(t.items.c.fetched_at >= since)
            .group_by(t.items.c.source_id)
        )
        with self.engine.connect() as conn:
            return {row.source_id: row.n / days for row in conn.execute(query)}

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
            counts: dict[str, int] = dict(
                conn.execute(
                    select(t.matches.c.rule_id, func.count()).group_by(t.matches.c.rule_id)
                ).all()
            )
        for rule_id in out:
            out[rule_id][0]["total"] = counts.get(rule_id, totals[rule_id])
        return out


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
