"""Stories and the outbox, written in the poll's own transaction (the transactional outbox).

`write_stories` runs inside `Store.save_items`: after the items and their matches are inserted
it groups each newly matched item into a story (the pure `watcher.stories`) and writes the
deliveries the routes ask for (the pure `watcher.routing`), on the same connection: a crash
either keeps items, matches, stories and deliveries, or none. Messages are rendered later, at
send time (so `group_wait` can gather more outlets). A report that joins quietly still brings
the story's alert to routes it matches only now (`offer`); a report its outlet edits gets its
story recomputed (`revise_edited`, with `rebuild`, which corrections use too).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Select, bindparam, case, func, select, text, update
from sqlalchemy.engine import Connection, Row

from watcher import routing
from watcher import stories as st
from watcher.config import SEVERITIES, Route
from watcher.items import published_day
from watcher.routing import Alerting
from watcher.store import rows
from watcher.store import tables as t
from watcher.types import Item, MatchRecord, StoredReport, StoryChange, counted_at

#: The PostgreSQL advisory lock under which stories are assigned (any fixed 64-bit number).
STORY_LOCK = 0x57A7C4E5


def write_stories(
    conn: Connection,
    policy: Alerting,
    items: Sequence[Item],
    matches: Sequence[MatchRecord],
    ids: Mapping[str, int],
    now: datetime,
) -> list[StoryChange]:
    """Group each newly matched item into a story and queue the deliveries its routes plan."""
    by_item: dict[str, list[MatchRecord]] = defaultdict(list)
    for m in matches:
        by_item[m.item_key].append(m)
    todo = [i for i in items if i.key in by_item and i.key in ids]
    if not todo:
        return []
    lock(conn)
    # One clock, and an order that does not depend on which source answered first.
    todo.sort(key=lambda i: (st.when(i), i.key))
    changes = []
    for item in todo:
        facts = st.facts_of(item, by_item[item.key], policy.tags.get(item.source_id, ()))
        nearby = candidates(conn, facts.at, policy.window)
        story = st.choose(facts, nearby, policy.window)
        before: st.Story | None = None
        if story is None:
            story = _insert_story(conn, facts, now, published_day(item))
            change, kind = "new", "alert"
        else:
            before = replace(story, people_at=_count_at(conn, story.id))
            story, material = st.joined(before, facts, now)
            _update_story(conn, story)
            change, kind = ("revised", "update") if material else ("joined", "")
        # A story an advocate marked not relevant keeps gathering its reports, quietly.
        alerting = story.status == "open" and policy.alertable(item, now)
        labels = None
        if before is not None and not kind and alerting:
            labels = _labels(conn, story.id, policy.tags)  # without this report
        conn.execute(
            _INSERT_REPORT,
            {
                "story_id": story.id,
                "item_id": ids[item.key],
                "added_at": now,
                "revision": story.revision,
                "facts": json.dumps(facts.as_json(), ensure_ascii=False),
            },
        )
        queued: list[routing.Planned] = []
        if kind and alerting:
            # The report's own tags and language count: its story_items row is in.
            queued = queue(conn, story, policy.routes, kind=kind, policy=policy, now=now)
        elif before is not None and labels is not None:
            tags, langs = labels
            with_report = (
                tags | set(policy.tags.get(item.source_id, ())),
                langs | ({item.lang} if item.lang else set()),
            )
            queued = offer(conn, before, story, labels, with_report, policy=policy, now=now)
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


def lock(conn: Connection) -> None:
    """Serialise story changes across replicas for this transaction (PostgreSQL): replicas
    polling different outlets of one event must not both open a story, and a correction or
    a re-check must not change a story while a poll groups into it."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": STORY_LOCK})


def queue(
    conn: Connection,
    story: st.Story,
    routes: Sequence[Route],
    *,
    kind: str,
    policy: Alerting,
    now: datetime,
) -> list[routing.Planned]:
    """Plan a message of `kind` about the story's current revision on `routes` (with the
    tags and languages of its reports) and queue it; what was queued."""
    tags, langs = _labels(conn, story.id, policy.tags)
    planned = routing.plan(
        routes, story, kind=kind, tags=tags, langs=langs, now=now, default_tz=policy.timezone
    )
    return _insert_deliveries(conn, story, planned, now)


