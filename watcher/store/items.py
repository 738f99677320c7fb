"""Queries on items: storing a poll's items with their matches and source links, reading them."""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import any_, bindparam, func, select, update
from sqlalchemy import text as sql
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.types import String

from watcher.evidence import Capture
from watcher.items import without_feed_footer
from watcher.store import evidence, rows, search
from watcher.store import tables as t
from watcher.store.engine import StoreBase
from watcher.store.prune import pruned_keys, trim_revisions
from watcher.store.sources import record_success
from watcher.store.stories import revise_edited, write_stories
from watcher.types import Item, MatchRecord, PollSuccess, SaveResult, StoryChange

if TYPE_CHECKING:
    from watcher.routing import Alerting


class ItemQueries(StoreBase):
    def save_items(
        self,
        items: Sequence[Item],
        now: datetime | None = None,
        *,
        success: PollSuccess | None = None,
        matches: Sequence[MatchRecord] = (),
        alerting: Alerting | None = None,
        captures: Mapping[str, Sequence[Capture]] | None = None,
    ) -> SaveResult:
        """Store items not stored before (by key) and record which source carried each;
        with `success`, record the poll's fetch state in the same transaction; store the
        `matches` of the items that are new or updated (an update replaces its matches).
        With `alerting`, the new matched items are grouped into stories and their deliveries
        queued last, in the same transaction (`store.stories.write_stories`). With
        `captures` (item key → what was fetched for it), each newly matched item keeps its
        first-seen evidence (`store.evidence.keep`).

        A re-seen key is not stored again; when its title or text changed materially the
        row is updated and the old version kept in `item_revisions` (the first and the latest
        KEEP_REVISIONS of them: `store.prune.trim_revisions`). A re-seen item the
        source now gives no title (`Item.untitled`) keeps its stored title and matches. An
        updated item that matches a rule while in no story (it matched nothing when stored)
        is grouped into a story like a new one, judged by when it was first seen and published
        (`_first_matched`). Concurrent writers are safe: new rows go in with
        `ON CONFLICT (key) DO NOTHING`.
        """
        if not items:
            if success is not None:
                with self.engine.begin() as conn:
                    record_success(conn, success)
            return SaveResult()
        for attempt in range(1, SAVE_TRIES + 1):
            try:
                return self._save(items, now, success, matches, alerting, captures)
            except DBAPIError as exc:
                # Two saves in flight at once (PostgreSQL's two database threads, or two
                # replicas) that carry some of the same new items in different orders can each
                # wait on a row the other inserted: PostgreSQL breaks the cycle by failing one.
                # Its transaction left nothing behind, so it runs again.
                if attempt == SAVE_TRIES or getattr(exc.orig, "sqlstate", None) != DEADLOCK:
                    raise
                log.info(
                    "a save waited on another in a cycle and is run again (try %d)",
                    attempt + 1,
                    extra={"action": "save"},
                )
        raise AssertionError("unreachable")  # pragma: no cover

    def _save(
        self,
        items: Sequence[Item],
        now: datetime | None,
        success: PollSuccess | None,
        matches: Sequence[MatchRecord],
        alerting: Alerting | None,
        captures: Mapping[str, Sequence[Capture]] | None,
    ) -> SaveResult:
        """One try of `save_items`, in one transaction."""
        unique = list({item.key: item for item in items}.values())
        keys = [item.key for item in unique]
        seen_at = now or unique[0].fetched_at
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                # Commit without waiting for the WAL flush (as SQLite's synchronous=NORMAL):
                # a server crash may lose the last fraction of a second of polls, whole (items,
                # matches, stories, queued messages and the source's validators together), and
                # the next poll fetches and stores them again. A later synchronous commit (a
                # delivery marked sent) flushes this one first. Saves ~one fsync per poll.
                conn.execute(_ASYNC_COMMIT)
            existing = self._existing(conn, keys)
            # An item `db prune` dropped is not new when a feed still carries it.
            pruned = pruned_keys(conn, [k for k in keys if k not in existing])
            fresh = [i for i in unique if i.key not in existing and i.key not in pruned]
            inserted = self._insert_items(conn, fresh, seen_at) if fresh else {}
            updated = []
            # Updated items without a title now: their stored title and matches are kept.
            kept_titles: set[str] = set()
            for item in unique:
                old = existing.get(item.key)
                if old is not None and item.untitled and old.title != item.title:
                    # The source lost the title (a selector or field that no longer fits), not
                    # the article: the record keeps the title it was found with.
                    item = replace(item, title=old.title)
                    kept_titles.add(item.key)
                if old is not None and _materially_changed(old.title, old.text, item):
                    conn.execute(
                        t.item_revisions.insert().values(
                            item_id=old.id,
                            changed_at=seen_at,
                            old_title=old.title,
                            old_text=old.text,
                        )
                    )
                    conn.execute(
                        update(t.items)
                        .where(t.items.c.id == old.id)
                        .values(
                            title=item.title,
                            text=item.text,
                            content_hash=content_hash(item.title, item.text),
                        )
                    )
                    search.reindex_item(
                        conn, old.id, (old.title, old.text), (item.title, item.text)
                    )
                    updated.append(item)
                elif old is not None and old.text != item.text == without_feed_footer(old.text):
                    # stored with the WordPress footer by an older version: the text loses it
                    # quietly (no revision: the source did not edit the report)
                    conn.execute(
                        update(t.items)
                        .where(t.items.c.id == old.id)
                        .values(text=item.text, content_hash=content_hash(old.title, item.text))
                    )
                    search.reindex_item(conn, old.id, (old.title, old.text), (old.title, item.text))
            if updated:  # a text that changes on every poll keeps a bounded history
                trim_revisions(conn, [existing[i.key].id for i in updated])
            ids = {k: row.id for k, row in existing.items()} | inserted
            # Keys another writer inserted between our lookup and our insert.
            ids |= self._ids(conn, [k for k in keys if k not in ids])
            # (PostgreSQL links the new items in their INSERT, `_insert_items`)
            linked = inserted if self.dialect == "postgresql" else {}
            newly_linked = self._link_sources(
                conn,
                [(ids[i.key], i.source_id) for i in unique if i.key in ids and i.key not in linked],
                seen_at,
            )
            # An item another source stored first is new to this one the first time it
            # carries it (overlapping feeds of one outlet): its last new item is now.
            carried = bool(newly_linked - set(inserted.values()))
            changed = {k: inserted[k] for k in inserted} | {
                i.key: ids[i.key] for i in updated if i.key in ids
            }
            stored = [m for m in matches if m.item_key in changed]
            self._replace_matches(
                conn,
                stored,
                changed,
                # (matched without the title it keeps: its earlier matches stay beside them)
                updated_ids=[ids[i.key] for i in updated if i.key not in kept_titles],
                now=seen_at,
            )
            if captures:
                matched = {m.item_key for m in stored}
                evidence.keep(conn, [i for i in unique if i.key in matched], changed, captures)
            if success is not None:
                record_success(conn, success, new=bool(inserted) or carried)
            new = tuple(item for item in unique if item.key in inserted)
            hooked: tuple[StoryChange, ...] = ()
            if alerting:
                first = _first_matched(conn, updated, stored, existing)
                grouped = {**inserted, **{i.key: ids[i.key] for i in first}}
                hooked = tuple(
                    write_stories(conn, alerting, (*new, *first), stored, grouped, seen_at)
                )
                # Reports already in a story that their outlet edited ("20여명" now reads
                # "30여명"): the story is recomputed, as found when first seen.
                grouped_now = {i.key for i in first}
                edited = [
                    _as_first_found(i, existing[i.key])
                    for i in updated
                    if i.key not in grouped_now and i.key not in kept_titles
                ]
                hooked += tuple(revise_edited(conn, alerting, edited, stored, ids, seen_at))
        return SaveResult(
            new=new,
            updated=tuple(updated),
            seen=len(unique) - len(new) - len(updated),
            matches=tuple(stored),
            stories=hooked,
        )

    def _replace_matches(
        self,
        conn: Connection,
        matches: Sequence[MatchRecord],
        ids: dict[str, int],
        *,
        updated_ids: Sequence[int],
        now: datetime,
    ) -> None:
        if updated_ids:
            conn.execute(t.matches.delete().where(t.matches.c.item_id.in_(updated_ids)))
        if matches:
            conn.execute(
                self._insert(t.matches).on_conflict_do_nothing(),
                [rows.match_values(m, ids[m.item_key], now) for m in matches],
            )

    def matches_of(self, key: str) -> list[MatchRecord]:
        """The stored matches of one item, by rule id."""
        query = (
            select(t.matches, t.items.c.key)
            .join(t.items, t.items.c.id == t.matches.c.item_id)
            .where(t.items.c.key == key)
            .order_by(t.matches.c.rule_id)
        )
        with self.engine.connect() as conn:
            return [rows.match(row) for row in conn.execute(query)]

    def matched_events(self) -> dict[str, frozenset[str]]:
        """Item key → the events stored for it (items with at least one match)."""
        query = select(t.items.c.key, t.matches.c.event).join(
            t.items, t.items.c.id == t.matches.c.item_id
        )
        out: dict[str, set[str]] = {}
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                out.setdefault(row.key, set()).add(row.event)
        return {k: frozenset(v) for k, v in out.items()}

    def match_count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(t.matches)).scalar_one())

    def _existing(self, conn: Connection, keys: Sequence[str]) -> dict[str, Any]:
        """Key → (id, key, title, text, content_hash, published_at, fetched_at, baseline) of
        the stored items among `keys`."""
        table = t.items
        columns = (
            table.c.id,
            table.c.key,
            table.c.title,
            table.c.text,
            table.c.content_hash,
            table.c.published_at,
            table.c.fetched_at,
            table.c.baseline,
        )
        return {row.key: row for row in self._by_keys(conn, columns, keys)}

    def _ids(self, conn: Connection, keys: Sequence[str]) -> dict[str, int]:
        return {row.key: row.id for row in self._by_keys(conn, (t.items.c.key, t.items.c.id), keys)}

    def _by_keys(self, conn: Connection, columns: Sequence[Any], keys: Sequence[str]) -> list[Any]:
        """Rows of `items` whose key is among `keys`, by its unique index.

        PostgreSQL: one statement of one shape, `key = ANY(:keys)` with the keys as one array
        parameter, so it is prepared once per connection and planned for the table's size of
        the moment (engine.py: `plan_cache_mode`); an IN list would make a statement per
        length. SQLite: IN lists of at most 500 (its parameter limit), which use the index
        without statistics."""
        if not keys:
            return []
        if self.dialect == "postgresql":
            query = select(*columns).where(t.items.c.key == any_(_KEYS))
            return list(conn.execute(query, {"keys": list(keys)}))
        found: list[Any] = []
        for chunk in _chunks(keys, 500):
            found.extend(conn.execute(select(*columns).where(t.items.c.key.in_(chunk))))
        return found

    def _link_sources(
        self, conn: Connection, pairs: Sequence[tuple[int, str]], seen_at: datetime
    ) -> set[int]:
        """Record which source carried each item; the ids of the items linked now (those
        not linked to that source before)."""
        if not pairs:
            return set()
        unique = list(dict.fromkeys(pairs))
        if self.dialect == "postgresql":
            # One statement, its rows as arrays: one plan, not one per row.
            done = conn.execute(
                _PG_LINK,
                {"ids": [i for i, _ in unique], "sources": [s for _, s in unique], "at": seen_at},
            )
            return set(done.scalars())
        links = [
            {"item_id": item_id, "source_id": source_id, "first_seen_at": seen_at}
            for item_id, source_id in unique
        ]
        # executemany: compiled once and cached, sent as batched multi-row VALUES.
        statement = (
            self._insert(t.item_sources)
            .on_conflict_do_nothing()
            .returning(t.item_sources.c.item_id)
        )
        return set(conn.execute(statement, links).scalars())

    def _insert_items(
        self, conn: Connection, items: Sequence[Item], seen_at: datetime
    ) -> dict[str, int]:
        """Insert new rows with their search index entries and per-source counts; key → id
        of those this call inserted. PostgreSQL also records here which source carried each
        (`_link_sources` does it later for the others)."""
        values = [rows.item_values(item, content_hash(item.title, item.text)) for item in items]
        if self.dialect == "postgresql":
            # One statement of fixed text whatever the count, each column one array: one
            # plan, no multi-row VALUES text to build per call, and one round trip for the
            # rows, the counts and the source links.
            # every column `rows.item_values` gives has its array (a new one must be added)
            assert values[0].keys() == _PG_ITEM_COLUMNS.keys(), sorted(values[0])
            columns = {name: [v[name] for v in values] for name in _PG_ITEM_COLUMNS}
            inserted = {
                row.key: row.id
                for row in conn.execute(
                    _PG_INSERT_ITEMS,
                    {**columns, "at": seen_at, "sources": sorted(set(columns["source_id"]))},
                )
            }
            new = [item for item in items if item.key in inserted]
        else:
            stmt = (
                self._insert(t.items)
                .on_conflict_do_nothing(index_elements=["key"])
                .returning(t.items.c.key, t.items.c.id)
            )
            inserted = {row.key: row.id for row in conn.execute(stmt, values)}
            new = [item for item in items if item.key in inserted]
            for source_id, n in Counter(i.source_id for i in new).items():
                conn.execute(
                    update(t.sources)
                    .where(t.sources.c.id == source_id)
                    .values(item_count=t.sources.c.item_count + n)
                )
        # The search index follows in the same transaction.
        search.index_items(conn, [(inserted[i.key], i.title, i.text) for i in new])
        return inserted

    def known_keys(self, keys: Sequence[str]) -> set[str]:
        with self.engine.connect() as conn:
            known = set(self._existing(conn, keys))
            return known | pruned_keys(conn, [k for k in keys if k not in known])

    def item_sources(self, key: str) -> list[str]:
        """Ids of the sources that carried the item, in the order they first did."""
        query = (
            select(t.item_sources.c.source_id)
            .join(t.items, t.items.c.id == t.item_sources.c.item_id)
            .where(t.items.c.key == key)
            .order_by(t.item_sources.c.first_seen_at, t.item_sources.c.source_id)
        )
        with self.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    def item_revisions(self, key: str) -> list[tuple[str, str]]:
        """(old title, old text) of an item's earlier versions, oldest first."""
        query = (
            select(t.item_revisions.c.old_title, t.item_revisions.c.old_text)
            .join(t.items, t.items.c.id == t.item_revisions.c.item_id)
            .where(t.items.c.key == key)
            .order_by(t.item_revisions.c.id)
        )
        with self.engine.connect() as conn:
            return [(r.old_title, r.old_text) for r in conn.execute(query)]

    def item_count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(t.items)).scalar_one())

    def iter_items(
        self, *, since: datetime | None = None, source_id: str | None = None
    ) -> Iterator[Item]:
        query = select(t.items).order_by(t.items.c.id)
        if since is not None:
            query = query.where(t.items.c.fetched_at >= since)
        if source_id is not None:
            query = query.where(t.items.c.source_id == source_id)
        with self.engine.connect() as conn:
            for row in conn.execute(query.execution_options(yield_per=500)):
                yield rows.item(row)


