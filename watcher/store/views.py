"""Read-only queries behind the web pages, feeds and API: stories with their reports (as
cards: the story, its event time and its first report), story-centred search over the index
(`store.search`), stories per month by event date, an item with its revisions, sources and
rules at a glance."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Select, case, exists, func, literal, select, type_coerce
from sqlalchemy.engine import Connection

from watcher.config import SEVERITIES, event_rank
from watcher.items import published_day
from watcher.store import Store, rows
from watcher.store import checks as check_queries
from watcher.store import evidence as evidence_queries
from watcher.store import search as index
from watcher.store import stories as story_queries
from watcher.store import tables as t
from watcher.store.evidence import Kept
from watcher.store.tables import UTCDateTime
from watcher.stories import why_lines
from watcher.types import Item, StoredReport, StoredStory


@dataclass(frozen=True, kw_only=True, slots=True)
class Filters:
    """What the timeline, feeds and API can be narrowed by (all optional)."""

    event: str | None = None
    #: Minimum severity.
    severity: str | None = None
    source: str | None = None
    lang: str | None = None
    #: The event in [since, until); a day alone (`stories.event_day`) among the period's days
    #: in `zone` (`store.search.within`).
    since: datetime | None = None
    until: datetime | None = None
    zone: tzinfo = UTC
    limit: int = 50
    offset: int = 0


#: Months the timeline's chart covers unless `since`/`until` say otherwise.
CHART_MONTHS = 12
#: The most months one chart covers (of a longer period, the latest).
MAX_CHART_MONTHS = 120


@dataclass(frozen=True, kw_only=True, slots=True)
class Chart:
    """Stories per month (`Views.monthly`)."""

    #: ("YYYY-MM", main event → stories), oldest month first.
    months: list[tuple[str, Counter[str]]]
    #: The period counted: [start, end); the first and last month may be cut by it.
    start: datetime
    end: datetime
    #: The zone the months are cut in.
    zone: ZoneInfo
    #: Stories found in the period whose event no outlet dated: not in the months.
    undated: int = 0
    #: The period asked for was longer than `MAX_CHART_MONTHS`: its latest months are shown.
    capped: bool = False

    @property
    def peak(self) -> int:
        return max((sum(c.values()) for _, c in self.months), default=0)


@dataclass(frozen=True, kw_only=True, slots=True)
class Card:
    """A story as a card shows it."""

    story: StoredStory
    #: When the event happened, as shown: its founding report's publication time, else the
    #: earliest one an outlet gave, else (undated: `dated` is False) a fetch time.
    event_at: datetime
    #: The report published first: the card names its outlet and shows its title.
    first: StoredReport | None
    #: The event time is a report's publication time; False when it is a fetch (or first-seen)
    #: time because no outlet gave one, which a page must not show as a date.
    dated: bool = True
    #: The event time is the midnight of a day an outlet gave without a time of day: that
    #: day as written, which a page shows alone (no clock time); None otherwise.
    day: date | None = None
    #: Ids of the reports a search matched (highlighted); empty outside a search.
    hits: tuple[int, ...] = ()
    #: Report id → its first-seen records (the response it came in, its page): evidence.
    evidence: dict[int, tuple[Kept, ...]] = field(default_factory=dict)
    #: Report id → when a re-check found it removed at its source.
    removed: dict[int, datetime] = field(default_factory=dict)
    #: Report id → (earlier versions kept, when the latest replaced one).
    revised: dict[int, tuple[int, datetime]] = field(default_factory=dict)

    @property
    def main_event(self) -> str:
        return main_event(self.story.events)


@dataclass(frozen=True, kw_only=True, slots=True)
class StoredItem:
    """One stored item with what the item page shows."""

    id: int
    item: Item
    #: The story it belongs to, if any.
    story_id: int | None = None
    #: Every source that carried it, in the order they did.
    sources: tuple[str, ...] = ()
    #: (changed at, old title, old text) of its earlier versions, oldest first.
    revisions: tuple[tuple[datetime, str, str], ...] = ()
    #: Its first-seen records (the response it came in, its article page), oldest first.
    evidence: tuple[Kept, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class Result:
    """One search result: a story with its matching reports, or an item in no story."""

    card: Card | None = None
    item: StoredItem | None = None
    #: The text of each matching report (a page shows where it matched).
    texts: dict[int, str] = field(default_factory=dict)

    @property
    def hits(self) -> tuple[int, ...]:
        return self.card.hits if self.card else (self.item.id,) if self.item else ()


@dataclass(frozen=True, kw_only=True, slots=True)
class ResultPage:
    results: tuple[Result, ...]
    #: Pass as `cursor` for the next page; None on the last.
    next_cursor: int | None = None


def main_event(events: tuple[str, ...] | frozenset[str]) -> str:
    """The event a story is counted under: the gravest of its types (the order of
    EVENT_TYPES), else the first named."""
    return min(events, key=event_rank) if events else ""


class Views:
    def __init__(self, store: Store) -> None:
        self.engine = store.engine
        self.store = store

    def stories(self, f: Filters) -> list[Card]:
        """Stories by event time (a day alone at its end: `types.counted_at`), newest first."""
        s = t.stories
        # every story has its event time (migration 0006 gave older ones their first-seen time)
        when = index.counted(s.c.event_at, s.c.event_day)
        query = self._where(select(s), f).order_by(when.desc(), s.c.id.desc())
        query = query.limit(max(1, min(f.limit, 500))).offset(max(0, f.offset))
        with self.engine.connect() as conn:
            return self._cards(conn, conn.execute(query).all())

    @staticmethod
    def _where(query: Select[Any], f: Filters, *, dates: bool = True) -> Select[Any]:
        """`query` of stories narrowed by the filters (the timeline's, the feeds', the
        chart's: `dates` False leaves `since`/`until` to the caller)."""
        s = t.stories
        # Stories an advocate marked not relevant, or merged into another, leave the timeline
        # and the feeds (their pages stay, saying so).
        query = query.where(s.c.status == "open")
        if f.event:
            # events is a JSON list of names: match the quoted name
            query = query.where(s.c.events.like(f'%"{_like(f.event)}"%', escape="\\"))
        if f.severity in SEVERITIES:
            allowed = SEVERITIES[SEVERITIES.index(f.severity) :]
            query = query.where(s.c.severity.in_(allowed))
        if dates:
            query = query.where(
                *index.within(s.c.event_at, s.c.event_day, f.since, f.until, f.zone)
            )
        if f.source or f.lang:
            conds = [t.story_items.c.story_id == s.c.id, t.items.c.id == t.story_items.c.item_id]
            if f.source:
                conds.append(t.items.c.source_id == f.source)
            if f.lang:
                conds.append(t.items.c.lang == f.lang)
            query = query.where(exists(select(1).select_from(t.story_items, t.items).where(*conds)))
        return query

    def _cards(
        self,
        conn: Connection,
        found: Any,
        hits: dict[int, tuple[int, ...]] | None = None,
        *,
        text: bool = False,
    ) -> list[Card]:
        ids = [r.id for r in found]
        reports = story_queries.reports_of(conn, ids) if text else _reports(conn, ids)
        out = []
        for row in found:
            # by time, not in the order they joined (which follows the order of polling)
            story = rows.stored_story(row, story_queries.by_time(reports.get(row.id, ())))
            # gravest first, as the alerts list them (stored sorted by name)
            story = replace(story, events=tuple(sorted(story.events, key=event_rank)))
            event_at = row.event_at or row.first_seen_at
            dated = any(r.published_at == event_at for r in story.reports)
            published = [r.published_at for r in story.reports if r.published_at is not None]
            if not dated and published:
                # founded by an undated report, and an outlet has dated the event since: the
                # card shows the earliest date an outlet gave (grouping keeps its own clock)
                event_at, dated = min(published), True
            giving = [r for r in story.reports if r.published_at == event_at]
            day = giving[0].published_day if giving and all(r.date_only for r in giving) else None
            out.append(
                Card(
                    story=story,
                    event_at=event_at,
                    first=story_queries.first_report(story.reports),
                    dated=dated,
                    day=day if dated else None,
                    hits=(hits or {}).get(row.id, ()),
                )
            )
        return out

    def corrections(self, story_id: int) -> list[Any]:
        """The corrections of a story (`store.corrections.Correction`), oldest first."""
        from watcher.store.corrections import Corrections

        return Corrections(self.store).listing(story_id)

    def evidence_warc(
        self,
        story_id: int | None = None,
        redact: Callable[[str], str] | None = None,
        *,
        item_id: int | None = None,
    ) -> bytes | None:
        """The evidence of a story (or of one item) as a WARC file (gzip per record); None
        when it has none. `redact`: see `warc_records`."""
        import io

        from watcher.evidence import warc_records

        if story_id is None and item_id is None:
            return None
        out = io.BytesIO()
        with self.engine.connect() as conn:
            found = evidence_queries.records(conn, story_id=story_id, item_id=item_id)
            count = warc_records(found, out, redact=redact)
        return out.getvalue() if count else None

    def story(self, story_id: int) -> Card | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.stories).where(t.stories.c.id == story_id)).first()
            if row is None:
                return None
            (card,) = self._cards(conn, [row], text=True)
            reports = card.story.reports
            ids = [r.item_id for r in reports]
            card = replace(
                card,
                evidence=evidence_queries.first_seen(conn, ids),
                removed=check_queries.removed_items(conn, ids),
                revised={
                    r.item_id: (r.n, r.last)
                    for r in conn.execute(
                        select(
                            t.item_revisions.c.item_id,
                            func.count().label("n"),
                            func.max(t.item_revisions.c.changed_at).label("last"),
                        )
                        .where(t.item_revisions.c.item_id.in_(ids))
                        .group_by(t.item_revisions.c.item_id)
                    )
                },
            )
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
        story = replace(
            card.story,
            deliveries=tuple(d._asdict() for d in deliveries),
            why=tuple(why_lines(found, [r.item_id for r in reports])),
        )
        return replace(card, story=story)

    def item(self, item_id: int) -> StoredItem | None:
        """One item with its story, the sources that carried it and its earlier versions."""
        with self.engine.connect() as conn:
            row = conn.execute(select(t.items).where(t.items.c.id == item_id)).first()
            if row is None:
                return None
            story_id = conn.execute(
                select(t.story_items.c.story_id).where(t.story_items.c.item_id == item_id)
            ).scalar()
            sources: list[str] = list(
                conn.execute(
                    select(t.item_sources.c.source_id)
                    .where(t.item_sources.c.item_id == item_id)
                    .order_by(t.item_sources.c.first_seen_at, t.item_sources.c.source_id)
                ).scalars()
            )
            revisions = conn.execute(
                select(
                    t.item_revisions.c.changed_at,
                    t.item_revisions.c.old_title,
                    t.item_revisions.c.old_text,
                )
                .where(t.item_revisions.c.item_id == item_id)
                .order_by(t.item_revisions.c.id)
            ).all()
            return StoredItem(
                id=item_id,
                item=rows.item(row),
                story_id=story_id,
                sources=tuple(sources),
                revisions=tuple((r[0], r[1], r[2]) for r in revisions),
                evidence=evidence_queries.first_seen(conn, [item_id]).get(item_id, ()),
            )

    def monthly(self, f: Filters, zone: ZoneInfo, now: datetime | None = None) -> Chart:
        """Stories per month by main event, oldest month first (the chart on the timeline).

        Each story counts once, in the month (cut in `zone`) of its event as an outlet dated
        it: its founding report's publication time, else the earliest one an outlet gave since
        (as its card shows it). A story no outlet dated is not counted, but counted apart
        (`Chart.undated`, by the time it was found). The filters narrow it as they narrow the
        timeline; `since`/`until` give its period (default: the last `CHART_MONTHS` months
        to now), at most `MAX_CHART_MONTHS` months (the latest of a longer one)."""
        from watcher.clock import utcnow

        now = now or utcnow()
        end = f.until or _month_start(now.astimezone(zone), 1).astimezone(UTC)
        last = _month_start((end - timedelta(microseconds=1)).astimezone(zone))
        earliest = _month_start(last, 1 - MAX_CHART_MONTHS).astimezone(UTC)
        start = f.since or _month_start(last, 1 - CHART_MONTHS).astimezone(UTC)
        capped = start < earliest
        start = max(start, earliest)
        # the instants at which the months start, in the zone: bucket k is [bounds[k], [k+1])
        # and the days they start on, for an event dated by its day alone (`index.within`)
        bounds, keys, days = [start], [], []
        month = _month_start(start.astimezone(zone))
        while month.astimezone(UTC) < end:
            keys.append(f"{month:%Y-%m}")
            month = _month_start(month, 1)
            bounds.append(min(month.astimezone(UTC), end))
            days.append(month.date())
        chart = Chart(
            months=[(k, Counter()) for k in keys], start=start, end=end, capped=capped, zone=zone
        )
        if not keys or end <= start:
            return replace(chart, months=[])
        s, si, i = t.stories, t.story_items, t.items
        reports = si.join(i, i.c.id == si.c.item_id)
        # As its card dates it: the founding report's publication time (one report gave the
        # event time: usually its first, one lookup), else the earliest date an outlet gave
        # since (looked up only for the few stories founded undated), else none.
        founded_dated = exists(
            select(1)
            .select_from(reports)
            .where(si.c.story_id == s.c.id, i.c.published_at == s.c.event_at)
        )
        earliest_date = (
            select(func.min(i.c.published_at))
            .select_from(reports)
            .where(si.c.story_id == s.c.id)
            .scalar_subquery()
        )
        dated_at = case((founded_dated, s.c.event_at), else_=earliest_date)
        # grouped by story so that each story's dates are looked up once, however often the
        # query below reads them (an inlined subquery would look them up per reference)
        per_story = (
            self._where(
                select(
                    s.c.events,
                    dated_at.label("at"),
                    s.c.event_at.label("found"),
                    s.c.event_day.label("day"),
                ),
                f,
                dates=False,
            )
            .group_by(s.c.id)
            .subquery()
        )
        when = func.coalesce(per_story.c.at, per_story.c.found)
        typed = type_coerce(when, UTCDateTime())
        day = per_story.c.day
        bucket: Any = literal(0)
        if len(keys) > 1:
            bucket = case(
                (
                    day.is_not(None),
                    case(*((day < d, k) for k, d in enumerate(days[:-1])), else_=len(keys) - 1),
                ),
                *((typed < b, k) for k, b in enumerate(bounds[1:-1])),
                else_=len(keys) - 1,
            )
        placed = (
            select(
                bucket.label("k"),
                case((per_story.c.at.is_(None), 1), else_=0).label("undated"),
                per_story.c.events,
            )
            .where(*index.within(typed, day, start, end, zone))
            .subquery()
        )
        query = select(
            placed.c.k, placed.c.undated, placed.c.events, func.count().label("n")
        ).group_by(placed.c.k, placed.c.undated, placed.c.events)
        undated = 0
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                if row.undated:
                    undated += row.n
                else:
                    chart.months[row.k][1][main_event(tuple(json.loads(row.events)))] += row.n
        return replace(chart, undated=undated)

    def search(
        self,
        query: index.Query,
        where: index.ItemFilter | None = None,
        *,
        cursor: int | None = None,
        size: int = 20,
    ) -> ResultPage:
        """Story-centred results, newest matching report first: each story once, at its newest
        matching report, with every report of it that matches; an item in no story on its own.

        Paging: `cursor` is the hit after which this page reads hits (the previous page's
        `next_cursor`). A story whose newest match comes before it was shown on an earlier
        page and is skipped, so every matching item appears on exactly one page."""
        where = where or index.ItemFilter()
        chosen: list[tuple[str, int]] = []  # ("story", story id) or ("item", item id)
        hits: dict[int, tuple[int, ...]] = {}
        shown: set[int] = set()
        before = cursor
        batch = size + 5  # enough for a page when hits are in no story or one each
        last: int | None = None
        full = False
        with self.engine.connect() as conn:
            while not full:
                ids = index.matching_ids(conn, query, where, before=before, limit=batch)
                if not ids:
                    break
                story_of = _stories_of(conn, ids)
                fresh = {story_of[i] for i in ids if i in story_of} - shown
                hits |= self._story_hits(conn, query, where, fresh)
                for item_id in ids:
                    last = item_id
                    story_id = story_of.get(item_id)
                    if story_id is None:
                        chosen.append(("item", item_id))
                    elif story_id not in shown:
                        shown.add(story_id)
                        # its newest hit: shown at it on an earlier page if above the cursor
                        if hits.get(story_id, (item_id,))[0] == item_id:
                            chosen.append(("story", story_id))
                    if len(chosen) >= size:
                        full = True
                        break
                if len(ids) < batch:
                    break
                before = ids[-1]
                batch = min(batch * 2, 1000)
            story_ids = [i for kind, i in chosen if kind == "story"]
            found = conn.execute(select(t.stories).where(t.stories.c.id.in_(story_ids))).all()
            cards = {c.story.id: c for c in self._cards(conn, found, hits)}
            lone = self._items(conn, [i for kind, i in chosen if kind == "item"])
            shown_hits = [h for i in story_ids for h in hits.get(i, ())]
            texts: dict[int, str] = {
                row.id: row.text
                for row in conn.execute(
                    select(t.items.c.id, t.items.c.text).where(t.items.c.id.in_(shown_hits))
                )
            }
        results = []
        for kind, i in chosen:
            if kind == "story" and i in cards:
                own = {h: texts[h] for h in cards[i].hits if h in texts}
                results.append(Result(card=cards[i], texts=own))
            elif kind == "item" and i in lone:
                results.append(Result(item=lone[i], texts={i: lone[i].item.text}))
        return ResultPage(results=tuple(results), next_cursor=last if full else None)

    def _story_hits(
        self,
        conn: Connection,
        query: index.Query,
        where: index.ItemFilter,
        story_ids: set[int],
    ) -> dict[int, tuple[int, ...]]:
        """Story id → ids of its reports that match, newest first."""
        if not story_ids:
            return {}
        members = conn.execute(
            select(t.story_items.c.item_id, t.story_items.c.story_id).where(
                t.story_items.c.story_id.in_(list(story_ids))
            )
        ).all()
        story_of = {r.item_id: r.story_id for r in members}
        out: dict[int, list[int]] = defaultdict(list)
        for item_id in index.matching_ids(
            conn, query, where, among=list(story_of), limit=len(story_of)
        ):
            out[story_of[item_id]].append(item_id)
        return {k: tuple(v) for k, v in out.items()}

    def _items(self, conn: Connection, ids: list[int]) -> dict[int, StoredItem]:
        if not ids:
            return {}
        found = conn.execute(select(t.items).where(t.items.c.id.in_(ids))).all()
        return {r.id: StoredItem(id=r.id, item=rows.item(r)) for r in found}

    def search_items(
        self,
        query: index.Query,
        where: index.ItemFilter | None = None,
        *,
        cursor: int | None = None,
        limit: int = 50,
    ) -> tuple[list[tuple[StoredItem, int | None]], int | None]:
        """Matching items (with their story ids), newest first, and the next cursor."""
        with self.engine.connect() as conn:
            ids = index.matching_ids(conn, query, where, before=cursor, limit=limit + 1)
            more = len(ids) > limit
            ids = ids[:limit]
            found = self._items(conn, ids)
            story_of = _stories_of(conn, ids)
        out = [(found[i], story_of.get(i)) for i in ids if i in found]
        return out, ids[-1] if more and ids else None

    def stored_source(self, source_id: str) -> bool:
        """Whether the database knows the source (a source taken out of sources.yaml keeps its
        row and its items: its history can still be filtered on)."""
        with self.engine.connect() as conn:
            found = conn.execute(select(t.sources.c.id).where(t.sources.c.id == source_id))
            return found.first() is not None

    def version(self) -> tuple[Any, ...]:
        """What changes whenever a story or an item is stored or changed (two index lookups):
        a feed made for one version can be served again until it changes."""
        with self.engine.connect() as conn:
            return tuple(
                conn.execute(
                    select(
                        select(func.max(t.stories.c.updated_at)).scalar_subquery(),
                        select(func.max(t.stories.c.id)).scalar_subquery(),
                        select(func.max(t.items.c.id)).scalar_subquery(),
                        select(func.max(t.item_revisions.c.id)).scalar_subquery(),
                    )
                ).one()
            )

    def source_counts(self) -> dict[str, int]:
        """Items each source first carried (kept as items are stored: nothing is counted)."""
        with self.engine.connect() as conn:
            return dict(conn.execute(select(t.sources.c.id, t.sources.c.item_count)).all())

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


