"""Retention: drop old items no rule matched, and remember their keys so they never return.

What goes: an item stored (`fetched_at`) before the cutoff that has no match and belongs to no
story, with the sources that carried it, its earlier versions (`item_revisions`) and its search
index entry. What stays, whatever its age: every item of a story, every match, every story and
every delivery with its attempts (the record of what was sent). Nothing here touches those
tables.

Why nothing is sent again: a dropped item's key leaves a tombstone (`pruned_items`, 128 bits of
SHA-256 of the key). `save_items` treats a tombstoned key as already seen (`pruned_keys`), so
an outlet that still carries the item does not make it new: it is not stored, matched,
grouped or alerted on. (Without the tombstone it would be: a rule added since could match it,
and an undated item would look fresh.)

Earlier versions are bounded for every item, dropped or kept: an item whose text changes on every
poll (a "N comments" counter in its lead) would otherwise add a revision per poll for as long as
its outlet carries it. Each save keeps the first earlier version (the item as first found) and
the latest `KEEP_REVISIONS` (`trim_revisions`), and a prune trims the items stored before that
bound, whatever their age.

Each batch of items is dropped in its own short transaction, so a running daemon's writes wait
for one batch at most.

Usage::

    report = prune(store, older_than=timedelta(days=180), now=utcnow(), dry_run=True)
    report.items        # unmatched items older than the cutoff (what would go)
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, select, text, update
from sqlalchemy.engine import Connection

from watcher.store import tables as t
from watcher.store.engine import StoreBase

__all__ = [
    "KEEP_REVISIONS",
    "PruneReport",
    "database_size",
    "key_hash",
    "prune",
    "pruned_keys",
    "trim_revisions",
]

#: Earlier versions kept per item besides its first: the latest this many.
KEEP_REVISIONS = 5


def key_hash(key: str) -> str:
    """An item key's tombstone: the first 128 bits of its SHA-256, in hex (32 characters)."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def pruned_keys(conn: Connection, keys: Sequence[str]) -> set[str]:
    """The keys among `keys` of items that were pruned (in the caller's transaction).

    `ItemQueries.save_items` calls it on the keys it did not find, so a pruned item seen
    again is not new.
    """
    if not keys:
        return set()
    by_hash = {key_hash(k): k for k in keys}
    found: set[str] = set()
    hashes = list(by_hash)
    for start in range(0, len(hashes), 500):
        chunk = hashes[start : start + 500]
        query = select(t.pruned_items.c.key_hash).where(t.pruned_items.c.key_hash.in_(chunk))
        found.update(by_hash[str(row.key_hash)] for row in conn.execute(query))
    return found


@dataclass(frozen=True, kw_only=True, slots=True)
class PruneReport:
    """What a prune dropped (or, with `dry_run`, would drop), and the database's size."""

    cutoff: datetime
    dry_run: bool
    #: Unmatched items stored before the cutoff: dropped (or to drop).
    items: int
    #: Their earlier versions and the links to the sources that carried them.
    revisions: int
    source_links: int
    #: Items stored before the cutoff that stay: they matched a rule (the reports of stories).
    kept_matched: int
    #: Outbox records (deliveries) kept, all of them.
    deliveries: int
    #: SQLite: the file's size (pages in use and free) before and after, in bytes; and the
    #: free pages inside it after (reused by new data; `vacuum` returns them to the disk).
    size_before: int | None = None
    size_after: int | None = None
    free_after: int | None = None
    vacuumed: bool = False
    #: Earlier versions of the items that stay, beyond the first and the latest
    #: KEEP_REVISIONS of each: trimmed (or to trim).
    trimmed_revisions: int = 0


