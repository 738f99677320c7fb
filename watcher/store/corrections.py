"""Corrections: an advocate tells the machine it was wrong, and can take it back.

    mark ID --not-relevant   the story sends nothing more (its reports still join it, quietly);
                             channels sent a message about it get one retraction
    merge A B                B's reports move into A; B is closed; A sends one update
    split ID --item KEY      the report leaves the story and founds its own (alerted as new)
    undo N                   correction N reverted, as far as it can be

Each is one transaction, under the same lock as story assignment (PostgreSQL), recorded in
`story_corrections` with who, when and why, and with what it moved and withdrew, so that
`undo` puts back exactly that. Messages not yet sent for a story that is closed or marked are
*withdrawn* (a delivery status), never deleted; undo puts them back in the queue. Nothing
already sent is sent again; what was sent is corrected by a new message (a merge's update, a
mark's retraction, an undone mark's "reinstated" notice), queued in the same transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from watcher import stories as st
from watcher.errors import WatcherError
from watcher.items import published_day
from watcher.routing import Alerting
from watcher.store import outbox, rows, stories
from watcher.store import tables as t
from watcher.store.engine import StoreBase

ACTIONS = ("not_relevant", "merge", "split")


class CorrectionError(WatcherError):
    """A correction that cannot be made as asked (merged into itself, already merged…)."""


class NotFound(CorrectionError):
    """What a correction names does not exist (no such story, report or correction)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Correction:
    id: int
    story_id: int
    action: str
    other_story_id: int | None
    by: str
    at: datetime
    reason: str
    detail: dict[str, Any]
    undone_at: datetime | None = None
    undone_by: str | None = None

    def describe(self) -> str:
        """One line: what was done to which story."""
        if self.action == "not_relevant":
            return f"story {self.story_id} marked not relevant"
        if self.action == "merge":
            return f"story {self.other_story_id} merged into story {self.story_id}"
        key = self.detail.get("key", "?")
        return f"report {key} split from story {self.story_id} into story {self.other_story_id}"


