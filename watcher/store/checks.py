"""Re-checks at the source in the database (`watcher.recheck`): scheduled when a matched item
keeps its evidence, claimed when due, recorded with what they found."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import exists, select, update
from sqlalchemy.engine import Connection

from watcher import recheck
from watcher.evidence import sha256
from watcher.store import rows
from watcher.store import tables as t
from watcher.store.prune import trim_revisions
from watcher.types import FetchResult

if TYPE_CHECKING:
    from watcher.routing import Alerting
    from watcher.store import Store


def schedule(conn: Connection, item_id: int, url: str | None, first_seen_at: datetime) -> None:
    """The first check of a matched item with a web address, a day after it was first seen."""
    if not url or not url.lower().startswith(("http://", "https://")):
        return
    insert: Any
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    conn.execute(
        insert(t.item_checks)
        .values(
            item_id=item_id,
            first_seen_at=first_seen_at,
            due_at=first_seen_at + recheck.SCHEDULE[0],
            done=0,
        )
        .on_conflict_do_nothing(index_elements=["item_id"])
    )


def due_checks(store: Store, now: datetime, limit: int) -> list[recheck.Due]:
    """Checks due now, oldest first. Each is pushed a retry period ahead as it is handed out,
    so a replica polling beside this one does not fetch it too."""
    has_article = exists().where(
        (t.evidence.c.item_id == t.items.c.id) & (t.evidence.c.kind == "article")
    )
    query = (
        select(
            t.item_checks,
            t.items.c.key,
            t.items.c.url,
            t.items.c.source_id,
            t.items.c.title,
            t.items.c.text,
            has_article.label("has_article"),
        )
        .join(t.items, t.items.c.id == t.item_checks.c.item_id)
        .where(t.item_checks.c.due_at <= now)
        .order_by(t.item_checks.c.due_at, t.item_checks.c.item_id)
        .limit(limit)
    )
    with store.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            query = query.with_for_update(of=t.item_checks, skip_locked=True)
        found = conn.execute(query).all()
        for row in found:
            conn.execute(
                update(t.item_checks)
                .where(t.item_checks.c.item_id == row.item_id)
                .values(due_at=now + recheck.RETRY_AFTER)
            )
    return [
        recheck.Due(
            item_id=row.item_id,
            key=row.key,
            url=row.url,
            source_id=row.source_id,
            title=row.title,
            first_seen_at=row.first_seen_at,
            due_at=row.due_at,
            done=row.done,
            # An article page was read when the item was first seen: that is the baseline.
            page_text=row.page_text
            if row.page_text is not None
            else (row.text if row.has_article else None),
        )
        for row in found
        if row.url
    ]


def record_check(
    store: Store,
    check: recheck.Due,
    found: recheck.Verdict,
    result: FetchResult,
    now: datetime,
    alerting: Alerting | None,
) -> None:
    """What the check found, in one transaction: the schedule, a removal (and its message on
    the routes that ask for it), or a changed page (a revision of the item)."""
    due_at, done = recheck.next_due(check, found.outcome, now)
    values: dict[str, Any] = {
        "due_at": due_at,
        "done": done,
        "last_checked_at": now,
        "last_status": result.status,
    }
    if found.text is not None:
        values["page_text"] = found.text
        values["page_sha256"] = sha256(found.text.encode())
    with store.engine.begin() as conn:
        if found.outcome == "removed":
            values["removed_at"] = now
        if found.outcome == "changed" and check.page_text is not None and found.text:
            conn.execute(
                t.item_revisions.insert().values(
                    item_id=check.item_id,
                    changed_at=now,
                    old_title=check.title,
                    old_text=check.page_text,
                )
            )
            conn.execute(
                update(t.items).where(t.items.c.id == check.item_id).values(text=found.text)
            )
            trim_revisions(conn, [check.item_id])  # the first and the latest few
        conn.execute(
            update(t.item_checks).where(t.item_checks.c.item_id == check.item_id).values(values)
        )
        if found.outcome == "removed" and alerting is not None:
            _queue_removed(conn, check.item_id, alerting, now)


def _queue_removed(conn: Connection, item_id: int, alerting: Alerting, now: datetime) -> None:
    """Raise the story's revision and queue a `removed` message on the routes that set
    `notify_on: [removed]` (no other route hears of it)."""
    from watcher.store import stories

    routes = tuple(r for r in alerting.routes if "removed" in r.notify_on)
    if not routes:
        return
    stories.lock(conn)
    row = conn.execute(
        select(t.stories)
        .join(t.story_items, t.story_items.c.story_id == t.stories.c.id)
        .where(t.story_items.c.item_id == item_id)
    ).first()
    if row is None or row.status != "open":
        return
    story = rows.story(row)
    conn.execute(
        update(t.stories)
        .where(t.stories.c.id == story.id)
        .values(revision=story.revision + 1, updated_at=now)
    )
    story = rows.story(conn.execute(select(t.stories).where(t.stories.c.id == story.id)).one())
    stories.queue(conn, story, routes, kind="removed", policy=alerting, now=now)


def removed_items(conn: Connection, item_ids: list[int]) -> dict[int, datetime]:
    """item id → when it was found removed at its source."""
    if not item_ids:
        return {}
    found = conn.execute(
        select(t.item_checks.c.item_id, t.item_checks.c.removed_at).where(
            t.item_checks.c.item_id.in_(item_ids) & t.item_checks.c.removed_at.is_not(None)
        )
    )
    return {r.item_id: r.removed_at for r in found}
