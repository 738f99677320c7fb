"""Queries on sources: configured sources, who polls what when (leases), poll outcomes.

Lock order: a transaction that updates several sources rows (claim renewals, releases,
unchanged polls, health) updates them in order of source id, so that two in flight at once
(PostgreSQL's two database threads, or replicas) never each hold a row the other waits for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, case, func, select, update
from sqlalchemy.engine import Connection

from watcher.store import rows
from watcher.store import tables as t
from watcher.store.engine import StoreBase
from watcher.types import HealthChange, PollSuccess, SourceState

if TYPE_CHECKING:
    from watcher.config import Source


class SourceQueries(StoreBase):
    def sync_sources(self, sources: Iterable[Source], now: datetime) -> None:
        """Insert configured sources that are new; update kind/url of known ones.

        The url is stored as sources.yaml writes it (`source.written_url`: `${VAR}`
        unexpanded), so an API key from the environment never reaches the database; polls
        fetch the expanded `source.url` from the config, never the stored one."""
        with self.engine.begin() as conn:
            known = {
                row.id: row
                for row in conn.execute(select(t.sources.c.id, t.sources.c.kind, t.sources.c.url))
            }
            for source in sources:
                row = known.get(source.id)
                # (getattr: callers may pass any object with id, kind and url)
                written = getattr(source, "written_url", source.url)
                if row is None:
                    # replicas starting together on PostgreSQL insert the same new sources:
                    # the second insert is a no-op, not an error that stops its daemon
                    conn.execute(
                        self._insert(t.sources)
                        .values(
                            id=source.id,
                            kind=source.kind,
                            url=written,
                            consecutive_failures=0,
                            created_at=now,
                        )
                        .on_conflict_do_nothing(index_elements=["id"])
                    )
                elif row.kind != source.kind or row.url not in (written, source.url):
                    # A new address: its validators and body hash no longer apply, and a
                    # source backing off after failures of the old one is due now (the fix
                    # of its address shows at once, not after hours of back-off).
                    c = t.sources.c
                    conn.execute(
                        update(t.sources)
                        .where(c.id == source.id)
                        .values(
                            kind=source.kind,
                            url=written,
                            etag=None,
                            last_modified=None,
                            body_hash=None,
                            next_due_at=case(
                                (c.consecutive_failures > 0, now), else_=c.next_due_at
                            ),
                        )
                    )
                elif row.url != written:
                    # The same address, stored expanded by an earlier version: keep the
                    # written form instead (and the validators, which still apply).
                    conn.execute(
                        update(t.sources).where(t.sources.c.id == source.id).values(url=written)
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
        with self.engine.begin() as conn:
            return self._claim(conn, source_ids, now, lease_until)

    def settle_and_claim(
        self,
        unchanged: Sequence[PollSuccess],
        source_ids: Sequence[str],
        now: datetime,
        lease_until: datetime,
    ) -> dict[str, SourceState]:
        """The daemon's tick, in one transaction: record the `unchanged` polls that finished
        since the last tick (as `record_unchanged`), claim the sources among `source_ids`
        that are due (as `claim_due`), and return the claimed sources' states, which their
        polls start from. A tick costs one round trip however many polls it settles."""
        with self.engine.begin() as conn:
            _record_unchanged(conn, unchanged)
            claimed = self._claim(conn, source_ids, now, lease_until) if source_ids else []
            if not claimed:
                return {}
            query = select(t.sources).where(t.sources.c.id.in_(claimed))
            found = {row.id: rows.state(row, 0) for row in conn.execute(query)}
        return {sid: found[sid] for sid in claimed if sid in found}

    def _claim(
        self, conn: Connection, source_ids: Sequence[str], now: datetime, lease_until: datetime
    ) -> list[str]:
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
        return list(conn.execute(statement).scalars())

    def renew_claims(self, leases: Mapping[str, datetime], until: datetime) -> list[str]:
        """Extend to `until` the claims (source → lease end) this process still holds; a
        source whose poll has recorded its outcome meanwhile keeps that outcome's next-due
        time. Returns the sources renewed."""
        s = t.sources
        renewed = []
        with self.engine.begin() as conn:
            for source_id, lease in sorted(leases.items()):  # lock order (module docstring)
                done = conn.execute(
                    update(s)
                    .where((s.c.id == source_id) & (s.c.next_due_at == lease))
                    .values(next_due_at=until)
                )
                if done.rowcount:
                    renewed.append(source_id)
        return renewed

    def next_poll(self, source_ids: Sequence[str]) -> tuple[str, datetime | None] | None:
        """The source among these that is due first and when (None: never polled, due now);
        None when there is no such source."""
        if not source_ids:
            return None
        s = t.sources
        query = (
            select(s.c.id, s.c.next_due_at)
            .where(s.c.id.in_(list(source_ids)))
            .order_by(s.c.next_due_at.is_(None).desc(), s.c.next_due_at, s.c.id)
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return (row.id, row.next_due_at) if row else None

    def release_sources(self, leases: dict[str, datetime], now: datetime) -> None:
        """Make sources due now whose claim (lease) this process still holds."""
        s = t.sources
        with self.engine.begin() as conn:
            for source_id, lease in sorted(leases.items()):  # lock order (module docstring)
                conn.execute(
                    update(s)
                    .where((s.c.id == source_id) & (s.c.next_due_at == lease))
                    .values(next_due_at=now)
                )

    def release_stale_claims(self, now: datetime, lease: timedelta) -> int:
        """Make due now the sources whose next-due time is within one lease: after a crash of
        the single instance their claims are stale (a source merely due soon is polled a
        little early, once). Returns how many."""
        s = t.sources
        with self.engine.begin() as conn:
            done = conn.execute(
                update(s)
                .where((s.c.next_due_at > now) & (s.c.next_due_at <= now + lease))
                .values(next_due_at=now)
            )
        return int(done.rowcount or 0)

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

    def fetch_states(self, only: Sequence[str] | None = None) -> dict[str, SourceState]:
        """Fetch state of every source, or of `only` these (no item counts: cheap enough for
        every cycle)."""
        query = select(t.sources)
        if only is not None:
            if not only:
                return {}
            query = query.where(t.sources.c.id.in_(list(only)))
        with self.engine.connect() as conn:
            return {row.id: rows.state(row, 0) for row in conn.execute(query)}

    def source_state(self, source_id: str) -> SourceState | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.sources).where(t.sources.c.id == source_id)).first()
            return rows.state(row, 0) if row else None

    def record_success(self, success: PollSuccess) -> None:
        """A poll that worked (including 304 and an unchanged body)."""
        with self.engine.begin() as conn:
            record_success(conn, success)

    def record_unchanged(self, polls: Sequence[PollSuccess]) -> None:
        """Many polls that changed nothing (304 or the same body), in one transaction: a warm
        cycle of 200 sources is then one round trip instead of 200."""
        if not polls:
            return
        with self.engine.begin() as conn:
            _record_unchanged(conn, polls)

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

    def new_item_times(self, source_id: str, limit: int = 40) -> list[datetime]:
        """When the source's latest polls that brought new items ran (its own history)."""
        query = (
            select(t.items.c.fetched_at)
            .where(t.items.c.source_id == source_id)
            .group_by(t.items.c.fetched_at)
            .order_by(t.items.c.fetched_at.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    def record_health(
        self,
        changes: Sequence[HealthChange],
        notices: Sequence[tuple[str, str]],
        now: datetime,
    ) -> list[HealthChange]:
        """Keep each source's new health, and queue its ops notice on every (route, channel)
        in `notices`, in one transaction. A change applies only if the stored health is still
        the one it was assessed from, so replicas sweeping together tell each change once.
        Returns the changes applied."""
        from watcher.store.outbox import queue_ops

        applied = []
        with self.engine.begin() as conn:
            ordered = sorted(changes, key=lambda c: c.source_id)  # lock order (module docstring)
            for change in ordered:
                s = t.sources
                was = s.c.health.is_(None) if change.old is None else s.c.health == change.old
                values: dict[str, object] = {
                    "health": change.new,
                    "health_reason": change.reason,
                    "clean_polls": change.clean_polls,
                }
                if change.old != change.new:  # since when the problem (or recovery) holds
                    values["health_since"] = now
                done = conn.execute(
                    update(s).where((s.c.id == change.source_id) & was).values(**values)
                )
                if not done.rowcount:
                    continue
                applied.append(change)
                if change.subject is not None:
                    queue_ops(conn, notices, change.subject, change.body, now)
        return applied


def record_success(conn: Connection, success: PollSuccess, *, new: bool = False) -> None:
    """Record a poll that worked, on the caller's connection (the poll's own transaction);
    `new`: it stored at least one new item."""
    values: dict[str, Any] = {
        "last_polled_at": success.polled_at,
        "last_success_at": success.polled_at,
        "consecutive_failures": 0,
        "next_due_at": success.next_due_at,
        "etag": success.etag,
        "last_modified": success.last_modified,
        "ok_polls": t.sources.c.ok_polls + 1,
        "moved_to": success.moved_to,
        "poll_problem": success.problem,
    }
    if success.body_hash is not None:
        values["body_hash"] = success.body_hash
    if success.item_count is not None:
        values["last_item_count"] = success.item_count
    if success.item_count:
        values["items_seen_at"] = success.polled_at
        values["newest_published_at"] = success.newest_published
    if new:
        values["last_new_at"] = success.polled_at
    conn.execute(update(t.sources).where(t.sources.c.id == success.source_id).values(**values))


def _record_unchanged(conn: Connection, polls: Sequence[PollSuccess]) -> None:
    """Polls that changed nothing (304 or the same body), in one executemany."""
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
            moved_to=bindparam("moved"),
            ok_polls=t.sources.c.ok_polls + 1,
        )
    )
    params = [  # lock order (module docstring)
        {
            "sid": p.source_id,
            "now": p.polled_at,
            "due": p.next_due_at,
            "p_etag": p.etag,
            "lm": p.last_modified,
            "moved": p.moved_to,
        }
        for p in sorted(polls, key=lambda p: p.source_id)
    ]
    conn.execute(statement, params)
