"""Queries on sources: configured sources, who polls what when (leases), poll outcomes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.engine import Connection

from watcher.store import rows
from watcher.store import tables as t
from watcher.store.engine import StoreBase
from watcher.types import PollSuccess, SourceState

if TYPE_CHECKING:
    from watcher.config import Source


class SourceQueries(StoreBase):
    def sync_sources(self, sources: Iterable[Source], now: datetime) -> None:
        """Insert configured sources that are new; update kind/url of known ones."""
        with self.engine.begin() as conn:
            known = {
                row.id: row
                for row in conn.execute(select(t.sources.c.id, t.sources.c.kind, t.sources.c.url))
            }
            for source in sources:
                row = known.get(source.id)
                if row is None:
                    conn.execute(
                        t.sources.insert().values(
                            id=source.id,
                            kind=source.kind,
                            url=source.url,
                            consecutive_failures=0,
                            created_at=now,
                        )
                    )
                elif (row.kind, row.url) != (source.kind, source.url):
                    # A new address: its validators and body hash no longer apply.
                    conn.execute(
                        update(t.sources)
                        .where(t.sources.c.id == source.id)
                        .values(
                            kind=source.kind,
                            url=source.url,
                            etag=None,
                            last_modified=None,
                            body_hash=None,
                        )
                    )

    def claim_due(
        self, source_ids: Sequence[str], now: datetime, lease_until: datetime
    ) -> list[str]:
        """Claim the given sources that are due: their next-due time moves to `lease_until`
        in the same statement, so no other replica claims them (PostgreSQL skips rows another
        transaction holds). The poll's outcome then sets the real next-due time; if the
        claiming process dies, the source is due again when the lease ends."""
        if not source_ids:
            return []
        s = t.sources
        due = s.c.id.in_(list(source_ids)) & (s.c.next_due_at.is_(None) | (s.c.next_due_at <= now))
        chosen = select(s.c.id).where(due)
        if self.dialect == "postgresql":
            chosen = chosen.with_for_update(skip_locked=True)
        statement = (
            update(s)
            .where(s.c.id.in_(chosen.scalar_subquery()))
            .values(next_due_at=lease_until)
            .returning(s.c.id)
        )
        with self.engine.begin() as conn:
            return list(conn.execute(statement).scalars())

    def release_sources(self, leases: dict[str, datetime], now: datetime) -> None:
        """Make sources due now whose claim (lease) this process still holds."""
        s = t.sources
        with self.engine.begin() as conn:
            for source_id, lease in leases.items():
                conn.execute(
                    update(s)
                    .where((s.c.id == source_id) & (s.c.next_due_at == lease))
                    .values(next_due_at=now)
                )

    def source_states(self) -> dict[str, SourceState]:
        counts = (
            select(t.items.c.source_id, func.count().label("n"))
            .group_by(t.items.c.source_id)
            .subquery()
        )
        query = (
            select(t.sources, counts.c.n.label("items_stored"))
            .outerjoin(counts, counts.c.source_id == t.sources.c.id)
            .order_by(t.sources.c.id)
        )
        with self.engine.connect() as conn:
            return {row.id: rows.state(row, row.items_stored or 0) for row in conn.execute(query)}

    def fetch_states(self) -> dict[str, SourceState]:
        """Fetch state of every source (no item counts: cheap enough for every cycle)."""
        with self.engine.connect() as conn:
            return {row.id: rows.state(row, 0) for row in conn.execute(select(t.sources))}

    def source_state(self, source_id: str) -> SourceState | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.sources).where(t.sources.c.id == source_id)).first()
            return rows.state(row, 0) if row else None

    def record_success(self, success: PollSuccess) -> None:
        """A poll that worked (including 304 and an unchanged body)."""
        with self.engine.begin() as conn:
            record_success(conn, success)

    def record_unchanged(
        self, polls: Sequence[tuple[str, datetime, datetime, str | None, str | None]]
    ) -> None:
        """Many polls that changed nothing (304 or the same body), in one transaction:
        (source id, polled at, next due at, etag, last modified) each. A warm cycle of 200
        sources is then one round trip instead of 200."""
        if not polls:
            return
        statement = (
            update(t.sources)
            .where(t.sources.c.id == bindparam("sid"))
            .values(
                last_polled_at=bindparam("now"),
                last_success_at=bindparam("now"),
                consecutive_failures=0,
                next_due_at=bindparam("due"),
                etag=bindparam("p_etag"),
                last_modified=bindparam("lm"),
            )
        )
        params = [
            {"sid": sid, "now": now, "due": due, "p_etag": etag, "lm": lm}
            for sid, now, due, etag, lm in polls
        ]
        with self.engine.begin() as conn:
            conn.execute(statement, params)

    def record_failure(
        self, source_id: str, now: datetime, *, error: str, failures: int, next_due_at: datetime
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(t.sources)
                .where(t.sources.c.id == source_id)
                .values(
                    last_polled_at=now,
                    last_error=error[:1000],
                    last_error_at=now,
                    consecutive_failures=failures,
                    next_due_at=next_due_at,
                )
            )


def record_success(conn: Connection, success: PollSuccess) -> None:
    """Record a poll that worked, on the caller's connection (the poll's own transaction)."""
    values: dict[str, Any] = {
        "last_polled_at": success.polled_at,
        "last_success_at": success.polled_at,
        "consecutive_failures": 0,
        "next_due_at": success.next_due_at,
        "etag": success.etag,
        "last_modified": success.last_modified,
    }
    if success.body_hash is not None:
        values["body_hash"] = success.body_hash
    if success.item_count is not None:
        values["last_item_count"] = success.item_count
    conn.execute(update(t.sources).where(t.sources.c.id == success.source_id).values(**values))
