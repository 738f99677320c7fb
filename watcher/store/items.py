"""Queries on items: storing a poll's items with their matches and source links, reading them."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection

from watcher.evidence import Capture
from watcher.store import evidence, rows, search
from watcher.store import tables as t
from watcher.store.engine import StoreBase
from watcher.store.prune import pruned_keys
from watcher.store.sources import record_success
from watcher.store.stories import write_stories
from watcher.types import Item, MatchRecord, PollSuccess, SaveResult

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
        row is updated and the old version kept in `item_revisions`. Concurrent writers are
        safe: new rows go in with `ON CONFLICT (key) DO NOTHING`.
        """
        if not items:
            if success is not None:
                with self.engine.begin() as conn:
                    record_success(conn, success)
            return SaveResult()
        unique = list({item.key: item for item in items}.values())
        keys = [item.key for item in unique]
        seen_at = now or unique[0].fetched_at
        with self.engine.begin() as conn:
            existing = self._existing(conn, keys)
            # An item `db prune` dropped is not new when a feed still carries it.
            pruned = pruned_keys(conn, [k for k in keys if k not in existing])
            fresh = [i for i in unique if i.key not in existing and i.key not in pruned]
            inserted = self._insert_items(conn, fresh) if fresh else {}
            updated = []
            for item in unique:
                old = existing.get(item.key)
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
            ids = {k: row.id for k, row in existing.items()} | inserted
            # Keys another writer inserted between our lookup and our insert.
            ids |= self._ids(conn, [k for k in keys if k not in ids])
            self._link_sources(
                conn, [(ids[i.key], i.source_id) for i in unique if i.key in ids], seen_at
            )
            changed = {k: inserted[k] for k in inserted} | {
                i.key: ids[i.key] for i in updated if i.key in ids
            }
            stored = [m for m in matches if m.item_key in changed]
            self._replace_matches(
                conn, stored, changed, updated_ids=[ids[i.key] for i in updated], now=seen_at
            )
            if captures:
                matched = {m.item_key for m in stored}
                evidence.keep(conn, [i for i in unique if i.key in matched], changed, captures)
            if success is not None:
                record_success(conn, success, new=bool(inserted))
            new = tuple(item for item in unique if item.key in inserted)
            hooked = (
                tuple(write_stories(conn, alerting, new, stored, inserted, seen_at))
                if alerting
                else ()
            )
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
        out: dict[str, Any] = {}
        table = t.items
        for chunk in _chunks(keys, 500):
            query = select(
                table.c.id, table.c.key, table.c.title, table.c.text, table.c.content_hash
            ).where(table.c.key.in_(chunk))
            out.update({row.key: row for row in conn.execute(query)})
        return out

    def _ids(self, conn: Connection, keys: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for chunk in _chunks(keys, 500):
            query = select(t.items.c.key, t.items.c.id).where(t.items.c.key.in_(chunk))
            out.update({row.key: row.id for row in conn.execute(query)})
        return out

    def _link_sources(
        self, conn: Connection, pairs: Sequence[tuple[int, str]], seen_at: datetime
    ) -> None:
        if not pairs:
            return
        insert = self._insert
        links = [
            {"item_id": item_id, "source_id": source_id, "first_seen_at": seen_at}
            for item_id, source_id in dict.fromkeys(pairs)
        ]
        # executemany: compiled once and cached, sent as batched multi-row VALUES.
        conn.execute(insert(t.item_sources).on_conflict_do_nothing(), links)

    def _insert_items(self, conn: Connection, items: Sequence[Item]) -> dict[str, int]:
        """Insert new rows; key → id of those this call inserted."""
        insert = self._insert
        values = [rows.item_values(item, content_hash(item.title, item.text)) for item in items]
        stmt = (
            insert(t.items)
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(t.items.c.key, t.items.c.id)
        )
        inserted = {row.key: row.id for row in conn.execute(stmt, values)}
        # The search index and the per-source counts follow in the same transaction.
        new = [item for item in items if item.key in inserted]
        search.index_items(conn, [(inserted[i.key], i.title, i.text) for i in new])
        for source_id, n in Counter(i.source_id for i in new).items():
            conn.execute(
                update(t.sources)
                .where(t.sources.c.id == source_id)
                .values(item_count=t.sources.c.item_count + n)
            )
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


def content_hash(title: str, text: str) -> str:
    return hashlib.sha256(f"{title}\n{text}".encode()).hexdigest()


_WORDS = re.compile(r"\W+")


def _normalised(title: str, text: str) -> str:
    return _WORDS.sub(" ", f"{title} {text}".lower()).strip()


def _materially_changed(old_title: str, old_text: str, item: Item) -> bool:
    """Edits beyond case, punctuation and spacing."""
    return _normalised(old_title, old_text) != _normalised(item.title, item.text)


def _chunks(values: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