def _month_start(at: datetime, months: int = 0) -> datetime:
    """The start of `at`'s month in its zone, `months` months later (earlier when negative)."""
    index = at.year * 12 + at.month - 1 + months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=at.tzinfo)


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _stories_of(conn: Connection, item_ids: list[int]) -> dict[int, int]:
    """Item id → its story's id, for those of the items in a story."""
    query = select(t.story_items.c.item_id, t.story_items.c.story_id).where(
        t.story_items.c.item_id.in_(item_ids)
    )
    return {row.item_id: row.story_id for row in conn.execute(query)}


def _reports(conn: Connection, story_ids: list[int]) -> dict[int, list[StoredReport]]:
    """The reports of each story without their text (what a card needs), in the order they
    joined it."""
    out: dict[int, list[StoredReport]] = defaultdict(list)
    if not story_ids:
        return out
    i, si = t.items, t.story_items
    query = (
        select(
            si.c.story_id,
            si.c.added_at,
            i.c.id,
            i.c.key,
            i.c.source_id,
            i.c.title,
            i.c.url,
            i.c.lang,
            i.c.published_at,
            i.c.published_raw,
            i.c.fetched_at,
        )
        .join(i, i.c.id == si.c.item_id)
        .where(si.c.story_id.in_(story_ids))
        .order_by(si.c.story_id, si.c.added_at, i.c.id)
    )
    for row in conn.execute(query):
        # built directly: a timeline or feed converts a few hundred of these per view
        out[row.story_id].append(
            StoredReport(
                item_id=row.id,
                key=row.key,
                source_id=row.source_id,
                title=row.title,
                url=row.url,
                lang=row.lang,
                published_at=row.published_at,
                fetched_at=row.fetched_at,
                added_at=row.added_at,
                published_day=published_day(row),
            )
        )
    return out