def offer(
    conn: Connection,
    before: st.Story,
    after: st.Story,
    labels_before: tuple[set[str], set[str]],
    labels_after: tuple[set[str], set[str]],
    *,
    policy: Alerting,
    now: datetime,
) -> list[routing.Planned]:
    """A report joined quietly (no new revision): the story's alert goes to the routes it
    matches only now (a new event type, language or tag), on the channels never queued a
    message about it. A channel already told, by whatever route, stays quiet. What was
    queued."""
    planned = routing.newly_planned(
        policy.routes,
        before,
        after,
        labels_before=labels_before,
        labels_after=labels_after,
        now=now,
        default_tz=policy.timezone,
    )
    return _insert_deliveries(conn, after, planned, now, first_only=True)


def revise_edited(
    conn: Connection,
    policy: Alerting,
    items: Sequence[Item],
    matches: Sequence[MatchRecord],
    ids: Mapping[str, int],
    now: datetime,
) -> list[StoryChange]:
    """Reports their outlets edited (`items`, with their stored times and new matches) that
    are in a story: each one's facts are read again and its story recomputed from its reports
    (`rebuild`, as a correction does). A change that is news by the rule a joining report is
    held to (`stories.edit_is_news`) is a new revision, and an update is queued as for a
    join; otherwise the story changes quietly, and routes it matches only now get its alert
    (`offer`). An edited report that no longer matches any rule stays as it joined."""
    by_item: dict[str, list[MatchRecord]] = defaultdict(list)
    for m in matches:
        by_item[m.item_key].append(m)
    todo = {ids[i.key]: i for i in items if i.key in by_item and i.key in ids}
    if not todo:
        return []
    linked = conn.execute(
        select(t.story_items.c.story_id, t.story_items.c.item_id, t.story_items.c.facts).where(
            t.story_items.c.item_id.in_(list(todo))
        )
    ).all()
    if not linked:
        return []
    lock(conn)
    changes = []
    for row in sorted(linked, key=lambda r: r.item_id):
        item = todo[row.item_id]
        facts = st.facts_of(item, by_item[item.key], policy.tags.get(item.source_id, ()))
        kept = facts.as_json()
        if row.facts and json.loads(row.facts) == json.loads(json.dumps(kept)):
            continue  # reworded, the same facts
        conn.execute(
            update(t.story_items)
            .where(t.story_items.c.item_id == row.item_id)
            .values(facts=json.dumps(kept, ensure_ascii=False))
        )
        current = conn.execute(select(t.stories).where(t.stories.c.id == row.story_id)).one()
        before = rows.story(current)
        labels = _labels(conn, before.id, policy.tags)
        after = rebuild(conn, before.id, now)
        news = st.edit_is_news(before, after)
        if news:
            after = replace(after, revision=before.revision + 1)
            conn.execute(_UPDATE_STORY, {"story_id": after.id, "revision": after.revision})
        queued: list[routing.Planned] = []
        if after.status == "open" and policy.alertable(item, now):
            if news:
                queued = queue(conn, after, policy.routes, kind="update", policy=policy, now=now)
            else:
                queued = offer(conn, before, after, labels, labels, policy=policy, now=now)
        changes.append(
            StoryChange(
                story_id=after.id,
                revision=after.revision,
                change="revised" if news else "edited",
                item_key=item.key,
                deliveries=len(queued),
                routes=tuple(p.route for p in queued),
            )
        )
    return changes


def report_facts(conn: Connection, row: Any) -> st.Facts:
    """A report's facts as grouping keeps them (its title, names and stated days as they were
    when it joined, or when its outlet last edited it), with what its matches say now:
    events, severity, people and places all from one reading, the last one when its outlet
    edited it (`stories.facts_of` takes them so). A report that no longer matches any rule
    keeps the events it joined with."""
    m = t.matches.c
    found = conn.execute(
        select(m.event, m.severity, m.people, m.people_approximate, m.places)
        .where(m.item_id == row.id)
        .order_by(m.id)
    ).all()
    events = frozenset(f.event for f in found)
    severity = max((f.severity for f in found), key=SEVERITIES.index, default="low")
    at = row.published_at or row.fetched_at
    if row.facts:
        kept = st.Facts.from_json(json.loads(row.facts), item_key=row.key)
        if not found:
            return replace(kept, source_id=row.source_id, severity=severity)
        return replace(
            kept,
            source_id=row.source_id,
            events=events,
            severity=severity,
            people=found[0].people,
            people_approximate=found[0].people_approximate,
            places=tuple(json.loads(found[0].places or "[]")),
        )
    return st.Facts(
        item_key=row.key,
        source_id=row.source_id,
        title=row.title,
        at=at,
        dated=row.published_at is not None,
        events=events,
        severity=severity,
    )