def trim_revisions(conn: Connection, item_ids: Sequence[int]) -> int:
    """Delete the earlier versions of `item_ids` beyond the first of each and its latest
    KEEP_REVISIONS (in the caller's transaction); return how many went."""
    r = t.item_revisions.c
    by_item: dict[int, list[int]] = {}
    for start in range(0, len(item_ids), 500):
        query = (
            select(r.item_id, r.id)
            .where(r.item_id.in_(item_ids[start : start + 500]))
            .order_by(r.item_id, r.id)
        )
        for row in conn.execute(query):
            by_item.setdefault(row.item_id, []).append(row.id)
    excess = [i for ids in by_item.values() for i in ids[1:-KEEP_REVISIONS]]
    for start in range(0, len(excess), 500):
        conn.execute(t.item_revisions.delete().where(r.id.in_(excess[start : start + 500])))
    return len(excess)


def _over_kept_revisions() -> Any:
    """The items with more earlier versions than the first and the latest KEEP_REVISIONS, with
    how many they have."""
    r = t.item_revisions.c
    return (
        select(r.item_id, func.count().label("n"))
        .group_by(r.item_id)
        .having(func.count() > KEEP_REVISIONS + 1)
    )


def _trim_kept(store: StoreBase, *, dry_run: bool, batch: int) -> int:
    """Trim (or count, with `dry_run`) the earlier versions beyond the bound of every item."""
    with store.engine.connect() as conn:
        over = conn.execute(_over_kept_revisions()).all()
    if dry_run:
        return sum(row.n - KEEP_REVISIONS - 1 for row in over)
    trimmed = 0
    ids = [row.item_id for row in over]
    for start in range(0, len(ids), batch):
        with store.engine.begin() as conn:
            trimmed += trim_revisions(conn, ids[start : start + batch])
    return trimmed


def _old_unmatched(cutoff: datetime) -> Any:
    """The condition of an item that may go: stored before the cutoff, matched by no rule and
    in no story (an item of a story always has a match; both are checked all the same)."""
    items = t.items.c
    return (
        (items.fetched_at < cutoff)
        & ~exists().where(t.matches.c.item_id == items.id)
        & ~exists().where(t.story_items.c.item_id == items.id)
    )


def _count(conn: Connection, query: Any) -> int:
    return int(conn.execute(query).scalar_one())


def database_size(store: StoreBase) -> tuple[int, int] | None:
    """SQLite: (the database's size, its free pages' size) in bytes; None elsewhere."""
    if store.dialect != "sqlite":
        return None
    with store.engine.connect() as conn:
        size, pages, free = (
            int(conn.execute(text(f"PRAGMA {name}")).scalar_one())
            for name in ("page_size", "page_count", "freelist_count")
        )
    return pages * size, free * size


def prune(
    store: StoreBase,
    *,
    older_than: timedelta,
    now: datetime,
    dry_run: bool = False,
    vacuum: bool = False,
    batch: int = 2000,
) -> PruneReport:
    """Drop the unmatched items stored more than `older_than` before `now` (module doc).

    With `dry_run`, count what would go and change nothing. With `vacuum`, give the freed
    space back: SQLite rewrites the file (`VACUUM`, which needs as much free disk as the
    database and locks it while it runs); PostgreSQL marks it reusable (`VACUUM ANALYZE`).
    """
    cutoff = now - older_than
    before = database_size(store)
    if dry_run:
        items, revisions, links = _would_drop(store, cutoff)
    else:
        items = revisions = links = 0
        for batch_items, batch_revisions, batch_links in _drop_in_batches(
            store, cutoff, now, batch
        ):
            items += batch_items
            revisions += batch_revisions
            links += batch_links
    trimmed = _trim_kept(store, dry_run=dry_run, batch=batch)
    if vacuum and not dry_run:
        _vacuum(store)
    with store.engine.connect() as conn:
        # What stays of the old items: after a prune, those that matched; before a dry run,
        # the old ones less those that would go.
        old = _count(conn, select(func.count()).where(t.items.c.fetched_at < cutoff))
        deliveries = _count(conn, select(func.count()).select_from(t.deliveries))
    after = database_size(store)
    return PruneReport(
        cutoff=cutoff,
        dry_run=dry_run,
        items=items,
        revisions=revisions,
        source_links=links,
        kept_matched=old - items if dry_run else old,
        deliveries=deliveries,
        size_before=before[0] if before else None,
        size_after=after[0] if after else None,
        free_after=after[1] if after else None,
        vacuumed=vacuum and not dry_run,
        trimmed_revisions=trimmed,
    )