log = logging.getLogger(__name__)

#: PostgreSQL's SQLSTATE for a transaction it failed to break a cycle of lock waits.
DEADLOCK = "40P01"
#: Tries of a save that such a cycle failed (each a fresh transaction).
SAVE_TRIES = 3

#: PostgreSQL's statements of the save path (see `_by_keys`, `_insert_items`).
_ASYNC_COMMIT = sql("SET LOCAL synchronous_commit = off")
_KEYS = bindparam("keys", type_=ARRAY(String))
#: (column, array type) of the items a poll inserts, in `rows.item_values`'s names.
_PG_ITEM_COLUMNS = {
    "key": "varchar",
    "source_id": "varchar",
    "url": "text",
    "title": "text",
    "text": "text",
    "lang": "varchar",
    "published_at": "timestamptz",
    "published_raw": "text",
    "published_day": "date",
    "fetched_at": "timestamptz",
    "baseline": "boolean",
    "content_hash": "varchar",
}
#: The new rows, then from what was inserted: the sources' item counts and the item–source
#: links (a data-modifying WITH: one statement, one round trip).
_PG_INSERT_ITEMS = sql(
    f"WITH new AS (INSERT INTO items ({', '.join(_PG_ITEM_COLUMNS)}) SELECT * FROM unnest("
    + ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in _PG_ITEM_COLUMNS.items())
    + ") ON CONFLICT (key) DO NOTHING RETURNING key, id, source_id), "
    # (by the primary key: a join with `new` would read every source, `new` being unknown
    # to the planner)
    "counted AS (UPDATE sources SET item_count = sources.item_count "
    "+ (SELECT count(*) FROM new WHERE new.source_id = sources.id) "
    "WHERE sources.id = ANY(CAST(:sources AS varchar[])) "
    "AND EXISTS (SELECT 1 FROM new WHERE new.source_id = sources.id)), "
    "linked AS (INSERT INTO item_sources (item_id, source_id, first_seen_at) "
    "SELECT id, source_id, CAST(:at AS timestamptz) FROM new ON CONFLICT DO NOTHING) "
    "SELECT key, id FROM new"
)
_PG_LINK = sql(
    "INSERT INTO item_sources (item_id, source_id, first_seen_at) "
    "SELECT i, s, CAST(:at AS timestamptz) "
    "FROM unnest(CAST(:ids AS bigint[]), CAST(:sources AS varchar[])) AS u(i, s) "
    "ON CONFLICT DO NOTHING RETURNING item_id"
)