def rebuild(
    conn: Connection, story_id: int, now: datetime, *, revision: int | None = None
) -> st.Story:
    """Recompute a story's shown facts (events, severity, count, places, its founding report)
    from the reports it now has, with the same pure functions as grouping: after a
    correction moved reports, or an outlet edited one."""
    found = conn.execute(
        select(t.items, t.story_items.c.added_at, t.story_items.c.facts)
        .join(t.story_items, t.story_items.c.item_id == t.items.c.id)
        .where(t.story_items.c.story_id == story_id)
        .order_by(t.story_items.c.added_at, t.items.c.published_at, t.items.c.id)
    ).all()
    current = rows.story(conn.execute(select(t.stories).where(t.stories.c.id == story_id)).one())
    if not found:
        conn.execute(update(t.stories).where(t.stories.c.id == story_id).values(item_count=0))
        return current
    # Founded by its earliest report on the event clock, the others joined in that order.
    ordered = sorted((report_facts(conn, r) for r in found), key=lambda f: (f.at, f.item_key))
    story = st.founded(story_id, ordered[0], current.first_seen_at)
    founder = next(r for r in found if r.key == ordered[0].item_key)
    for facts in ordered[1:]:
        story, _ = st.joined(story, facts, now)
    story = replace(
        story,
        revision=revision if revision is not None else current.revision,
        status=current.status,
        first_seen_at=current.first_seen_at,
        updated_at=now,
    )
    conn.execute(
        update(t.stories)
        .where(t.stories.c.id == story_id)
        .values(
            events=json.dumps(sorted(story.events)),
            severity=story.severity,
            title=story.title,
            people=story.people,
            people_approximate=story.people_approximate,
            places=json.dumps(list(story.places), ensure_ascii=False),
            updated_at=now,
            revision=story.revision,
            item_count=story.item_count,
            event_at=story.event_at,
            event_day=published_day(founder),
        )
    )
    return story


def _candidate_statements() -> tuple[Select[Any], Select[Any], Select[Any]]:
    """The three statements of `candidates`, built once: building a statement and its cache
    key costs more than running it on an index (~0.3 ms each, per matched report)."""
    c = t.stories.c
    # typed as the column, so that SQLite stores and compares them as the column does
    at, lo, hi = (bindparam(name, type_=c.event_at.type) for name in ("at", "lo", "hi"))
    open_ = c.status != "merged"
    after = (
        select(t.stories)
        .where(c.event_at >= at, c.event_at <= hi, open_)
        .order_by(c.event_at, c.id)
        .limit(st.CANDIDATES)
    )
    before = (
        select(t.stories)
        .where(c.event_at < at, c.event_at >= lo, open_)
        .order_by(c.event_at.desc(), c.id)  # ties: the earlier founded, as below
        .limit(st.CANDIDATES)
    )
    rank = (
        func.row_number()
        .over(
            partition_by=t.story_items.c.story_id,
            order_by=(t.story_items.c.added_at, t.story_items.c.item_id),
        )
        .label("rank")
    )
    ranked = (
        select(
            t.story_items.c.story_id,
            t.story_items.c.item_id,
            t.story_items.c.added_at,
            t.story_items.c.facts,
            rank,
        )
        .join(t.stories, c.id == t.story_items.c.story_id)
        .where(c.event_at >= lo, c.event_at <= hi, open_)
        .subquery()
    )
    # A report's title and times only where it has no facts (grouped before they were kept):
    # the others' rows then carry no dates to convert, a third of the cost of reading them.
    legacy = ranked.c.facts.is_(None)
    reports = (
        select(
            ranked.c.story_id,
            ranked.c.facts,
            t.items.c.key,
            case((legacy, t.items.c.title)).label("title"),
            case((legacy, t.items.c.published_at)).label("published_at"),
            case((legacy, t.items.c.fetched_at)).label("fetched_at"),
        )
        .join(t.items, t.items.c.id == ranked.c.item_id)
        .where(ranked.c.rank <= st.REPORTS_COMPARED)
        .order_by(ranked.c.story_id, ranked.c.added_at, ranked.c.item_id)
    )
    return after, before, reports