class Corrections:
    """Corrections on a Store (`watcher story …` and the story page use this)."""

    def __init__(self, store: StoreBase, alerting: Alerting | None = None) -> None:
        self.store = store
        self.engine = store.engine
        #: Routes for the messages a correction sends (merge: an update; split: an alert).
        #: None: nothing is queued (no sources.yaml).
        self.alerting = alerting

    # ----------------------------------------------------------------------- actions

    def mark_not_relevant(
        self, story_id: int, *, by: str, reason: str, now: datetime
    ) -> Correction:
        with self._locked() as conn:
            story = self._story(conn, story_id)
            if story.status == "not_relevant":
                raise CorrectionError(f"story {story_id} is already marked not relevant")
            conn.execute(
                update(t.stories)
                .where(t.stories.c.id == story_id)
                .values(status="not_relevant", updated_at=now)
            )
            withdrawn = _withdraw(
                conn, story_id, f"story {story_id} marked not relevant by {by}: {reason}"
            )
            # A channel that was sent a message about the story gets one retraction, on the
            # story's routes as a merge's update goes (`stories.queue`: only channels told of
            # it); a new revision keeps it apart from the alert. Nothing sent: nothing queued.
            retracted = replace(story, status="not_relevant", revision=story.revision + 1)
            queued = self._queue(conn, retracted, "retraction", now)
            if queued:
                conn.execute(
                    update(t.stories)
                    .where(t.stories.c.id == story_id)
                    .values(revision=retracted.revision)
                )
            detail = {"withdrawn": withdrawn, "queued": queued}
            return _record(conn, story_id, "not_relevant", None, by, reason, now, detail)

    def merge(
        self, into_id: int, other_id: int, *, by: str, reason: str, now: datetime
    ) -> Correction:
        """Move every report of `other_id` into `into_id`; `other_id` is closed (merged)."""
        if into_id == other_id:
            raise CorrectionError("a story cannot be merged into itself")
        with self._locked() as conn:
            into = self._story(conn, into_id)
            other = self._story(conn, other_id)
            moved = conn.execute(
                select(t.story_items.c.item_id, t.story_items.c.added_at).where(
                    t.story_items.c.story_id == other_id
                )
            ).all()
            conn.execute(
                update(t.story_items)
                .where(t.story_items.c.story_id == other_id)
                .values(
                    story_id=into_id, added_at=now
                )  # they join `into` now: the update names them
            )
            conn.execute(
                update(t.stories)
                .where(t.stories.c.id == other_id)
                .values(status="merged", merged_into=into_id, updated_at=now)
            )
            withdrawn = _withdraw(conn, other_id, f"merged into story {into_id} by {by}: {reason}")
            merged = stories.rebuild(conn, into_id, now, revision=into.revision + 1)
            queued: list[int] = []
            if merged.status == "open" and (_was_sent(conn, into_id) or _was_sent(conn, other_id)):
                # One update tells what the merge added; before any message went out, the
                # alert still waiting shows the merged story as it is when it is sent.
                queued = self._queue(conn, merged, "update", now)
            detail = {
                "items": [[r.item_id, r.added_at.isoformat()] for r in moved],
                "withdrawn": withdrawn,
                "queued": queued,
                "other_status": other.status,
            }
            return _record(conn, into_id, "merge", other_id, by, reason, now, detail)

    def split(
        self, story_id: int, item_key: str, *, by: str, reason: str, now: datetime
    ) -> Correction:
        """The report leaves the story and founds a new one, alerted like any new story."""
        with self._locked() as conn:
            self._story(conn, story_id)
            row = conn.execute(
                select(t.items, t.story_items.c.added_at, t.story_items.c.facts)
                .join(t.story_items, t.story_items.c.item_id == t.items.c.id)
                .where((t.items.c.key == item_key) & (t.story_items.c.story_id == story_id))
            ).first()
            if row is None:
                raise NotFound(f"story {story_id} has no report {item_key!r}")
            count: int = conn.execute(
                select(t.stories.c.item_count).where(t.stories.c.id == story_id)
            ).scalar_one()
            if count < 2:
                raise CorrectionError(f"report {item_key!r} is story {story_id}'s only report")
            facts = stories.report_facts(conn, row)
            new = st.founded(0, facts, now)
            new_id: int = conn.execute(
                t.stories.insert()
                .values(
                    events=json.dumps(sorted(new.events)),
                    severity=new.severity,
                    title=new.title,
                    people=new.people,
                    people_approximate=new.people_approximate,
                    places=json.dumps(list(new.places), ensure_ascii=False),
                    first_seen_at=now,
                    updated_at=now,
                    revision=1,
                    item_count=1,
                    event_at=new.event_at,
                    event_day=published_day(row),
                )
                .returning(t.stories.c.id)
            ).scalar_one()
            conn.execute(
                update(t.story_items)
                .where(t.story_items.c.item_id == row.id)
                .values(story_id=new_id, added_at=now, revision=1)
            )
            stories.rebuild(conn, story_id, now)
            queued: list[int] = []
            if self.alerting is not None and self.alerting.alertable(rows.item(row), now):
                queued = self._queue(conn, replace(new, id=new_id), "alert", now)
            detail = {
                "item": row.id,
                "key": item_key,
                "added_at": row.added_at.isoformat(),
                "queued": queued,
            }
            return _record(conn, story_id, "split", new_id, by, reason, now, detail)

    def undo(self, correction_id: int, *, by: str, now: datetime) -> Correction:
        """Revert a correction: the last one touching its stories first."""
        with self._locked() as conn:
            c = self._get(conn, correction_id)
            if c.undone_at is not None:
                raise CorrectionError(
                    f"correction {correction_id} was already undone by {c.undone_by}"
                )
            involved = {c.story_id, c.other_story_id} - {None}
            later = conn.execute(
                select(t.story_corrections.c.id)
                .where(t.story_corrections.c.id > correction_id)
                .where(t.story_corrections.c.undone_at.is_(None))
                .where(
                    t.story_corrections.c.story_id.in_(involved)
                    | t.story_corrections.c.other_story_id.in_(involved)
                )
                .order_by(t.story_corrections.c.id.desc())
            ).first()
            if later is not None:
                raise CorrectionError(
                    f"correction {later.id} changed the same stories later: undo it first"
                )
            why = f"correction {correction_id} undone by {by}"
            if c.action == "not_relevant":
                conn.execute(
                    update(t.stories)
                    .where(t.stories.c.id == c.story_id)
                    .values(status="open", updated_at=now)
                )
                _restore(conn, c.detail.get("withdrawn", []), now)
                # Its retraction: withdrawn while it waits; where it went, a reinstatement.
                retractions = c.detail.get("queued", [])
                _withdraw(conn, c.story_id, why, only=retractions)
                _reinstate(conn, c.story_id, retractions, now)
            elif c.action == "merge":
                assert c.other_story_id is not None
                for item_id, added_at in c.detail.get("items", []):
                    conn.execute(
                        update(t.story_items)
                        .where(t.story_items.c.item_id == item_id)
                        .values(
                            story_id=c.other_story_id, added_at=datetime.fromisoformat(added_at)
                        )
                    )
                conn.execute(
                    update(t.stories)
                    .where(t.stories.c.id == c.other_story_id)
                    .values(status=c.detail.get("other_status", "open"), merged_into=None)
                )
                _withdraw(conn, c.story_id, why, only=c.detail.get("queued", []))
                _restore(conn, c.detail.get("withdrawn", []), now)
                stories.rebuild(conn, c.story_id, now)
                stories.rebuild(conn, c.other_story_id, now)
            else:  # split
                assert c.other_story_id is not None
                conn.execute(
                    update(t.story_items)
                    .where(t.story_items.c.item_id == c.detail["item"])
                    .values(
                        story_id=c.story_id,
                        added_at=datetime.fromisoformat(c.detail["added_at"]),
                    )
                )
                # Reports that joined the split-off story since go back with it.
                conn.execute(
                    update(t.story_items)
                    .where(t.story_items.c.story_id == c.other_story_id)
                    .values(story_id=c.story_id)
                )
                conn.execute(
                    update(t.stories)
                    .where(t.stories.c.id == c.other_story_id)
                    .values(status="merged", merged_into=c.story_id, updated_at=now)
                )
                _withdraw(conn, c.other_story_id, why)
                stories.rebuild(conn, c.story_id, now)
            conn.execute(
                update(t.story_corrections)
                .where(t.story_corrections.c.id == correction_id)
                .values(undone_at=now, undone_by=by)
            )
            return replace(c, undone_at=now, undone_by=by)

    # ----------------------------------------------------------------------- reading

    def listing(self, story_id: int | None = None) -> list[Correction]:
        query = select(t.story_corrections).order_by(t.story_corrections.c.id)
        if story_id is not None:
            query = query.where(
                (t.story_corrections.c.story_id == story_id)
                | (t.story_corrections.c.other_story_id == story_id)
            )
        with self.engine.connect() as conn:
            return [_correction(r) for r in conn.execute(query)]

    def labels(self, *, every_story: bool = False) -> Iterator[dict[str, Any]]:
        """The reports of corrected stories (of every story with `every_story`) as labelled
        items in the `watcher eval` format: an advocate's corrections become a test set."""
        with self.engine.connect() as conn:
            if every_story:
                ids = select(t.stories.c.id).where(t.stories.c.status != "merged")
            else:
                touched = (
                    select(t.story_corrections.c.story_id)
                    .where(t.story_corrections.c.undone_at.is_(None))
                    .union(
                        select(t.story_corrections.c.other_story_id).where(
                            t.story_corrections.c.undone_at.is_(None)
                            & t.story_corrections.c.other_story_id.is_not(None)
                        )
                    )
                )
                ids = select(t.stories.c.id).where(
                    t.stories.c.id.in_(touched) & (t.stories.c.status != "merged")
                )
            query = (
                select(t.items, t.stories.c.id.label("story"), t.stories.c.status)
                .join(t.story_items, t.story_items.c.item_id == t.items.c.id)
                .join(t.stories, t.stories.c.id == t.story_items.c.story_id)
                .where(t.stories.c.id.in_(ids))
                .order_by(t.stories.c.id, t.story_items.c.added_at, t.items.c.id)
            )
            found = conn.execute(query).all()
            events: dict[int, set[str]] = {}
            matched = select(t.matches.c.item_id, t.matches.c.event).where(
                t.matches.c.item_id.in_(
                    select(t.story_items.c.item_id).where(t.story_items.c.story_id.in_(ids))
                )
            )
            for m in conn.execute(matched):
                events.setdefault(m.item_id, set()).add(m.event)
        for row in found:
            relevant = row.status != "not_relevant"
            # the day the outlet gave (its own, not its stored midnight's in UTC)
            day = published_day(row) or (row.published_at and row.published_at.date())
            yield {
                "id": row.key,
                "url": row.url,
                "source": row.source_id,
                "lang": row.lang,
                "published": day.isoformat() if day else None,
                "title": row.title,
                "text": row.text,
                "labels": sorted(events.get(row.id, ())) if relevant else [],
                "relevant": relevant,
                "story": f"story-{row.story}" if relevant else None,
            }

    # ----------------------------------------------------------------------- helpers

    @contextmanager
    def _locked(self) -> Iterator[Connection]:
        """A transaction serialised with story assignment (`store.stories.lock`)."""
        with self.engine.begin() as conn:
            stories.lock(conn)
            yield conn

    def _story(self, conn: Connection, story_id: int) -> st.Story:
        row = conn.execute(select(t.stories).where(t.stories.c.id == story_id)).first()
        if row is None:
            raise NotFound(f"no story {story_id}")
        if row.status == "merged":
            raise CorrectionError(f"story {story_id} was merged into story {row.merged_into}")
        return rows.story(row)

    def _get(self, conn: Connection, correction_id: int) -> Correction:
        row = conn.execute(
            select(t.story_corrections).where(t.story_corrections.c.id == correction_id)
        ).first()
        if row is None:
            raise NotFound(f"no correction {correction_id}")
        return _correction(row)

    def _queue(self, conn: Connection, story: st.Story, kind: str, now: datetime) -> list[int]:
        """Plan the story's message on the configured routes; the new delivery ids."""
        if self.alerting is None:
            return []
        stories.queue(conn, story, self.alerting.routes, kind=kind, policy=self.alerting, now=now)
        return [
            r.id
            for r in conn.execute(
                select(t.deliveries.c.id).where(
                    (t.deliveries.c.story_id == story.id)
                    & (t.deliveries.c.revision == story.revision)
                    & (t.deliveries.c.status == "pending")
                )
            )
        ]


