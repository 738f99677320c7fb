"""Queries on article pages still to fetch: the items of `fetch_article` sources whose page
failed, tried again on later polls (`pipeline`), and the stored texts their polls keep."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection

from watcher.store import rows
from watcher.store import tables as t
from watcher.store.engine import StoreBase
from watcher.types import PendingArticle

#: The columns of an `Item` (`rows.item`).
_ITEM_COLUMNS = (
    t.items.c.key,
    t.items.c.source_id,
    t.items.c.url,
    t.items.c.title,
    t.items.c.text,
    t.items.c.lang,
    t.items.c.published_at,
    t.items.c.published_raw,
    t.items.c.fetched_at,
    t.items.c.baseline,
)


class ArticleQueries(StoreBase):
    def stored_texts(self, keys: Sequence[str]) -> dict[str, str]:
        """Key → stored text of the items among `keys` that are stored: a known item of a
        `fetch_article` source keeps the article text it was stored with, not the listing's."""
        out: dict[str, str] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start : start + 500])
                query = select(t.items.c.key, t.items.c.text).where(t.items.c.key.in_(chunk))
                out.update({row.key: row.text for row in conn.execute(query)})
        return out

    def pending_articles(self, source_id: str) -> list[PendingArticle]:
        """The source's items whose article page has not arrived yet, oldest try first."""
        r = t.article_retries
        query = (
            select(*_ITEM_COLUMNS, r.c.tries, r.c.last_error, r.c.last_tried_at)
            .join(t.items, t.items.c.id == r.c.item_id)
            .where(r.c.source_id == source_id)
            .order_by(r.c.last_tried_at, t.items.c.key)
        )
        with self.engine.connect() as conn:
            return [
                PendingArticle(
                    item=rows.item(row),
                    tries=row.tries,
                    last_error=row.last_error,
                    last_tried_at=row.last_tried_at,
                )
                for row in conn.execute(query)
            ]

    def record_articles(
        self,
        source_id: str,
        now: datetime,
        *,
        failed: Mapping[str, str],
        fetched: Collection[str],
        give_up_after: int,
        problem: str | None = None,
        prefix: str = "",
        touch_problem: bool = False,
    ) -> None:
        """After a poll's article fetches: `failed` (key → error) are tried again later, up to
        `give_up_after` tries in all; `fetched` have their page. With `touch_problem`, the
        source's poll problem becomes `problem` (None: none), unless it has another kind of
        problem (one not starting `prefix`), which stays."""
        with self.engine.begin() as conn:
            ids = _ids(conn, [*failed, *fetched])
            done = [ids[k] for k in fetched if k in ids]
            r = t.article_retries
            if done:
                conn.execute(delete(r).where(r.c.item_id.in_(done)))
            tried = {ids[k]: error for k, error in failed.items() if k in ids}
            query = select(r.c.item_id, r.c.tries).where(r.c.item_id.in_(list(tried)))
            known: dict[int, int] = {row.item_id: row.tries for row in conn.execute(query)}
            for item_id, error in tried.items():
                tries = known.get(item_id, 0) + 1
                if tries >= give_up_after:  # the last try: the item keeps its listing text
                    conn.execute(delete(r).where(r.c.item_id == item_id))
                elif item_id in known:
                    conn.execute(
                        update(r)
                        .where(r.c.item_id == item_id)
                        .values(tries=tries, last_error=error, last_tried_at=now)
                    )
                else:
                    conn.execute(
                        r.insert().values(
                            item_id=item_id,
                            source_id=source_id,
                            tries=tries,
                            last_error=error,
                            last_tried_at=now,
                        )
                    )
            if touch_problem:
                s = t.sources
                ours = s.c.poll_problem.is_(None) | s.c.poll_problem.startswith(prefix)
                conn.execute(
                    update(s).where((s.c.id == source_id) & ours).values(poll_problem=problem)
                )


def _ids(conn: Connection, keys: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for start in range(0, len(keys), 500):
        chunk = list(keys[start : start + 500])
        query = select(t.items.c.key, t.items.c.id).where(t.items.c.key.in_(chunk))
        out.update({row.key: row.id for row in conn.execute(query)})
    return out