_AFTER, _BEFORE, _REPORTS = _candidate_statements()

# The statements run per matched report, built once (see `_candidate_statements`). An insert or
# update given a dict sets the columns its keys name; `story_id` picks the story to update.
_INSERT_STORY = t.stories.insert().returning(t.stories.c.id)
_UPDATE_STORY = update(t.stories).where(t.stories.c.id == bindparam("story_id"))
_INSERT_REPORT = t.story_items.insert()
_LABELS = (
    select(t.items.c.source_id, t.items.c.lang)
    .join(t.story_items, t.story_items.c.item_id == t.items.c.id)
    .where(t.story_items.c.story_id == bindparam("story_id"))
)
_DELIVERY_EXISTS = select(t.deliveries.c.id).where(
    t.deliveries.c.story_id == bindparam("story_id"),
    t.deliveries.c.revision == bindparam("revision"),
    t.deliveries.c.channel == bindparam("channel"),
    t.deliveries.c.seq == bindparam("seq"),
)
_INSERT_DELIVERY = t.deliveries.insert()
_d = t.deliveries
#: Any message queued for the channel about the story, whatever became of it.
_CHANNEL_QUEUED = (
    select(_d.c.id)
    .where(_d.c.story_id == bindparam("story_id"), _d.c.channel == bindparam("channel"))
    .limit(1)
)
#: The facts of a story's reports (for when its count was last given: `_count_at`).
_REPORT_FACTS = select(t.story_items.c.facts).where(
    t.story_items.c.story_id == bindparam("story_id")
)
_first_pending = (_d.c.status == "pending") & (_d.c.kind == "alert")
_being_sent = _d.c.claimed_until.is_not(None) & (_d.c.claimed_until > bindparam("now"))
#: What the channel got or is about to get about the story: a message sent (or that may have
#: arrived); its first message (the alert) still waiting in its group_wait, not yet rendered
#: (unclaimed); and an alert being sent right now (rendered before this change: the update
#: follows it). A digest line is no alert: a change that makes a story urgent is not held
#: until the digest goes out.
_CHANNEL_HEARD = select(
    func.count().filter(_d.c.status.in_(("sent", "uncertain"))).label("told"),
    func.count().filter(_first_pending & ~_being_sent).label("waiting"),
    func.count().filter(_first_pending & _being_sent).label("sending"),
).where(_d.c.story_id == bindparam("story_id"), _d.c.channel == bindparam("channel"))
#: The waiting alert goes no later than the update it takes in would have.
_SOONER = (
    update(_d)
    .where(
        _d.c.story_id == bindparam("b_story"),
        _d.c.channel == bindparam("b_channel"),
        _first_pending,
        ~_being_sent,
        _d.c.due_at > bindparam("b_due"),
        _d.c.route != bindparam("b_route"),  # its own route's group_wait still holds
    )
    .values(due_at=bindparam("b_due"))
)