def _record(
    conn: Connection,
    story_id: int,
    action: str,
    other: int | None,
    by: str,
    reason: str,
    now: datetime,
    detail: dict[str, Any],
) -> Correction:
    values = {
        "story_id": story_id,
        "action": action,
        "other_story_id": other,
        "by": by,
        "at": now,
        "reason": reason,
        "detail": json.dumps(detail),
    }
    cid: int = conn.execute(
        t.story_corrections.insert().values(**values).returning(t.story_corrections.c.id)
    ).scalar_one()
    return Correction(
        id=cid,
        story_id=story_id,
        action=action,
        other_story_id=other,
        by=by,
        at=now,
        reason=reason,
        detail=detail,
    )


def _correction(row: Any) -> Correction:
    return Correction(
        id=row.id,
        story_id=row.story_id,
        action=row.action,
        other_story_id=row.other_story_id,
        by=row.by,
        at=row.at,
        reason=row.reason,
        detail=json.loads(row.detail),
        undone_at=row.undone_at,
        undone_by=row.undone_by,
    )


def _withdraw(
    conn: Connection, story_id: int, why: str, *, only: Sequence[int] | None = None
) -> list[int]:
    """Withdraw the story's messages not yet sent (all, or those of `only`); their ids."""
    query = select(t.deliveries.c.id).where(
        (t.deliveries.c.story_id == story_id) & (t.deliveries.c.status == "pending")
    )
    ids = [r.id for r in conn.execute(query) if only is None or r.id in set(only)]
    for delivery_id in ids:
        conn.execute(
            update(t.deliveries)
            .where((t.deliveries.c.id == delivery_id) & (t.deliveries.c.status == "pending"))
            .values(status="withdrawn", last_error=why, claimed_until=None)
        )
    return ids


