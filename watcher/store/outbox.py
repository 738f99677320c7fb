"""The outbox's queries: due deliveries, what a message about a story shows, attempts,
silences, and the operator's views (`watcher alerts`, `watcher silence`, exports)."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.engine import Connection

from watcher.config import event_rank
from watcher.items import published_fields
from watcher.store import Store, rows
from watcher.store import stories as story_queries
from watcher.store import tables as t
from watcher.stories import why_lines
from watcher.types import AlertView, ChannelStatus, Delivery, Silence, Told

#: The PostgreSQL advisory lock under which once-only ops notices are queued.
_OPS_ONCE_LOCK = 0x57A7C4E6


@dataclass(frozen=True, kw_only=True, slots=True)
class Recorded:
    """What `Outbox.record` did."""

    #: False: the delivery was no longer this process's claim (another replica took it when
    #: the claim lapsed): nothing was written. (One a correction withdrew meanwhile is
    #: recorded: the attempt happened.)
    held: bool = True
    #: With `channel_up`: the channel's outage that this attempt ended, if it was down.
    was: ChannelStatus | None = None
    #: When not held: the delivery's status now.
    status: str | None = None


class Outbox:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.engine = store.engine

    # ------------------------------------------------------------------ the worker's side

    def claim_due(
        self, now: datetime, lease: timedelta, limit: int = 200, *, busy: Collection[str] = ()
    ) -> list[Delivery]:
        """Take the due deliveries for this process, but those of the `busy` channels (this
        process is still sending their last claim): `claimed_until` is set in the same
        transaction (PostgreSQL skips rows another replica holds), and each delivery returned
        carries it: it is this claim's token (`renew`, `record` and `release` act only while
        the row still holds it). Recording an attempt frees the claim; a process that dies
        mid-send leaves them due again when the lease ends, so another sends them: at least
        once, never lost.

        Claims are reckoned by the database's clock on PostgreSQL (replicas on several hosts
        whose clocks disagree still agree on whose claim has lapsed), by `now` on SQLite (one
        host). Whether a delivery is *due* is still reckoned by `now`."""
        d = t.deliveries
        with self.engine.begin() as conn:
            clock = self._clock(conn, now)
            query = self._due_query(now, limit, clock)
            if busy:
                query = query.where(d.c.channel.not_in(list(busy)))
            if self.store.dialect == "postgresql":
                query = query.with_for_update(of=d, skip_locked=True)
            due = [rows.delivery(r) for r in conn.execute(query)]
            until = clock + lease
            for chunk in _chunks([r.id for r in due]):
                conn.execute(update(d).where(d.c.id.in_(chunk)).values(claimed_until=until))
        return [replace(r, claimed_until=until) for r in due]

    def renew(
        self, deliveries: Sequence[Delivery], now: datetime, lease: timedelta
    ) -> list[Delivery]:
        """Extend this process's claim on `deliveries` (claimed by `claim_due`) by `lease` from
        now; the ones still held, carrying the new claim. A delivery missing from the answer
        was taken by another process (its claim had lapsed) or settled meanwhile: not ours to
        send any more."""
        d = t.deliveries
        held: list[Delivery] = []
        by_claim: dict[datetime | None, list[Delivery]] = {}
        for x in deliveries:
            by_claim.setdefault(x.claimed_until, []).append(x)
        with self.engine.begin() as conn:
            until = self._clock(conn, now) + lease
            for claim, mine in by_claim.items():
                if claim is None:
                    continue
                ids = {x.id: x for x in mine}
                for chunk in _chunks(list(ids)):
                    kept: Sequence[int] = (
                        conn.execute(
                            update(d)
                            .where(
                                d.c.id.in_(chunk)
                                & (d.c.status == "pending")
                                & (d.c.claimed_until == claim)
                            )
                            .values(claimed_until=until)
                            .returning(d.c.id)
                        )
                        .scalars()
                        .all()
                    )
                    held += [replace(ids[i], claimed_until=until) for i in kept]
        return sorted(held, key=lambda x: x.id)

    def _clock(self, conn: Connection, now: datetime) -> datetime:
        """The time claims are reckoned by: the database's on PostgreSQL, `now` on SQLite."""
        if self.store.dialect == "postgresql":
            db_now: datetime = conn.execute(select(func.now())).scalar_one()
            return db_now
        return now

    def _due_query(self, now: datetime, limit: int, clock: datetime | None = None) -> Any:
        """Due and unclaimed, in queue order; a channel that could not be reached holds all
        its messages until its next try, so that they arrive in order once it is back."""
        d, c = t.deliveries, t.channel_status
        held = select(c.c.channel).where((c.c.channel == d.c.channel) & (c.c.next_try_at > now))
        free = d.c.claimed_until.is_(None) | (d.c.claimed_until <= (clock or now))
        return (
            select(d)
            .where((d.c.status == "pending") & (d.c.due_at <= now) & free & ~held.exists())
            .order_by(d.c.id)
            .limit(limit)
        )

    def replan_digests(
        self, route: str, due: Callable[[datetime], datetime], now: datetime
    ) -> list[tuple[datetime, datetime]]:
        """Give the route's digest lines still waiting the time `due(queued at)` says, in one
        transaction; the (old, new) due time of each line moved.

        Waiting: pending, never tried (a tried one waits its backoff) and not claimed (a
        claimed one is being sent; a lapsed claim is no one's). On PostgreSQL lines another
        transaction holds are skipped. Idempotent: `due` depends on the line and the
        configuration only, so replicas that re-plan together write the same times."""
        d = t.deliveries
        moved: list[tuple[datetime, datetime]] = []
        with self.engine.begin() as conn:
            free = d.c.claimed_until.is_(None) | (d.c.claimed_until <= self._clock(conn, now))
            waiting = (
                (d.c.status == "pending")
                & (d.c.route == route)
                & (d.c.kind == "digest")
                & (d.c.attempts == 0)
                & free
            )
            query = select(d.c.id, d.c.created_at, d.c.due_at).where(waiting)
            if self.store.dialect == "postgresql":
                query = query.with_for_update(of=d, skip_locked=True)
            by_due: dict[datetime, list[int]] = {}
            for row in conn.execute(query):
                new = due(row.created_at)
                if new != row.due_at:
                    by_due.setdefault(new, []).append(row.id)
                    moved.append((row.due_at, new))
            for new, ids in by_due.items():
                for chunk in _chunks(ids):
                    conn.execute(update(d).where(d.c.id.in_(chunk) & waiting).values(due_at=new))
        return moved

    def release(self, deliveries: Sequence[Delivery]) -> None:
        """Give claimed deliveries back untried (their channel just failed: they wait; the
        process is stopping), those this process still holds."""
        d = t.deliveries
        by_claim: dict[datetime | None, list[int]] = {}
        for x in deliveries:
            by_claim.setdefault(x.claimed_until, []).append(x.id)
        with self.engine.begin() as conn:
            for claim, ids in by_claim.items():
                mine = d.c.claimed_until.is_(None) if claim is None else d.c.claimed_until == claim
                for chunk in _chunks(ids):
                    conn.execute(
                        update(d).where(d.c.id.in_(chunk) & mine).values(claimed_until=None)
                    )

    def release_claims(self) -> int:
        """Free every claim (a single-instance start: no other process can hold one)."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(t.deliveries)
                .where(t.deliveries.c.claimed_until.is_not(None))
                .values(claimed_until=None)
            )
        return int(result.rowcount or 0)

    def channels_down(self) -> dict[str, ChannelStatus]:
        """Every channel that could not be reached at its last try, by id."""
        with self.engine.connect() as conn:
            return {
                r.channel: rows.channel_status(r) for r in conn.execute(select(t.channel_status))
            }

    def late(self, now: datetime, late_after: timedelta) -> list[tuple[ChannelStatus, int]]:
        """Channels down whose oldest waiting message was due more than `late_after` ago and
        whose lateness was not told yet, with how many messages wait."""
        d, c = t.deliveries, t.channel_status
        waiting = (
            select(func.count())
            .where((d.c.channel == c.c.channel) & (d.c.status == "pending"))
            .scalar_subquery()
        )
        overdue = select(d.c.id).where(
            (d.c.channel == c.c.channel)
            & (d.c.status == "pending")
            & (d.c.due_at <= now - late_after)
        )
        query = select(c, waiting.label("waiting")).where(
            c.c.late_told_at.is_(None) & overdue.exists()
        )
        with self.engine.connect() as conn:
            return [(rows.channel_status(r), int(r.waiting)) for r in conn.execute(query)]

    def tell_late(
        self,
        channel: str,
        targets: Sequence[tuple[str, str]],
        subject: str,
        body: str,
        now: datetime,
    ) -> bool:
        """Mark the channel's outage as told and queue the ops notice, once (replicas race
        on the mark: the one that sets it queues)."""
        c = t.channel_status
        with self.engine.begin() as conn:
            marked = conn.execute(
                update(c)
                .where((c.c.channel == channel) & c.c.late_told_at.is_(None))
                .values(late_told_at=now)
            ).rowcount
            if marked:
                queue_ops(conn, targets, subject, body, now)
        return bool(marked)

    def expire(
        self,
        route: str | None,
        older_than: datetime,
        now: datetime,
        why: str,
        *,
        other_than: Sequence[str] = (),
    ) -> list[Delivery]:
        """Give up on pending, unclaimed deliveries of `route` (None: of every route but
        `other_than`) due before `older_than`; the expired rows."""
        d = t.deliveries
        with self.engine.begin() as conn:
            free = d.c.claimed_until.is_(None) | (d.c.claimed_until <= self._clock(conn, now))
            where = (d.c.status == "pending") & (d.c.due_at < older_than) & free
            if route is not None:
                where = where & (d.c.route == route)
            elif other_than:
                where = where & d.c.route.not_in(list(other_than))
            found = [rows.delivery(r) for r in conn.execute(select(d).where(where))]
            for chunk in _chunks([x.id for x in found]):
                conn.execute(
                    update(d)
                    .where(d.c.id.in_(chunk) & (d.c.status == "pending"))
                    .values(status="expired", last_error=why, claimed_until=None)
                )
        return found

    def depth(self) -> int:
        """Pending deliveries (the outbox depth metric)."""
        query = select(func.count()).where(t.deliveries.c.status == "pending")
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def view(
        self, delivery: Delivery, names: Mapping[str, str], public_url: str | None = None
    ) -> tuple[AlertView, dict[str, set[str]]] | None:
        """What a message about the delivery's story shows, and the labels silences match
        on; None when the story is gone, or was withdrawn (marked not relevant or merged
        away: `watcher story`) after the message was claimed. A retraction shows the story
        marked not relevant, with who marked it and why; a "reinstated" notice, who undid that.

        With `public_url` (``settings.public_url``) the view carries the story page's address,
        which every message links to (render escapes it per format through `safe_url`).
        Its `removed` names the story's reports a re-check found gone at their source
        (``item_checks.removed_at``), whatever the delivery's kind; a "removed" delivery keeps
        its kind.
        """
        with self.engine.connect() as conn:
            story = conn.execute(
                select(t.stories).where(t.stories.c.id == delivery.story_id)
            ).first()
            # A retraction is about a story marked not relevant; every other message about
            # an open one (a retraction whose mark was undone meanwhile is withdrawn).
            shown_status = "not_relevant" if delivery.kind == "retraction" else "open"
            if story is None or story.status != shown_status:
                return None
            corrected_by, correction_reason = "", ""
            if delivery.kind in ("retraction", "reinstated"):
                c = t.story_corrections.c
                mark = conn.execute(
                    select(c.by, c.reason, c.undone_by)
                    .where((c.story_id == story.id) & (c.action == "not_relevant"))
                    .order_by(c.id.desc())
                    .limit(1)
                ).first()
                if mark is not None and delivery.kind == "retraction":
                    corrected_by, correction_reason = mark.by, mark.reason
                elif mark is not None:
                    corrected_by = mark.undone_by or ""
            stored = story_queries.reports_of(conn, [story.id]).get(story.id, [])
            # "First" is the report published first, as on the web page and in the feeds (the
            # order of joining follows the order sources were polled in)
            first = story_queries.first_report(stored)
            if first is not None:
                stored = [first, *(r for r in stored if r is not first)]
            found = story_queries.matches_of(conn, [r.item_id for r in stored])
            rules = why_lines(found, [r.item_id for r in stored])
            first_id = stored[0].item_id if stored else None
            dates: list[str] = next(
                (json.loads(m.dates) for m in found if m.item_id == first_id), []
            )
            d = t.deliveries
            # The last message sent on this channel about the story: what it said, and when.
            last = conn.execute(
                select(d.c.sent_at, d.c.told)
                .where(
                    (d.c.story_id == story.id)
                    & (d.c.channel == delivery.channel)
                    & (d.c.status == "sent")
                )
                .order_by(d.c.sent_at.desc(), d.c.id.desc())
                .limit(1)
            ).first()
            last_sent = last.sent_at if last is not None else None
            # Reports whose page a re-check found gone (404/410): every message says so.
            ic, si = t.item_checks, t.story_items
            gone: set[int] = set(
                conn.execute(
                    select(ic.c.item_id)
                    .join(si, si.c.item_id == ic.c.item_id)
                    .where((si.c.story_id == story.id) & ic.c.removed_at.is_not(None))
                ).scalars()
            )
        reports = [r.shown(names) for r in stored]
        if not reports:
            return None
        # The web app's story page (watcher/web/app.py: /stories/{story_id}) under the address
        # advocates reach it at; the id is the database's integer, never text from a source.
        story_url = f"{public_url.rstrip('/')}/stories/{int(story.id)}" if public_url else None
        events = tuple(sorted(json.loads(story.events), key=event_rank))
        places = tuple(json.loads(story.places))
        now_told = Told(
            severity=story.severity,
            events=events,
            people=story.people,
            people_approximate=story.people_approximate,
            places=places,
        )
        kind = delivery.kind if delivery.kind != "digest" else "alert"
        if kind == "update" and last is None:
            kind = "alert"  # nothing about the story reached this channel yet: this is its alert
        before = None
        if kind in ("update", "reminder") and last is not None and last.told:
            before = Told.from_json(_json_or_none(last.told))
        if kind == "reminder" and before is not None and before != now_told:
            # A reminder that went out in an update's place (the update waited behind it:
            # a channel that was down, a long group_wait) says what changed: it is an update.
            kind = "update"
        new_outlets: tuple[str, ...] = ()
        if kind == "update" and last_sent is not None:
            # outlets that joined since the last message and were not in the story before
            told = {r.shown(names).source_name for r in stored if r.added_at <= last_sent}
            fresh = [r.shown(names) for r in stored if r.added_at > last_sent]
            new_outlets = tuple(
                dict.fromkeys(r.source_name for r in fresh if r.source_name not in told)
            )
        view = AlertView(
            kind=kind,
            story_id=story.id,
            revision=story.revision,
            # gravest first (the order of EVENT_TYPES): a message's title and a digest's
            # group lead with the forced repatriation, not with what sorts first by name
            events=events,
            severity=story.severity,
            rules=tuple(rules),
            people=story.people,
            people_approximate=story.people_approximate,
            places=places,
            dates=tuple(dates),
            first=reports[0],
            others=tuple(reports[1:]),
            new_outlets=new_outlets,
            before=before,
            story_url=story_url,
            removed=tuple(
                f"{shown.source_name}: {shown.title}"
                for r, shown in zip(stored, reports, strict=True)
                if r.item_id in gone
            ),
            corrected_by=corrected_by,
            correction_reason=correction_reason,
        )
        labels = {
            "source": {r.source_id for r in reports},
            "event": set(view.events),
            "severity": {view.severity},
            "rule": set(rules),
            "lang": {r.lang for r in reports if r.lang},
            "route": {delivery.route},
            "channel": {delivery.channel},
            "story": {str(story.id)},
        }
        return view, labels

    def record(
        self,
        delivery: Delivery,
        *,
        outcome: str,
        status: str,
        now: datetime,
        error: str | None = None,
        elapsed: float | None = None,
        subject: str | None = None,
        body: str | None = None,
        due_at: datetime | None = None,
        counts: bool = True,
        channel: ChannelStatus | None = None,
        channel_up: bool = False,
        told: Told | None = None,
    ) -> Recorded:
        """One attempt and the delivery's new state, in one transaction; with `channel`, the
        channel is (still) down as given; with `channel_up`, it is up again: its status row
        goes, and is returned when there was one. `told` is what the message said of its
        story, kept once it is sent (the next update says what changed since).

        A claimed delivery (its `claimed_until` set by `claim_due`/`renew`) is recorded only
        while it is pending and still holds that claim; otherwise nothing is written and
        `held` is False: a lost race is told, never recorded twice."""
        was: ChannelStatus | None = None
        d = t.deliveries
        with self.engine.begin() as conn:
            where = d.c.id == delivery.id
            if delivery.claimed_until is not None:
                claim = delivery.claimed_until
                where = where & (d.c.status == "pending") & (d.c.claimed_until == claim)
            values: dict[str, Any] = {"status": status, "last_error": error, "claimed_until": None}
            if counts:
                values["attempts"] = d.c.attempts + 1
            if status == "sent":
                values["sent_at"] = now
                if told is not None:
                    values["told"] = json.dumps(told.as_json(), ensure_ascii=False)
            if due_at is not None:
                values["due_at"] = due_at
            if not conn.execute(update(d).where(where).values(**values)).rowcount:
                found = conn.execute(select(d.c.status).where(d.c.id == delivery.id)).scalar()
                if found != "withdrawn":
                    return Recorded(held=False, status=found)
                # A correction withdrew it while this process was sending it: the attempt
                # happened and is kept, and a message that went out is sent (an undo of the
                # correction must not send it a second time).
                if status == "sent":
                    withdrawn = (d.c.id == delivery.id) & (d.c.status == "withdrawn")
                    conn.execute(update(d).where(withdrawn).values(**values))
            conn.execute(
                t.delivery_attempts.insert().values(
                    delivery_id=delivery.id,
                    at=now,
                    outcome=outcome,
                    error=error,
                    elapsed=elapsed,
                    subject=subject,
                    body=body,
                )
            )
            c = t.channel_status
            if channel is not None:
                fields = {
                    "next_try_at": channel.next_try_at,
                    "failures": channel.failures,
                    "last_error": channel.last_error,
                }
                changed = conn.execute(
                    update(c).where(c.c.channel == channel.channel).values(**fields)
                ).rowcount
                if not changed:
                    conn.execute(
                        c.insert().values(
                            channel=channel.channel, down_since=channel.down_since, **fields
                        )
                    )
            elif channel_up:
                row = conn.execute(select(c).where(c.c.channel == delivery.channel)).first()
                if row is not None:
                    was = rows.channel_status(row)
                    conn.execute(c.delete().where(c.c.channel == delivery.channel))
        return Recorded(was=was)

    def add(
        self,
        *,
        story_id: int | None,
        revision: int,
        route: str,
        channel: str,
        kind: str,
        due_at: datetime,
        now: datetime,
        seq: int = 0,
        subject: str | None = None,
        body: str | None = None,
    ) -> int:
        with self.engine.begin() as conn:
            return queue(
                conn,
                story_id=story_id,
                revision=revision,
                route=route,
                channel=channel,
                kind=kind,
                due_at=due_at,
                now=now,
                seq=seq,
                subject=subject,
                body=body,
            )

    def queue_ops_once(
        self,
        subject: str,
        body: str,
        targets: Sequence[tuple[str, str]],
        now: datetime,
    ) -> bool:
        """Queue an ops notice on every (route, channel) unless one with this subject was
        queued already (replicas agree under a lock): False when it was."""
        with self.engine.begin() as conn:
            if self.store.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _OPS_ONCE_LOCK})
            d = t.deliveries
            seen = conn.execute(
                select(d.c.id).where((d.c.kind == "ops") & (d.c.subject == subject)).limit(1)
            ).first()
            if seen is not None:
                return False
            queue_ops(conn, targets, subject, body, now)
        return True

    def add_ops(
        self, targets: Sequence[tuple[str, str]], subject: str, body: str, now: datetime
    ) -> int:
        """Queue an ops notice on every (route, channel); returns how many."""
        with self.engine.begin() as conn:
            queue_ops(conn, targets, subject, body, now)
        return len(targets)

    def day_figures(self, since: datetime) -> tuple[int, int, int]:
        """(items stored, stories opened, deliveries failed) since `since`."""
        with self.engine.connect() as conn:
            items = conn.execute(
                select(func.count()).select_from(t.items).where(t.items.c.fetched_at >= since)
            ).scalar_one()
            stories = conn.execute(
                select(func.count())
                .select_from(t.stories)
                .where(t.stories.c.first_seen_at >= since)
            ).scalar_one()
            failed = conn.execute(
                select(func.count())
                .select_from(t.deliveries)
                .where(
                    t.deliveries.c.status.in_(("failed", "expired"))
                    & (t.deliveries.c.created_at >= since)
                )
            ).scalar_one()
        return int(items), int(stories), int(failed)

    def story_updated_at(self, story_id: int) -> datetime | None:
        with self.engine.connect() as conn:
            return conn.execute(
                select(t.stories.c.updated_at).where(t.stories.c.id == story_id)
            ).scalar()

    # ------------------------------------------------------------------ operators

    def listing(self, status: str | None = None, limit: int = 200) -> list[Delivery]:
        query = select(t.deliveries).order_by(t.deliveries.c.id.desc()).limit(limit)
        if status:
            query = query.where(t.deliveries.c.status == status)
        with self.engine.connect() as conn:
            return [rows.delivery(r) for r in conn.execute(query)]

    def get(self, delivery_id: int) -> Delivery | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.deliveries).where(t.deliveries.c.id == delivery_id)).first()
        return rows.delivery(row) if row else None

    def retry(self, delivery_id: int, now: datetime) -> bool:
        """Queue a delivery again, now (any status but pending)."""
        with self.engine.begin() as conn:
            result = conn.execute(
                update(t.deliveries)
                .where((t.deliveries.c.id == delivery_id) & (t.deliveries.c.status != "pending"))
                .values(status="pending", due_at=now, attempts=0)
            )
        return bool(result.rowcount)

    def due_now(
        self, now: datetime, *, channel: str | None = None, delivery_id: int | None = None
    ) -> tuple[int, ChannelStatus | None]:
        """Make pending deliveries due now, with the channel's down state cleared (its
        backoff no longer holds them): those of `channel`, or the one `delivery_id` (its
        channel is tried now too: a channel's queue goes in order). How many are due now,
        and the down state cleared, if the channel was down."""
        d = t.deliveries
        with self.engine.begin() as conn:
            if delivery_id is not None:
                channel = conn.execute(
                    select(d.c.channel).where((d.c.id == delivery_id) & (d.c.status == "pending"))
                ).scalar()
                if channel is None:
                    return 0, None
                which = d.c.id == delivery_id
            else:
                which = d.c.channel == channel
            pending = which & (d.c.status == "pending")
            conn.execute(update(d).where(pending & (d.c.due_at > now)).values(due_at=now))
            waiting = conn.execute(select(func.count()).where(pending)).scalar_one()
            was = _clear_down(conn, [channel]) if channel is not None else []
        return int(waiting), was[0] if was else None

    def channel_up(self, channel: str) -> ChannelStatus | None:
        """Clear a channel's down state (a test message got through): its queue is due at
        once. The state cleared, if it was down."""
        with self.engine.begin() as conn:
            was = _clear_down(conn, [channel])
        return was[0] if was else None

    def channels_changed(self, url_hashes: Mapping[str, str]) -> list[ChannelStatus]:
        """Record each channel's URL (as a hash) and clear the down state of those whose URL
        changed since a daemon last recorded it: the URL that failed is no longer theirs, so
        their messages are tried now. The down states cleared."""
        u = t.channel_urls
        with self.engine.begin() as conn:
            known = {r.channel: r.url_hash for r in conn.execute(select(u))}
            changed = [ch for ch, h in url_hashes.items() if known.get(ch, h) != h]
            for ch, h in url_hashes.items():
                if ch not in known:
                    conn.execute(u.insert().values(channel=ch, url_hash=h))
                elif known[ch] != h:
                    conn.execute(update(u).where(u.c.channel == ch).values(url_hash=h))
            return _clear_down(conn, changed)

    def attempts(self, delivery_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
        out: dict[int, list[dict[str, Any]]] = {i: [] for i in delivery_ids}
        if not delivery_ids:
            return out
        query = (
            select(t.delivery_attempts)
            .where(t.delivery_attempts.c.delivery_id.in_(list(delivery_ids)))
            .order_by(t.delivery_attempts.c.id)
        )
        with self.engine.connect() as conn:
            for r in conn.execute(query):
                out[r.delivery_id].append(
                    {
                        "at": r.at.isoformat(),
                        "outcome": r.outcome,
                        "error": r.error,
                        "elapsed": r.elapsed,
                    }
                )
        return out

    def export(self) -> Iterator[dict[str, Any]]:
        """Every story with its items, and every delivery with its attempts."""
        with self.engine.connect() as conn:
            stories = conn.execute(select(t.stories).order_by(t.stories.c.id)).all()
            for story in stories:
                items = story_queries.reports_of(conn, [story.id]).get(story.id, [])
                deliveries = [
                    rows.delivery(r)
                    for r in conn.execute(
                        select(t.deliveries)
                        .where(t.deliveries.c.story_id == story.id)
                        .order_by(t.deliveries.c.id)
                    )
                ]
                attempts = self.attempts([d.id for d in deliveries])
                yield {
                    "story": story.id,
                    "events": json.loads(story.events),
                    "severity": story.severity,
                    "title": story.title,
                    "people": story.people,
                    "people_approximate": story.people_approximate,
                    "places": json.loads(story.places),
                    "first_seen_at": story.first_seen_at.isoformat(),
                    "revision": story.revision,
                    "items": [
                        {
                            "key": i.key,
                            "source": i.source_id,
                            "title": i.title,
                            "url": i.url,
                            **published_fields(i.published_at, i.published_day),
                        }
                        for i in items
                    ],
                    "deliveries": [
                        {
                            "id": d.id,
                            "route": d.route,
                            "channel": d.channel,
                            "kind": d.kind,
                            "revision": d.revision,
                            "status": d.status,
                            "due_at": d.due_at.isoformat(),
                            "sent_at": d.sent_at.isoformat() if d.sent_at else None,
                            "attempts": attempts[d.id],
                        }
                        for d in deliveries
                    ],
                }

    def story_count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(t.stories)).scalar_one())

    # ------------------------------------------------------------------ silences

    def add_silence(
        self,
        matchers: Mapping[str, str],
        *,
        reason: str,
        starts_at: datetime,
        ends_at: datetime,
        created_by: str | None,
    ) -> int:
        with self.engine.begin() as conn:
            return int(
                conn.execute(
                    t.silences.insert()
                    .values(
                        matchers=json.dumps(dict(matchers), ensure_ascii=False),
                        reason=reason,
                        created_by=created_by,
                        starts_at=starts_at,
                        ends_at=ends_at,
                        created_at=starts_at,
                    )
                    .returning(t.silences.c.id)
                ).scalar_one()
            )

    def silences(self, now: datetime | None = None) -> list[Silence]:
        """All silences, or only those active at `now`."""
        query = select(t.silences).order_by(t.silences.c.id)
        if now is not None:
            query = query.where((t.silences.c.starts_at <= now) & (t.silences.c.ends_at > now))
        with self.engine.connect() as conn:
            return [
                Silence(
                    id=r.id,
                    matchers=json.loads(r.matchers),
                    reason=r.reason,
                    created_by=r.created_by,
                    starts_at=r.starts_at,
                    ends_at=r.ends_at,
                )
                for r in conn.execute(query)
            ]

    def expire_silence(self, silence_id: int, now: datetime) -> bool:
        with self.engine.begin() as conn:
            result = conn.execute(
                update(t.silences)
                .where((t.silences.c.id == silence_id) & (t.silences.c.ends_at > now))
                .values(ends_at=now)
            )
        return bool(result.rowcount)


def _chunks(ids: Sequence[int], size: int = 100) -> Iterator[list[int]]:
    """Fixed-size pieces of an id list (bounded statements, few distinct shapes)."""
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


def queue(
    conn: Connection,
    *,
    story_id: int | None,
    revision: int,
    route: str,
    channel: str,
    kind: str,
    due_at: datetime,
    now: datetime,
    seq: int = 0,
    subject: str | None = None,
    body: str | None = None,
) -> int:
    """Write one pending delivery on the caller's connection; its id."""
    return int(
        conn.execute(
            t.deliveries.insert()
            .values(
                story_id=story_id,
                revision=revision,
                route=route,
                channel=channel,
                kind=kind,
                seq=seq,
                status="pending",
                due_at=due_at,
                attempts=0,
                subject=subject,
                body=body,
                created_at=now,
            )
            .returning(t.deliveries.c.id)
        ).scalar_one()
    )


def queue_ops(
    conn: Connection,
    targets: Sequence[tuple[str, str]],
    subject: str,
    body: str | None,
    now: datetime,
) -> None:
    """One ops notice (due now) on every (route, channel), on the caller's connection."""
    for route, channel in targets:
        queue(
            conn,
            story_id=None,
            revision=0,
            route=route,
            channel=channel,
            kind="ops",
            due_at=now,
            now=now,
            subject=subject,
            body=body,
        )


def _json_or_none(text: str) -> Any:
    """The JSON value of a stored column, or None when it is not JSON."""
    try:
        return json.loads(text)
    except ValueError:
        return None


def _clear_down(conn: Connection, channels: Sequence[str]) -> list[ChannelStatus]:
    """Delete the down state of `channels`; the states deleted."""
    if not channels:
        return []
    c = t.channel_status
    was = [rows.channel_status(r) for r in conn.execute(select(c).where(c.c.channel.in_(channels)))]
    if was:
        conn.execute(c.delete().where(c.c.channel.in_([w.channel for w in was])))
    return was