def candidates(conn: Connection, at: datetime, window: timedelta) -> list[st.Story]:
    """Stories founded within `window` of `at` on the event clock (a report is compared with
    a story's founding report), at most `stories.CANDIDATES` of them, those founded nearest to
    `at`, with the facts of their first reports: two index ranges on `event_at` read from `at`
    outwards, so the cost stays flat as history grows and however crowded the window is."""
    after = conn.execute(_AFTER, {"at": at, "hi": at + window}).all()
    before = conn.execute(_BEFORE, {"at": at, "lo": at - window}).all()
    # The nearest of both sides (ties to the earlier founded): at most CANDIDATES stories.
    nearest = sorted((*after, *before), key=lambda r: (abs(r.event_at - at), r.id))
    found = sorted(nearest[: st.CANDIDATES], key=lambda r: r.id)
    if not found:
        return []
    reports: dict[int, list[st.Facts]] = {r.id: [] for r in found}
    # The chosen stories' index range again rather than an IN list of ids: one statement
    # shape, however many stories (a list's length would make a new cached statement each
    # time); a story in the range but not chosen (a tie at its edge) is skipped below. Only
    # each story's first REPORTS_COMPARED reports are read, however many it has gathered.
    lo, hi = min(r.event_at for r in found), max(r.event_at for r in found)
    query = conn.execute(_REPORTS, {"lo": lo, "hi": hi})
    for row in query:
        compared = reports.get(row.story_id)
        if compared is None or len(compared) >= st.REPORTS_COMPARED:
            continue
        if row.facts:
            compared.append(st.Facts.from_json(json.loads(row.facts), item_key=row.key))
        else:  # a report grouped before facts were kept: its title and clock
            compared.append(
                st.Facts(
                    item_key=row.key,
                    source_id="",
                    title=row.title,
                    at=row.published_at or row.fetched_at,
                    dated=row.published_at is not None,
                    events=frozenset(),
                    severity="low",
                )
            )
    return [rows.story(r, tuple(reports[r.id])) for r in found]


def _count_at(conn: Connection, story_id: int) -> datetime | None:
    """The event clock of the story's latest-published report that gave a count (what
    `stories.newer_count` weighs a joining report's count against); None when none did."""
    latest: datetime | None = None
    for row in conn.execute(_REPORT_FACTS, {"story_id": story_id}):
        if not row.facts:
            continue  # grouped before facts were kept: no count known
        facts = json.loads(row.facts)
        if facts.get("people") is None:
            continue
        at = datetime.fromisoformat(facts["at"])
        latest = at if latest is None else max(latest, at)
    return latest


def _insert_story(
    conn: Connection, facts: st.Facts, now: datetime, day: date | None = None
) -> st.Story:
    """A new story founded by one report; `day`: the day alone its outlet gave, if so."""
    story = st.founded(0, facts, now)
    values = {
        "events": json.dumps(sorted(story.events)),
        "severity": story.severity,
        "title": story.title,
        "people": story.people,
        "people_approximate": story.people_approximate,
        "places": json.dumps(list(story.places), ensure_ascii=False),
        "first_seen_at": now,
        "updated_at": now,
        "revision": 1,
        "item_count": 1,
        "event_at": story.event_at,
        "event_day": day,
    }
    story_id: int = conn.execute(_INSERT_STORY, values).scalar_one()
    return replace(story, id=story_id)


def _update_story(conn: Connection, story: st.Story) -> None:
    conn.execute(
        _UPDATE_STORY,
        {
            "story_id": story.id,
            "events": json.dumps(sorted(story.events)),
            "severity": story.severity,
            "people": story.people,
            "people_approximate": story.people_approximate,
            "places": json.dumps(list(story.places), ensure_ascii=False),
            "updated_at": story.updated_at,
            "revision": story.revision,
            "item_count": story.item_count,
        },
    )


def _labels(
    conn: Connection, story_id: int, tags_by_source: Mapping[str, tuple[str, ...]]
) -> tuple[set[str], set[str]]:
    """Tags and languages of the story's reports so far."""
    tags: set[str] = set()
    langs: set[str] = set()
    for row in conn.execute(_LABELS, {"story_id": story_id}):
        tags.update(tags_by_source.get(row.source_id, ()))
        if row.lang:
            langs.add(row.lang)
    return tags, langs