def _restore(conn: Connection, delivery_ids: Sequence[int], now: datetime) -> None:
    """Put withdrawn messages back in the queue, due now."""
    for delivery_id in delivery_ids:
        conn.execute(
            update(t.deliveries)
            .where((t.deliveries.c.id == delivery_id) & (t.deliveries.c.status == "withdrawn"))
            .values(status="pending", last_error=None, due_at=now)
        )


def _reinstate(
    conn: Connection, story_id: int, retractions: Sequence[int], now: datetime
) -> list[int]:
    """One "reinstated" notice on each route and channel a retraction was sent to (or may
    have reached: uncertain), due now, as a new revision of the story; their ids.

    It goes where the retraction went rather than where the routes say now: those are the
    readers told the alert was withdrawn (and `undo` needs no sources.yaml)."""
    d = t.deliveries
    told = conn.execute(
        select(d.c.route, d.c.channel)
        .where(d.c.id.in_(list(retractions)) & d.c.status.in_(("sent", "uncertain")))
        .order_by(d.c.id)
    ).all()
    if not told:
        return []
    revision: int = conn.execute(
        select(t.stories.c.revision).where(t.stories.c.id == story_id)
    ).scalar_one()
    revision += 1
    conn.execute(update(t.stories).where(t.stories.c.id == story_id).values(revision=revision))
    return [
        outbox.queue(
            conn,
            story_id=story_id,
            revision=revision,
            route=row.route,
            channel=row.channel,
            kind="reinstated",
            due_at=now,
            now=now,
        )
        for row in dict.fromkeys(told)  # one per route and channel
    ]


def _was_sent(conn: Connection, story_id: int) -> bool:
    return (
        conn.execute(
            select(t.deliveries.c.id)
            .where((t.deliveries.c.story_id == story_id) & (t.deliveries.c.status == "sent"))
            .limit(1)
        ).first()
        is not None
    )