def _first_matched(
    conn: Connection,
    updated: Sequence[Item],
    matches: Sequence[MatchRecord],
    existing: Mapping[str, Any],
) -> list[Item]:
    """The updated items that match a rule and are in no story yet (stored before they
    matched: a title a selector had lost, put back): each is grouped into a story as a new
    one would be, as the item was first found. Its first-seen time, publication time and
    baseline decide, as for a new item, whether it is too old to alert."""
    matched = {m.item_key for m in matches}
    candidates = {i.key: i for i in updated if i.key in matched}
    if not candidates:
        return []
    ids = {existing[k].id: k for k in candidates}
    grouped: set[int] = set(
        conn.execute(
            select(t.story_items.c.item_id).where(t.story_items.c.item_id.in_(list(ids)))
        ).scalars()
    )
    return [
        _as_first_found(candidates[key], existing[key])
        for item_id, key in ids.items()
        if item_id not in grouped
    ]


def _as_first_found(item: Item, old: Any) -> Item:
    """An updated item with the times and baseline it was first stored with: what decides
    its place on the event clock and whether it is too old to alert."""
    return replace(
        item,
        published_at=old.published_at,
        fetched_at=old.fetched_at,
        baseline=bool(old.baseline),
    )


def content_hash(title: str, text: str) -> str:
    return hashlib.sha256(f"{title}\n{text}".encode()).hexdigest()


_WORDS = re.compile(r"\W+")


def _normalised(title: str, text: str) -> str:
    # A text stored before watcher dropped the WordPress feed footer is not edited at source
    # because the footer is gone from what the parser gives now.
    return _WORDS.sub(" ", f"{title} {without_feed_footer(text)}".lower()).strip()


def _materially_changed(old_title: str, old_text: str, item: Item) -> bool:
    """Edits beyond case, punctuation and spacing."""
    return _normalised(old_title, old_text) != _normalised(item.title, item.text)


def _chunks(values: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