def _insert_deliveries(
    conn: Connection,
    story: st.Story,
    planned: Sequence[routing.Planned],
    now: datetime,
    *,
    first_only: bool = False,
) -> list[routing.Planned]:
    """One message per story revision per channel: when two routes name the same channel,
    the first route in the file decides how and when. A retraction or reinstatement
    (`routing.NOTICES`) goes only to a channel that was sent a message about the story (or
    may have been: `uncertain`). With `first_only`, only to channels never queued a message
    about the story (`offer`). Returns what was queued."""
    seen: set[str] = set()
    queued: list[routing.Planned] = []
    for p in planned:
        if p.channel in seen:
            continue
        seen.add(p.channel)
        key = {"story_id": story.id, "revision": story.revision, "channel": p.channel, "seq": p.seq}
        if first_only and conn.execute(_CHANNEL_QUEUED, key).first():
            continue
        exists = conn.execute(_DELIVERY_EXISTS, key).first()
        if exists:
            continue
        if p.kind in routing.NOTICES:
            told, _, _ = conn.execute(
                _CHANNEL_HEARD,
                {"story_id": story.id, "channel": p.channel, "now": now, "due": p.due_at},
            ).one()
            if not told:
                continue  # a channel never told of the story has nothing to retract
        elif p.kind == "update":
            heard = conn.execute(
                _CHANNEL_HEARD,
                {"story_id": story.id, "channel": p.channel, "now": now, "due": p.due_at},
            )
            told, waiting, sending = heard.one()
            if not told and waiting:
                # its first message is still waiting (group_wait): sent, it shows the story
                # as it is then, this change included, and no later than the update would
                # have gone (another route's, urgent); an update now would come before it
                conn.execute(
                    _SOONER,
                    {
                        "b_story": story.id,
                        "b_channel": p.channel,
                        "now": now,
                        "b_due": p.due_at,
                        "b_route": p.route,
                    },
                )
                continue
            if not told and not sending:
                # The channel never got a message about the story (its first reports were too
                # old to alert, below the route's severity, in another language; or what was
                # queued was silenced, skipped or failed): its first message is the alert.
                p = replace(p, kind="alert")
        conn.execute(
            _INSERT_DELIVERY,
            {
                **key,
                "route": p.route,
                "kind": p.kind,
                "status": "pending",
                "due_at": p.due_at,
                "attempts": 0,
                "created_at": now,
            },
        )
        queued.append(p)
    return queued


def reports_of(conn: Connection, story_ids: Sequence[int]) -> dict[int, list[StoredReport]]:
    """The reports of each story, in the order they joined it (the one query for this)."""
    out: dict[int, list[StoredReport]] = defaultdict(list)
    if not story_ids:
        return out
    query = (
        select(
            t.story_items.c.story_id,
            t.story_items.c.added_at,
            t.items.c.id,
            t.items.c.key,
            t.items.c.source_id,
            t.items.c.title,
            t.items.c.url,
            t.items.c.lang,
            t.items.c.published_at,
            t.items.c.published_raw,
            t.items.c.fetched_at,
            t.items.c.text,
        )
        .join(t.items, t.items.c.id == t.story_items.c.item_id)
        .where(t.story_items.c.story_id.in_(list(story_ids)))
        .order_by(t.story_items.c.story_id, t.story_items.c.added_at, t.items.c.id)
    )
    for row in conn.execute(query):
        out[row.story_id].append(rows.report(row))
    return out


def matches_of(conn: Connection, item_ids: Sequence[int]) -> Sequence[Row[Any]]:
    """(item_id, rule_id, dates, why) of the matches of the given items (for `why_lines`)."""
    if not item_ids:
        return []
    return conn.execute(
        select(t.matches.c.item_id, t.matches.c.rule_id, t.matches.c.dates, t.matches.c.why).where(
            t.matches.c.item_id.in_(list(item_ids))
        )
    ).all()


def first_report(reports: Sequence[StoredReport]) -> StoredReport | None:
    """The report published first (ties: the one that joined first): what every view (the
    messages, the web page, the feeds) names as a story's first report. A report whose
    outlet gave only its day counts as published at that day's end: an outlet that gave a
    time that day is first, and one that gave an earlier day is first still."""
    if not reports:
        return None
    return min(reports, key=_reported_at)


def by_time(reports: Sequence[StoredReport]) -> tuple[StoredReport, ...]:
    """The reports by publication time (an undated one by its fetch time, a day-only one at
    its day's end), earliest first; ties in the order they joined, so the first is
    `first_report`'s."""
    return tuple(sorted(reports, key=_reported_at))


def _reported_at(report: StoredReport) -> datetime:
    if report.published_at is None:
        return report.fetched_at
    return counted_at(report.published_at, report.published_day)