def _would_drop(store: StoreBase, cutoff: datetime) -> tuple[int, int, int]:
    """(items, earlier versions, source links) a prune would drop."""
    candidates = select(t.items.c.id).where(_old_unmatched(cutoff))
    with store.engine.connect() as conn:
        return (
            _count(conn, select(func.count()).select_from(candidates.subquery())),
            _count(conn, select(func.count()).where(t.item_revisions.c.item_id.in_(candidates))),
            _count(conn, select(func.count()).where(t.item_sources.c.item_id.in_(candidates))),
        )


def _drop_in_batches(
    store: StoreBase, cutoff: datetime, now: datetime, batch: int
) -> Iterator[tuple[int, int, int]]:
    """Drop the items that may go, `batch` at a time, each batch in one transaction; yield
    (items, revisions, source links) dropped per batch."""
    last = 0
    items = t.items.c
    while True:
        with store.engine.begin() as conn:
            rows = conn.execute(
                select(items.id, items.key, items.title, items.text, items.source_id)
                .where(_old_unmatched(cutoff) & (items.id > last))
                .order_by(items.id)
                .limit(batch)
            ).all()
            if not rows:
                return
            last = rows[-1].id
            ids = [r.id for r in rows]
            insert = store._insert(t.pruned_items).on_conflict_do_nothing()
            conn.execute(insert, [{"key_hash": key_hash(r.key), "pruned_at": now} for r in rows])
            _forget_search(conn, rows)
            revisions = conn.execute(
                t.item_revisions.delete().where(t.item_revisions.c.item_id.in_(ids))
            ).rowcount
            links = conn.execute(
                t.item_sources.delete().where(t.item_sources.c.item_id.in_(ids))
            ).rowcount
            conn.execute(t.items.delete().where(items.id.in_(ids)))
            _count_down_sources(conn, Counter(r.source_id for r in rows))
        yield len(rows), revisions, links


def _forget_search(conn: Connection, rows: Sequence[Any]) -> None:
    """Take the items out of the search index. PostgreSQL's index rows go with the item
    (ON DELETE CASCADE); SQLite's contentless FTS5 table forgets a row only when told what it
    held (`watcher.store.search`)."""
    if conn.dialect.name != "sqlite":
        return
    from watcher.store import search

    present = conn.execute(
        text("SELECT 1 FROM sqlite_master WHERE name = :n"), {"n": search.INDEX}
    ).first()
    if present is None:
        return
    conn.execute(
        text(
            f"INSERT INTO {search.INDEX} ({search.INDEX}, rowid, doc) VALUES ('delete', :id, :doc)"
        ),
        [{"id": r.id, "doc": search.document(r.title, r.text)} for r in rows],
    )


def _count_down_sources(conn: Connection, dropped: Counter[str]) -> None:
    """Keep each source's stored-item count true (`sources.item_count`)."""
    for source_id, n in dropped.items():
        conn.execute(
            update(t.sources)
            .where(t.sources.c.id == source_id)
            .values(item_count=t.sources.c.item_count - n)
        )


def _vacuum(store: StoreBase) -> None:
    with store.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        if store.dialect == "sqlite":
            conn.execute(text("VACUUM"))
            # WAL mode: the rewritten pages are in the log until a checkpoint moves them.
            conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        else:
            conn.execute(text("VACUUM ANALYZE items, item_sources, item_revisions, pruned_items"))
